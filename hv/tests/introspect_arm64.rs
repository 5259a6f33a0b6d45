//! `ptdump guest` / `wx guest` on an arm64 guest: TTBR0_EL1 and TTBR1_EL1
//! with TCR_EL1, MAIR_EL1 and SCTLR_EL1, tables read through stage-2.

mod introspect_common;

use hv::console::{TableFormat, Verdict};
use hv::introspect::{Arm64GuestRegs, GuestStage1};
use introspect_common::*;
use mm::TableBuilder;
use pagewalk::arm64::{Half, Stage1, Stage2};
use pagewalk::{AddrRange, MapAttrs, MemType};
use ptdump::Marker;

/// T0SZ = T1SZ = 16 (48-bit halves), TG0 = 4K, TG1 = 4K.
const TCR_48_4K: u64 = 16 | (16 << 16) | (0b10 << 30);
/// The guest's own MAIR: attr0 Device-nGnRE, attr1 Normal WB, attr2 Device-nGnRnE
/// (not Linux's order, so a decode with any other MAIR shows other types).
const GUEST_MAIR: u64 = 0x04 | (0xff << 8);

const USER_TEXT: u64 = 0x40_0000;
const USER_JIT: u64 = 0x1000_0000;
const USER_STACK: u64 = 0xffff_f000_0000;
const LINEAR: u64 = 0xffff_0000_0000_0000;
const KTEXT: u64 = 0xffff_8000_0800_0000;
const KRODATA: u64 = KTEXT + 0x10_000;
const KDATA: u64 = KTEXT + 0x18_000;
const KDEVICE: u64 = 0xffff_8000_0900_0000;
const FIXMAP: u64 = 0xffff_ffff_fe00_0000;
const PLANTED_WX: u64 = 0xffff_8000_0a00_0000;

struct Guest {
    machine: Machine<Stage2>,
    regs: Arm64GuestRegs,
}

fn formats() -> (Stage1, Stage1) {
    let lower = Stage1::from_tcr_el1(TCR_48_4K, Half::Lower)
        .unwrap()
        .with_mair(GUEST_MAIR);
    let upper = Stage1::from_tcr_el1(TCR_48_4K, Half::Upper)
        .unwrap()
        .with_mair(GUEST_MAIR);
    (lower, upper)
}

/// A Linux-like guest: user text, a JIT page (RWX for EL0, legitimate) and a
/// stack in TTBR0; linear map, kernel text/rodata/data, a device page and a
/// fixmap page in TTBR1. `plant` adds kernel mappings with these rights.
fn linux_like(plant: &[(u64, pagewalk::Access)]) -> Guest {
    let mut machine = Machine::new(Stage2::for_ipa_bits(40).unwrap(), false);
    let (lower, upper) = formats();
    let ram = &mut machine.ram;
    let b0 = TableBuilder::new(&lower, ram).unwrap();
    b0.map(ram, USER_TEXT, 0x8060_0000, 0x2000, &normal(USER_RX)).unwrap();
    b0.map(ram, USER_JIT, 0x8060_2000, 0x1000, &normal(USER_RWX)).unwrap();
    b0.map(ram, USER_STACK, 0x8060_3000, 0x2000, &normal(USER_RW)).unwrap();
    let b1 = TableBuilder::new(&upper, ram).unwrap();
    b1.map(ram, LINEAR, 0x8000_0000, 0x40_0000, &normal(RW)).unwrap();
    b1.map(ram, KTEXT, 0x8020_0000, 0x10_000, &normal(RX)).unwrap();
    b1.map(ram, KRODATA, 0x8021_0000, 0x8_000, &normal(R)).unwrap();
    b1.map(ram, KDATA, 0x8021_8000, 0x8_000, &normal(RW)).unwrap();
    b1.map(ram, KDEVICE, 0x0900_0000, 0x1000, &MapAttrs::new(RW, MemType::Device))
        .unwrap();
    b1.map(ram, FIXMAP, 0x8030_0000, 0x1000, &normal(RW)).unwrap();
    for &(va, access) in plant {
        b1.map(ram, va, 0x8040_0000, 0x1000, &normal(access)).unwrap();
    }
    let regs = Arm64GuestRegs {
        sctlr_el1: 1,
        tcr_el1: TCR_48_4K,
        // ASID 0x42 in 63:48 and CnP in bit 0 must not move the root.
        ttbr0_el1: b0.root().0 | (0x42 << 48) | 1,
        ttbr1_el1: b1.root().0 | 1,
        mair_el1: GUEST_MAIR,
    };
    Guest { machine, regs }
}

