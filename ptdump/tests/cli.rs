//! The host CLI on memory images built here.

mod common;

use common::cli::*;
use common::*;
use pagewalk::arm64::{Half, Regime, Stage1, Stage2};
use pagewalk::ept::Ept;
use pagewalk::x86::X86_64;
use pagewalk::{Access, Format, MapAttrs, MemType};

#[test]
fn aarch64_dump_and_failed_wx_check() {
    let format = Stage1::new(48, Half::Upper, Regime::El1And0).unwrap();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let rw = MapAttrs::new(Access::READ | Access::WRITE, MemType::Normal);
    map(
        &format,
        &mut arena,
        root,
        0xffff_0000_0000_0000,
        0x4000_0000,
        0x20_0000,
        &rw,
    );
    let rwx = MapAttrs::new(Access::READ | Access::WRITE | Access::EXEC_PRIV, MemType::Normal);
    map(
        &format,
        &mut arena,
        root,
        0xffff_0000_0020_0000,
        0x4020_0000,
        0x2000,
        &rwx,
    );
    let image = TempFile::new("aarch64.raw", arena.bytes());

    // ASID bits in the TTBR are ignored.
    let ttbr1 = format!("{:#x}", root | (5 << 48));
    let o = ptdump(&[
        "--arch",
        "aarch64",
        "--base",
        "0x40000000",
        "--tcr",
        &format!("{TCR_48:#x}"),
        "--ttbr1",
        &ttbr1,
        image.path(),
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert_lines_in_order(
        &out,
        &format!(
            "\
---[ TTBR1 root {root:#x} ]---
---[ Linear Mapping start ]---
0xffff000000000000-0xffff000000200000           2M PMD       RW NX SHD AF        BLK UXN    MEM/NORMAL
0xffff000000200000-0xffff000000202000           8K PTE       RW x  SHD AF            UXN    MEM/NORMAL
0xffff000000202000-0xffff000000400000        2040K PTE
ptdump: W+X check of TTBR1:
arm64/mm: Found insecure W+X mapping at address ffff000000200000/0xffff000000200000
Checked W+X mappings: FAILED, 2 W+X pages found, 0 non-UXN pages found"
        ),
    );
}

#[test]
fn x86_64_dump_and_passed_wx_check() {
    let format = X86_64::four_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let rx = MapAttrs::new(Access::READ | Access::EXEC, MemType::Normal);
    map(
        &format,
        &mut arena,
        root,
        0xffff_ffff_8000_0000,
        0x100_0000,
        0x20_0000,
        &rx,
    );
    let image = TempFile::new("x86.raw", arena.bytes());
    // PCID bits in CR3 are ignored.
    let cr3 = format!("{:#x}", root | 0x5);
    let o = ptdump(&["--arch", "x86_64", "--base", "0x40000000", "--cr3", &cr3, image.path()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.starts_with("---[ User Space ]---\n"), "{out}");
    assert_lines_in_order(
        &out,
        "\
---[ Kernel Space ]---
---[ ESPfix Area ]---
---[ High Kernel Mapping ]---
0xffffffff80000000-0xffffffff80200000           2M     ro         PSE     GLB x  pmd
x86/mm: Checked W+X mappings: passed, no W+X pages found.",
    );
}

#[test]
fn stage2_and_ept_dumps() {
    let format = Stage2::new(40, 1).unwrap();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let rw = MapAttrs::new(Access::READ | Access::WRITE, MemType::Normal);
    map(&format, &mut arena, root, 0x8000_0000, 0x4000_0000, 0x20_0000, &rw);
    let image = TempFile::new("stage2.raw", arena.bytes());
    let vtcr = format!("{:#x}", format.vtcr_geometry());
    let vttbr = format!("{:#x}", root | (3 << 48));
    let args = [
        "--arch",
        "stage2",
        "--base",
        "0x40000000",
        "--vttbr",
        &vttbr,
        "--vtcr",
        &vtcr,
    ];
    let o = ptdump(
        &[
            &args[..],
            &["--start", "0x80000000", "--end", "0x80400000", image.path()],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "\
---[ Guest IPA ]---
0x0000000080000000-0x0000000080200000           2M 2   R W   AF BLK
0x0000000080200000-0x0000000080400000           2M 2
"
    );

    let format = Ept::four_level();
    let mut arena = common::arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    map(&format, &mut arena, root, 0, 0x4000_0000, 0x1000, &rw);
    let image = TempFile::new("ept.raw", arena.bytes());
    // EPTP: WB paging-structure memory type (6), walk length 4 (3 in bits 5:3).
    let eptp = format!("{:#x}", root | 6 | (3 << 3));
    let o = ptdump(&[
        "--arch",
        "ept",
        "--base",
        "0x40000000",
        "--eptp",
        &eptp,
        "--end",
        "0x2000",
        image.path(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "\
---[ Guest Physical ]---
0x0000000000000000-0x0000000000001000           4K 3 R W   WB
0x0000000000001000-0x0000000000002000           4K 3
"
    );
    assert_eq!(format.root_level().0, 0);
}

#[test]
fn bad_entries_make_the_exit_status_1() {
    let format = X86_64::four_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    // A table pointer past the end of the image.
    pagewalk::TableMemoryMut::write_u64(&mut arena, root, 0x7000_0000 | 3).unwrap();
    let image = TempFile::new("bad.raw", arena.bytes());
    let cr3 = format!("{root:#x}");
    let o = ptdump(&[
        "--arch",
        "x86",
        "--base",
        "0x40000000",
        "--cr3",
        &cr3,
        "--no-wx",
        image.path(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("512G pgd BAD next table at 0x70000000 is not readable raw=0x0000000070000003"),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("1 bad entries"), "{}", stderr(&o));
}

#[test]
fn errors_are_reported_clearly() {
    let arena = arena();
    let image = TempFile::new("errors.raw", arena.bytes());
    let img = image.path();
    let cases: &[(&[&str], &str)] = &[
        (&["--base", "0", img], "--arch is required"),
        (&["--arch", "sparc", "--base", "0", img], "--arch: unknown 'sparc'"),
        (
            &["--arch", "x86_64", "--base", "zz", img],
            "--base: 'zz' is not a number",
        ),
        (&["--arch", "x86_64", "--base", "0", img], "--arch x86_64 needs --cr3"),
        (&["--arch", "x86_64", "--base", "0", "--cr3"], "--cr3 needs a value"),
        (
            &["--arch", "x86_64", "--base", "0", "--cr3", "0"],
            "no image file given",
        ),
        (
            &["--arch", "x86_64", "--base", "0", "--bogus", img],
            "unknown option '--bogus'",
        ),
        (
            &["--arch", "aarch64", "--base", "0", "--tcr", "0", img],
            "needs --ttbr0 and/or --ttbr1",
        ),
        (
            // TG1 = 0b11: 64K granule.
            &[
                "--arch",
                "aarch64",
                "--base",
                "0",
                "--tcr",
                "0xc0100010",
                "--ttbr1",
                "0",
                img,
            ],
            "TCR_EL1 (TTBR1): 64K translation granule is not supported (only 4K)",
        ),
        (
            &[
                "--arch", "aarch64", "--base", "0", "--tcr", "0x10", "--el2", "--ttbr1", "0", img,
            ],
            "--el2: the non-VHE EL2 regime has no TTBR1",
        ),
        (
            &["--arch", "stage2", "--base", "0", "--vttbr", "0", "--vtcr", "0x18", img],
            "VTCR_EL2: start level 2 cannot translate a 40-bit IPA space",
        ),
        (
            &["--arch", "ept", "--base", "0", "--eptp", "0x8", img],
            "EPTP: 2-level paging is not supported",
        ),
        (
            &["--arch", "x86_64", "--base", "0", "--cr3", "0", "/nonexistent/mem.raw"],
            "cannot open",
        ),
        (
            &[
                "--arch", "x86_64", "--base", "0", "--cr3", "0", "--start", "5", "--end", "5", img,
            ],
            "--start",
        ),
    ];
    for (args, message) in cases {
        let o = ptdump(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
    }
    let o = ptdump(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("usage: ptdump"));
}
