//! The hypercall ABI, arch-neutral: decoding, validation and dispatch of
//! calls from a guest kernel (arm64 `HVC #0` under the Arm SMCCC, x86
//! `VMMCALL`), and the doorbell for Linux userspace ([`doorbell`]).
//! `docs/hypercalls.md` is the guest-facing description.
//!
//! The arch glue copies the trapping registers into a [`Call`], passes the
//! caller's privilege, and writes the four [`Reply`] registers back:
//! arm64 x0..x3 (function id in W0, arguments x1..x6); x86 RAX, RBX, RCX, RDX
//! (function id in RAX, arguments RBX, RCX, RDX, RSI).

pub mod doorbell;
pub mod guest_mem;

use alloc::vec;
use core::fmt::Write;

use crate::console::session::MAX_COMMAND_LEN;
use crate::console::{ConsoleTarget, Session, SessionState, Verdict};
use guest_mem::{GuestMemError, GuestMemory};

/// Function identifiers (SMCCC numbering on both architectures).
pub mod id {
    /// SMCCC_VERSION: returns the SMCCC version in x0.
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    /// SMCCC_ARCH_FEATURES(x1 = function id).
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
    /// Vendor-specific hypervisor service: Call UID query (x0..x3 = UUID).
    pub const VENDOR_HYP_CALL_UID: u32 = 0x8600_FF01;
    /// Vendor-specific hypervisor service: revision (x0 = major, x1 = minor).
    pub const VENDOR_HYP_REVISION: u32 = 0x8600_FF03;
    /// HVC64 fast calls, owner 6 (vendor-specific hypervisor service).
    pub const HV_VERSION: u32 = 0xC600_0000;
    pub const HV_FEATURES: u32 = 0xC600_0001;
    pub const HV_CONSOLE_WRITE: u32 = 0xC600_0002;
    pub const HV_RUN_COMMAND: u32 = 0xC600_0003;
    pub const HV_FETCH_OUTPUT: u32 = 0xC600_0004;

    /// Every function hv answers.
    pub const ALL: [u32; 9] = [
        SMCCC_VERSION,
        SMCCC_ARCH_FEATURES,
        VENDOR_HYP_CALL_UID,
        VENDOR_HYP_REVISION,
        HV_VERSION,
        HV_FEATURES,
        HV_CONSOLE_WRITE,
        HV_RUN_COMMAND,
        HV_FETCH_OUTPUT,
    ];
}

/// Return codes in x0 / RAX (negative, sign-extended to 64 bits). The first
/// three are SMCCC's; the others are hv's own.
pub mod ret {
    pub const SUCCESS: i64 = 0;
    pub const NOT_SUPPORTED: i64 = -1;
    /// SMCCC's; hv never returns it.
    pub const NOT_REQUIRED: i64 = -2;
    pub const INVALID_PARAMETER: i64 = -3;
    /// The caller runs at guest EL0 / CPL3.
    pub const DENIED: i64 = -4;
    /// A guest buffer is unmapped, not writable/readable, wraps, or lands in hv's memory.
    pub const BAD_ADDRESS: i64 = -5;

    pub const ALL: [i64; 6] = [
        SUCCESS,
        NOT_SUPPORTED,
        NOT_REQUIRED,
        INVALID_PARAMETER,
        DENIED,
        BAD_ADDRESS,
    ];
}

/// SMCCC v1.1, what SMCCC_VERSION answers.
pub const SMCCC_VERSION_1_1: u64 = 0x1_0001;
/// hv's ABI version, major << 16 | minor.
pub const ABI_VERSION: u64 = 1 << 16;
/// hv's UUID (0fbdbfc6-4edd-4eb7-ab69-ebdb9f63e078), as the Call UID query returns it.
pub const UID: [u32; 4] = uid_words([
    0x0f, 0xbd, 0xbf, 0xc6, 0x4e, 0xdd, 0x4e, 0xb7, 0xab, 0x69, 0xeb, 0xdb, 0x9f, 0x63, 0xe0, 0x78,
]);

/// The UUID's bytes in order, four per register, little-endian (as KVM's UID).
const fn uid_words(b: [u8; 16]) -> [u32; 4] {
    let mut words = [0u32; 4];
    let mut i = 0;
    while i < 4 {
        words[i] = u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        i += 1;
    }
    words
}

