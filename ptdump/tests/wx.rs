//! Linux's W+X checks on both architectures, judged on effective rights.

mod common;

use common::*;
use pagewalk::arm64::{self as a64, Half, Regime, Stage1};
use pagewalk::x86::{self as x, X86_64};
use pagewalk::{Access, AddrRange, Level, MapAttrs, MemType};
use ptdump::{WxOptions, WxReport};

const LINEAR: u64 = 0xffff_0000_0000_0000;

fn attrs(access: Access) -> MapAttrs {
    MapAttrs::new(access, MemType::Normal)
}
fn rwx() -> Access {
    Access::READ | Access::WRITE | Access::EXEC_PRIV
}

fn kernel_tables() -> (Stage1, mm::Arena, u64) {
    let format = Stage1::new(48, Half::Upper, Regime::El1And0).unwrap();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    (format, arena, root)
}

fn arm64_check(format: &Stage1, arena: &mm::Arena, root: u64, list_all: bool) -> (String, WxReport) {
    let mut out = String::new();
    let options = WxOptions {
        list_all,
        ..WxOptions::default()
    };
    let report = ptdump::arm64::check_wx_with(&mut out, format, arena, root, AddrRange::ALL, &options).unwrap();
    (out, report)
}

#[test]
fn arm64_passes_without_wx_or_el0_exec() {
    let (format, mut arena, root) = kernel_tables();
    map(
        &format,
        &mut arena,
        root,
        LINEAR,
        0x4000_0000,
        0x20_0000,
        &attrs(Access::READ | Access::WRITE),
    );
    map(
        &format,
        &mut arena,
        root,
        LINEAR + 0x20_0000,
        0x4020_0000,
        0x1000,
        &attrs(Access::READ | Access::EXEC_PRIV),
    );
    let (out, report) = arm64_check(&format, &arena, root, false);
    assert_eq!(out, "Checked W+X mappings: passed, no W+X pages found\n");
    assert_eq!(report, WxReport::default());
    assert!(report.passed());
}

/// Two W+X pages split by a W^X page, two EL0-executable pages.
fn offending_tables() -> (Stage1, mm::Arena, u64) {
    let (format, mut arena, root) = kernel_tables();
    map(
        &format,
        &mut arena,
        root,
        LINEAR + 0x1000,
        0x4000_1000,
        0x1000,
        &attrs(rwx()),
    );
    map(
        &format,
        &mut arena,
        root,
        LINEAR + 0x2000,
        0x4000_2000,
        0x1000,
        &attrs(Access::READ | Access::WRITE),
    );
    map(
        &format,
        &mut arena,
        root,
        LINEAR + 0x3000,
        0x4000_3000,
        0x1000,
        &attrs(rwx()),
    );
    let el0_exec = Access::READ | Access::EXEC_PRIV | Access::EXEC_USER;
    map(
        &format,
        &mut arena,
        root,
        LINEAR + 0x1_0000,
        0x4001_0000,
        0x2000,
        &attrs(el0_exec),
    );
    (format, arena, root)
}

#[test]
fn arm64_fails_with_linux_messages_once_per_kind() {
    let (format, arena, root) = offending_tables();
    let (out, report) = arm64_check(&format, &arena, root, false);
    assert_eq!(
        out,
        "\
arm64/mm: Found insecure W+X mapping at address ffff000000001000/0xffff000000001000
arm64/mm: Found non-UXN mapping at address ffff000000010000/0xffff000000010000
Checked W+X mappings: FAILED, 2 W+X pages found, 2 non-UXN pages found
"
    );
    assert_eq!(
        report,
        WxReport {
            wx_pages: 2,
            non_uxn_pages: 2,
            bad_entries: 0
        }
    );
    assert!(!report.passed());
}

#[test]
fn arm64_list_all_prints_every_offending_range() {
    let (format, arena, root) = offending_tables();
    let (out, report) = arm64_check(&format, &arena, root, true);
    assert_eq!(
        out,
        "\
arm64/mm: Found insecure W+X mapping at address ffff000000001000/0xffff000000001000
0xffff000000001000-0xffff000000002000           4K PTE       RW x  SHD AF            UXN    MEM/NORMAL
arm64/mm: Found insecure W+X mapping at address ffff000000003000/0xffff000000003000
0xffff000000003000-0xffff000000004000           4K PTE       RW x  SHD AF            UXN    MEM/NORMAL
arm64/mm: Found non-UXN mapping at address ffff000000010000/0xffff000000010000
0xffff000000010000-0xffff000000012000           8K PTE       ro x  SHD AF                   MEM/NORMAL
Checked W+X mappings: FAILED, 2 W+X pages found, 2 non-UXN pages found
"
    );
    assert_eq!((report.wx_pages, report.non_uxn_pages), (2, 2));
}

