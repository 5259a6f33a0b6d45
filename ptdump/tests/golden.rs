//! Tables holding the entries behind real Linux ptdump lines (the reference
//! lines in /work/shared/reference/linux-ptdump-formats.md), dumped and
//! compared byte for byte: the whole dump, and each reference line verbatim.

mod common;

use common::*;
use pagewalk::arm64::{self as a64, Half, Regime, Stage1, Stage2};
use pagewalk::x86::X86_64;
use pagewalk::{Access, MapAttrs, MemType};
use ptdump::Marker;

/// Real lines from a Linux 6.1 arm64 kernel on QEMU virt (not contiguous there).
const ARM64_LINUX_LINES: &str = "\
---[ Linear Mapping start ]---
0xffff000000000000-0xffff000000200000           2M PMD       RW NX SHD AF        BLK UXN    MEM/NORMAL-TAGGED
0xffff000000200000-0xffff000000210000          64K PTE       RW NX SHD AF    CON     UXN    MEM/NORMAL-TAGGED
0xffff000000210000-0xffff000000420000        2112K PTE       ro NX SHD AF            UXN    MEM/NORMAL
0xffff000040000000-0xffff008000000000         511G PUD
0xffff008000000000-0xffff800000000000      130560G PGD
0xffff800008010000-0xffff8000081c0000        1728K PTE       ro x  SHD AF    CON     UXN    MEM/NORMAL
0xffff800009000000-0xffff800009f60000       15744K PTE       RW NX SHD AF            UXN    DEVICE/nGnRE
";

const ARM64_DUMP: &str = "\
---[ Linear Mapping start ]---
0xffff000000000000-0xffff000000200000           2M PMD       RW NX SHD AF        BLK UXN    MEM/NORMAL-TAGGED
0xffff000000200000-0xffff000000210000          64K PTE       RW NX SHD AF    CON     UXN    MEM/NORMAL-TAGGED
0xffff000000210000-0xffff000000420000        2112K PTE       ro NX SHD AF            UXN    MEM/NORMAL
0xffff000000420000-0xffff000000600000        1920K PTE
0xffff000000600000-0xffff000040000000        1018M PMD
0xffff000040000000-0xffff008000000000         511G PUD
0xffff008000000000-0xffff800000000000      130560G PGD
---[ Linear Mapping end ]---
---[ Modules start ]---
0xffff800000000000-0xffff800008000000         128M PMD
---[ Modules end ]---
---[ vmalloc() area ]---
0xffff800008000000-0xffff800008010000          64K PTE
0xffff800008010000-0xffff8000081c0000        1728K PTE       ro x  SHD AF    CON     UXN    MEM/NORMAL
0xffff8000081c0000-0xffff800008200000         256K PTE
0xffff800008200000-0xffff800009000000          14M PMD
0xffff800009000000-0xffff800009f60000       15744K PTE       RW NX SHD AF            UXN    DEVICE/nGnRE
0xffff800009f60000-0xffff80000a000000         640K PTE
0xffff80000a000000-0xffff800040000000         864M PMD
0xffff800040000000-0xffff808000000000         511G PUD
0xffff808000000000-0xfffffc0000000000      126464G PGD
---[ vmalloc() end ]---
---[ vmemmap start ]---
0xfffffc0000000000-0xfffffe0000000000           2T PGD
---[ vmemmap end ]---
0xfffffe0000000000-0x0000000000000000           2T PGD
";

const LINEAR: u64 = 0xffff_0000_0000_0000;
const KIMAGE: u64 = 0xffff_8000_0000_0000;

const ARM64_MARKERS: [Marker<'static>; 8] = [
    Marker::new(LINEAR, "Linear Mapping start"),
    Marker::new(KIMAGE, "Linear Mapping end"),
    Marker::new(KIMAGE, "Modules start"),
    Marker::new(KIMAGE + 0x800_0000, "Modules end"),
    Marker::new(KIMAGE + 0x800_0000, "vmalloc() area"),
    Marker::new(0xffff_fc00_0000_0000, "vmalloc() end"),
    Marker::new(0xffff_fc00_0000_0000, "vmemmap start"),
    Marker::new(0xffff_fe00_0000_0000, "vmemmap end"),
];