/// Longest CONSOLE_WRITE.
pub const MAX_CONSOLE_WRITE: u64 = 4096;
/// Longest output buffer for RUN_COMMAND / FETCH_OUTPUT.
pub const MAX_OUTPUT_BUFFER: u64 = 64 * 1024;

/// RUN_COMMAND / FETCH_OUTPUT flags (x3 / RDX).
pub mod flags {
    /// More output follows: fetch again at offset + written.
    pub const MORE: u64 = 1 << 0;
    /// The command finished and failed (refused line, W+X found, audit failed, tables not available).
    pub const FAILED: u64 = 1 << 1;
    /// The output hit the 1 MiB cap and ends with a truncation line.
    pub const TRUNCATED: u64 = 1 << 2;
}

/// How the call arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// arm64 `HVC #0`: the function id is W0 (the upper half of x0 is ignored, as SMCCC says).
    Hvc,
    /// x86 `VMMCALL`: the function id is RAX; ids above 32 bits are unknown.
    Vmmcall,
}

/// The privilege the guest ran at when it trapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// Guest EL1 / CPL0.
    Kernel,
    /// Guest EL0 / CPL3 (and CPL1/2): every call is refused with DENIED.
    User,
}

/// The registers of one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Call {
    /// x0 / RAX.
    pub id: u64,
    /// arm64 x1..x6; x86 RBX, RCX, RDX, RSI, RDI, R8.
    pub args: [u64; 6],
}

/// What goes back: arm64 x0..x3; x86 RAX, RBX, RCX, RDX. Registers a call does
/// not define are zero (never stale hv data).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub regs: [u64; 4],
}

impl Reply {
    fn status(code: i64) -> Reply {
        Reply {
            regs: [code as u64, 0, 0, 0],
        }
    }
    fn ok(r1: u64, r2: u64, r3: u64) -> Reply {
        Reply {
            regs: [ret::SUCCESS as u64, r1, r2, r3],
        }
    }
    /// x0 / RAX as a signed return code.
    pub fn code(&self) -> i64 {
        self.regs[0] as i64
    }
}

/// What a call may touch besides its registers.
pub struct CallContext<'a> {
    pub target: &'a dyn ConsoleTarget,
    /// The guest's memory, checked through its stage-2.
    pub mem: &'a mut dyn GuestMemory,
    /// Where CONSOLE_WRITE text goes (hv's log).
    pub log: &'a mut dyn Write,
}

/// Hypercall state of one guest: the output of its last RUN_COMMAND.
#[derive(Default)]
pub struct Hypercalls {
    session: Session,
}

fn bad_address(_: GuestMemError) -> Reply {
    Reply::status(ret::BAD_ADDRESS)
}

impl Hypercalls {
    pub fn new() -> Hypercalls {
        Hypercalls::default()
    }

    /// Handles one trapped call. Never panics: every outcome is a [`ret`] code.
    pub fn handle(&mut self, conduit: Conduit, privilege: Privilege, call: &Call, cx: &mut CallContext<'_>) -> Reply {
        if privilege == Privilege::User {
            return Reply::status(ret::DENIED);
        }
        let id = match conduit {
            Conduit::Hvc => call.id as u32,
            Conduit::Vmmcall => match u32::try_from(call.id) {
                Ok(id) => id,
                Err(_) => return Reply::status(ret::NOT_SUPPORTED),
            },
        };
        let [a1, a2, a3, a4, _, _] = call.args;
        match id {
            id::SMCCC_VERSION => Reply::status(SMCCC_VERSION_1_1 as i64),
            id::SMCCC_ARCH_FEATURES => {
                let known = matches!(a1 as u32, id::SMCCC_VERSION | id::SMCCC_ARCH_FEATURES);
                Reply::status(if known { ret::SUCCESS } else { ret::NOT_SUPPORTED })
            }
            id::VENDOR_HYP_CALL_UID => Reply {
                regs: UID.map(u64::from),
            },
            id::VENDOR_HYP_REVISION => Reply {
                regs: [ABI_VERSION >> 16, ABI_VERSION & 0xffff, 0, 0],
            },
            id::HV_VERSION => Reply::ok(ABI_VERSION, crate::console::session::OUTPUT_CAP as u64, 0),
            id::HV_FEATURES => {
                let known = u32::try_from(a1).is_ok_and(|f| id::ALL.contains(&f));
                Reply::status(if known { ret::SUCCESS } else { ret::NOT_SUPPORTED })
            }
            id::HV_CONSOLE_WRITE => self.console_write(a1, a2, cx),
            id::HV_RUN_COMMAND => self.run_command((a1, a2), (a3, a4), cx),
            id::HV_FETCH_OUTPUT => self.fetch_output(a1, (a2, a3), cx),
            _ => Reply::status(ret::NOT_SUPPORTED),
        }
    }

