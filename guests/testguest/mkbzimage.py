#!/usr/bin/env python3
"""Wraps the test guest's flat 64-bit kernel into a bzImage (Linux x86 boot
protocol 2.15, Documentation/arch/x86/boot.rst), so hv's bzImage loader
loads it exactly like Linux and QEMU's -kernel boots it without hv.

Usage:
    mkbzimage.py --kernel testguest.flat --setup testguest.setup16 -o testguest.bzImage

Layout: the real-mode setup area (boot sector with the 0xAA55 flag, the
setup header from 0x1f1, the jump at 0x200 over the header to the
real-mode code from --setup), then the protected-mode kernel (--kernel),
whose 64-bit entry is at +0x200. The kernel carries "TGINFO64" at +0x10
followed by its memory footprint (init_size) and file size.
"""
import argparse
import struct
import sys

SECTOR = 512
HEADER_END = 0x280          # where the real-mode code starts (the jump lands here)
PROTOCOL = 0x020F           # 2.15
LOADED_HIGH = 0x01
XLF_KERNEL_64 = 1 << 0
XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1
KERNEL_ALIGNMENT = 2 << 20
PREF_ADDRESS = 16 << 20     # Linux's LOAD_PHYSICAL_ADDR
CODE32_START = 0x100000     # where boot loaders put a LOADED_HIGH kernel by default
CMDLINE_SIZE = 4095
ENTRY64 = 0x200


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", required=True, help="flat protected-mode kernel (64-bit entry at +0x200)")
    ap.add_argument("--setup", required=True, help="position-independent real-mode setup code")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()

    kernel = open(args.kernel, "rb").read()
    code = open(args.setup, "rb").read()
    if kernel[0x10:0x18] != b"TGINFO64":
        sys.exit(f"mkbzimage: {args.kernel} lacks the TGINFO64 block at +0x10")
    image_size, file_size = struct.unpack_from("<QQ", kernel, 0x18)
    if len(kernel) > file_size or image_size < file_size:
        sys.exit(f"mkbzimage: kernel is {len(kernel)} bytes, info says file {file_size}, memory {image_size}")
    kernel = kernel.ljust(file_size, b"\0")
    if not code:
        sys.exit(f"mkbzimage: {args.setup} is empty")

    version = b"testguest (hv test guest)\0"
    setup_len = HEADER_END + len(code) + len(version)
    setup_sects = (setup_len + SECTOR - 1) // SECTOR - 1
    setup_sects = max(setup_sects, 4)   # boot.rst: 0 means 4; never write fewer
    setup = bytearray((setup_sects + 1) * SECTOR)
    setup[HEADER_END:HEADER_END + len(code)] = code
    version_at = HEADER_END + len(code)
    setup[version_at:version_at + len(version)] = version

    init_size = (image_size + 4095) // 4096 * 4096
    fields = [
        (0x1F1, "B", setup_sects),
        (0x1F2, "H", 0),                     # root_flags
        (0x1F4, "I", (len(kernel) + 15) // 16),  # syssize (16-byte paragraphs)
        (0x1F8, "H", 0),                     # ram_size
        (0x1FA, "H", 0xFFFF),                # vid_mode: normal
        (0x1FC, "H", 0),                     # root_dev
        (0x1FE, "H", 0xAA55),                # boot_flag
        (0x200, "B", 0xEB),                  # jump: short jmp over the header
        (0x201, "B", HEADER_END - 0x202),    # ... its offset; also where the header ends
        (0x202, "4s", b"HdrS"),
        (0x206, "H", PROTOCOL),
        (0x208, "I", 0),                     # realmode_swtch
        (0x20C, "H", 0x1000),                # start_sys_seg (obsolete)
        (0x20E, "H", version_at - 0x200),    # kernel_version
        (0x210, "B", 0),                     # type_of_loader (the loader fills it)
        (0x211, "B", LOADED_HIGH),           # loadflags
        (0x212, "H", 0x8000),                # setup_move_size
        (0x214, "I", CODE32_START),          # code32_start
        (0x218, "I", 0),                     # ramdisk_image
        (0x21C, "I", 0),                     # ramdisk_size
        (0x220, "I", 0),                     # bootsect_kludge
        (0x224, "H", 0),                     # heap_end_ptr
        (0x228, "I", 0),                     # cmd_line_ptr
        (0x22C, "I", 0x7FFFFFFF),            # initrd_addr_max
        (0x230, "I", KERNEL_ALIGNMENT),      # kernel_alignment
        (0x234, "B", 1),                     # relocatable_kernel: the kernel relocates itself
        (0x235, "B", 12),                    # min_alignment: 4 KiB pages suffice
        (0x236, "H", XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G),
        (0x238, "I", CMDLINE_SIZE),
        (0x23C, "I", 0),                     # hardware_subarch: default PC
        (0x240, "Q", 0),                     # hardware_subarch_data
        (0x248, "I", 0),                     # payload_offset: not compressed
        (0x24C, "I", 0),                     # payload_length
        (0x250, "Q", 0),                     # setup_data
        (0x258, "Q", PREF_ADDRESS),          # pref_address
        (0x260, "I", init_size),             # init_size
        (0x264, "I", 0),                     # handover_offset: no EFI
        (0x268, "I", 0),                     # kernel_info_offset
    ]
    for off, fmt, value in fields:
        struct.pack_into("<" + fmt, setup, off, value)
    assert HEADER_END >= 0x26C

    with open(args.output, "wb") as f:
        f.write(setup)
        f.write(kernel)
    print(f"bzImage={args.output} setup_sects={setup_sects} kernel={len(kernel)} bytes "
          f"init_size={init_size:#x} pref_address={PREF_ADDRESS:#x} entry64=+{ENTRY64:#x}")


if __name__ == "__main__":
    main()