/// Linux's kernel tables for the reference lines, in a 48-bit TTBR1 space.
fn linux_arm64_tables() -> (Stage1, mm::Arena, u64) {
    let format = Stage1::new(48, Half::Upper, Regime::El1And0).unwrap();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let rw = MapAttrs::new(Access::READ.union(Access::WRITE), MemType::Normal);
    let ro = MapAttrs::new(Access::READ, MemType::Normal);
    let rx = MapAttrs::new(Access::READ.union(Access::EXEC_PRIV), MemType::Normal);
    let dev = MapAttrs::new(Access::READ.union(Access::WRITE), MemType::Device);
    // The builder knows neither MT_NORMAL_TAGGED (attr index 1) nor the contiguous hint.
    let tagged = |raw: u64| (raw & !a64::ATTR_INDX_MASK) | (1 << a64::ATTR_INDX_SHIFT);

    map(&format, &mut arena, root, LINEAR, 0x4000_0000, 0x20_0000, &rw);
    patch_leaves(&format, &mut arena, root, LINEAR, 0x20_0000, tagged);
    map(
        &format,
        &mut arena,
        root,
        LINEAR + 0x20_0000,
        0x4020_0000,
        0x1_0000,
        &rw,
    );
    patch_leaves(&format, &mut arena, root, LINEAR + 0x20_0000, 0x1_0000, |raw| {
        tagged(raw) | a64::CONT
    });
    map(
        &format,
        &mut arena,
        root,
        LINEAR + 0x21_0000,
        0x4021_0000,
        0x21_0000,
        &ro,
    );

    map(
        &format,
        &mut arena,
        root,
        KIMAGE + 0x801_0000,
        0x4100_0000,
        0x1b_0000,
        &rx,
    );
    patch_leaves(&format, &mut arena, root, KIMAGE + 0x801_0000, 0x1b_0000, |raw| {
        raw | a64::CONT
    });
    map_pages(
        &format,
        &mut arena,
        root,
        KIMAGE + 0x900_0000,
        0x0900_0000,
        0xf6_0000,
        &dev,
    );
    (format, arena, root)
}

#[test]
fn arm64_kernel_tables_reproduce_linux_lines() {
    let (format, arena, root) = linux_arm64_tables();
    let mut out = String::new();
    let stats = ptdump::arm64::dump(&mut out, &format, &arena, root, range(LINEAR, None), &ARM64_MARKERS).unwrap();
    assert_eq!(out, ARM64_DUMP);
    assert_lines_in_order(&out, ARM64_LINUX_LINES);
    assert_eq!(stats.lines, 19);
    assert_eq!(stats.markers, 8);
    assert_eq!(stats.bad_entries, 0);
    // 512 + 16 + 528 pages in the linear map, 432 + 3936 in the image.
    assert_eq!(stats.leaves, 1 + 16 + 528 + 432 + 3936);
}

#[test]
fn arm64_kernel_tables_wx_check() {
    let (format, arena, root) = linux_arm64_tables();
    let mut out = String::new();
    let report = ptdump::arm64::check_wx(&mut out, &format, &arena, root, range(LINEAR, None)).unwrap();
    assert_eq!(out, "Checked W+X mappings: passed, no W+X pages found\n");
    assert!(report.passed());
}

/// Real lines from Linux's x86 `kernel_page_tables` (not contiguous there).
const X86_LINUX_LINES: &str = "\
---[ User Space ]---
0x0000000000000000-0x0000000000001000           4K     RW                     x  pte
0x0000000000200000-0x0000000004000000          62M                               pmd
0xfffffffeff000000-0xffffffff00000000          16M     RW     PCD PSE         x  pmd
---[ High Kernel Mapping ]---
0xffffffffa0c00000-0xffffffffa0e00000           2M     RW         PSE     GLB x  pmd
";

const X86_DUMP: &str = "\
---[ User Space ]---
0x0000000000000000-0x0000000000001000           4K     RW                     x  pte
0x0000000000001000-0x0000000000200000        2044K                               pte
0x0000000000200000-0x0000000004000000          62M                               pmd
0x0000000004000000-0x0000000004200000           2M     ro         PSE     GLB NX pmd
0x0000000004200000-0x0000000040000000         958M                               pmd
0x0000000040000000-0x0000008000000000         511G                               pud
0x0000008000000000-0x0000800000000000      130560G                               pgd
---[ Kernel Space ]---
0xffff800000000000-0xffffff8000000000      130560G                               pgd
0xffffff8000000000-0xfffffffec0000000         507G                               pud
0xfffffffec0000000-0xfffffffeff000000        1008M                               pmd
0xfffffffeff000000-0xffffffff00000000          16M     RW     PCD PSE         x  pmd
0xffffffff00000000-0xffffffff80000000           2G                               pud
---[ High Kernel Mapping ]---
0xffffffff80000000-0xffffffffa0c00000         524M                               pmd
0xffffffffa0c00000-0xffffffffa0e00000           2M     RW         PSE     GLB x  pmd
0xffffffffa0e00000-0xffffffffc0000000         498M                               pmd
0xffffffffc0000000-0x0000000000000000           1G                               pud
";

