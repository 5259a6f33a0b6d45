//! The dumper's state machine: merging, markers, clipping, the top of the
//! address space, the x86 canonical hole, bad entries.

mod common;

use common::*;
use pagewalk::arm64::{self as a64, Half, Regime, Stage1};
use pagewalk::x86::{self as x, X86_64};
use pagewalk::{Access, AddrRange, Level, MapAttrs, MemType, TableMemoryMut};
use ptdump::Marker;

fn rw() -> MapAttrs {
    MapAttrs::new(Access::READ.union(Access::WRITE), MemType::Normal)
}
fn ro() -> MapAttrs {
    MapAttrs::new(Access::READ, MemType::Normal)
}

/// A 39-bit TTBR0 space (root at level 1, which Linux calls PGD):
/// 4K pages over [2M, 4M), a 2M block at 4M with the same attributes, a
/// read-only page at 6M.
fn small_arm64() -> (Stage1, mm::Arena, u64) {
    let format = Stage1::new(39, Half::Lower, Regime::El1And0).unwrap();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    // Two map calls: pages from separate calls still merge into one line.
    map_pages(&format, &mut arena, root, 0x20_0000, 0x4020_0000, 0x10_0000, &rw());
    map_pages(&format, &mut arena, root, 0x30_0000, 0x4030_0000, 0x10_0000, &rw());
    map(&format, &mut arena, root, 0x40_0000, 0x4040_0000, 0x20_0000, &rw());
    map(&format, &mut arena, root, 0x60_0000, 0x4060_0000, 0x1000, &ro());
    (format, arena, root)
}

fn dump_arm64(format: &Stage1, arena: &mm::Arena, root: u64, r: AddrRange, markers: &[Marker]) -> String {
    let mut out = String::new();
    ptdump::arm64::dump(&mut out, format, arena, root, r, markers).unwrap();
    out
}

#[test]
fn merges_equal_neighbours_and_splits_on_level_and_attributes() {
    let (format, arena, root) = small_arm64();
    let mut out = String::new();
    let stats = ptdump::arm64::dump(&mut out, &format, &arena, root, AddrRange::ALL, &[]).unwrap();
    assert_eq!(
        out,
        "\
0x0000000000000000-0x0000000000200000           2M PMD
0x0000000000200000-0x0000000000400000           2M PTE       RW NX SHD AF            UXN    MEM/NORMAL
0x0000000000400000-0x0000000000600000           2M PMD       RW NX SHD AF        BLK UXN    MEM/NORMAL
0x0000000000600000-0x0000000000601000           4K PTE       ro NX SHD AF            UXN    MEM/NORMAL
0x0000000000601000-0x0000000000800000        2044K PTE
0x0000000000800000-0x0000000040000000        1016M PMD
0x0000000040000000-0x0000008000000000         511G PGD
"
    );
    assert_eq!(stats.lines, 7);
    assert_eq!(stats.markers, 0);
    assert_eq!(stats.leaves, 512 + 1 + 1);
    // Root: 511 holes; PMD table: 508; the PTE table under [6M, 8M): 511.
    assert_eq!(stats.holes, 511 + 508 + 511 + 1);
    assert_eq!(stats.tables, 4);
}

#[test]
fn markers_split_a_block_and_print_at_start_and_end() {
    let (format, arena, root) = small_arm64();
    let markers = [
        // Printed first even though it lies past the start, as Linux does.
        Marker::new(0x40_1000, "first"),
        Marker::new(0x48_0000, "inside the block"),
        Marker::new(0x60_1000, "at the end"),
        Marker::new(0x60_2000, "past the end"),
    ];
    let out = dump_arm64(&format, &arena, root, range(0x40_0000, Some(0x60_1000)), &markers);
    assert_eq!(
        out,
        "\
---[ first ]---
0x0000000000400000-0x0000000000480000         512K PMD       RW NX SHD AF        BLK UXN    MEM/NORMAL
---[ inside the block ]---
0x0000000000480000-0x0000000000600000        1536K PMD       RW NX SHD AF        BLK UXN    MEM/NORMAL
0x0000000000600000-0x0000000000601000           4K PTE       ro NX SHD AF            UXN    MEM/NORMAL
---[ at the end ]---
"
    );
}

