//! hvctl: runs an hv console command from Linux userspace and prints its output.
//!
//!     hvctl ptdump s2
//!     hvctl wx guest
//!     hvctl help
//!
//! Userspace cannot issue HVC/VMMCALL, so hvctl talks to hv's doorbell, where
//! every register access traps to hv (docs/hypercalls.md, "Doorbell"):
//! arm64 maps the doorbell page at IPA 0x0BFF_F000 through /dev/mem; x86
//! takes I/O ports 0x540..0x54F with ioperm. Both need root (CAP_SYS_RAWIO).
//!
//! Exit status: 0 the command ran and passed, 1 it ran and failed (W+X found,
//! audit failed, refused command line, tables not available), 2 hvctl could
//! not talk to hv.

use std::io::{self, Write};
use std::process::ExitCode;

/// The doorbell's registers (index; each arch has its own stride).
const CONTROL: usize = 0; // read STATUS, write CONTROL
const OFFSET: usize = 1; // read AVAIL, write OFFSET
const DATA: usize = 2; // read DATA, write COMMAND
const ID: usize = 3;

const CONTROL_RESET: u64 = 1;
const CONTROL_RUN: u64 = 2;
const ID_MAGIC: u32 = u32::from_le_bytes(*b"HVDB");
const STATE_MASK: u64 = 0xff;
const STATE_RUNNING: u64 = 1;
const STATE_DONE: u64 = 2;
const STATUS_FAILED: u64 = 1 << 8;
const STATUS_TRUNCATED: u64 = 1 << 9;
const ERROR_SHIFT: u32 = 16;
const MAX_COMMAND_LEN: usize = 256;

#[cfg(target_arch = "aarch64")]
mod bell {
    //! The doorbell page through /dev/mem.
    use std::ffi::CStr;
    use std::io;

    pub const BASE: u64 = 0x0BFF_F000;
    const SIZE: usize = 0x1000;
    const STRIDE: usize = 8;
    /// Bytes one DATA / COMMAND access moves.
    pub const WIDTH: usize = 8;

    pub struct Doorbell {
        regs: *mut u64,
    }

    impl Doorbell {
        pub fn open() -> Result<Doorbell, String> {
            let path: &CStr = c"/dev/mem";
            // SAFETY: a plain open(2) of a NUL-terminated path.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_SYNC | libc::O_CLOEXEC) };
            if fd < 0 {
                let err = io::Error::last_os_error();
                return Err(match err.raw_os_error() {
                    Some(libc::EACCES) | Some(libc::EPERM) => "must run as root (needs /dev/mem)".into(),
                    _ => format!("cannot open /dev/mem: {err}"),
                });
            }
            // SAFETY: maps one page of /dev/mem; the kernel checks the offset
            // (STRICT_DEVMEM allows non-RAM) and we check the result.
            let map = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    SIZE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    BASE as libc::off_t,
                )
            };
            let err = io::Error::last_os_error();
            // SAFETY: fd is ours; the mapping (if any) outlives it.
            unsafe { libc::close(fd) };
            if map == libc::MAP_FAILED {
                return Err(format!("/dev/mem refused to map the doorbell at {BASE:#x}: {err}"));
            }
            Ok(Doorbell { regs: map.cast() })
        }

        pub fn read(&mut self, index: usize) -> u64 {
            let value: u64;
            // SAFETY: `index` is one of the four registers inside the mapped
            // page. A single LDR with no writeback: the stage-2 abort hv takes
            // then carries a valid syndrome (ISV) it can emulate.
            unsafe {
                core::arch::asm!("ldr {v}, [{p}]", v = out(reg) value,
                    p = in(reg) self.regs.add(index * STRIDE / 8), options(nostack))
            };
            value
        }

        pub fn write(&mut self, index: usize, value: u64) {
            // SAFETY: as in `read`, a single STR into the mapped page.
            unsafe {
                core::arch::asm!("str {v}, [{p}]", v = in(reg) value,
                    p = in(reg) self.regs.add(index * STRIDE / 8), options(nostack))
            };
        }

        pub fn describe() -> String {
            format!("MMIO page {BASE:#x}")
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod bell {
    //! The doorbell ports through ioperm.
    use std::io;

    pub const BASE: u16 = 0x0540;
    const COUNT: u16 = 16;
    const STRIDE: u16 = 4;
    /// Bytes one DATA / COMMAND access moves.
    pub const WIDTH: usize = 4;

    pub struct Doorbell(());

    impl Doorbell {
        pub fn open() -> Result<Doorbell, String> {
            // SAFETY: ioperm only changes this process's I/O permission bitmap.
            if unsafe { libc::ioperm(u64::from(BASE), u64::from(COUNT), 1) } != 0 {
                let err = io::Error::last_os_error();
                return Err(match err.raw_os_error() {
                    Some(libc::EPERM) => "must run as root (needs ioperm)".into(),
                    _ => format!("ioperm({BASE:#x}, {COUNT}) failed: {err}"),
                });
            }
            Ok(Doorbell(()))
        }

        pub fn read(&mut self, index: usize) -> u64 {
            let port = BASE + index as u16 * STRIDE;
            let value: u32;
            // SAFETY: ioperm granted these ports; IN traps to hv.
            unsafe { core::arch::asm!("in eax, dx", out("eax") value, in("dx") port, options(nostack, nomem)) };
            u64::from(value)
        }

        pub fn write(&mut self, index: usize, value: u64) {
            let port = BASE + index as u16 * STRIDE;
            // SAFETY: as in `read`; OUT traps to hv.
            unsafe { core::arch::asm!("out dx, eax", in("dx") port, in("eax") value as u32, options(nostack, nomem)) };
        }

        pub fn describe() -> String {
            format!("I/O ports {BASE:#x}-{:#x}", BASE + COUNT - 1)
        }
    }
}

#[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
compile_error!("hvctl runs on aarch64 and x86_64 Linux guests only");

fn fail(message: &str) -> ExitCode {
    eprintln!("hvctl: {message}");
    ExitCode::from(2)
}

fn protocol_error(code: u64) -> &'static str {
    match code {
        1 => "command longer than 256 bytes",
        2 => "bad register access",
        3 => "bad control value",
        4 => "empty or non-UTF-8 command",
        _ => "unknown doorbell error",
    }
}