    fn console_write(&mut self, gpa: u64, len: u64, cx: &mut CallContext<'_>) -> Reply {
        if len > MAX_CONSOLE_WRITE {
            return Reply::status(ret::INVALID_PARAMETER);
        }
        let mut text = vec![0u8; len as usize];
        if let Err(e) = cx.mem.read(gpa, &mut text) {
            return bad_address(e);
        }
        // A full log is hv's problem, not the guest's: the call still succeeds.
        let _ = write_sanitized(cx.log, &text);
        Reply::ok(len, 0, 0)
    }

    fn run_command(&mut self, (cmd_gpa, cmd_len): (u64, u64), out: (u64, u64), cx: &mut CallContext<'_>) -> Reply {
        if cmd_len == 0 || cmd_len > MAX_COMMAND_LEN as u64 || !valid_output_len(out.1) {
            return Reply::status(ret::INVALID_PARAMETER);
        }
        let mut line = [0u8; MAX_COMMAND_LEN];
        let line = &mut line[..cmd_len as usize];
        if let Err(e) = cx.mem.read(cmd_gpa, line) {
            return bad_address(e);
        }
        let Ok(line) = core::str::from_utf8(line) else {
            return Reply::status(ret::INVALID_PARAMETER);
        };
        // Refuse a bad output buffer before discarding the previous output.
        if let Err(e) = cx.mem.check_writable(out.0, out.1) {
            return bad_address(e);
        }
        self.session.start(cx.target, line);
        self.deliver(0, out, cx)
    }

    fn fetch_output(&mut self, offset: u64, out: (u64, u64), cx: &mut CallContext<'_>) -> Reply {
        if !valid_output_len(out.1) || self.session.state() == SessionState::Idle {
            return Reply::status(ret::INVALID_PARAMETER);
        }
        if let Err(e) = cx.mem.check_writable(out.0, out.1) {
            return bad_address(e);
        }
        self.deliver(offset, out, cx)
    }

    /// Produces (bounded) up to `offset + len`, then copies what exists from `offset`.
    fn deliver(&mut self, offset: u64, (gpa, len): (u64, u64), cx: &mut CallContext<'_>) -> Reply {
        let Ok(offset) = usize::try_from(offset) else {
            return Reply::status(ret::INVALID_PARAMETER);
        };
        let want = offset.saturating_add(len as usize);
        let state = self.session.produce(cx.target, want);
        let produced = self.session.produced();
        if offset > produced && state != SessionState::Running {
            return Reply::status(ret::INVALID_PARAMETER);
        }
        let available = self.session.output_from(offset);
        let chunk = &available[..available.len().min(len as usize)];
        if let Err(e) = cx.mem.write(gpa, chunk) {
            return bad_address(e);
        }
        let remaining = (available.len() - chunk.len()) as u64;
        Reply::ok(chunk.len() as u64, remaining, state_flags(state, remaining))
    }
}

fn valid_output_len(len: u64) -> bool {
    (1..=MAX_OUTPUT_BUFFER).contains(&len)
}

/// The MORE / FAILED / TRUNCATED flags of a session state.
pub fn state_flags(state: SessionState, remaining: u64) -> u64 {
    match state {
        SessionState::Idle => 0,
        SessionState::Running => flags::MORE,
        SessionState::Done { verdict, truncated } => {
            let more = if remaining > 0 { flags::MORE } else { 0 };
            let failed = if verdict == Verdict::Failed { flags::FAILED } else { 0 };
            let cut = if truncated { flags::TRUNCATED } else { 0 };
            more | failed | cut
        }
    }
}

/// Writes guest text to hv's log: invalid UTF-8 becomes U+FFFD and control
/// characters other than newline and tab become `?`, so a guest cannot drive
/// the terminal that shows hv's log.
pub fn write_sanitized(log: &mut dyn Write, bytes: &[u8]) -> core::fmt::Result {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let c = if c.is_control() && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            };
            log.write_char(c)?;
        }
        if !chunk.invalid().is_empty() {
            log.write_char(char::REPLACEMENT_CHARACTER)?;
        }
    }
    Ok(())
}