const X86_MARKERS: [Marker<'static>; 3] = [
    Marker::new(0, "User Space"),
    Marker::new(0xffff_8000_0000_0000, "Kernel Space"),
    Marker::new(0xffff_ffff_8000_0000, "High Kernel Mapping"),
];

fn linux_x86_tables() -> (X86_64, mm::Arena, u64) {
    let format = X86_64::four_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let rwx = Access::READ.union(Access::WRITE).union(Access::EXEC);
    let local = |access, mem| MapAttrs {
        global: false,
        ..MapAttrs::new(access, mem)
    };
    map(
        &format,
        &mut arena,
        root,
        0,
        0x10_0000,
        0x1000,
        &local(rwx, MemType::Normal),
    );
    let ro_global = MapAttrs::new(Access::READ, MemType::Normal);
    map(&format, &mut arena, root, 0x400_0000, 0x400_0000, 0x20_0000, &ro_global);
    let uc_minus = local(rwx, MemType::NormalNonCacheable);
    map(
        &format,
        &mut arena,
        root,
        0xffff_fffe_ff00_0000,
        0xff00_0000,
        0x100_0000,
        &uc_minus,
    );
    let kernel = MapAttrs::new(rwx, MemType::Normal);
    map(
        &format,
        &mut arena,
        root,
        0xffff_ffff_a0c0_0000,
        0x0120_0000,
        0x20_0000,
        &kernel,
    );
    (format, arena, root)
}

#[test]
fn x86_tables_reproduce_linux_lines() {
    let (format, arena, root) = linux_x86_tables();
    let mut out = String::new();
    let stats = ptdump::x86::dump(&mut out, &format, &arena, root, pagewalk::AddrRange::ALL, &X86_MARKERS).unwrap();
    assert_eq!(out, X86_DUMP);
    assert_lines_in_order(&out, X86_LINUX_LINES);
    assert_eq!((stats.lines, stats.markers, stats.bad_entries), (16, 3, 0));
}

#[test]
fn x86_tables_wx_check_fails_with_linux_messages() {
    let (format, arena, root) = linux_x86_tables();
    let mut out = String::new();
    let report = ptdump::x86::check_wx(&mut out, &format, &arena, root, pagewalk::AddrRange::ALL).unwrap();
    // 1 + 4096 + 512 pages: the first one warned about, as WARN_ONCE does.
    assert_eq!(
        out,
        "x86/mm: Found insecure W+X mapping at address 0000000000000000/0x0\n\
         x86/mm: Checked W+X mappings: FAILED, 4609 W+X pages found.\n"
    );
    assert_eq!(report.wx_pages, 4609);
    assert_eq!(report.non_uxn_pages, 0);
    assert!(!report.passed());
}

/// Real lines from KVM's `stage2_page_tables` (not contiguous there).
const STAGE2_LINUX_LINES: &str = "\
---[ Guest IPA ]---
0x0000000000000000-0x0000000001000000          16M 2
0x0000000001020000-0x0000000001021000           4K 3   R W X AF
0x0000000080000000-0x0000000081200000          18M 2   R W   AF BLK
";

const STAGE2_DUMP: &str = "\
---[ Guest IPA ]---
0x0000000000000000-0x0000000001000000          16M 2
0x0000000001000000-0x0000000001020000         128K 3
0x0000000001020000-0x0000000001021000           4K 3   R W X AF
0x0000000001021000-0x0000000001200000        1916K 3
0x0000000001200000-0x0000000040000000        1006M 2
0x0000000040000000-0x0000000080000000           1G 1
0x0000000080000000-0x0000000081200000          18M 2   R W   AF BLK
0x0000000081200000-0x00000000c0000000        1006M 2
0x00000000c0000000-0x0000010000000000        1021G 1
";

#[test]
fn stage2_tables_reproduce_kvm_lines() {
    // KVM's default 40-bit IPA space: start level 1, two concatenated root tables.
    let format = Stage2::new(40, 1).unwrap();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let rwx = MapAttrs::new(Access::ALL, MemType::Normal);
    map(&format, &mut arena, root, 0x102_0000, 0x5000_0000, 0x1000, &rwx);
    let rw = MapAttrs::new(Access::READ.union(Access::WRITE), MemType::Normal);
    map(&format, &mut arena, root, 0x8000_0000, 0x6000_0000, 0x120_0000, &rw);

    let mut out = String::new();
    let stats = ptdump::stage2::dump(
        &mut out,
        &format,
        &arena,
        root,
        pagewalk::AddrRange::ALL,
        &ptdump::stage2::GUEST_IPA,
    )
    .unwrap();
    assert_eq!(out, STAGE2_DUMP);
    assert_lines_in_order(&out, STAGE2_LINUX_LINES);
    assert_eq!((stats.lines, stats.leaves), (9, 10));
}

