//! The second-stage formats: EPT and NPT (stage-2 has its golden test).

mod common;

use common::*;
use pagewalk::ept::{self as e, Ept};
use pagewalk::x86::Npt;
use pagewalk::{Access, AddrRange, MapAttrs, MemType, TableMemoryMut};

#[test]
fn ept_lines_show_rights_memory_type_ipat_and_blocks() {
    let format = Ept::four_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    map(
        &format,
        &mut arena,
        root,
        0,
        0x4000_0000 - 0x20_0000,
        0x20_0000,
        &MapAttrs::new(Access::ALL, MemType::Normal),
    );
    patch_leaves(&format, &mut arena, root, 0, 0x20_0000, |raw| raw | e::IGNORE_PAT);
    let mmio = MapAttrs::new(Access::READ | Access::WRITE, MemType::Device);
    map(&format, &mut arena, root, 0xfee0_0000, 0xfee0_0000, 0x1000, &mmio);

    let mut out = String::new();
    let r = range(0, Some(0x1_0000_0000));
    let stats = ptdump::ept::dump(&mut out, &format, &arena, root, r, &ptdump::ept::GUEST_PHYSICAL).unwrap();
    assert_eq!(
        out,
        "\
---[ Guest Physical ]---
0x0000000000000000-0x0000000000200000           2M 2 R W X WB IPAT BLK
0x0000000000200000-0x0000000040000000        1022M 2
0x0000000040000000-0x00000000c0000000           2G 1
0x00000000c0000000-0x00000000fee00000        1006M 2
0x00000000fee00000-0x00000000fee01000           4K 3 R W   UC
0x00000000fee01000-0x00000000ff000000        2044K 3
0x00000000ff000000-0x0000000100000000          16M 2
"
    );
    assert_eq!((stats.lines, stats.leaves, stats.bad_entries), (7, 2, 0));
}

#[test]
fn ept_mode_based_execute_adds_a_user_execute_column() {
    let format = Ept::new(4, true, 46).unwrap();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let user_exec = MapAttrs::new(Access::READ | Access::EXEC_USER, MemType::Normal);
    map(&format, &mut arena, root, 0, 0x10_0000, 0x1000, &user_exec);
    let both = MapAttrs::new(Access::READ | Access::EXEC, MemType::NormalNonCacheable);
    map(&format, &mut arena, root, 0x1000, 0x10_1000, 0x1000, &both);
    let mut out = String::new();
    ptdump::ept::dump(&mut out, &format, &arena, root, range(0, Some(0x2000)), &[]).unwrap();
    assert_eq!(
        out,
        "\
0x0000000000000000-0x0000000000001000           4K 3 R     UX WB
0x0000000000001000-0x0000000000002000           4K 3 R   X UX WC
"
    );
}

#[test]
fn ept_misconfigured_entry_is_a_bad_line() {
    let format = Ept::four_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    arena.write_u64(root, e::WRITE).unwrap();
    let mut out = String::new();
    let stats = ptdump::ept::dump(&mut out, &format, &arena, root, range(0, Some(1 << 40)), &[]).unwrap();
    assert_eq!(
        out,
        "\
0x0000000000000000-0x0000008000000000         512G 0 BAD writable but not readable (EPT misconfiguration) raw=0x0000000000000002
0x0000008000000000-0x0000010000000000         512G 0
"
    );
    assert_eq!(stats.bad_entries, 1);
}

#[test]
fn npt_uses_x86_lines_over_guest_physical_addresses() {
    let format = Npt::four_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    map(
        &format,
        &mut arena,
        root,
        0x1000,
        0x20_0000,
        0x1000,
        &MapAttrs::new(Access::READ | Access::WRITE, MemType::Normal),
    );
    let mut out = String::new();
    let r = range(0, Some(0x20_0000));
    ptdump::npt::dump(&mut out, &format, &arena, root, r, &ptdump::npt::GUEST_PHYSICAL).unwrap();
    assert_eq!(
        out,
        "\
---[ Guest Physical ]---
0x0000000000000000-0x0000000000001000           4K                               pte
0x0000000000001000-0x0000000000002000           4K USR RW                     NX pte
0x0000000000002000-0x0000000000200000        2040K                               pte
"
    );
    // Guest-physical space is not sign-extended: the top of a 48-bit NPT is 2^48.
    let mut out = String::new();
    ptdump::npt::dump(&mut out, &format, &arena, root, AddrRange::ALL, &[]).unwrap();
    assert!(
        out.ends_with("0x0000008000000000-0x0001000000000000      261632G                               pgd\n"),
        "{out}"
    );
}
