//! hv's hypercall ABI as a guest kernel sees it (docs/hypercalls.md): the
//! function ids, return codes and flags, and the one call primitive.

use core::fmt;

use crate::arch;
use crate::console::{Msg, Outcome};
use crate::{bail, ensure};

pub mod id {
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
    pub const VENDOR_HYP_CALL_UID: u32 = 0x8600_FF01;
    pub const VENDOR_HYP_REVISION: u32 = 0x8600_FF03;
    pub const HV_VERSION: u32 = 0xC600_0000;
    pub const HV_FEATURES: u32 = 0xC600_0001;
    pub const HV_CONSOLE_WRITE: u32 = 0xC600_0002;
    pub const HV_RUN_COMMAND: u32 = 0xC600_0003;
    pub const HV_FETCH_OUTPUT: u32 = 0xC600_0004;

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

pub mod ret {
    pub const SUCCESS: i64 = 0;
    pub const NOT_SUPPORTED: i64 = -1;
    pub const NOT_REQUIRED: i64 = -2;
    pub const INVALID_PARAMETER: i64 = -3;
    pub const DENIED: i64 = -4;
    pub const BAD_ADDRESS: i64 = -5;
}

pub mod flags {
    pub const MORE: u64 = 1 << 0;
    pub const FAILED: u64 = 1 << 1;
    pub const TRUNCATED: u64 = 1 << 2;
    pub const ALL: u64 = MORE | FAILED | TRUNCATED;
}

pub const SMCCC_VERSION_1_1: u64 = 0x1_0001;
pub const ABI_VERSION: u64 = 0x1_0000;
pub const OUTPUT_CAP: u64 = 0x10_0000;
/// hv's UUID 0fbdbfc6-4edd-4eb7-ab69-ebdb9f63e078, as the Call UID query returns it.
pub const UID: [u64; 4] = [0xc6bf_bd0f, 0xb74e_dd4e, 0xdbeb_69ab, 0x78e0_639f];
pub const MAX_CONSOLE_WRITE: u64 = 4096;
pub const MAX_COMMAND: u64 = 256;
pub const MAX_OUTPUT_BUFFER: u64 = 65536;

/// The four result registers (arm64 x0..x3, x86 RAX, RBX, RCX, RDX).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub r: [u64; 4],
}

impl Reply {
    pub fn code(&self) -> i64 {
        self.r[0] as i64
    }
    pub fn written(&self) -> u64 {
        self.r[1]
    }
    pub fn remaining(&self) -> u64 {
        self.r[2]
    }
    pub fn flags(&self) -> u64 {
        self.r[3]
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}", code_name(self.code()))?;
        for r in &self.r[1..] {
            write!(f, ", {r:#x}")?;
        }
        f.write_str("]")
    }
}

pub fn code_name(code: i64) -> Msg {
    match code {
        ret::SUCCESS => Msg::new(format_args!("SUCCESS")),
        ret::NOT_SUPPORTED => Msg::new(format_args!("NOT_SUPPORTED")),
        ret::NOT_REQUIRED => Msg::new(format_args!("NOT_REQUIRED")),
        ret::INVALID_PARAMETER => Msg::new(format_args!("INVALID_PARAMETER")),
        ret::DENIED => Msg::new(format_args!("DENIED")),
        ret::BAD_ADDRESS => Msg::new(format_args!("BAD_ADDRESS")),
        other => Msg::new(format_args!("{other:#x}")),
    }
}

/// Whether a return code is one docs/hypercalls.md lists.
pub fn is_documented(code: i64) -> bool {
    (-5..=0).contains(&code)
}

/// One hypercall with a full 64-bit function id. Panics if the instruction
/// trapped into the guest (only [`detect`] may meet that).
pub fn call_raw(id: u64, args: [u64; 4]) -> Reply {
    match arch::hypercall(id, args) {
        Some(r) => Reply { r },
        None => panic!("the hypercall instruction trapped into the guest (id {id:#x}): hv went away"),
    }
}

pub fn call(id: u32, args: [u64; 4]) -> Reply {
    call_raw(u64::from(id), args)
}

/// Whether hv is below this guest.
pub enum Detection {
    Hv,
    NoHv(Msg),
}

/// Probes with VENDOR_HYP_CALL_UID: the instruction traps into the guest when
/// no hypervisor handles it; another hypervisor answers another UUID.
pub fn detect() -> Detection {
    let Some(r) = arch::hypercall(u64::from(id::VENDOR_HYP_CALL_UID), [0; 4]) else {
        return Detection::NoHv(Msg::new(format_args!(
            "{} is undefined here: no hypervisor answers it",
            arch::HYPERCALL_INSN
        )));
    };
    if r == UID {
        Detection::Hv
    } else {
        Detection::NoHv(Msg::new(format_args!(
            "VENDOR_HYP_CALL_UID answered {} instead of hv's UUID",
            Reply { r }
        )))
    }
}

/// `code` only, every other result register zero (the ABI zeroes what a call does not define).
pub fn expect_status(r: &Reply, code: i64) -> Outcome {
    ensure!(
        r.code() == code && r.r[1..] == [0, 0, 0],
        "got {r}, want [{}, 0, 0, 0]",
        code_name(code)
    );
    Ok(())
}

pub fn expect_version(r: &Reply) -> Outcome {
    ensure!(
        r.r == [0, ABI_VERSION, OUTPUT_CAP, 0],
        "HV_VERSION got {r}, want [SUCCESS, {ABI_VERSION:#x}, {OUTPUT_CAP:#x}, 0]"
    );
    Ok(())
}

/// A SUCCESS reply of RUN_COMMAND / FETCH_OUTPUT: written within the buffer,
/// only documented flags, MORE exactly when something remains or hv is still
/// producing (remaining 0 with MORE is allowed: "written may be 0 with MORE").
pub fn expect_output_reply(r: &Reply, buffer_len: u64) -> Outcome {
    if r.code() != ret::SUCCESS {
        bail!("got {r}, want SUCCESS");
    }
    ensure!(
        r.written() <= buffer_len,
        "written {:#x} > buffer {buffer_len:#x}: {r}",
        r.written()
    );
    ensure!(r.flags() & !flags::ALL == 0, "undocumented flag bits in {r}");
    ensure!(
        r.remaining() == 0 || r.flags() & flags::MORE != 0,
        "bytes remain but MORE is clear: {r}"
    );
    Ok(())
}