fn main() -> ExitCode {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let line = if words.is_empty() {
        "help".to_string()
    } else {
        words.join(" ")
    };
    if line.len() > MAX_COMMAND_LEN {
        return fail(&format!("command longer than {MAX_COMMAND_LEN} bytes"));
    }
    let mut bell = match bell::Doorbell::open() {
        Ok(bell) => bell,
        Err(e) => return fail(&e),
    };
    if bell.read(ID) as u32 != ID_MAGIC {
        return fail(&format!(
            "no hv doorbell at {} (is this a guest of hv?)",
            bell::Doorbell::describe()
        ));
    }
    bell.write(CONTROL, CONTROL_RESET);
    for chunk in line.as_bytes().chunks(bell::WIDTH) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        bell.write(DATA, u64::from_le_bytes(word));
    }
    bell.write(CONTROL, CONTROL_RUN);

    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut buf = Vec::with_capacity(64 * 1024);
    let status = loop {
        // Each AVAIL read lets hv produce a bounded piece of output.
        let avail = bell.read(OFFSET) as usize;
        if avail == 0 {
            let status = bell.read(CONTROL);
            if status & STATE_MASK == STATE_RUNNING {
                continue;
            }
            break status;
        }
        buf.clear();
        let mut left = avail;
        while left > 0 {
            let word = bell.read(DATA).to_le_bytes();
            let n = left.min(bell::WIDTH);
            buf.extend_from_slice(&word[..n]);
            left -= n;
        }
        if let Err(e) = out.write_all(&buf) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return ExitCode::SUCCESS;
            }
            return fail(&format!("writing the output: {e}"));
        }
    };
    let _ = out.flush();
    let error = (status >> ERROR_SHIFT) & 0xff;
    if error != 0 {
        return fail(protocol_error(error));
    }
    if status & STATE_MASK != STATE_DONE {
        return fail(&format!("hv ended in an unexpected state (status {status:#x})"));
    }
    if status & STATUS_TRUNCATED != 0 {
        eprintln!("hvctl: output truncated by hv (1 MiB limit)");
    }
    if status & STATUS_FAILED != 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
