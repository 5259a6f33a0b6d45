//! The doorbell: how Linux userspace (`hvctl`, as root) reaches the console.
//! Userspace cannot issue HVC, so every register access traps to hv instead:
//!
//! - arm64: an MMIO page at IPA [`MMIO_BASE`] that stage-2 leaves unmapped
//!   (QEMU virt has nothing between the virtio-mmio slots and the platform
//!   bus, 0x0A00_4000..0x0C00_0000). Linux's `/dev/mem` (STRICT_DEVMEM lets
//!   root map non-RAM) maps it; each load/store is a stage-2 data abort with
//!   a valid syndrome. Registers every 8 bytes, accesses of 1..8 bytes.
//! - x86: I/O ports [`PORT_BASE`]..+[`PORT_COUNT`] (free on q35: QEMU 10's
//!   I/O map has nothing between fw_cfg DMA at 0x51b and 0xcc0), reached
//!   after `ioperm`. Registers every 4 bytes, accesses of 1, 2 or 4 bytes.
//!
//! Both need CAP_SYS_RAWIO in the guest: the guest kernel is what makes the
//! doorbell root-only. hv's own guarantee is that nothing a doorbell access
//! does can reach hv memory (no guest addresses are involved at all) or take
//! unbounded time (each access runs at most one bounded production step).
//!
//! Registers (read / write):
//!
//! | index | read                | write                                      |
//! |-------|---------------------|--------------------------------------------|
//! | 0     | STATUS              | CONTROL: 1 = RESET, 2 = RUN                 |
//! | 1     | AVAIL (may produce) | OFFSET: where DATA reads from              |
//! | 2     | DATA (next bytes)   | COMMAND: append the written bytes           |
//! | 3     | ID ([`ID_MAGIC`])   | (ignored, BAD_ACCESS)                       |

use alloc::vec::Vec;

use crate::console::session::MAX_COMMAND_LEN;
use crate::console::{ConsoleTarget, Session, SessionState, Verdict};

/// arm64: IPA of the doorbell page (one 4 KiB page, outside guest RAM).
pub const MMIO_BASE: u64 = 0x0BFF_F000;
pub const MMIO_SIZE: u64 = 0x1000;
/// arm64: bytes between registers.
pub const MMIO_STRIDE: u64 = 8;
/// x86: first doorbell port.
pub const PORT_BASE: u16 = 0x0540;
/// x86: ports the doorbell decodes (4 registers of 4 bytes).
pub const PORT_COUNT: u16 = 16;
/// x86: bytes between registers.
pub const PORT_STRIDE: u16 = 4;

/// What ID reads as: "HVDB" little-endian, then the protocol version 1 in the upper word on arm64.
pub const ID_MAGIC: u32 = u32::from_le_bytes(*b"HVDB");
pub const PROTOCOL_VERSION: u32 = 1;

/// CONTROL values.
pub const CONTROL_RESET: u64 = 1;
pub const CONTROL_RUN: u64 = 2;

/// STATUS bits 0..7: the state.
pub const STATE_IDLE: u32 = 0;
pub const STATE_RUNNING: u32 = 1;
pub const STATE_DONE: u32 = 2;
/// STATUS bit 8: the command finished and failed.
pub const STATUS_FAILED: u32 = 1 << 8;
/// STATUS bit 9: the output hit the 1 MiB cap (it ends with a truncation line).
pub const STATUS_TRUNCATED: u32 = 1 << 9;
/// STATUS bits 16..23: the first protocol error since RESET (sticky).
pub const ERROR_SHIFT: u32 = 16;

/// Protocol errors (STATUS bits 16..23).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DoorbellError {
    /// COMMAND got more than 256 bytes.
    CommandTooLong = 1,
    /// An offset that is no register, a misaligned one, or a width the transport does not have.
    BadAccess = 2,
    /// CONTROL got an unknown value.
    BadControl = 3,
    /// RUN with an empty or non-UTF-8 command.
    BadCommand = 4,
}

/// The doorbell registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    /// Read STATUS / write CONTROL.
    Control,
    /// Read AVAIL / write OFFSET.
    Offset,
    /// Read DATA / write COMMAND.
    Data,
    /// Read ID.
    Id,
}

impl Register {
    fn from_index(index: u64) -> Option<Register> {
        match index {
            0 => Some(Register::Control),
            1 => Some(Register::Offset),
            2 => Some(Register::Data),
            3 => Some(Register::Id),
            _ => None,
        }
    }

    /// The register at byte `offset` into the MMIO page, for an access of `width` bytes.
    pub fn from_mmio(offset: u64, width: u8) -> Option<Register> {
        let ok = offset.is_multiple_of(MMIO_STRIDE) && matches!(width, 1 | 2 | 4 | 8);
        ok.then(|| Register::from_index(offset / MMIO_STRIDE)).flatten()
    }

    /// The register at `port - PORT_BASE`, for an access of `width` bytes.
    pub fn from_port(offset: u16, width: u8) -> Option<Register> {
        let ok = offset.is_multiple_of(PORT_STRIDE) && matches!(width, 1 | 2 | 4);
        ok.then(|| Register::from_index(u64::from(offset / PORT_STRIDE)))
            .flatten()
    }
}

/// The doorbell of one guest: a command being written, and the session of the last command.
pub struct Doorbell {
    command: Vec<u8>,
    command_overflow: bool,
    session: Session,
    /// Where the next DATA read starts.
    offset: usize,
    error: Option<DoorbellError>,
}

