//! The hypercall ABI: ids, return codes, guest buffers checked through
//! stage-2, chunked output, and a seeded storm of random calls.

mod console_common;

use console_common::*;
use hv::console::run_to_end;
use hv::hypercall::guest_mem::{GuestMemError, GuestMemory, Stage2Memory};
use hv::hypercall::{flags, id, ret, Call, CallContext, Conduit, Hypercalls, Privilege, Reply};

struct World {
    hv: HvTables,
    s2: GuestStage2,
    phys: TestPhys,
    owned: Vec<hv::guest::Named<'static>>,
    log: String,
}

impl World {
    fn new(evil: bool) -> World {
        World {
            hv: hv_tables(false),
            s2: guest_stage2(evil),
            phys: TestPhys::new(),
            owned: hv_owned(),
            log: String::new(),
        }
    }

    /// One call, as the arch glue makes it.
    fn call(&mut self, calls: &mut Hypercalls, conduit: Conduit, privilege: Privilege, call: Call) -> Reply {
        let target = ViewTarget::new(self.hv.view(), Some(self.s2.view()));
        let mut mem = Stage2Memory {
            format: &self.s2.format,
            tables: &self.s2.arena,
            root: self.s2.root,
            hv_owned: &self.owned,
            phys: &mut self.phys,
        };
        let mut cx = CallContext {
            target: &target,
            mem: &mut mem,
            log: &mut self.log,
        };
        calls.handle(conduit, privilege, &call, &mut cx)
    }

    fn hvc(&mut self, calls: &mut Hypercalls, id: u32, args: &[u64]) -> Reply {
        let mut call = Call {
            id: u64::from(id),
            ..Call::default()
        };
        call.args[..args.len()].copy_from_slice(args);
        self.call(calls, Conduit::Hvc, Privilege::Kernel, call)
    }

    fn reference(&self, line: &str) -> String {
        let target = ViewTarget::new(self.hv.view(), Some(self.s2.view()));
        let mut out = String::new();
        run_to_end(&target, line, &mut out).unwrap();
        out
    }
}

const PAGE: u64 = 4096;

#[test]
fn smccc_discovery_and_unknown_ids() {
    let mut w = World::new(false);
    let mut calls = Hypercalls::new();
    assert_eq!(w.hvc(&mut calls, id::SMCCC_VERSION, &[]).regs, [0x1_0001, 0, 0, 0]);
    assert_eq!(
        w.hvc(&mut calls, id::SMCCC_ARCH_FEATURES, &[0x8000_0000]).code(),
        ret::SUCCESS
    );
    // ARCH_WORKAROUND_1 and anything else: not supported.
    assert_eq!(
        w.hvc(&mut calls, id::SMCCC_ARCH_FEATURES, &[0x8000_8000]).code(),
        ret::NOT_SUPPORTED
    );
    let uid = w.hvc(&mut calls, id::VENDOR_HYP_CALL_UID, &[]).regs;
    assert_eq!(uid, [0xc6bf_bd0f, 0xb74e_dd4e, 0xdbeb_69ab, 0x78e0_639f]);
    assert_eq!(w.hvc(&mut calls, id::VENDOR_HYP_REVISION, &[]).regs, [1, 0, 0, 0]);
    assert_eq!(w.hvc(&mut calls, id::HV_VERSION, &[]).regs, [0, 0x1_0000, 1 << 20, 0]);
    for f in id::ALL {
        assert_eq!(w.hvc(&mut calls, id::HV_FEATURES, &[u64::from(f)]).code(), ret::SUCCESS);
    }
    for unknown in [0xC600_0005, 0xC600_FFFF, 0x8400_0000, 0x8600_0001, 0, 0xFFFF_FFFF] {
        assert_eq!(
            w.hvc(&mut calls, id::HV_FEATURES, &[unknown]).code(),
            ret::NOT_SUPPORTED
        );
        let reply = w.hvc(&mut calls, unknown as u32, &[1, 2, 3]);
        assert_eq!(reply.regs, [ret::NOT_SUPPORTED as u64, 0, 0, 0], "{unknown:#x}");
    }
    // arm64: the id is W0, the upper half of x0 is ignored (SMCCC).
    let call = Call {
        id: 0xdead_beef_8000_0000,
        ..Call::default()
    };
    assert_eq!(
        w.call(&mut calls, Conduit::Hvc, Privilege::Kernel, call).regs[0],
        0x1_0001
    );
    // x86: RAX above 32 bits is no id.
    assert_eq!(
        w.call(&mut calls, Conduit::Vmmcall, Privilege::Kernel, call).code(),
        ret::NOT_SUPPORTED
    );
    let call = Call {
        id: u64::from(id::HV_VERSION),
        ..Call::default()
    };
    assert_eq!(
        w.call(&mut calls, Conduit::Vmmcall, Privilege::Kernel, call).regs[1],
        0x1_0000
    );
}

