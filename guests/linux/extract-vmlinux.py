#!/usr/bin/env python3
"""Unpack the ELF vmlinux from an x86 bzImage:  extract-vmlinux.py BZIMAGE OUT

The setup header says where the compressed payload is (payload_offset/length,
boot protocol >= 2.08). Its last 4 bytes are the uncompressed size, which checks
the result. xz is unpacked with Python's lzma; zstd (Debian's 6.12) needs the
zstd program. The ELF carries Linux's PVH note, so QEMU -kernel boots it
directly without the bzImage's real-mode setup and self-decompression.
"""

import lzma
import shutil
import struct
import subprocess
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.splitlines()[0])
    src, dst = sys.argv[1:]
    with open(src, "rb") as f:
        image = f.read()
    if image[0x202:0x206] != b"HdrS":
        sys.exit(f"{src}: not a bzImage (no HdrS setup header)")
    (protocol,) = struct.unpack_from("<H", image, 0x206)
    if protocol < 0x208:
        sys.exit(f"{src}: boot protocol {protocol:#x} has no payload fields")
    setup_sects = image[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = image[start : start + payload_length]
    compressed, (size,) = payload[:-4], struct.unpack("<I", payload[-4:])

    if compressed.startswith(b"\xfd7zXZ\x00"):
        kind = "xz"
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(compressed)
    elif compressed.startswith(b"\x28\xb5\x2f\xfd"):
        kind = "zstd"
        if not shutil.which("zstd"):
            sys.exit(f"{src}: zstd payload and no zstd program")
        elf = subprocess.run(["zstd", "-dcq"], input=compressed, stdout=subprocess.PIPE, check=True).stdout
    else:
        sys.exit(f"{src}: unsupported payload compression (magic {compressed[:6].hex()})")

    if len(elf) != size or not elf.startswith(b"\x7fELF"):
        sys.exit(f"{src}: unpacked {len(elf)} bytes, expected an ELF of {size} bytes")
    with open(dst, "wb") as f:
        f.write(elf)
    print(f"extract-vmlinux: {kind} payload -> {dst} ({len(elf)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
