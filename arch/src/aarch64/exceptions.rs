//! The frames the exception vectors save, and what hv prints for an
//! exception it did not expect (every one taken at EL2 itself, and the
//! kinds a guest never causes: IRQ, FIQ and SError from a lower EL).

use core::fmt;

use super::{boot, fatal};

/// Bytes of [`Frame`] as the vectors push it (see head.rs).
pub const FRAME_SIZE: usize = core::mem::size_of::<Frame>();

/// Registers the vector entry saved, in the order head.rs stores them.
#[repr(C)]
pub struct Frame {
    pub x: [u64; 31],
    /// SP of the interrupted code.
    pub sp: u64,
    pub elr: u64,
    pub spsr: u64,
    pub esr: u64,
    pub far: u64,
}

const _: () = assert!(FRAME_SIZE == 288 && FRAME_SIZE.is_multiple_of(16));

/// What the vectors save when the guest traps (head.rs `guest_exit`): the
/// general registers as in [`Frame`], then the FP/SIMD state, which hv's own
/// code would otherwise overwrite. The handler may change any of it; the
/// guest resumes with the result.
#[repr(C)]
pub struct GuestFrame {
    pub regs: Frame,
    pub q: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
}

pub const GUEST_FRAME_SIZE: usize = core::mem::size_of::<GuestFrame>();
/// Offset of the FP/SIMD part in [`GuestFrame`].
pub const FP_OFFSET: usize = core::mem::offset_of!(GuestFrame, q);

const _: () = assert!(FP_OFFSET == FRAME_SIZE && GUEST_FRAME_SIZE == FRAME_SIZE + 512 + 16);

const KINDS: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];
const ORIGINS: [&str; 4] = [
    "EL2 with SP_EL0 (hv)",
    "EL2 with SP_EL2 (hv's exception stack)",
    "a lower EL in AArch64",
    "a lower EL in AArch32",
];

/// ESR_EL2.EC names (Arm ARM D24.2.51), the classes hv can meet.
pub fn exception_class(ec: u64) -> &'static str {
    match ec {
        0x00 => "unknown reason (undefined instruction?)",
        0x01 => "trapped WFI/WFE",
        0x07 => "trapped SVE/SIMD/FP access",
        0x0e => "illegal execution state",
        0x15 => "SVC from AArch64",
        0x16 => "HVC from AArch64",
        0x17 => "SMC from AArch64",
        0x18 => "trapped MSR/MRS/system instruction",
        0x19 => "trapped SVE access",
        0x20 => "instruction abort from a lower EL",
        0x21 => "instruction abort at EL2",
        0x22 => "PC alignment fault",
        0x24 => "data abort from a lower EL",
        0x25 => "data abort at EL2",
        0x26 => "SP alignment fault",
        0x2c => "trapped floating-point exception",
        0x2f => "SError",
        0x30 | 0x31 => "breakpoint",
        0x32 | 0x33 => "software step",
        0x34 | 0x35 => "watchpoint",
        0x3c => "BRK instruction",
        _ => "reserved or unexpected class",
    }
}

/// The fault status code (ESR ISS[5:0]) of an instruction or data abort.
pub struct FaultStatus(pub u64);

impl fmt::Display for FaultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = self.0 & 3;
        match self.0 & 0x3c {
            0x00 => write!(f, "address size fault, level {level}"),
            0x04 => write!(f, "translation fault, level {level}"),
            0x08 => write!(f, "access flag fault, level {level}"),
            0x0c => write!(f, "permission fault, level {level}"),
            0x10 if self.0 == 0x10 => f.write_str("synchronous external abort"),
            0x20 if self.0 == 0x21 => f.write_str("alignment fault"),
            0x30 if self.0 == 0x30 => f.write_str("TLB conflict abort"),
            _ => write!(f, "fault status {:#x}", self.0),
        }
    }
}

/// Called by the vectors with the entry's index (0-7) and the saved frame.
#[no_mangle]
extern "C" fn hv_exception(index: u64, frame: &Frame) -> ! {
    report_and_stop(index, frame)
}

/// Logs an exception hv cannot go on from, with its decoded syndrome and
/// the registers, then stops the machine.
pub fn report_and_stop(index: u64, frame: &Frame) -> ! {
    let kind = KINDS[(index & 3) as usize];
    let origin = ORIGINS[((index >> 2) & 3) as usize];
    let ec = (frame.esr >> 26) & 0x3f;
    log::error!("unexpected {kind} exception from {origin}");
    log::error!(
        "  ESR_EL2 {:#010x}: EC {ec:#04x} {}, IL {}, ISS {:#x}",
        frame.esr,
        exception_class(ec),
        (frame.esr >> 25) & 1,
        frame.esr & 0x1ff_ffff
    );
    if matches!(ec, 0x20 | 0x21 | 0x24 | 0x25) {
        let write = if ec >= 0x24 && frame.esr & (1 << 6) != 0 {
            "write"
        } else if ec >= 0x24 {
            "read"
        } else {
            "instruction fetch"
        };
        log::error!("  {}: {write} at {:#x}", FaultStatus(frame.esr & 0x3f), frame.far);
        if let Some(stack) = boot::guard_page_stack(frame.far) {
            log::error!("  FAR is in the guard page below the {stack}: likely a stack overflow");
        }
    }
    log::error!(
        "  FAR_EL2 {:#018x}  ELR_EL2 {:#018x}  SPSR_EL2 {:#010x}",
        frame.far,
        frame.elr,
        frame.spsr
    );
    for row in 0..8 {
        let mut line = Line::new();
        for col in 0..4 {
            let n = row * 4 + col;
            let gap = if col == 0 { "" } else { "  " };
            if n < 31 {
                line.push(format_args!("{gap}x{n:<2} {:#018x}", frame.x[n]));
            } else {
                line.push(format_args!("{gap}sp  {:#018x}", frame.sp));
            }
        }
        log::error!("  {}", line.as_str());
    }
    fatal(format_args!("unexpected {kind} exception ({})", exception_class(ec)))
}

/// A fixed buffer for one register row (log lines are written whole).
struct Line {
    buf: [u8; 128],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line { buf: [0; 128], len: 0 }
    }
    fn push(&mut self, args: fmt::Arguments<'_>) {
        let _ = fmt::write(self, args);
    }
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