#[test]
fn calls_from_guest_user_mode_are_denied() {
    let mut w = World::new(false);
    let mut calls = Hypercalls::new();
    for f in id::ALL {
        for conduit in [Conduit::Hvc, Conduit::Vmmcall] {
            let call = Call {
                id: u64::from(f),
                args: [GUEST_RAM_GPA, 4, GUEST_RAM_GPA + PAGE, 100, 0, 0],
            };
            let reply = w.call(&mut calls, conduit, Privilege::User, call);
            assert_eq!(reply.regs, [ret::DENIED as u64, 0, 0, 0]);
        }
    }
    assert!(w.log.is_empty());
}

#[test]
fn console_write_reaches_the_log_sanitized() {
    let mut w = World::new(false);
    let mut calls = Hypercalls::new();
    // Straddles the boundary between guest pages 2 and 3 (different, reversed PAs).
    let gpa = GUEST_RAM_GPA + 3 * PAGE - 5;
    w.phys.put_guest_bytes(gpa, b"hello\x1b[2J world\n\xff!");
    let reply = w.hvc(&mut calls, id::HV_CONSOLE_WRITE, &[gpa, 18]);
    assert_eq!(reply.regs, [0, 18, 0, 0]);
    assert_eq!(w.log, "hello?[2J world\n\u{fffd}!");
    assert_eq!(w.hvc(&mut calls, id::HV_CONSOLE_WRITE, &[gpa, 0]).regs, [0, 0, 0, 0]);
    assert_eq!(
        w.hvc(&mut calls, id::HV_CONSOLE_WRITE, &[gpa, 4097]).code(),
        ret::INVALID_PARAMETER
    );
    assert_eq!(
        w.hvc(&mut calls, id::HV_CONSOLE_WRITE, &[gpa, u64::MAX]).code(),
        ret::INVALID_PARAMETER
    );
    for bad in [
        UNMAPPED_GPA,
        EVIL_GPA,
        u64::MAX - 2,
        GUEST_RAM_GPA + GUEST_PAGES * PAGE - 2,
    ] {
        assert_eq!(
            w.hvc(&mut calls, id::HV_CONSOLE_WRITE, &[bad, 10]).code(),
            ret::BAD_ADDRESS,
            "{bad:#x}"
        );
    }
    // A read-only page may be read.
    assert_eq!(
        w.hvc(&mut calls, id::HV_CONSOLE_WRITE, &[RO_GPA, 3]).code(),
        ret::SUCCESS
    );
}

