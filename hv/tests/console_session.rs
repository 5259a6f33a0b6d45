//! Output sessions: delivery in pieces, idempotent re-reads, the output cap,
//! and the bound on the work one call may do.

mod console_common;

use console_common::*;
use hv::console::job::MAX_COMMAND_TABLES;
use hv::console::session::{CALL_TABLES, TRUNCATED_LINE};
use hv::console::{run_to_end, Session, SessionState, TableFormat, TableView, Verdict};
use mm::Arena;
use pagewalk::arm64::{Half, Regime, Stage1};
use pagewalk::{AddrRange, Format, Level, TableMemoryMut};

fn whole(target: &ViewTarget<'_>, line: &str) -> String {
    let mut out = String::new();
    run_to_end(target, line, &mut out).unwrap();
    out
}

/// Reads the whole output `chunk` bytes at a time, as a transport would.
fn fetch_all(session: &mut Session, target: &ViewTarget<'_>, chunk: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls < 100_000, "no progress");
        let state = session.produce(target, got.len() + chunk);
        let mut buf = vec![0u8; chunk];
        let n = session.read(got.len(), &mut buf);
        // Reading the same offset again gives the same bytes.
        let mut again = vec![0u8; chunk];
        assert_eq!(session.read(got.len(), &mut again), n);
        assert_eq!(buf[..n], again[..n]);
        got.extend_from_slice(&buf[..n]);
        if n == 0 && state != SessionState::Running {
            return got;
        }
    }
}

#[test]
fn output_fetched_in_pieces_reassembles_exactly() {
    let hv = hv_tables(false);
    let s2 = guest_stage2(false);
    let target = ViewTarget::new(hv.view(), Some(s2.view()));
    for line in ["ptdump hv", "ptdump s2", "help", "wx hv", "audit s2", "nonsense"] {
        let reference = whole(&target, line);
        for chunk in [1, 7, 64, 4096, 1 << 20] {
            let mut session = Session::new();
            session.start(&target, line);
            let got = fetch_all(&mut session, &target, chunk);
            assert_eq!(
                String::from_utf8(got).unwrap(),
                reference,
                "{line} in {chunk}-byte pieces"
            );
        }
    }
}

#[test]
fn verdicts_reach_the_session_state() {
    let hv = hv_tables(true);
    let target = ViewTarget::new(hv.view(), None);
    let mut session = Session::new();
    session.start(&target, "wx hv");
    fetch_all(&mut session, &target, 4096);
    assert_eq!(
        session.state(),
        SessionState::Done {
            verdict: Verdict::Failed,
            truncated: false
        }
    );
    session.start(&target, "help");
    fetch_all(&mut session, &target, 4096);
    assert_eq!(
        session.state(),
        SessionState::Done {
            verdict: Verdict::Ok,
            truncated: false
        }
    );
}

#[test]
fn a_new_command_discards_the_old_output() {
    let hv = hv_tables(false);
    let target = ViewTarget::new(hv.view(), None);
    let mut session = Session::new();
    session.start(&target, "ptdump hv");
    session.produce(&target, 100);
    assert!(session.produced() >= 100);
    session.start(&target, "help");
    assert_eq!(session.produced(), 0);
    let got = fetch_all(&mut session, &target, 100);
    assert_eq!(got, hv::console::HELP.as_bytes());
    session.reset();
    assert_eq!(session.state(), SessionState::Idle);
    assert_eq!(session.read(0, &mut [0u8; 8]), 0);
}

#[test]
fn output_over_the_cap_is_cut_at_a_line_with_a_marker() {
    let hv = hv_tables(false);
    let target = ViewTarget::new(hv.view(), None);
    let reference = whole(&target, "ptdump hv");
    let cap = 2000;
    let mut session = Session::with_cap(cap);
    session.start(&target, "ptdump hv");
    let got = String::from_utf8(fetch_all(&mut session, &target, 333)).unwrap();
    assert!(got.len() <= cap, "{}", got.len());
    assert!(got.ends_with(TRUNCATED_LINE), "{got}");
    let kept = &got[..got.len() - TRUNCATED_LINE.len()];
    assert!(kept.ends_with('\n'));
    assert!(reference.starts_with(kept));
    assert!(kept.len() > cap / 2);
    assert_eq!(
        session.state(),
        SessionState::Done {
            verdict: Verdict::Failed,
            truncated: true
        }
    );
}

/// Stage-1 tables where every entry of every table points at one shared
/// table: 2^39 bytes of 4 KiB pages through 1 + 512 + 512^2 table visits.
fn hostile_tables() -> (Stage1, Arena, u64) {
    let format = Stage1::new(39, Half::Lower, Regime::El2).unwrap();
    let (root, l2, l3) = (0x10_0000u64, 0x10_1000u64, 0x10_2000u64);
    let mut arena = Arena::new(root, 3 * 4096);
    let leaf = format.encode_leaf(Level(3), 0x8000_0000, &normal(RW)).unwrap();
    for i in 0..512 {
        arena
            .write_u64(root + i * 8, format.encode_table(Level(1), l2))
            .unwrap();
        arena.write_u64(l2 + i * 8, format.encode_table(Level(2), l3)).unwrap();
        arena.write_u64(l3 + i * 8, leaf).unwrap();
    }
    (format, arena, root)
}

#[test]
fn every_call_does_bounded_work_even_on_hostile_tables() {
    let (format, arena, root) = hostile_tables();
    let counting = Counting::new(&arena);
    let markers = [ptdump::Marker::new(0, "hostile")];
    let view = TableView {
        format: TableFormat::Arm64Stage1(format),
        mem: &counting,
        root,
        range: AddrRange::new(0, Some(1 << 39)).unwrap(),
        markers: &markers,
    };
    let target = ViewTarget::new(view, None);
    let mut session = Session::new();
    // A smaller whole-command limit than the default keeps the test quick;
    // the per-call bound does not depend on it.
    let limit = MAX_COMMAND_TABLES / 16;
    session.set_table_limit(limit);
    session.start(&target, "ptdump hv");
    // Two walks of at most CALL_TABLES tables, plus the path down (< 8 tables), 512 entries each.
    let bound = 2 * (CALL_TABLES + 8) * 512;
    let mut calls = 0u64;
    let mut worst = 0;
    let mut slowest = std::time::Duration::ZERO;
    while session.state() == SessionState::Running {
        let before = counting.reads.get();
        let t = std::time::Instant::now();
        session.produce(&target, session.produced() + 4096);
        slowest = slowest.max(t.elapsed());
        let reads = counting.reads.get() - before;
        worst = worst.max(reads);
        assert!(reads <= bound, "call {calls} read {reads} entries (bound {bound})");
        calls += 1;
        assert!(calls < 10 * limit, "the command never ends");
    }
    println!("hostile dump: {calls} calls, at most {worst} entries and {slowest:?} per call");
    // The whole command stopped at the table limit, and said so.
    let out = String::from_utf8(session.output_from(0).to_vec()).unwrap();
    assert!(
        out.ends_with("(the limit for one command); dump a smaller range with START END\n"),
        "{out}"
    );
    assert!(out.starts_with("---[ hostile ]---\n0x0000000000000000-"), "{out}");
    assert_eq!(
        session.state(),
        SessionState::Done {
            verdict: Verdict::Failed,
            truncated: false
        }
    );
    assert!(calls >= limit / (CALL_TABLES + 8), "{calls}");
}
