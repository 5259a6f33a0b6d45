#!/usr/bin/env python3
"""Writes an hv guest bundle: the guest kernel, its initramfs and its command
line in one file (hv/src/guest/bundle.rs reads it; the format is documented there).

Usage:
    scripts/mkbundle.py --kernel K [--initrd I] [--cmdline '...'] -o OUT
    scripts/mkbundle.py --kernel Image --initrd initrd.cpio.gz \\
        --cmdline 'console=ttyAMA0 panic=-1' -o guest.bundle

Hand OUT to hv as QEMU's -initrd (arm64: hv finds it through /chosen
linux,initrd-start/end) or as the PVH module (x86_64). Every payload starts
on a 4 KiB boundary and carries a CRC-32, so a truncated or corrupted
bundle is refused at boot. Prints one line per entry (kind, offset, length).
"""
import argparse
import struct
import sys
import zlib

MAGIC = b"HVBUNDLE"
VERSION = 1
HEADER_LEN = 32
ENTRY_LEN = 32
ALIGN = 4096
KINDS = {"kernel": 1, "initrd": 2, "cmdline": 3}


def align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def build(parts):
    """parts: list of (kind name, bytes) in payload order."""
    header_len = HEADER_LEN + ENTRY_LEN * len(parts)
    body = bytearray(align(header_len))
    entries = []
    for name, data in parts:
        offset = align(len(body))
        body.extend(b"\0" * (offset - len(body)))
        body.extend(data)
        entries.append(struct.pack("<IIQQII", KINDS[name], 0, offset, len(data), zlib.crc32(data), 0))
    header = bytearray(struct.pack("<8sHHIQII", MAGIC, VERSION, header_len, len(parts), len(body), 0, 0))
    header += b"".join(entries)
    struct.pack_into("<I", header, 24, zlib.crc32(bytes(header)))
    body[:header_len] = header
    return bytes(body)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", required=True, help="guest kernel (arm64 Image, x86 vmlinux/bzImage)")
    ap.add_argument("--initrd", help="guest initramfs")
    ap.add_argument("--cmdline", help="guest kernel command line")
    ap.add_argument("-o", "--output", required=True, help="bundle to write")
    args = ap.parse_args()

    with open(args.kernel, "rb") as f:
        parts = [("kernel", f.read())]
    if not parts[0][1]:
        sys.exit(f"mkbundle: {args.kernel} is empty")
    if args.initrd:
        with open(args.initrd, "rb") as f:
            parts.append(("initrd", f.read()))
    if args.cmdline is not None:
        if "\0" in args.cmdline:
            sys.exit("mkbundle: the command line may not contain NUL")
        parts.append(("cmdline", args.cmdline.encode("utf-8")))

    bundle = build(parts)
    with open(args.output, "wb") as f:
        f.write(bundle)
    for index in range(len(parts)):
        kind, _, offset, length, crc, _ = struct.unpack_from("<IIQQII", bundle, HEADER_LEN + index * ENTRY_LEN)
        name = next(k for k, v in KINDS.items() if v == kind)
        print(f"{name}: offset={offset:#x} length={length} crc32={crc:#010x}")
    print(f"bundle={args.output} size={len(bundle)}")


if __name__ == "__main__":
    main()