#[test]
fn run_command_output_is_fetched_in_pieces_exactly() {
    let mut w = World::new(false);
    let mut calls = Hypercalls::new();
    let reference = w.reference("ptdump hv");
    assert!(reference.len() > 5000, "{}", reference.len());
    let cmd_gpa = GUEST_RAM_GPA + PAGE - 4; // straddles a page boundary
    w.phys.put_guest_bytes(cmd_gpa, b"ptdump hv");
    // The output buffer straddles pages too: 1000 bytes at 100 before a boundary.
    let buf = GUEST_RAM_GPA + 6 * PAGE - 100;
    let len = 1000u64;
    let guard_before = w.phys.guest_bytes(buf - 64, 64);
    let guard_after = w.phys.guest_bytes(buf + len, 64);

    let reply = w.hvc(&mut calls, id::HV_RUN_COMMAND, &[cmd_gpa, 9, buf, len]);
    assert_eq!(reply.code(), ret::SUCCESS);
    assert_eq!(reply.regs[1], len);
    assert_ne!(reply.regs[3] & flags::MORE, 0);
    let mut got = w.phys.guest_bytes(buf, len as usize);
    let mut offset = reply.regs[1];
    let mut calls_made = 1;
    loop {
        let reply = w.hvc(&mut calls, id::HV_FETCH_OUTPUT, &[offset, buf, len]);
        assert_eq!(reply.code(), ret::SUCCESS);
        let written = reply.regs[1];
        // Re-fetching the same offset gives the same bytes.
        let first = w.phys.guest_bytes(buf, written as usize);
        let again = w.hvc(&mut calls, id::HV_FETCH_OUTPUT, &[offset, buf, len]);
        assert_eq!(again.regs[1], written);
        assert_eq!(w.phys.guest_bytes(buf, written as usize), first);
        got.extend_from_slice(&first);
        offset += written;
        calls_made += 1;
        if reply.regs[3] & flags::MORE == 0 {
            assert_eq!(reply.regs[2], 0);
            assert_eq!(reply.regs[3], 0, "no FAILED, no TRUNCATED");
            break;
        }
        assert!(calls_made < 10_000);
    }
    assert_eq!(String::from_utf8(got).unwrap(), reference);
    assert_eq!(w.phys.guest_bytes(buf - 64, 64), guard_before);
    assert_eq!(w.phys.guest_bytes(buf + len, 64), guard_after);
    // Past the end of a finished output: refused.
    assert_eq!(
        w.hvc(&mut calls, id::HV_FETCH_OUTPUT, &[offset + 1, buf, len]).code(),
        ret::INVALID_PARAMETER
    );
    // At the end: nothing more.
    assert_eq!(
        w.hvc(&mut calls, id::HV_FETCH_OUTPUT, &[offset, buf, len]).regs,
        [0, 0, 0, 0]
    );
}

#[test]
fn failed_commands_flag_it() {
    let mut w = World::new(false);
    let mut calls = Hypercalls::new();
    let cmd = GUEST_RAM_GPA;
    w.phys.put_guest_bytes(cmd, b"ptdump guest");
    let reply = w.hvc(&mut calls, id::HV_RUN_COMMAND, &[cmd, 12, GUEST_RAM_GPA + PAGE, 4096]);
    assert_eq!(reply.code(), ret::SUCCESS);
    assert_eq!(reply.regs[3], flags::FAILED);
    let text = w.phys.guest_bytes(GUEST_RAM_GPA + PAGE, reply.regs[1] as usize);
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "hv: 'guest' tables not available: no guest has been created\n"
    );
}

