//! The console engine: parsing, dispatch to ptdump, and sliced dumps that
//! print exactly what one whole dump prints.

mod console_common;

use console_common::*;
use hv::console::job::{Job, StepOutcome};
use hv::console::session::{Session, SessionState, CALL_TABLES};
use hv::console::{
    parse, run_to_end, Command, ParseError, TableFormat, TableView, Tables, UserRange, Verdict, ViewPart, Views, WxNote,
};
use mm::TableBuilder;
use pagewalk::{AddrRange, TableMemoryMut, Visitor};
use ptdump::WxOptions;

fn run(target: &ViewTarget<'_>, line: &str) -> (Verdict, String) {
    let mut out = String::new();
    let verdict = run_to_end(target, line, &mut out).unwrap();
    (verdict, out)
}

/// Runs `line` with a given slice budget, counting the steps.
fn run_sliced(target: &ViewTarget<'_>, line: &str, budget: u64) -> (Verdict, String, usize) {
    let mut job = Job::new(target, line);
    let mut out = String::new();
    let mut steps = 0;
    loop {
        steps += 1;
        match job.step(target, &mut out, budget).unwrap() {
            StepOutcome::More => continue,
            StepOutcome::Done(v) => return (v, out, steps),
        }
    }
}

#[test]
fn parses_commands_and_addresses() {
    assert_eq!(parse("help"), Ok(Command::Help));
    assert_eq!(parse("  info  "), Ok(Command::Info));
    assert_eq!(
        parse("ptdump hv"),
        Ok(Command::Ptdump {
            tables: Tables::Hv,
            range: None
        })
    );
    assert_eq!(
        parse("ptdump s2 0x4000_0000 1073741824000"),
        Ok(Command::Ptdump {
            tables: Tables::Stage2,
            range: Some(UserRange {
                start: 0x4000_0000,
                end: Some(1_073_741_824_000)
            })
        })
    );
    assert_eq!(
        parse("ptdump guest 0xffff000000000000 0x10000000000000000"),
        Ok(Command::Ptdump {
            tables: Tables::Guest,
            range: Some(UserRange {
                start: 0xffff_0000_0000_0000,
                end: None
            })
        })
    );
    assert_eq!(parse("wx guest"), Ok(Command::Wx { tables: Tables::Guest }));
    assert_eq!(parse("audit s2"), Ok(Command::AuditS2));
}

#[test]
fn refuses_bad_lines_with_clear_messages() {
    let msg = |line: &str| parse(line).unwrap_err().to_string();
    assert_eq!(msg(""), "empty command (try 'help')");
    assert_eq!(msg("dump hv"), "unknown command 'dump' (try 'help')");
    assert_eq!(msg("ptdump"), "usage: ptdump hv|s2|guest [START END]");
    assert_eq!(msg("ptdump s3"), "usage: ptdump hv|s2|guest [START END]");
    assert_eq!(msg("ptdump hv 0x1000"), "usage: ptdump hv|s2|guest [START END]");
    assert_eq!(msg("ptdump hv 1 2 3"), "usage: ptdump hv|s2|guest [START END]");
    assert_eq!(msg("wx s2"), "usage: wx hv|guest");
    assert_eq!(msg("audit hv"), "usage: audit s2");
    assert_eq!(msg("help me"), "usage: help");
    assert!(msg("ptdump hv 0xzz 0x1000").starts_with("bad address '0xzz'"));
    assert!(msg("ptdump hv 0x 0x1000").starts_with("bad address '0x'"));
    assert!(msg("ptdump hv 0 0x10000000000000001").starts_with("bad address '0x10000000000000001'"));
    // 2^64 is only an END.
    assert!(msg("ptdump hv 0x10000000000000000 0x1").starts_with("bad address"));
    assert_eq!(
        msg("ptdump hv 0x2000 0x1000"),
        "empty range: START 0x2000 must be below END 0x1000"
    );
    assert_eq!(
        parse("ptdump hv 5 5"),
        Err(ParseError::EmptyRange { start: 5, end: Some(5) })
    );
}

