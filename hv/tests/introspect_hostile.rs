//! A hostile guest's stage-1 tables: a cycle, entries pointing into hv's
//! memory (unmapped by stage-2, and mapped by a broken stage-2), beyond guest
//! RAM, with reserved bits, non-present entries full of garbage, and shared
//! subtrees. Every bad entry is reported and the dump goes on; hv never
//! reads its own memory on the guest's behalf; every call does bounded work.

mod introspect_common;

use std::time::{Duration, Instant};

use hv::console::session::{Session, SessionState};
use hv::console::{TableFormat, Verdict};
use hv::introspect::{Arm64GuestRegs, GuestStage1, X86GuestRegs};
use introspect_common::*;
use mm::TableBuilder;
use pagewalk::arm64::{Half, Stage1, Stage2, DESC_TABLE};
use pagewalk::x86::{Npt, ACCESSED, PRESENT, RW as X86_RW, X86_64};
use pagewalk::{Format, TableMemory};

const TCR_48_4K: u64 = 16 | (16 << 16) | (0b10 << 30);
const KTEXT: u64 = 0xffff_8000_0800_0000;
const FIXMAP: u64 = 0xffff_ffff_fe00_0000;
/// A non-present entry: bit 0 clear, everything else garbage.
const GARBAGE: u64 = 0xdead_beef_cafe_f00e;
/// Root index of the first planted entry (the kernel's own are 256 and 511).
const FIRST: u64 = 300;

/// Address of root entry `index` in a 48-bit upper half / x86 4-level kernel half.
fn root_va(index: u64) -> u64 {
    0xffff_0000_0000_0000 | (index << 39)
}

/// Plants the hostile entries in the root at `root` (a guest-physical page)
/// with `table(next)` encoding a table pointer, and returns the one the walk
/// goes on to after them (a valid subtree with a page at `root_va(FIRST)`+...).
fn plant<S: Format>(m: &mut Machine<S>, root: u64, table: impl Fn(u64) -> u64, reserved_bit: u64) {
    let entry = |index: u64| root + 8 * index;
    // FIRST: a table whose first entry points back at the root (a cycle)
    // and whose second points at a table that is fine.
    let t = m.guest_page();
    m.poke(t, table(root));
    let fine = m.guest_page();
    m.poke(t + 8, table(fine));
    m.poke(entry(FIRST), table(t));
    // Into hv's image (stage-2 leaves it unmapped).
    m.poke(entry(FIRST + 1), table(HV_IMAGE.start));
    // Beyond guest RAM.
    m.poke(entry(FIRST + 2), table(BEYOND_RAM_GPA));
    // Reserved bits in an otherwise good table pointer.
    m.poke(entry(FIRST + 3), table(fine) | reserved_bit);
    // Not present, garbage everywhere else.
    m.poke(entry(FIRST + 4), GARBAGE);
    // A page a broken stage-2 maps onto hv's image: only the host-memory
    // wrapper stands between this entry and hv's memory.
    m.poke(entry(FIRST + 5), table(EVIL_GPA));
}

fn check_dump(out: &str) {
    let bad = lines_with(out, " BAD ");
    let at = |index: u64, reason: &str| {
        let start = format!("0x{:016x}-", root_va(index));
        assert!(
            bad.iter().any(|l| l.starts_with(&start) && l.contains(reason)),
            "no BAD line for root entry {index} ({reason}) in\n{out}"
        );
    };
    // The cycle is the first entry of the table under FIRST.
    at(FIRST, "is its own ancestor");
    at(
        FIRST + 1,
        &format!("next table at {:#x} is not readable", HV_IMAGE.start),
    );
    at(FIRST + 2, &format!("next table at {BEYOND_RAM_GPA:#x} is not readable"));
    at(FIRST + 3, "reserved bits set");
    at(FIRST + 5, &format!("next table at {EVIL_GPA:#x} is not readable"));
    assert_eq!(bad.len(), 5, "{out}");
    // The garbage entry is a hole: its range shows with no flags, no BAD.
    let hole = format!("0x{:016x}-", root_va(FIRST + 4));
    assert!(
        out.lines()
            .any(|l| l.starts_with(&hole) || l.contains(&format!("-0x{:016x} ", root_va(FIRST + 5)))),
        "{out}"
    );
    assert!(!out.contains("raw=0xdeadbeefcafef00e"), "{out}");
    // hv's image looks like valid entries mapping 0x80000000: nothing of it shows.
    assert!(!out.contains("0x0000000080000000-"), "{out}");
}