impl Guest {
    fn with<T>(&self, regs: Arm64GuestRegs, f: impl FnOnce(&GuestTarget<'_, Stage2>, &Recording<'_>) -> T) -> T {
        let host = Recording::from(&self.machine);
        let target = GuestTarget::new(
            &self.machine,
            TableFormat::Arm64Stage2(self.machine.s2_format),
            &host,
            GuestStage1::arm64(&regs),
        );
        f(&target, &host)
    }

    fn run(&self, line: &str) -> (Verdict, String) {
        self.with(self.regs, |t, host| {
            let result = run(t, line);
            assert_eq!(host.hv_reads.get(), 0, "hv read its own memory for the guest");
            result
        })
    }

    /// ptdump's own dump of both halves, read straight from guest RAM
    /// (stage-2 is an identity map), with the markers hv must use: the
    /// titles, and Linux 6.1's 48-bit layout after `Kernel Space`.
    fn reference(&self) -> String {
        let (lower, upper) = formats();
        let mut out = String::new();
        let root0 = self.regs.ttbr0_el1 & 0x0000_ffff_ffff_f000;
        let root1 = self.regs.ttbr1_el1 & 0x0000_ffff_ffff_f000;
        let range0 = AddrRange::new(0, Some(1 << 48)).unwrap();
        let range1 = AddrRange::new(0xffff_0000_0000_0000, None).unwrap();
        let ram = &self.machine.ram;
        ptdump::arm64::dump(&mut out, &lower, ram, root0, range0, &[Marker::new(0, "User Space")]).unwrap();
        let mut kernel_markers = vec![Marker::new(range1.start, "Kernel Space")];
        kernel_markers.extend_from_slice(&ptdump::arm64::LINUX_6_1_VA48_MARKERS);
        ptdump::arm64::dump(&mut out, &upper, ram, root1, range1, &kernel_markers).unwrap();
        out
    }
}