#[test]
fn markers_at_one_address_all_print() {
    let (format, arena, root) = small_arm64();
    let markers = [
        Marker::new(0, "a"),
        Marker::new(0x20_0000, "b"),
        Marker::new(0x20_0000, "c"),
    ];
    let out = dump_arm64(&format, &arena, root, range(0, Some(0x40_0000)), &markers);
    assert_eq!(
        out,
        "\
---[ a ]---
0x0000000000000000-0x0000000000200000           2M PMD
---[ b ]---
---[ c ]---
0x0000000000200000-0x0000000000400000           2M PTE       RW NX SHD AF            UXN    MEM/NORMAL
"
    );
}

#[test]
fn range_is_clipped_inside_a_block() {
    let (format, arena, root) = small_arm64();
    let out = dump_arm64(&format, &arena, root, range(0x40_1000, Some(0x40_3000)), &[]);
    assert_eq!(
        out,
        "0x0000000000401000-0x0000000000403000           8K PMD       RW NX SHD AF        BLK UXN    MEM/NORMAL\n"
    );
    // Outside the format's space: nothing to print.
    let out = dump_arm64(&format, &arena, root, range(1 << 40, Some(1 << 41)), &[]);
    assert_eq!(out, "");
}

#[test]
fn x86_sizes_below_a_kib_print_in_bytes() {
    let format = X86_64::four_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let mut out = String::new();
    ptdump::x86::dump(&mut out, &format, &arena, root, range(0x123, Some(0x200)), &[]).unwrap();
    assert_eq!(
        out,
        "0x0000000000000123-0x0000000000000200         221B                               pgd\n"
    );
}

#[test]
fn arm64_range_ending_at_the_top_of_the_space() {
    let format = Stage1::new(39, Half::Upper, Regime::El1And0).unwrap();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    map(
        &format,
        &mut arena,
        root,
        0xffff_ffff_ffff_f000,
        0x4000_0000,
        0x1000,
        &ro(),
    );
    let out = dump_arm64(
        &format,
        &arena,
        root,
        range(0xffff_ffff_fff0_0000, None),
        &[Marker::new(u64::MAX, "top")],
    );
    assert_eq!(
        out,
        "\
---[ top ]---
0xfffffffffff00000-0xfffffffffffff000        1020K PTE
0xfffffffffffff000-0x0000000000000000           4K PTE       ro NX SHD AF            UXN    MEM/NORMAL
"
    );
    // The whole space: the TTBR1 half only, ending at 2^64.
    let out = dump_arm64(&format, &arena, root, AddrRange::ALL, &[]);
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("0xfffffffffffff000-0x0000000000000000           4K PTE"),
        "{out}"
    );
    assert!(out.starts_with("0xffffff8000000000-"), "{out}");
}

#[test]
fn x86_dump_across_the_canonical_hole_does_not_merge() {
    let format = X86_64::four_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let user = MapAttrs {
        global: false,
        ..MapAttrs::new(Access::READ | Access::WRITE | Access::USER, MemType::Normal)
    };
    map(&format, &mut arena, root, 0x7fff_ffff_f000, 0x10_0000, 0x1000, &user);
    map(
        &format,
        &mut arena,
        root,
        0xffff_8000_0000_0000,
        0x10_1000,
        0x1000,
        &user,
    );
    let mut out = String::new();
    let r = range(0x7fff_ffe0_0000, Some(0xffff_8000_0020_0000));
    let stats = ptdump::x86::dump(&mut out, &format, &arena, root, r, &[]).unwrap();
    assert_eq!(
        out,
        "\
0x00007fffffe00000-0x00007ffffffff000        2044K                               pte
0x00007ffffffff000-0x0000800000000000           4K USR RW                     NX pte
0xffff800000000000-0xffff800000001000           4K USR RW                     NX pte
0xffff800000001000-0xffff800000200000        2044K                               pte
"
    );
    assert_eq!(stats.lines, 4);
}

#[test]
fn x86_five_level_names_and_halves() {
    let format = X86_64::five_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let mut out = String::new();
    let markers = [
        Marker::new(0, "User Space"),
        Marker::new(0xff00_0000_0000_0000, "Kernel Space"),
    ];
    ptdump::x86::dump(&mut out, &format, &arena, root, AddrRange::ALL, &markers).unwrap();
    assert_eq!(
        out,
        "\
---[ User Space ]---
0x0000000000000000-0x0100000000000000          64P                               pgd
---[ Kernel Space ]---
0xff00000000000000-0x0000000000000000          64P                               pgd
"
    );
    // Below the root, 5-level paging has a p4d level.
    map(
        &format,
        &mut arena,
        root,
        0,
        0x20_0000,
        0x20_0000,
        &rw().with_exec_none(),
    );
    let mut out = String::new();
    ptdump::x86::dump(&mut out, &format, &arena, root, range(0, Some(1 << 48)), &[]).unwrap();
    assert_eq!(
        out,
        "\
0x0000000000000000-0x0000000000200000           2M     RW         PSE     GLB NX pmd
0x0000000000200000-0x0000000040000000        1022M                               pmd
0x0000000040000000-0x0000008000000000         511G                               pud
0x0000008000000000-0x0001000000000000      261632G                               p4d
"
    );
}

