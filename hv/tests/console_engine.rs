//! The console engine: parsing, dispatch to ptdump, and sliced dumps that
//! print exactly what one whole dump prints.

mod console_common;

use console_common::*;
use hv::console::job::{Job, StepOutcome};
use hv::console::{parse, run_to_end, Command, ParseError, Tables, UserRange, Verdict, Views};
use pagewalk::AddrRange;

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