#[test]
fn bad_buffers_are_refused_and_nothing_is_written() {
    let mut w = World::new(true);
    let mut calls = Hypercalls::new();
    let cmd = GUEST_RAM_GPA;
    w.phys.put_guest_bytes(cmd, b"help");
    let hv_page = w.phys.region(EVIL_PA).to_vec();
    let ro_page = w.phys.region(RO_PA).to_vec();
    let guest_before = w.phys.region(GUEST_PA).to_vec();
    let last_guest_page = GUEST_RAM_GPA + (GUEST_PAGES - 1) * PAGE;
    for (out, len, why) in [
        (EVIL_GPA, 100, "stage-2 maps it onto hv's heap"),
        (EVIL_GPA - 50, 100, "starts in guest RAM, ends in hv's heap"),
        (UNMAPPED_GPA, 100, "unmapped"),
        (RO_GPA, 100, "read-only in stage-2"),
        (last_guest_page + PAGE - 10, 100, "runs off the end of guest RAM"),
        (u64::MAX - 10, 100, "wraps"),
    ] {
        let reply = w.hvc(&mut calls, id::HV_RUN_COMMAND, &[cmd, 4, out, len]);
        assert_eq!(reply.regs, [ret::BAD_ADDRESS as u64, 0, 0, 0], "{why}");
    }
    // The deliberately bad stage-2 does translate EVIL_GPA: only hv's ownership check refuses it.
    let mem = Stage2Memory {
        format: &w.s2.format,
        tables: &w.s2.arena,
        root: w.s2.root,
        hv_owned: &w.owned,
        phys: TestPhys::new(),
    };
    assert_eq!(
        mem.check_writable(EVIL_GPA - 50, 100),
        Err(GuestMemError::HvOwned {
            gpa: EVIL_GPA,
            pa: EVIL_PA
        })
    );
    assert_eq!(
        mem.check_writable(UNMAPPED_GPA, 1),
        Err(GuestMemError::Unmapped { gpa: UNMAPPED_GPA })
    );
    assert_eq!(
        mem.check_writable(RO_GPA + 5, 1),
        Err(GuestMemError::NoPermission { gpa: RO_GPA + 5 })
    );
    assert_eq!(mem.check_writable(u64::MAX, 2), Err(GuestMemError::Wraps));
    assert_eq!(mem.check_writable(GUEST_RAM_GPA, 1 << 20), Err(GuestMemError::TooLong));
    // A command read from hv's memory is refused too.
    let reply = w.hvc(
        &mut calls,
        id::HV_RUN_COMMAND,
        &[EVIL_GPA, 4, GUEST_RAM_GPA + PAGE, 100],
    );
    assert_eq!(reply.code(), ret::BAD_ADDRESS);
    assert_eq!(w.phys.region(EVIL_PA), hv_page);
    assert_eq!(w.phys.region(RO_PA), ro_page);
    assert_eq!(w.phys.region(GUEST_PA), guest_before);
    // Lengths: zero and huge command or buffer lengths are invalid parameters.
    for (cmd_len, out_len) in [(0, 100), (257, 100), (u64::MAX, 100), (4, 0), (4, 65537), (4, u64::MAX)] {
        let reply = w.hvc(
            &mut calls,
            id::HV_RUN_COMMAND,
            &[cmd, cmd_len, GUEST_RAM_GPA + PAGE, out_len],
        );
        assert_eq!(reply.code(), ret::INVALID_PARAMETER, "{cmd_len} {out_len}");
    }
    // Not UTF-8.
    w.phys.put_guest_bytes(cmd, b"\xff\xfe");
    let reply = w.hvc(&mut calls, id::HV_RUN_COMMAND, &[cmd, 2, GUEST_RAM_GPA + PAGE, 100]);
    assert_eq!(reply.code(), ret::INVALID_PARAMETER);
    // FETCH before any RUN.
    let reply = w.hvc(
        &mut Hypercalls::new(),
        id::HV_FETCH_OUTPUT,
        &[0, GUEST_RAM_GPA + PAGE, 100],
    );
    assert_eq!(reply.code(), ret::INVALID_PARAMETER);
}

#[test]
fn a_refused_buffer_keeps_the_previous_output() {
    let mut w = World::new(false);
    let mut calls = Hypercalls::new();
    w.phys.put_guest_bytes(GUEST_RAM_GPA, b"help");
    let out = GUEST_RAM_GPA + PAGE;
    let first = w.hvc(&mut calls, id::HV_RUN_COMMAND, &[GUEST_RAM_GPA, 4, out, 10]);
    assert_eq!(first.regs[1], 10);
    let refused = w.hvc(&mut calls, id::HV_RUN_COMMAND, &[GUEST_RAM_GPA, 4, UNMAPPED_GPA, 10]);
    assert_eq!(refused.code(), ret::BAD_ADDRESS);
    let next = w.hvc(&mut calls, id::HV_FETCH_OUTPUT, &[10, out, 10]);
    assert_eq!(next.code(), ret::SUCCESS);
    assert_eq!(w.phys.guest_bytes(out, 10), &hv::console::HELP.as_bytes()[10..20]);
}