#[test]
fn refused_line_prints_error_and_fails() {
    let hv = hv_tables(false);
    let target = ViewTarget::new(hv.view(), None);
    let (verdict, out) = run(&target, "frobnicate");
    assert_eq!(verdict, Verdict::Failed);
    assert_eq!(out, "hv: unknown command 'frobnicate' (try 'help')\n");
}

#[test]
fn help_and_info() {
    let hv = hv_tables(false);
    let target = ViewTarget::new(hv.view(), None);
    let (verdict, out) = run(&target, "help");
    assert_eq!(verdict, Verdict::Ok);
    assert_eq!(out, hv::console::HELP);
    for cmd in ["ptdump hv|s2|guest [START END]", "wx hv|guest", "audit s2", "info"] {
        assert!(out.contains(cmd), "{out}");
    }
    let (verdict, out) = run(&target, "info");
    assert_eq!(verdict, Verdict::Ok);
    assert!(
        out.starts_with(&format!("hv {} (aarch64)\n", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    assert!(out.contains("hv heap"), "{out}");
    assert!(out.contains("guest: none"), "{out}");
}

#[test]
fn ptdump_hv_equals_one_whole_ptdump_for_every_slice_budget() {
    let hv = hv_tables(false);
    let view = hv.view();
    let target = ViewTarget::new(view, None);
    let reference = reference_dump(&view, view.range, &hv.markers);
    // The fixture's merged block run crosses a table boundary.
    assert!(
        reference.contains("0x0000000060200000-0x0000000080200000         512M PMD"),
        "{reference}"
    );
    assert!(
        reference.contains("\n0x0000000090000000-0x0000000090800000           8M PTE"),
        "{reference}"
    );
    let (verdict, whole) = run(&target, "ptdump hv");
    assert_eq!(verdict, Verdict::Ok);
    assert_eq!(whole, reference);
    let mut most_steps = 0;
    for budget in [6, 7, 8, 9, 13, 32, 1000] {
        let (verdict, sliced, steps) = run_sliced(&target, "ptdump hv", budget);
        assert_eq!(verdict, Verdict::Ok);
        assert_eq!(sliced, reference, "budget {budget}");
        most_steps = most_steps.max(steps);
    }
    // The small budgets really did cut the dump into many slices.
    assert!(most_steps > 10, "{most_steps}");
}

#[test]
fn stage2_and_x86_slices_equal_whole_dumps() {
    let s2 = guest_stage2(false);
    let hv = hv_tables(false);
    let target = ViewTarget::new(hv.view(), Some(s2.view()));
    let reference = reference_dump(&s2.view(), s2.view().range, &S2_MARKERS);
    assert!(reference.starts_with("---[ Guest IPA ]---\n"), "{reference}");
    for budget in [6, 7, 11, 64] {
        let (verdict, out, _) = run_sliced(&target, "ptdump s2", budget);
        assert_eq!(verdict, Verdict::Ok);
        assert_eq!(out, reference, "budget {budget}");
    }

    let x86 = x86_tables();
    let target = ViewTarget::new(x86.view(), None);
    let reference = reference_dump(&x86.view(), AddrRange::ALL, &x86.markers);
    assert!(reference.contains("---[ High Kernel Mapping ]---"), "{reference}");
    for budget in [6, 8, 10, 100] {
        let (verdict, out, _) = run_sliced(&target, "ptdump hv", budget);
        assert_eq!(verdict, Verdict::Ok);
        assert_eq!(out, reference, "budget {budget}");
    }
}

#[test]
fn partial_range_keeps_title_and_region_marker() {
    let hv = hv_tables(false);
    let target = ViewTarget::new(hv.view(), None);
    let (verdict, out) = run(&target, "ptdump hv 0x4020_1000 0x4020_6000");
    assert_eq!(verdict, Verdict::Ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "---[ EL2 stage-1 ]---");
    assert_eq!(lines[1], "---[ hv text ]---");
    assert!(
        lines[2].starts_with("0x0000000040201000-0x0000000040203000           8K PTE"),
        "{out}"
    );
    assert_eq!(lines[3], "---[ hv rodata ]---");
    assert_eq!(lines[5], "---[ hv data ]---");
    assert!(
        lines[6].starts_with("0x0000000040204000-0x0000000040206000           8K PTE"),
        "{out}"
    );
    assert_eq!(lines.len(), 7, "{out}");
}

#[test]
fn range_outside_the_tables_is_refused() {
    let hv = hv_tables(false);
    let target = ViewTarget::new(hv.view(), None);
    let (verdict, out) = run(&target, "ptdump hv 0x1000000000000 0x2000000000000");
    assert_eq!(verdict, Verdict::Failed);
    assert_eq!(
        out,
        "hv: ptdump hv: the range lies outside the tables' address range 0x0000000000000000-0x0000ffffffffffff\n"
    );
}

#[test]
fn unavailable_tables_say_so() {
    let hv = hv_tables(false);
    let target = ViewTarget::new(hv.view(), None);
    for (line, tables) in [
        ("ptdump guest", "guest"),
        ("wx guest", "guest"),
        ("ptdump s2", "s2"),
        ("audit s2", "s2"),
    ] {
        let (verdict, out) = run(&target, line);
        assert_eq!(verdict, Verdict::Failed, "{line}");
        assert!(
            out.starts_with(&format!("hv: '{tables}' tables not available: ")),
            "{line}: {out}"
        );
    }
    let (_, out) = run(&target, "ptdump guest");
    assert_eq!(out, "hv: 'guest' tables not available: no guest has been created\n");
}

#[test]
fn wx_runs_linux_check_on_hv_tables() {
    let clean = hv_tables(false);
    let target = ViewTarget::new(clean.view(), None);
    let (verdict, out) = run(&target, "wx hv");
    assert_eq!(verdict, Verdict::Ok, "{out}");
    assert_eq!(out, "Checked W+X mappings: passed, no W+X pages found\n");

    let bad = hv_tables(true);
    let target = ViewTarget::new(bad.view(), None);
    let (verdict, out) = run(&target, "wx hv");
    assert_eq!(verdict, Verdict::Failed);
    assert!(
        out.contains("arm64/mm: Found insecure W+X mapping at address 0000000040300000/0x40300000"),
        "{out}"
    );
    assert!(out.ends_with("Checked W+X mappings: FAILED, 1 W+X pages found, 0 non-UXN pages found\n"));

    let x86 = x86_tables();
    let target = ViewTarget::new(x86.view(), None);
    let (verdict, out) = run(&target, "wx hv");
    assert_eq!(verdict, Verdict::Ok, "{out}");
    assert_eq!(out, "x86/mm: Checked W+X mappings: passed, no W+X pages found.\n");
}

/// One whole W+X check straight from ptdump, listing every range as the
/// console does (the reference the sliced checks must equal).
fn reference_wx(view: &TableView<'_>, range: AddrRange) -> String {
    let mut out = String::new();
    let options = WxOptions {
        list_all: true,
        ..WxOptions::default()
    };
    let (mem, root) = (view.mem, view.root);
    match &view.format {
        TableFormat::Arm64Stage1(f) => ptdump::arm64::check_wx_with(&mut out, f, mem, root, range, &options),
        TableFormat::X86_64(f) => ptdump::x86::check_wx_with(&mut out, f, mem, root, range, &options),
        _ => panic!("not a stage-1 view"),
    }
    .unwrap();
    out
}

/// Tables the walk of `view` enters.
fn tables_in(view: &TableView<'_>) -> u64 {
    struct Nothing;
    impl Visitor for Nothing {
        fn leaf(&mut self, _: &pagewalk::Leaf) -> pagewalk::Flow {
            pagewalk::Flow::Continue
        }
    }
    pagewalk::walk(view.format.as_format(), view.mem, view.root, view.range, &mut Nothing).tables
}

/// hv-like tables that fail the check every way: the fixture's W+X page, a
/// run of W+X pages across a page-table boundary (so across a slice
/// boundary: slices start at tables), and two unreadable tables.
fn failing_hv_tables() -> HvTables {
    let mut hv = hv_tables(true);
    let b = TableBuilder::with_root(&hv.format, mm::PhysAddr(hv.root));
    for page in 0..8u64 {
        let va = 0xa01f_c000 + page * 0x1000;
        b.map(&mut hv.arena, va, va, 0x1000, &normal(RWX)).unwrap();
    }
    // Root entries 1 and 3 (512 GiB each) point at tables outside memory.
    hv.arena.write_u64(hv.root + 8, 0x1000 | 3).unwrap();
    hv.arena.write_u64(hv.root + 3 * 8, 0x2000 | 3).unwrap();
    hv
}

#[test]
fn wx_slices_equal_one_whole_check() {
    let clean = hv_tables(false);
    let failing = failing_hv_tables();
    let x86 = x86_tables();
    let cases = [
        (clean.view(), Verdict::Ok),
        (failing.view(), Verdict::Failed),
        (x86.view(), Verdict::Ok),
    ];
    for (view, expected) in cases {
        let target = ViewTarget::new(view, None);
        let reference = reference_wx(&view, view.range);
        let (verdict, whole) = run(&target, "wx hv");
        assert_eq!((verdict, &whole), (expected, &reference));
        let mut most_steps = 0;
        for budget in [6, 7, 8, 9, 13, 32, 1000] {
            let (verdict, sliced, steps) = run_sliced(&target, "wx hv", budget);
            assert_eq!(verdict, expected);
            assert_eq!(sliced, reference, "budget {budget}");
            most_steps = most_steps.max(steps);
        }
        // The small budgets really did cut the check into many slices.
        assert!(most_steps > 5, "{most_steps}");
    }
    let reference = reference_wx(&failing.view(), failing.view().range);
    assert_eq!(
        reference,
        "\
arm64/mm: Found insecure W+X mapping at address 0000000040300000/0x40300000
0x0000000040300000-0x0000000040301000           4K PTE       RW x  SHD AF                   MEM/NORMAL
arm64/mm: Found insecure W+X mapping at address 00000000a01fc000/0xa01fc000
0x00000000a01fc000-0x00000000a0204000          32K PTE       RW x  SHD AF                   MEM/NORMAL
arm64/mm: Cannot check entry at address 0000008000000000/0x8000000000: next table at 0x1000 is not readable raw=0x0000000000001003
0x0000008000000000-0x0000010000000000         512G PGD BAD next table at 0x1000 is not readable raw=0x0000000000001003
arm64/mm: Cannot check entry at address 0000018000000000/0x18000000000: next table at 0x2000 is not readable raw=0x0000000000002003
0x0000018000000000-0x0000020000000000         512G PGD BAD next table at 0x2000 is not readable raw=0x0000000000002003
Checked W+X mappings: FAILED, 9 W+X pages found, 0 non-UXN pages found, 2 bad entries
"
    );
}

/// The parts of a guest: `wx` checks only the kernel's, after its header and note.
#[test]
fn wx_guest_checks_the_kernel_part_in_slices() {
    let x86 = x86_tables();
    let hv = hv_tables(false);
    let user = AddrRange::new(0, Some(0x8000_0000_0000)).unwrap();
    let kernel = AddrRange::new(0xffff_8000_0000_0000, None).unwrap();
    let part = |name, range, wx, wx_note| {
        Some(ViewPart {
            name,
            range,
            tables: Ok(TableView { range, ..x86.view() }),
            wx,
            wx_note,
        })
    };
    let note = WxNote {
        text: "a note that fails the check",
        fails: true,
    };
    let mut target = ViewTarget::new(hv.view(), None);
    target.guest = Ok(Views::new([
        part("CR3 user half", user, false, None),
        part("CR3 kernel half", kernel, true, Some(note)),
    ]));
    let reference = format!(
        "hv: wx guest: Linux's check covers the kernel's mappings: CR3 kernel half {kernel}\n\
         hv: a note that fails the check\n{}",
        reference_wx(&x86.view(), kernel)
    );
    assert!(reference.ends_with("x86/mm: Checked W+X mappings: passed, no W+X pages found.\n"));
    for budget in [6, 7, 9, 1000] {
        let (verdict, out, _) = run_sliced(&target, "wx guest", budget);
        assert_eq!(verdict, Verdict::Failed, "the note fails the check");
        assert_eq!(out, reference, "budget {budget}");
    }
}

/// Through a session, as the hypercalls and the doorbell run it: each call
/// walks a bounded number of tables, and a command limit stops the check
/// with its message and a failed verdict.
#[test]
fn wx_through_a_session_is_bounded_per_call_and_per_command() {
    let failing = failing_hv_tables();
    let counting = Counting::new(&failing.arena);
    let view = TableView {
        mem: &counting,
        ..failing.view()
    };
    let target = ViewTarget::new(view, None);
    let total = tables_in(&view);
    assert!(total > CALL_TABLES, "{total}");

    let mut session = Session::new();
    session.start(&target, "wx hv");
    let (mut calls, mut most_reads) = (0, 0);
    let verdict = loop {
        calls += 1;
        let before = counting.reads.get();
        let state = session.produce(&target, usize::MAX);
        most_reads = most_reads.max(counting.reads.get() - before);
        if let SessionState::Done { verdict, .. } = state {
            break verdict;
        }
    };
    assert_eq!(verdict, Verdict::Failed);
    assert_eq!(session.output_from(0), reference_wx(&view, view.range).as_bytes());
    // Two walks of CALL_TABLES tables plus the path down, 512 entries each.
    assert!(most_reads <= 2 * (CALL_TABLES + 5) * 512, "{most_reads}");
    assert!(calls >= 2, "{calls} calls for {total} tables");

    let mut session = Session::new();
    session.set_table_limit(20);
    session.start(&target, "wx hv");
    let verdict = loop {
        if let SessionState::Done { verdict, .. } = session.produce(&target, usize::MAX) {
            break verdict;
        }
    };
    assert_eq!(verdict, Verdict::Failed);
    let out = String::from_utf8(session.output_from(0).to_vec()).unwrap();
    let stop = out.find("hv: wx hv stopped after ").unwrap_or_else(|| panic!("{out}"));
    let walked: u64 = out[stop + "hv: wx hv stopped after ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The limit is checked between slices: at most one slice past it.
    assert!((20..20 + CALL_TABLES + 5).contains(&walked), "{out}");
    assert!(
        out[stop..].contains(
            " tables (the limit for one command); the rest is not checked\narm64/mm: Cannot check entry at address "
        ),
        "{out}"
    );
    assert!(out[stop..].contains(": walk budget exhausted; subtree not walked raw=0x0000000000000000\n"));
    assert!(out.ends_with(" bad entries\n"), "{out}");
    assert!(out.contains("Checked W+X mappings: FAILED, "), "{out}");
}

#[test]
fn wx_refuses_second_stage_tables() {
    let hv = hv_tables(false);
    let s2 = guest_stage2(false);
    let mut target = ViewTarget::new(hv.view(), None);
    target.guest = Ok(Views::one(s2.view()));
    let (verdict, out) = run(&target, "wx guest");
    assert_eq!(verdict, Verdict::Failed);
    assert_eq!(
        out,
        "hv: wx: the 'guest' tables are second-stage tables; W+X is checked on stage-1 tables\n"
    );
}

#[test]
fn audit_s2_passes_and_catches_a_mapping_of_hv_memory() {
    let hv = hv_tables(false);
    let good = guest_stage2(false);
    let target = ViewTarget::new(hv.view(), Some(good.view()));
    let (verdict, out) = run(&target, "audit s2");
    assert_eq!(verdict, Verdict::Ok, "{out}");
    assert!(
        out.starts_with("hv: stage-2 isolation audit: passed, no stage-2 entry maps memory hv owns"),
        "{out}"
    );

    let evil = guest_stage2(true);
    let target = ViewTarget::new(hv.view(), Some(evil.view()));
    let (verdict, out) = run(&target, "audit s2");
    assert_eq!(verdict, Verdict::Failed);
    assert!(out.contains("FAILED, 1 violation(s)"), "{out}");
    assert!(out.contains("maps hv heap"), "{out}");
}