/// An ESPfix-like x86 area: ten read-only pages, 16 pages apart from the
/// sixth page on, as Linux's espfix code maps its stack page.
fn espfix_like_x86_tables() -> (X86_64, mm::Arena, u64) {
    let format = X86_64::four_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let ro = MapAttrs::new(Access::READ, MemType::Normal);
    for i in 0..10 {
        let va = ptdump::x86::ESPFIX_BASE_ADDR + (5 + 16 * i) * 0x1000;
        map(&format, &mut arena, root, va, 0x10_0000, 0x1000, &ro);
    }
    (format, arena, root)
}

fn dump_espfix_like(max_lines: u32) -> (String, ptdump::DumpStats) {
    let (format, arena, root) = espfix_like_x86_tables();
    let markers = [
        Marker::capped(ptdump::x86::ESPFIX_BASE_ADDR, "ESPfix Area", max_lines),
        Marker::new(ptdump::x86::EFI_VA_END, "EFI Runtime Services"),
    ];
    let range = range(ptdump::x86::ESPFIX_BASE_ADDR, Some(0xffff_fff0_0000_0000));
    let mut out = String::new();
    let stats = ptdump::x86::dump(&mut out, &format, &arena, root, range, &markers).unwrap();
    (out, stats)
}

/// Linux's `note_page` (arch/x86/mm/dump_pagetables.c) prints the first
/// `max_lines` lines of a capped section and, when the next marker is
/// reached, `"... %lu entr%s skipped ... \n"` with "y" or "ies".
#[test]
fn x86_capped_section_ends_with_linux_skip_line() {
    let (out, stats) = dump_espfix_like(ptdump::x86::ESPFIX_MAX_LINES);
    assert_eq!(
        out,
        "\
---[ ESPfix Area ]---
0xffffff0000000000-0xffffff0000005000          20K                               pte
0xffffff0000005000-0xffffff0000006000           4K     ro                 GLB NX pte
0xffffff0000006000-0xffffff0000015000          60K                               pte
0xffffff0000015000-0xffffff0000016000           4K     ro                 GLB NX pte
0xffffff0000016000-0xffffff0000025000          60K                               pte
0xffffff0000025000-0xffffff0000026000           4K     ro                 GLB NX pte
0xffffff0000026000-0xffffff0000035000          60K                               pte
0xffffff0000035000-0xffffff0000036000           4K     ro                 GLB NX pte
0xffffff0000036000-0xffffff0000045000          60K                               pte
0xffffff0000045000-0xffffff0000046000           4K     ro                 GLB NX pte
0xffffff0000046000-0xffffff0000055000          60K                               pte
0xffffff0000055000-0xffffff0000056000           4K     ro                 GLB NX pte
0xffffff0000056000-0xffffff0000065000          60K                               pte
0xffffff0000065000-0xffffff0000066000           4K     ro                 GLB NX pte
0xffffff0000066000-0xffffff0000075000          60K                               pte
0xffffff0000075000-0xffffff0000076000           4K     ro                 GLB NX pte
... 8 entries skipped ... \n---[ EFI Runtime Services ]---
0xffffffef00000000-0xfffffff000000000           4G                               pgd
"
    );
    assert_eq!((stats.lines, stats.skipped, stats.markers), (17, 8, 2));

    // One line over the cap: Linux's singular.
    let (out, stats) = dump_espfix_like(23);
    assert!(
        out.contains("pud\n... 1 entry skipped ... \n---[ EFI Runtime Services ]---\n"),
        "{out}"
    );
    assert_eq!((stats.lines, stats.skipped), (24, 1));

    // At the cap exactly, or uncapped: every line, no skip line.
    let (at_cap, stats) = dump_espfix_like(24);
    assert!(!at_cap.contains("skipped"), "{at_cap}");
    assert_eq!((stats.lines, stats.skipped), (25, 0));
    let (format, arena, root) = espfix_like_x86_tables();
    let mut uncapped = String::new();
    let markers = [
        Marker::new(ptdump::x86::ESPFIX_BASE_ADDR, "ESPfix Area"),
        Marker::new(ptdump::x86::EFI_VA_END, "EFI Runtime Services"),
    ];
    let r = range(ptdump::x86::ESPFIX_BASE_ADDR, Some(0xffff_fff0_0000_0000));
    ptdump::x86::dump(&mut uncapped, &format, &arena, root, r, &markers).unwrap();
    assert_eq!(at_cap, uncapped);
}