/// Runs `line` through a session (bounded calls) and returns the verdict, the output.
fn session_run(
    target: &dyn hv::console::ConsoleTarget,
    host: &Recording<'_>,
    line: &str,
    limit: u64,
) -> (Verdict, String) {
    let mut session = Session::new();
    session.set_table_limit(limit);
    session.start(target, line);
    let started = Instant::now();
    let mut calls = 0u64;
    loop {
        let before = host.reads.get();
        let state = session.produce(target, usize::MAX);
        calls += 1;
        let reads = host.reads.get() - before;
        assert!(reads <= MAX_READS_PER_CALL, "call {calls} read {reads} entries");
        if let SessionState::Done { verdict, .. } = state {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{calls} calls took {:?}",
                started.elapsed()
            );
            return (verdict, String::from_utf8(session.output_from(0).to_vec()).unwrap());
        }
    }
}

#[test]
fn arm64_hostile_entries_are_reported_and_the_dump_goes_on() {
    let mut m = Machine::new(Stage2::for_ipa_bits(40).unwrap(), true);
    let upper = Stage1::from_tcr_el1(TCR_48_4K, Half::Upper).unwrap();
    let lower = Stage1::from_tcr_el1(TCR_48_4K, Half::Lower).unwrap();
    let (root0, root1) = {
        let ram = &mut m.ram;
        let b0 = TableBuilder::new(&lower, ram).unwrap();
        b0.map(ram, 0x40_0000, 0x8060_0000, 0x1000, &normal(USER_RX)).unwrap();
        let b1 = TableBuilder::new(&upper, ram).unwrap();
        b1.map(ram, KTEXT, 0x8020_0000, 0x1000, &normal(RX)).unwrap();
        b1.map(ram, FIXMAP, 0x8030_0000, 0x1000, &normal(RW)).unwrap();
        (b0.root().0, b1.root().0)
    };
    // Table descriptor; bit 48 is RES0 with 48-bit output addresses.
    plant(&mut m, root1, |next| next | DESC_TABLE, 1 << 48);
    let regs = Arm64GuestRegs {
        sctlr_el1: 1,
        tcr_el1: TCR_48_4K,
        ttbr0_el1: root0,
        ttbr1_el1: root1,
        mair_el1: pagewalk::arm64::LINUX_MAIR,
    };
    // The premise: the physical memory itself would hand out hv's image.
    assert!(Recording::from(&m).read_u64(EVIL_PA).is_ok());
    let host = Recording::from(&m);
    let reads_before = host.reads.get();
    let target = GuestTarget::new(
        &m,
        TableFormat::Arm64Stage2(m.s2_format),
        &host,
        GuestStage1::arm64(&regs),
    );

    let (verdict, out) = run(&target, "ptdump guest");
    assert_eq!(verdict, Verdict::Ok, "{out}");
    check_dump(&out);
    let text = out.find("0xffff800008000000-0xffff800008001000").expect("kernel text");
    let fixmap = out
        .find("0xfffffffffe000000-0xfffffffffe001000")
        .expect("the dump went on to the fixmap");
    assert!(
        text < out.find(" BAD ").unwrap() && out.rfind(" BAD ").unwrap() < fixmap,
        "{out}"
    );

    let (verdict, sliced) = session_run(&target, &host, "ptdump guest", 1 << 16);
    assert_eq!((verdict, &sliced), (Verdict::Ok, &out));

    let (verdict, wx) = run(&target, "wx guest");
    assert_eq!(verdict, Verdict::Failed, "{wx}");
    assert!(
        wx.contains("arm64/mm: Cannot check entry at address ffff960000000000/"),
        "{wx}"
    );
    assert!(
        wx.ends_with("Checked W+X mappings: FAILED, 0 W+X pages found, 0 non-UXN pages found, 5 bad entries\n"),
        "{wx}"
    );

    assert!(host.reads.get() > reads_before);
    assert_eq!(host.hv_reads.get(), 0, "hv read its own memory on the guest's behalf");
}