trait NoExec {
    fn with_exec_none(self) -> Self;
}
impl NoExec for MapAttrs {
    fn with_exec_none(self) -> Self {
        MapAttrs {
            access: self.access.without(Access::EXEC),
            ..self
        }
    }
}

#[test]
fn bad_entries_get_their_own_line_and_are_counted() {
    let format = Stage1::new(48, Half::Lower, Regime::El1And0).unwrap();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    map(&format, &mut arena, root, 0, 0x4000_0000, 0x1000, &ro());
    // A block at level 0, a table outside memory, a table pointing back at the root.
    arena.write_u64(root + 8, 0x4000_0000_0401).unwrap();
    arena.write_u64(root + 16, 0x1_0000_0000 | a64::DESC_TABLE).unwrap();
    arena.write_u64(root + 24, root | a64::DESC_TABLE).unwrap();
    // A reserved descriptor (type 0b01) at level 3.
    let pte = entry_addr(&format, &arena, root, 0x1000, Level(3));
    arena.write_u64(pte, 0x4000_1401).unwrap();

    let mut out = String::new();
    let r = range(0, Some(0x0001_0000_0000_0000));
    let stats = ptdump::arm64::dump(&mut out, &format, &arena, root, r, &[]).unwrap();
    let expected = "\
0x0000000000000000-0x0000000000001000           4K PTE       ro NX SHD AF            UXN    MEM/NORMAL
0x0000000000001000-0x0000000000002000           4K PTE BAD reserved descriptor type raw=0x0000000040001401
0x0000000000002000-0x0000000000200000        2040K PTE
0x0000000000200000-0x0000000040000000        1022M PMD
0x0000000040000000-0x0000008000000000         511G PUD
0x0000008000000000-0x0000010000000000         512G PGD BAD block mapping not allowed at this level raw=0x0000400000000401
0x0000010000000000-0x0000018000000000         512G PGD BAD next table at 0x100000000 is not readable raw=0x0000000100000003
0x0000018000000000-0x0000020000000000         512G PGD BAD next table at 0x40000000 is its own ancestor raw=0x0000000040000003
0x0000020000000000-0x0001000000000000         254T PGD
";
    assert_eq!(out, expected);
    assert_eq!(stats.bad_entries, 4);
    assert_eq!(stats.leaves, 1);

    let mut out = String::new();
    let report = ptdump::arm64::check_wx(&mut out, &format, &arena, root, r).unwrap();
    assert_eq!(
        out,
        "arm64/mm: Cannot check entry at address 0000000000001000/0x1000: reserved descriptor type \
         raw=0x0000000040001401\n\
         Checked W+X mappings: FAILED, 0 W+X pages found, 0 non-UXN pages found, 4 bad entries\n"
    );
    assert_eq!(report.bad_entries, 4);
    assert!(!report.passed());
}

#[test]
fn adjacent_bad_entries_never_merge() {
    let format = X86_64::four_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    // PS is reserved in PML4 entries.
    for i in 0..2 {
        arena.write_u64(root + i * 8, x::PRESENT | x::PSE).unwrap();
    }
    let mut out = String::new();
    let stats = ptdump::x86::dump(&mut out, &format, &arena, root, range(0, Some(1 << 40)), &[]).unwrap();
    assert_eq!(
        out,
        "\
0x0000000000000000-0x0000008000000000         512G pgd BAD reserved bits set (0x80) raw=0x0000000000000081
0x0000008000000000-0x0000010000000000         512G pgd BAD reserved bits set (0x80) raw=0x0000000000000081
"
    );
    assert_eq!((stats.bad_entries, stats.lines), (2, 2));
}

#[test]
fn unreadable_root_is_one_bad_line_per_half() {
    let format = X86_64::four_level();
    let arena = arena();
    let mut out = String::new();
    let stats = ptdump::x86::dump(&mut out, &format, &arena, 0x1000, AddrRange::ALL, &[]).unwrap();
    assert_eq!(
        out,
        "\
0x0000000000000000-0x0000800000000000         128T pgd BAD next table at 0x1000 is not readable raw=0x0000000000000000
0xffff800000000000-0x0000000000000000         128T pgd BAD next table at 0x1000 is not readable raw=0x0000000000000000
"
    );
    assert_eq!(stats.bad_entries, 2);
}