/// Thousands of random calls: no panic, every x0 a defined code (or the
/// documented value of a discovery call), and no byte written outside the
/// output buffer the call named.
#[test]
fn random_calls_from_a_seeded_generator() {
    let mut w = World::new(true);
    let mut calls = Hypercalls::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let commands: [&[u8]; 6] = [
        b"help",
        b"ptdump hv",
        b"ptdump s2 0x80000000 0x80010000",
        b"wx hv",
        b"info",
        b"x y z",
    ];
    let gpas = [
        GUEST_RAM_GPA,
        GUEST_RAM_GPA + PAGE - 3,
        GUEST_RAM_GPA + 17 * PAGE + 100,
        GUEST_RAM_GPA + GUEST_PAGES * PAGE - 50,
        RO_GPA,
        UNMAPPED_GPA,
        EVIL_GPA,
        EVIL_GPA - 8,
        0,
        u64::MAX - 5,
        1 << 52,
    ];
    let lens = [0, 1, 3, 9, 100, 4095, 4096, 4097, 65536, 65537, 1 << 32, u64::MAX];
    let ids = [
        id::HV_RUN_COMMAND,
        id::HV_FETCH_OUTPUT,
        id::HV_FETCH_OUTPUT,
        id::HV_CONSOLE_WRITE,
        id::HV_FEATURES,
        id::SMCCC_ARCH_FEATURES,
        id::HV_VERSION,
        0xC600_0005,
        0x8600_0000,
    ];
    let hv_page = w.phys.region(EVIL_PA).to_vec();
    let ro_page = w.phys.region(RO_PA).to_vec();
    let mut delivered = 0;
    for round in 0..3000 {
        if rng.below(4) == 0 {
            let cmd = rng.pick(&commands);
            w.phys.put_guest_bytes(GUEST_RAM_GPA + 30 * PAGE, cmd);
        }
        let f = if rng.below(8) == 0 {
            rng.next() as u32
        } else {
            rng.pick(&ids)
        };
        let mut args = [0u64; 6];
        for a in &mut args {
            *a = match rng.below(4) {
                0 => rng.pick(&gpas),
                1 => rng.pick(&lens),
                2 => rng.below(20_000),
                _ => rng.next(),
            };
        }
        if f == id::HV_RUN_COMMAND && rng.below(2) == 0 {
            args[0] = GUEST_RAM_GPA + 30 * PAGE;
            args[1] = rng.below(40);
        }
        // Half the output buffers are plausible ones, so output does flow.
        if rng.below(2) == 0 {
            let (gpa, len) = (
                GUEST_RAM_GPA + rng.below(GUEST_PAGES * PAGE - 5000),
                1 + rng.below(4096),
            );
            match f {
                id::HV_RUN_COMMAND => (args[2], args[3]) = (gpa, len),
                id::HV_FETCH_OUTPUT => (args[0], args[1], args[2]) = (rng.below(3000), gpa, len),
                _ => {}
            }
        }
        let (out_gpa, out_len) = match f {
            id::HV_RUN_COMMAND => (args[2], args[3]),
            id::HV_FETCH_OUTPUT => (args[1], args[2]),
            _ => (0, 0),
        };
        let before = w.phys.region(GUEST_PA).to_vec();
        let conduit = if rng.below(2) == 0 {
            Conduit::Hvc
        } else {
            Conduit::Vmmcall
        };
        let privilege = if rng.below(10) == 0 {
            Privilege::User
        } else {
            Privilege::Kernel
        };
        let reply = w.call(&mut calls, conduit, privilege, Call { id: u64::from(f), args });
        let code = reply.code();
        if code == ret::SUCCESS && matches!(f, id::HV_RUN_COMMAND | id::HV_FETCH_OUTPUT) && reply.regs[1] > 0 {
            delivered += 1;
        }
        let discovery = f == id::HV_VERSION && code == 0;
        assert!(ret::ALL.contains(&code) || discovery, "round {round}: {f:#x} -> {code}");
        if code != ret::SUCCESS {
            assert_eq!(
                reply.regs[1..],
                [0, 0, 0],
                "round {round}: an error returns nothing else"
            );
        }
        // Only the named output buffer may change, and only on success.
        let after = w.phys.region(GUEST_PA);
        if before.as_slice() == after {
            continue;
        }
        for (i, (b, a)) in before.iter().zip(after).enumerate() {
            if b != a {
                let page = GUEST_PAGES - 1 - i as u64 / PAGE;
                let gpa = GUEST_RAM_GPA + page * PAGE + i as u64 % PAGE;
                assert_eq!(code, ret::SUCCESS, "round {round}");
                assert!(
                    gpa >= out_gpa && gpa - out_gpa < out_len.min(reply.regs[1]),
                    "round {round}: wrote {gpa:#x} outside [{out_gpa:#x}, +{out_len:#x})"
                );
            }
        }
    }
    assert_eq!(w.phys.region(EVIL_PA), hv_page);
    assert_eq!(w.phys.region(RO_PA), ro_page);
    // The storm did run commands and deliver output, not only errors.
    assert!(delivered > 50, "{delivered}");
}