impl Default for Doorbell {
    fn default() -> Self {
        Doorbell::new()
    }
}

impl Doorbell {
    pub fn new() -> Doorbell {
        Doorbell::with_session(Session::new())
    }

    /// A doorbell over a given session (tests use a small output cap).
    pub fn with_session(session: Session) -> Doorbell {
        Doorbell {
            command: Vec::new(),
            command_overflow: false,
            session,
            offset: 0,
            error: None,
        }
    }

    fn fail(&mut self, e: DoorbellError) {
        self.error.get_or_insert(e);
    }

    /// arm64: a load from the doorbell page (`offset` into it, `width` from the syndrome).
    pub fn mmio_read(&mut self, target: &dyn ConsoleTarget, offset: u64, width: u8) -> u64 {
        match Register::from_mmio(offset, width) {
            Some(reg) => self.read(target, reg, width),
            None => {
                self.fail(DoorbellError::BadAccess);
                0
            }
        }
    }

    /// arm64: a store to the doorbell page.
    pub fn mmio_write(&mut self, target: &dyn ConsoleTarget, offset: u64, width: u8, value: u64) {
        match Register::from_mmio(offset, width) {
            Some(reg) => self.write(target, reg, width, value),
            None => self.fail(DoorbellError::BadAccess),
        }
    }

    /// x86: an IN from `PORT_BASE + offset`.
    pub fn port_read(&mut self, target: &dyn ConsoleTarget, offset: u16, width: u8) -> u32 {
        match Register::from_port(offset, width) {
            Some(reg) => self.read(target, reg, width) as u32,
            None => {
                self.fail(DoorbellError::BadAccess);
                0
            }
        }
    }

    /// x86: an OUT to `PORT_BASE + offset`.
    pub fn port_write(&mut self, target: &dyn ConsoleTarget, offset: u16, width: u8, value: u32) {
        match Register::from_port(offset, width) {
            Some(reg) => self.write(target, reg, width, u64::from(value)),
            None => self.fail(DoorbellError::BadAccess),
        }
    }

    /// A read of `width` bytes (1..=8) from `reg`; the value is zero-extended.
    pub fn read(&mut self, target: &dyn ConsoleTarget, reg: Register, width: u8) -> u64 {
        let value = match reg {
            Register::Control => u64::from(self.status()),
            Register::Offset => {
                // Only AVAIL produces: one bounded step when the reader caught up.
                if self.offset >= self.session.produced() {
                    self.session.produce(target, self.offset.saturating_add(1));
                }
                self.session
                    .produced()
                    .saturating_sub(self.offset)
                    .min(u32::MAX as usize) as u64
            }
            Register::Data => {
                let mut bytes = [0u8; 8];
                let n = self.session.read(self.offset, &mut bytes[..usize::from(width.min(8))]);
                self.offset += n;
                u64::from_le_bytes(bytes)
            }
            Register::Id => u64::from(ID_MAGIC) | (u64::from(PROTOCOL_VERSION) << 32),
        };
        truncate(value, width)
    }

    /// A write of `width` bytes (1..=8) to `reg`.
    pub fn write(&mut self, target: &dyn ConsoleTarget, reg: Register, width: u8, value: u64) {
        let value = truncate(value, width);
        match reg {
            Register::Control => match value {
                CONTROL_RESET => {
                    self.command.clear();
                    self.command_overflow = false;
                    self.session.reset();
                    self.offset = 0;
                    self.error = None;
                }
                CONTROL_RUN => self.run(target),
                _ => self.fail(DoorbellError::BadControl),
            },
            Register::Offset => self.offset = usize::try_from(value).unwrap_or(usize::MAX),
            Register::Data => {
                // Bytes of the written value, low first; NULs pad the last word.
                for byte in value.to_le_bytes().into_iter().take(usize::from(width)) {
                    if byte == 0 {
                        continue;
                    }
                    if self.command.len() < MAX_COMMAND_LEN {
                        self.command.push(byte);
                    } else {
                        self.command_overflow = true;
                    }
                }
                if self.command_overflow {
                    self.fail(DoorbellError::CommandTooLong);
                }
            }
            Register::Id => self.fail(DoorbellError::BadAccess),
        }
    }

    fn run(&mut self, target: &dyn ConsoleTarget) {
        let command = core::mem::take(&mut self.command);
        let overflow = core::mem::replace(&mut self.command_overflow, false);
        self.offset = 0;
        match core::str::from_utf8(&command) {
            Ok(line) if !overflow && !line.trim().is_empty() => {
                self.session.start(target, line);
            }
            _ => {
                self.session.reset();
                self.fail(if overflow {
                    DoorbellError::CommandTooLong
                } else {
                    DoorbellError::BadCommand
                });
            }
        }
    }

    /// The STATUS register.
    pub fn status(&self) -> u32 {
        let state = match self.session.state() {
            SessionState::Idle => STATE_IDLE,
            SessionState::Running => STATE_RUNNING,
            SessionState::Done { verdict, truncated } => {
                let failed = if verdict == Verdict::Failed { STATUS_FAILED } else { 0 };
                let cut = if truncated { STATUS_TRUNCATED } else { 0 };
                STATE_DONE | failed | cut
            }
        };
        let error = self.error.map_or(0, |e| (e as u32) << ERROR_SHIFT);
        state | error
    }
}

fn truncate(value: u64, width: u8) -> u64 {
    if width >= 8 {
        value
    } else {
        value & ((1u64 << (8 * u32::from(width))) - 1)
    }
}