#[test]
fn ptdump_guest_dumps_ttbr0_then_ttbr1_with_markers() {
    let guest = linux_like(&[]);
    let (verdict, out) = guest.run("ptdump guest");
    assert_eq!(verdict, Verdict::Ok, "{out}");
    assert_eq!(out, guest.reference());
    assert!(out.starts_with("---[ User Space ]---\n"), "{out}");
    let user = out.find("---[ User Space ]---").unwrap();
    let kernel = out.find("---[ Kernel Space ]---").unwrap();
    let user_text = out.find("0x0000000000400000-0x0000000000402000").unwrap();
    let ktext = out.find("0xffff800008000000-0xffff800008010000").unwrap();
    assert!(user < user_text && user_text < kernel && kernel < ktext, "{out}");
    // Linux 6.1's 48-bit VA layout (memory.h): the areas start where Linux's
    // markers say, checked here against the addresses, not ptdump's table.
    let sections = [
        "---[ Kernel Space ]---\n---[ Linear Mapping start ]---\n0xffff000000000000-",
        "\n---[ Linear Mapping end ]---\n---[ Modules start ]---\n0xffff800000000000-0xffff800008000000 ",
        "\n---[ Modules end ]---\n---[ vmalloc() area ]---\n0xffff800008000000-",
        "-0xfffffbfff0000000   129498880M PGD\n---[ vmalloc() end ]---\n0xfffffbfff0000000-",
        "\n---[ Fixmap end ]---\n0xfffffbfffe000000-",
        "\n---[ PCI I/O start ]---\n0xfffffbfffe800000-0xfffffbffff800000          16M PGD\n---[ PCI I/O end ]---\n",
        "\n---[ vmemmap start ]---\n0xfffffc0000000000-0xfffffe0000000000           2T PGD\n---[ vmemmap end ]---\n",
    ];
    let mut at = 0;
    for section in sections {
        let found = out[at..].find(section);
        assert!(found.is_some(), "missing (or out of order) {section:?} in\n{out}");
        at += found.unwrap();
    }
    // Flags decoded with the guest's MAIR (attr1 Normal, attr0 Device-nGnRE).
    let expect = [
        // User text: EL0-executable, never EL1-executable (PXN), as Linux maps it.
        "0x0000000000400000-0x0000000000402000           8K PTE   USR ro NX SHD AF                   MEM/NORMAL",
        // The JIT page: RW and EL0-executable (UXN clear); writable by EL0, so PXN.
        "0x0000000010000000-0x0000000010001000           4K PTE   USR RW NX SHD AF                   MEM/NORMAL",
        "0x0000fffff0000000-0x0000fffff0002000           8K PTE   USR RW NX SHD AF            UXN    MEM/NORMAL",
        "0xffff000000000000-0xffff000000400000           4M PMD       RW NX SHD AF        BLK UXN    MEM/NORMAL",
        "0xffff800008000000-0xffff800008010000          64K PTE       ro x  SHD AF            UXN    MEM/NORMAL",
        "0xffff800008010000-0xffff800008018000          32K PTE       ro NX SHD AF            UXN    MEM/NORMAL",
        "0xffff800008018000-0xffff800008020000          32K PTE       RW NX SHD AF            UXN    MEM/NORMAL",
        "0xffff800009000000-0xffff800009001000           4K PTE       RW NX SHD AF            UXN    DEVICE/nGnRE",
        "0xfffffffffe000000-0xfffffffffe001000           4K PTE       RW NX SHD AF            UXN    MEM/NORMAL",
    ];
    for line in expect {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn sliced_through_hypercall_sessions_equals_the_whole_dump() {
    let guest = linux_like(&[]);
    let (_, whole) = guest.run("ptdump guest");
    guest.with(guest.regs, |t, host| {
        let (verdict, text, worst, calls) = run_in_calls(t, host, "ptdump guest");
        assert_eq!(verdict, Verdict::Ok);
        assert_eq!(text, whole);
        assert!(
            calls >= 1 && worst <= MAX_READS_PER_CALL,
            "{calls} calls, worst {worst} reads"
        );
        assert_eq!(host.hv_reads.get(), 0);
    });
}

#[test]
fn a_partial_range_dumps_only_the_halves_it_meets() {
    let guest = linux_like(&[]);
    let (verdict, out) = guest.run("ptdump guest 0xffff800008000000 0xffff800008020000");
    assert_eq!(verdict, Verdict::Ok);
    // The title, then the marker of the region the range starts in.
    assert!(
        out.starts_with("---[ Kernel Space ]---\n---[ vmalloc() area ]---\n0xffff800008000000-"),
        "{out}"
    );
    assert!(!out.contains("User Space"), "{out}");
    assert_eq!(out.lines().count(), 5, "{out}");

    let (verdict, out) = guest.run("ptdump guest 0x1000000000000 0xffff000000000000");
    assert_eq!(verdict, Verdict::Failed);
    assert_eq!(
        out,
        "hv: ptdump guest: the range lies outside the tables' address range \
         0x0000000000000000-0x0000ffffffffffff and 0xffff000000000000-0xffffffffffffffff\n"
    );
}

#[test]
fn only_a_48_bit_ttbr1_gets_linux_6_1_markers() {
    let regs = Arm64GuestRegs {
        sctlr_el1: 1,
        tcr_el1: TCR_48_4K,
        ..Arm64GuestRegs::default()
    };
    let names = |regs: &Arm64GuestRegs, part: usize| -> Vec<&'static str> {
        GuestStage1::arm64(regs).unwrap().parts[part]
            .markers()
            .iter()
            .map(|m| m.name)
            .collect()
    };
    assert_eq!(names(&regs, 0), ["User Space"]);
    let kernel = names(&regs, 1);
    assert_eq!(kernel.len(), 12);
    assert_eq!(kernel[..2], ["Kernel Space", "Linear Mapping start"]);
    assert_eq!(kernel[11], "vmemmap end");
    let markers = GuestStage1::arm64(&regs).unwrap().parts[1].markers().to_vec();
    assert!(markers.windows(2).all(|w| w[0].addr <= w[1].addr));
    assert!(markers.iter().all(|m| m.max_lines().is_none()));

    // T1SZ = 25: a 39-bit TTBR1, where Linux's areas lie elsewhere.
    let va39 = Arm64GuestRegs {
        tcr_el1: 16 | (25 << 16) | (0b10 << 30),
        ..regs
    };
    let stage1 = GuestStage1::arm64(&va39).unwrap();
    assert_eq!(
        stage1.parts[1].markers(),
        [Marker::new(0xffff_ff80_0000_0000, "Kernel Space")]
    );
}

#[test]
fn asid_and_cnp_bits_do_not_move_the_roots() {
    let guest = linux_like(&[]);
    let (_, with_asid) = guest.run("ptdump guest");
    let clean = Arm64GuestRegs {
        ttbr0_el1: guest.regs.ttbr0_el1 & 0x0000_ffff_ffff_f000,
        ttbr1_el1: guest.regs.ttbr1_el1 & 0x0000_ffff_ffff_f000,
        ..guest.regs
    };
    let (_, plain) = guest.with(clean, |t, _| run(t, "ptdump guest"));
    assert_eq!(with_asid, plain);
}

#[test]
fn wx_guest_passes_on_a_linux_like_layout_and_ignores_user_mappings() {
    let guest = linux_like(&[]);
    let (verdict, out) = guest.run("wx guest");
    assert_eq!(verdict, Verdict::Ok, "{out}");
    assert_eq!(
        out,
        "hv: wx guest: Linux's check covers the kernel's mappings: TTBR1_EL1 0xffff000000000000-0xffffffffffffffff\n\
         Checked W+X mappings: passed, no W+X pages found\n"
    );
}

#[test]
fn wx_guest_fails_on_a_planted_kernel_wx_page_with_linux_messages() {
    let guest = linux_like(&[(PLANTED_WX, RWX)]);
    let (verdict, out) = guest.run("wx guest");
    assert_eq!(verdict, Verdict::Failed, "{out}");
    assert!(
        out.contains("arm64/mm: Found insecure W+X mapping at address ffff80000a000000/0xffff80000a000000\n"),
        "{out}"
    );
    assert!(
        out.ends_with("Checked W+X mappings: FAILED, 1 W+X pages found, 0 non-UXN pages found\n"),
        "{out}"
    );

    // A kernel page EL0 may execute (UXN clear) fails too, as in Linux.
    let guest = linux_like(&[(PLANTED_WX, R.union(pagewalk::Access::EXEC_USER))]);
    let (verdict, out) = guest.run("wx guest");
    assert_eq!(verdict, Verdict::Failed, "{out}");
    assert!(out.contains("arm64/mm: Found non-UXN mapping at address ffff80000a000000/0xffff80000a000000"));
    assert!(out.ends_with("Checked W+X mappings: FAILED, 0 W+X pages found, 1 non-UXN pages found\n"));
}

#[test]
fn mmu_off_is_said_for_ptdump_and_wx() {
    let guest = linux_like(&[]);
    let off = Arm64GuestRegs {
        sctlr_el1: 0x30d0_0800,
        ..guest.regs
    };
    for line in ["ptdump guest", "wx guest"] {
        let (verdict, out) = guest.with(off, |t, _| run(t, line));
        assert_eq!(verdict, Verdict::Failed);
        assert_eq!(
            out,
            "hv: 'guest' tables not available: guest MMU is off (SCTLR_EL1.M = 0): \
             guest addresses are physical, there are no stage-1 tables\n"
        );
    }
}

#[test]
fn unsupported_granules_and_lpa2_are_refused_by_name() {
    let guest = linux_like(&[]);
    let cases = [
        (
            (TCR_48_4K & !(0b11 << 30)) | (0b01 << 30),
            "TTBR1_EL1 uses the 16K granule (TCR_EL1.TG1); hv walks 4K-granule tables only",
        ),
        (
            (TCR_48_4K & !(0b11 << 30)) | (0b11 << 30),
            "TTBR1_EL1 uses the 64K granule (TCR_EL1.TG1); hv walks 4K-granule tables only",
        ),
        (
            TCR_48_4K | (0b01 << 14),
            "TTBR0_EL1 uses the 64K granule (TCR_EL1.TG0); hv walks 4K-granule tables only",
        ),
        (
            TCR_48_4K | (0b10 << 14),
            "TTBR0_EL1 uses the 16K granule (TCR_EL1.TG0); hv walks 4K-granule tables only",
        ),
        (TCR_48_4K | (1 << 59), "the guest uses 52-bit addresses (FEAT_LPA2"),
        ((TCR_48_4K & !0x3f) | 12, "the guest uses 52-bit addresses (FEAT_LPA2"),
        ((TCR_48_4K & !0x3f) | 48, "TCR_EL1.T0SZ gives a VA size hv cannot walk"),
    ];
    for (tcr, reason) in cases {
        let regs = Arm64GuestRegs {
            tcr_el1: tcr,
            ..guest.regs
        };
        let (verdict, out) = guest.with(regs, |t, _| run(t, "ptdump guest"));
        assert_eq!(verdict, Verdict::Failed, "{tcr:#x}");
        assert!(
            out.starts_with(&format!("hv: 'guest' tables not available: {reason}")),
            "{tcr:#x}: {out}"
        );
    }
}

#[test]
fn a_half_disabled_by_epd_is_said_and_skipped() {
    let guest = linux_like(&[]);
    // EPD0: TTBR0 is not walked (its size fields are ignored), TTBR1 is.
    let no_ttbr0 = Arm64GuestRegs {
        tcr_el1: (guest.regs.tcr_el1 | (1 << 7)) & !0x3f,
        ..guest.regs
    };
    let (verdict, out) = guest.with(no_ttbr0, |t, _| run(t, "ptdump guest"));
    assert_eq!(verdict, Verdict::Ok, "{out}");
    assert!(
        out.starts_with(
            "hv: TTBR0_EL1 not walked: TTBR0_EL1 walks are disabled (TCR_EL1.EPD0 = 1)\n---[ Kernel Space ]---\n"
        ),
        "{out}"
    );
    let (verdict, _) = guest.with(no_ttbr0, |t, _| run(t, "wx guest"));
    assert_eq!(verdict, Verdict::Ok);

    // EPD1: the kernel half cannot be checked, so wx fails and says why.
    let no_ttbr1 = Arm64GuestRegs {
        tcr_el1: guest.regs.tcr_el1 | (1 << 23),
        ..guest.regs
    };
    let (verdict, out) = guest.with(no_ttbr1, |t, _| run(t, "wx guest"));
    assert_eq!(verdict, Verdict::Failed);
    assert!(
        out.ends_with("hv: wx guest: TTBR1_EL1 not checked: TTBR1_EL1 walks are disabled (TCR_EL1.EPD1 = 1)\n"),
        "{out}"
    );
}

#[test]
fn info_describes_both_roots() {
    let guest = linux_like(&[]);
    let (verdict, out) = guest.run("info");
    assert_eq!(verdict, Verdict::Ok);
    let root0 = guest.regs.ttbr0_el1 & 0x0000_ffff_ffff_f000;
    assert!(
        out.contains(&format!(
            "  guest TTBR0_EL1        root {root0:#x}, 48-bit VA, 4 levels, 0x0000000000000000-0x0000ffffffffffff\n"
        )),
        "{out}"
    );
    assert!(out.contains("  guest TTBR1_EL1        root "), "{out}");
}