#[test]
fn arm64_counts_every_page_of_a_merged_range() {
    let (format, mut arena, root) = kernel_tables();
    // 2M block + 16 pages, all W+X: two ranges (different levels), 528 pages.
    map(&format, &mut arena, root, LINEAR, 0x4000_0000, 0x21_0000, &attrs(rwx()));
    let (out, report) = arm64_check(&format, &arena, root, false);
    assert_eq!(report.wx_pages, 512 + 16);
    assert!(out.ends_with("Checked W+X mappings: FAILED, 528 W+X pages found, 0 non-UXN pages found\n"));
}

#[test]
fn arm64_table_restrictions_fold_into_the_verdict() {
    let (format, mut arena, root) = kernel_tables();
    // One W+X page in each of three PTE tables, each table entry restricting it differently.
    let pages = [LINEAR + 0x1f_f000, LINEAR + 0x20_0000, LINEAR + 0x40_0000];
    for (i, va) in pages.iter().enumerate() {
        let access = rwx() | Access::EXEC_USER;
        map(
            &format,
            &mut arena,
            root,
            *va,
            0x4000_0000 + i as u64 * 0x1000,
            0x1000,
            &attrs(access),
        );
    }
    let (_, report) = arm64_check(&format, &arena, root, false);
    assert_eq!((report.wx_pages, report.non_uxn_pages), (3, 3));

    // Restrict the second and third pages' tables; the first stays W+X.
    let [first, second, third] = pages.map(|va| entry_addr(&format, &arena, root, va, Level(2)));
    patch(&mut arena, second, |raw| raw | a64::AP_TABLE_RDONLY | a64::UXN_TABLE);
    patch(&mut arena, third, |raw| raw | a64::PXN_TABLE | a64::UXN_TABLE);
    let (_, report) = arm64_check(&format, &arena, root, false);
    assert_eq!((report.wx_pages, report.non_uxn_pages), (1, 1));

    // The first page's own table, too: now nothing is W+X.
    patch(&mut arena, first, |raw| raw | a64::AP_TABLE_RDONLY | a64::UXN_TABLE);
    let (out, report) = arm64_check(&format, &arena, root, false);
    assert_eq!(out, "Checked W+X mappings: passed, no W+X pages found\n");
    assert!(report.passed());

    // The dump shows each leaf's own bits; equal-looking neighbours whose
    // effective rights differ (first: read-only by table; second: also) ...
    let mut dump = String::new();
    let r = range(LINEAR + 0x1f_f000, Some(LINEAR + 0x20_1000));
    ptdump::arm64::dump(&mut dump, &format, &arena, root, r, &[]).unwrap();
    assert_eq!(
        dump,
        "0xffff0000001ff000-0xffff000000201000           8K PTE       RW x  SHD AF                   MEM/NORMAL\n"
    );
    // ... merge only while effective rights agree.
    patch(&mut arena, first, |raw| raw & !a64::AP_TABLE_RDONLY);
    let mut dump = String::new();
    ptdump::arm64::dump(&mut dump, &format, &arena, root, r, &[]).unwrap();
    assert_eq!(
        dump,
        "\
0xffff0000001ff000-0xffff000000200000           4K PTE       RW x  SHD AF                   MEM/NORMAL
0xffff000000200000-0xffff000000201000           4K PTE       RW x  SHD AF                   MEM/NORMAL
"
    );
}

#[test]
fn arm64_el2_has_no_el0_and_shows_effective_execute() {
    let format = Stage1::new(48, Half::Lower, Regime::El2).unwrap();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    map(
        &format,
        &mut arena,
        root,
        0x1000,
        0x4000_1000,
        0x1000,
        &attrs(Access::READ | Access::EXEC_PRIV),
    );
    map(
        &format,
        &mut arena,
        root,
        0x2000,
        0x4000_2000,
        0x1000,
        &attrs(Access::READ | Access::WRITE),
    );
    map(
        &format,
        &mut arena,
        root,
        0x20_0000,
        0x4020_0000,
        0x1000,
        &attrs(Access::READ | Access::EXEC_PRIV),
    );
    // XNTable on the third page's table: not executable although its own XN is clear.
    let pmd = entry_addr(&format, &arena, root, 0x20_0000, Level(2));
    patch(&mut arena, pmd, |raw| raw | a64::UXN_TABLE);

    let mut out = String::new();
    ptdump::arm64::dump(&mut out, &format, &arena, root, range(0x1000, Some(0x20_1000)), &[]).unwrap();
    assert_eq!(
        out,
        "\
0x0000000000001000-0x0000000000002000           4K PTE       ro x  SHD AF                   MEM/NORMAL
0x0000000000002000-0x0000000000003000           4K PTE       RW NX SHD AF                   MEM/NORMAL
0x0000000000003000-0x0000000000200000        2036K PTE
0x0000000000200000-0x0000000000201000           4K PTE       ro NX SHD AF                   MEM/NORMAL
"
    );
    let (out, report) = arm64_check(&format, &arena, root, false);
    assert_eq!(out, "Checked W+X mappings: passed, no W+X pages found\n");
    assert!(report.passed());

    // EL2 has no EL0: a W+X page fails, and nothing counts as non-UXN.
    map(&format, &mut arena, root, 0x40_0000, 0x4040_0000, 0x1000, &attrs(rwx()));
    let (out, report) = arm64_check(&format, &arena, root, false);
    assert_eq!(
        out,
        "\
arm64/mm: Found insecure W+X mapping at address 0000000000400000/0x400000
Checked W+X mappings: FAILED, 1 W+X pages found, 0 non-UXN pages found
"
    );
    assert_eq!((report.wx_pages, report.non_uxn_pages), (1, 0));
}