#[test]
fn non_present_arm64_entry_with_bits_shows_them_like_linux() {
    let (format, mut arena, root) = small_arm64();
    // Linux prints the bits of a non-zero invalid entry, starting with F.
    patch_leaves(&format, &mut arena, root, 0x60_0000, 0x1000, |raw| raw & !1);
    let out = dump_arm64(&format, &arena, root, range(0x60_0000, Some(0x60_2000)), &[]);
    assert_eq!(
        out,
        "\
0x0000000000600000-0x0000000000601000           4K PTE F     ro NX SHD AF            UXN    MEM/NORMAL
0x0000000000601000-0x0000000000602000           4K PTE
"
    );
}

#[test]
fn write_errors_stop_the_dump() {
    struct Full(usize);
    impl core::fmt::Write for Full {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            if self.0 < s.len() {
                return Err(core::fmt::Error);
            }
            self.0 -= s.len();
            Ok(())
        }
    }
    let (format, arena, root) = small_arm64();
    let mut out = Full(200);
    assert!(ptdump::arm64::dump(&mut out, &format, &arena, root, AddrRange::ALL, &[]).is_err());
    let mut out = Full(0);
    assert!(ptdump::arm64::check_wx(&mut out, &format, &arena, root, AddrRange::ALL).is_err());
}

/// 512 GiB, one x86 PML4 slot.
const SLOT: u64 = 1 << 39;

#[test]
fn capped_sections_hold_lines_back_but_never_bad_entries() {
    let format = X86_64::four_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    // One page in slots 0, 1, 2, 4 and 7: five lines a slot (hole, page,
    // hole, PMD holes, PUD holes); slot 3 is a bad PML4 entry (PS reserved).
    for slot in [0, 1, 2, 4, 7] {
        map(
            &format,
            &mut arena,
            root,
            slot * SLOT + 0x1000,
            0x10_0000,
            0x1000,
            &ro(),
        );
    }
    arena.write_u64(root + 3 * 8, x::PRESENT | x::PSE).unwrap();
    let markers = [
        Marker::capped(0, "capped", 3),
        Marker::new(5 * SLOT, "next"),
        Marker::capped(6 * SLOT, "capped to the end", 1),
    ];
    let mut out = String::new();
    let stats = ptdump::x86::dump(&mut out, &format, &arena, root, range(0, Some(8 * SLOT)), &markers).unwrap();
    assert_eq!(
        out,
        "\
---[ capped ]---
0x0000000000000000-0x0000000000001000           4K                               pte
0x0000000000001000-0x0000000000002000           4K     ro                 GLB NX pte
0x0000000000002000-0x0000000000200000        2040K                               pte
... 12 entries skipped ... \n\
0x0000018000000000-0x0000020000000000         512G pgd BAD reserved bits set (0x80) raw=0x0000000000000081
... 5 entries skipped ... \n\
---[ next ]---
0x0000028000000000-0x0000030000000000         512G                               pgd
---[ capped to the end ]---
0x0000030000000000-0x0000038000000000         512G                               pgd
... 5 entries skipped ... \n"
    );
    assert_eq!(
        (stats.lines, stats.skipped, stats.bad_entries, stats.markers),
        (3 + 1 + 1 + 1, 12 + 5 + 5, 1, 3)
    );
}

#[test]
fn line_cap_counts_as_linux_does() {
    let mut cap = ptdump::LineCap::new(Some(2));
    assert_eq!(
        [cap.admit(), cap.admit(), cap.admit(), cap.admit()],
        [true, true, false, false]
    );
    assert_eq!(cap.pending(), 2);
    let mut out = String::new();
    cap.write_skipped(&mut out).unwrap();
    cap.write_skipped(&mut out).unwrap();
    assert_eq!(out, "... 2 entries skipped ... \n");
    assert!(!cap.admit());
    cap.write_skipped(&mut out).unwrap();
    assert_eq!(out, "... 2 entries skipped ... \n... 1 entry skipped ... \n");

    // No cap, and a cap of 0 (the section prints no line).
    let mut open = ptdump::LineCap::new(None);
    assert!((0..100_000).all(|_| open.admit()));
    assert_eq!(open.pending(), 0);
    let mut closed = ptdump::LineCap::new(Some(0));
    assert!(!closed.admit());
    assert_eq!(Marker::capped(0, "a", 0).max_lines(), Some(0));
    assert_eq!(Marker::new(0, "a").max_lines(), None);
}