#[test]
fn x86_hostile_entries_are_reported_and_the_dump_goes_on() {
    let mut m = Machine::new(Npt::four_level(), true);
    let f = X86_64::new(4, true, 40).unwrap();
    let root = {
        let ram = &mut m.ram;
        let b = TableBuilder::new(&f, ram).unwrap();
        b.map(ram, 0x40_0000, 0x8060_0000, 0x1000, &normal(USER_RX)).unwrap();
        b.map(ram, KTEXT, 0x8020_0000, 0x1000, &normal(RX)).unwrap();
        b.map(ram, 0xffff_ffff_ff5f_c000, 0x8030_0000, 0x1000, &normal(RW))
            .unwrap();
        b.root().0
    };
    // Bit 45 lies beyond the 40-bit physical address width: reserved.
    plant(&mut m, root, |next| next | PRESENT | X86_RW | ACCESSED, 1 << 45);
    let regs = X86GuestRegs {
        cr0: 1 | (1 << 16) | (1 << 31),
        cr3: root,
        cr4: 1 << 5,
        efer: (1 << 8) | (1 << 10) | (1 << 11),
        pat: 0x0407_0506_0007_0106,
    };
    assert!(Recording::from(&m).read_u64(EVIL_PA).is_ok());
    let host = Recording::from(&m);
    let target = GuestTarget::new(&m, TableFormat::Npt(m.s2_format), &host, GuestStage1::x86(&regs, 40));

    let (verdict, out) = run(&target, "ptdump guest");
    assert_eq!(verdict, Verdict::Ok, "{out}");
    check_dump(&out);
    let fixmap = out
        .find("0xffffffffff5fc000-0xffffffffff5fd000")
        .expect("the dump went on");
    assert!(out.rfind(" BAD ").unwrap() < fixmap, "{out}");

    let (verdict, sliced) = session_run(&target, &host, "ptdump guest", 1 << 16);
    assert_eq!((verdict, &sliced), (Verdict::Ok, &out));

    let (verdict, wx) = run(&target, "wx guest");
    assert_eq!(verdict, Verdict::Failed, "{wx}");
    assert!(
        wx.ends_with("x86/mm: Checked W+X mappings: FAILED, 0 W+X pages found, 5 bad entries.\n"),
        "{wx}"
    );
    assert_eq!(host.hv_reads.get(), 0, "hv read its own memory on the guest's behalf");
}

#[test]
fn shared_subtrees_cost_bounded_work_per_call_and_per_command() {
    let mut m = Machine::new(Stage2::for_ipa_bits(40).unwrap(), false);
    // Every entry of every level points at the same next table: 512^3 tables
    // if walked naively.
    let (l0, l1, l2, l3) = (m.guest_page(), m.guest_page(), m.guest_page(), m.guest_page());
    for i in 0..512 {
        m.poke(l0 + 8 * i, l1 | DESC_TABLE);
        m.poke(l1 + 8 * i, l2 | DESC_TABLE);
        m.poke(l2 + 8 * i, l3 | DESC_TABLE);
        m.poke(l3 + 8 * i, 0x8000_0000 | 0x703 | (1 << 53) | (1 << 54));
    }
    let regs = Arm64GuestRegs {
        sctlr_el1: 1,
        tcr_el1: TCR_48_4K,
        ttbr0_el1: l0,
        ttbr1_el1: l0,
        mair_el1: pagewalk::arm64::LINUX_MAIR,
    };
    let host = Recording::from(&m);
    let target = GuestTarget::new(
        &m,
        TableFormat::Arm64Stage2(m.s2_format),
        &host,
        GuestStage1::arm64(&regs),
    );
    let (verdict, out) = session_run(&target, &host, "ptdump guest", 2048);
    assert_eq!(verdict, Verdict::Failed);
    assert!(
        out.ends_with(
            "hv: ptdump stopped after 2048 tables (the limit for one command); dump a smaller range with START END\n"
        ),
        "{}",
        &out[out.len().saturating_sub(400)..]
    );
    // wx is sliced the same way: every call within the per-call bound
    // (session_run checks it), and the command stops at its limit, the rest
    // reported as one entry the check could not judge.
    let (verdict, wx) = session_run(&target, &host, "wx guest", 2048);
    assert_eq!(verdict, Verdict::Failed);
    let tail = &wx[wx.len().saturating_sub(600)..];
    assert!(
        wx.contains("hv: wx guest stopped after 2048 tables (the limit for one command); the rest is not checked\n"),
        "{tail}"
    );
    assert_eq!(lines_with(&wx, "walk budget exhausted").len(), 2, "{tail}");
    assert!(wx.contains("arm64/mm: Cannot check entry at address "), "{tail}");
    // The pages before the cut are RW, PXN and UXN: only the cut fails the check.
    assert!(
        wx.ends_with("Checked W+X mappings: FAILED, 0 W+X pages found, 0 non-UXN pages found, 1 bad entries\n"),
        "{tail}"
    );
    assert_eq!(host.hv_reads.get(), 0);
}