fn x86_check(format: &X86_64, arena: &mm::Arena, root: u64, list_all: bool) -> (String, WxReport) {
    let mut out = String::new();
    let options = WxOptions {
        list_all,
        ..WxOptions::default()
    };
    let report = ptdump::x86::check_wx_with(&mut out, format, arena, root, AddrRange::ALL, &options).unwrap();
    (out, report)
}

#[test]
fn x86_passes_and_fails_with_linux_messages() {
    let format = X86_64::four_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let text = 0xffff_ffff_8000_0000;
    map(
        &format,
        &mut arena,
        root,
        text,
        0x100_0000,
        0x20_0000,
        &attrs(Access::READ | Access::EXEC),
    );
    map(
        &format,
        &mut arena,
        root,
        text + 0x20_0000,
        0x120_0000,
        0x1000,
        &attrs(Access::READ | Access::WRITE),
    );
    let (out, report) = x86_check(&format, &arena, root, false);
    assert_eq!(out, "x86/mm: Checked W+X mappings: passed, no W+X pages found.\n");
    assert!(report.passed());

    let all = Access::READ | Access::WRITE | Access::EXEC;
    map(
        &format,
        &mut arena,
        root,
        text + 0x40_0000,
        0x140_0000,
        0x3000,
        &attrs(all),
    );
    map(
        &format,
        &mut arena,
        root,
        0x1000,
        0x20_0000,
        0x1000,
        &attrs(all | Access::USER),
    );
    let (out, report) = x86_check(&format, &arena, root, false);
    assert_eq!(
        out,
        "\
x86/mm: Found insecure W+X mapping at address 0000000000001000/0x1000
x86/mm: Checked W+X mappings: FAILED, 4 W+X pages found.
"
    );
    assert_eq!(report.wx_pages, 4);

    let (out, _) = x86_check(&format, &arena, root, true);
    assert_eq!(
        out,
        "\
x86/mm: Found insecure W+X mapping at address 0000000000001000/0x1000
0x0000000000001000-0x0000000000002000           4K USR RW                 GLB x  pte
x86/mm: Found insecure W+X mapping at address ffffffff80400000/0xffffffff80400000
0xffffffff80400000-0xffffffff80403000          12K     RW                 GLB x  pte
x86/mm: Checked W+X mappings: FAILED, 4 W+X pages found.
"
    );
}

#[test]
fn x86_read_only_pmd_entry_makes_a_wx_leaf_pass() {
    let format = X86_64::four_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let va = 0xffff_ffff_8000_0000;
    map(
        &format,
        &mut arena,
        root,
        va,
        0x100_0000,
        0x1000,
        &attrs(Access::READ | Access::WRITE | Access::EXEC),
    );
    let (_, report) = x86_check(&format, &arena, root, false);
    assert_eq!(report.wx_pages, 1);

    let pmd = entry_addr(&format, &arena, root, va, Level(2));
    patch(&mut arena, pmd, |raw| raw & !x::RW);
    let (out, report) = x86_check(&format, &arena, root, false);
    assert_eq!(out, "x86/mm: Checked W+X mappings: passed, no W+X pages found.\n");
    assert!(report.passed());
    // The dump still shows the leaf's own RW.
    let mut dump = String::new();
    ptdump::x86::dump(&mut dump, &format, &arena, root, range(va, Some(va + 0x1000)), &[]).unwrap();
    assert_eq!(
        dump,
        "0xffffffff80000000-0xffffffff80001000           4K     RW                 GLB x  pte\n"
    );

    // NX at the PUD level works the same way.
    patch(&mut arena, pmd, |raw| raw | x::RW);
    let pud = entry_addr(&format, &arena, root, va, Level(1));
    patch(&mut arena, pud, |raw| raw | x::NX);
    let (_, report) = x86_check(&format, &arena, root, false);
    assert!(report.passed());
}

#[test]
fn x86_bad_entries_fail_the_check() {
    let format = X86_64::four_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    pagewalk::TableMemoryMut::write_u64(&mut arena, root + 511 * 8, x::PRESENT | x::PSE).unwrap();
    let (out, report) = x86_check(&format, &arena, root, false);
    assert_eq!(
        out,
        "\
x86/mm: Cannot check entry at address ffffff8000000000/0xffffff8000000000: reserved bits set (0x80) raw=0x0000000000000081
x86/mm: Checked W+X mappings: FAILED, 0 W+X pages found, 1 bad entries.
"
    );
    assert_eq!(report.bad_entries, 1);
    assert!(!report.passed());
}
