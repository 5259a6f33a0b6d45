//! Guest buffers hv writes into, and a command's output fetched piece by
//! piece: every call's reply is checked, the bytes after `written` up to a
//! guard zone past the buffer must stay untouched, and the pieces are fed
//! in order to a sink (a checksum, a line splitter).

use core::ptr::{addr_of, addr_of_mut};

use crate::abi::{self, flags, id, ret, Reply};
use crate::console::{Msg, Outcome};
use crate::platform::PAGE;
use crate::{bail, ensure};

/// Pages of the output area (the largest buffer the ABI takes is 64 KiB).
const AREA_PAGES: usize = 16;
/// The scratch area: a guard page, the output area, a guard page, the
/// command page. Guest RAM inside this image, so hv may write all of it.
#[repr(C, align(4096))]
struct Scratch([u8; (AREA_PAGES + 3) * PAGE as usize]);

static mut SCRATCH: Scratch = Scratch([0; (AREA_PAGES + 3) * PAGE as usize]);

/// The byte every untouched guard holds.
pub const GUARD: u8 = 0xa5;
/// Bytes after a buffer that must stay untouched.
pub const GUARD_LEN: u64 = 256;

fn scratch() -> u64 {
    addr_of!(SCRATCH) as u64
}

/// The output area: `AREA_PAGES` pages of guest RAM with a guard page on each side.
pub fn area() -> u64 {
    scratch() + PAGE
}
pub const AREA_LEN: u64 = AREA_PAGES as u64 * PAGE;

/// Where command lines are put.
pub fn command_page() -> u64 {
    scratch() + (AREA_PAGES as u64 + 2) * PAGE
}

/// Whether `[addr, addr + len)` is inside the scratch area (what may be read and written here).
fn in_scratch(addr: u64, len: u64) -> bool {
    let base = addr_of_mut!(SCRATCH) as u64;
    addr >= base
        && addr
            .checked_add(len)
            .is_some_and(|end| end <= base + core::mem::size_of::<Scratch>() as u64)
}

/// Fills scratch bytes.
pub fn fill(addr: u64, len: u64, byte: u8) {
    assert!(in_scratch(addr, len), "fill outside the scratch area");
    // SAFETY: inside the static scratch area (checked); hv writes it only during a call.
    unsafe { core::ptr::write_bytes(addr as *mut u8, byte, len as usize) }
}

/// Copies bytes into scratch.
pub fn put(addr: u64, bytes: &[u8]) {
    assert!(in_scratch(addr, bytes.len() as u64), "put outside the scratch area");
    // SAFETY: as in `fill`.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) }
}

/// Scratch bytes, valid until the next hypercall.
pub fn bytes<'a>(addr: u64, len: u64) -> &'a [u8] {
    assert!(in_scratch(addr, len), "read outside the scratch area");
    // SAFETY: inside the static scratch area; the hypercall asm clobbers
    // memory, so no read is moved across a call that changes it.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) }
}

/// The first byte in `[addr, addr + len)` that is not `byte`.
pub fn first_changed(addr: u64, len: u64, byte: u8) -> Option<u64> {
    bytes(addr, len)
        .iter()
        .position(|&b| b != byte)
        .map(|i| addr + i as u64)
}

/// Puts a command line on the command page; returns its address.
pub fn command(cmd: &[u8]) -> u64 {
    let at = command_page();
    fill(at, PAGE, 0);
    put(at, cmd);
    at
}

/// Prepares the buffer `[buf, buf + len)` and its guard zone.
pub fn arm(buf: u64, len: u64) {
    let guard = GUARD_LEN.min(area() + AREA_LEN + PAGE - (buf + len));
    // The 64 bytes before the buffer too: `check_untouched` checks them.
    let before = if buf >= area() + 64 { 64 } else { 0 };
    fill(buf - before, before + len + guard, GUARD);
}

/// After a call into `[buf, buf + len)` that reported `written` bytes: the
/// rest of the buffer and the guard zone after it are untouched.
pub fn check_untouched(buf: u64, len: u64, written: u64) -> Outcome {
    let guard = GUARD_LEN.min(area() + AREA_LEN + PAGE - (buf + len));
    let from = buf + written.min(len);
    if let Some(at) = first_changed(from, buf + len + guard - from, GUARD) {
        bail!(
            "hv wrote outside what it reported: byte at {at:#x} changed (buffer {buf:#x}+{len:#x}, written {written:#x})"
        );
    }
    // The guard before the buffer, when the buffer starts in the area.
    if buf >= area() + 64 {
        if let Some(at) = first_changed(buf - 64, 64, GUARD) {
            bail!("hv wrote before the buffer: byte at {at:#x} changed");
        }
    }
    Ok(())
}

/// FNV-1a, 64-bit: a checksum of a whole output.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Checksum {
    pub len: u64,
    pub hash: u64,
}

impl Checksum {
    pub const fn new() -> Checksum {
        Checksum {
            len: 0,
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        self.len += bytes.len() as u64;
    }
}

/// How a streamed command ended.
pub struct Streamed {
    pub sum: Checksum,
    pub flags: u64,
    pub calls: u32,
}

/// Calls to give up after (a 1 MiB output in 1-byte pieces is about a million).
const MAX_CALLS: u32 = 2_000_000;

/// Runs `cmd` with a first buffer of `first_len` bytes, then fetches the rest
/// `chunk_len` bytes at a time (at offset + written, as the ABI says), feeding
/// each piece to `sink`. Every reply and every guard is checked.
pub fn stream(cmd: &str, first_len: u64, chunk_len: u64, sink: &mut dyn FnMut(&[u8])) -> Result<Streamed, Msg> {
    let buf = area() + 64;
    ensure!(
        first_len + 64 <= AREA_LEN && chunk_len + 64 <= AREA_LEN,
        "buffer too long for the area"
    );
    let cmd_at = command(cmd.as_bytes());
    arm(buf, first_len);
    let mut r = abi::call(id::HV_RUN_COMMAND, [cmd_at, cmd.len() as u64, buf, first_len]);
    let mut len = first_len;
    let mut offset = 0u64;
    let mut sum = Checksum::new();
    let mut calls = 1u32;
    loop {
        abi::expect_output_reply(&r, len).map_err(|m| Msg::new(format_args!("'{cmd}' at offset {offset:#x}: {m}")))?;
        check_untouched(buf, len, r.written())?;
        let piece = bytes(buf, r.written());
        sum.feed(piece);
        sink(piece);
        offset += r.written();
        if r.flags() & flags::MORE == 0 {
            ensure!(
                r.remaining() == 0,
                "'{cmd}': MORE clear but {} bytes remain",
                r.remaining()
            );
            return Ok(Streamed {
                sum,
                flags: r.flags(),
                calls,
            });
        }
        ensure!(
            calls < MAX_CALLS,
            "'{cmd}': still MORE after {calls} calls (offset {offset:#x})"
        );
        len = chunk_len;
        arm(buf, len);
        r = abi::call(id::HV_FETCH_OUTPUT, [offset, buf, len, 0]);
        calls += 1;
    }
}

/// Runs a short command and returns its whole output (at most one area).
pub fn run_small<'a>(cmd: &str) -> Result<(&'a [u8], Reply), Msg> {
    let buf = area() + 64;
    let len = AREA_LEN - 128;
    let cmd_at = command(cmd.as_bytes());
    arm(buf, len);
    let r = abi::call(id::HV_RUN_COMMAND, [cmd_at, cmd.len() as u64, buf, len]);
    abi::expect_output_reply(&r, len).map_err(|m| Msg::new(format_args!("'{cmd}': {m}")))?;
    check_untouched(buf, len, r.written())?;
    ensure!(
        r.flags() & flags::MORE == 0,
        "'{cmd}': output longer than {len} bytes (flags {:#x})",
        r.flags()
    );
    Ok((bytes(buf, r.written()), r))
}

/// Splits a byte stream into lines (pieces may cut lines anywhere).
pub struct Lines<F: FnMut(&str)> {
    buf: [u8; 512],
    len: usize,
    overlong: bool,
    each: F,
}

impl<F: FnMut(&str)> Lines<F> {
    pub fn new(each: F) -> Lines<F> {
        Lines {
            buf: [0; 512],
            len: 0,
            overlong: false,
            each,
        }
    }
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.emit();
            } else if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            } else {
                self.overlong = true;
            }
        }
    }
    fn emit(&mut self) {
        let line = core::str::from_utf8(&self.buf[..self.len]).unwrap_or("<not UTF-8>");
        (self.each)(if self.overlong { "<overlong line>" } else { line });
        self.len = 0;
        self.overlong = false;
    }
    /// Emits a last line without a newline.
    pub fn finish(&mut self) {
        if self.len > 0 || self.overlong {
            self.emit();
        }
    }
}

/// One range line of a ptdump: `0x<16 hex>-0x<16 hex>   <size> <rest>`.
#[derive(Clone, Copy)]
pub struct DumpLine<'a> {
    pub start: u64,
    /// Exclusive end as u128 (a range reaching 2^64 prints its end as 0).
    pub end: u128,
    /// Everything after the size.
    pub rest: &'a str,
}

impl DumpLine<'_> {
    /// A hole prints only the level name after the size. arm64 prints a
    /// non-zero entry whose valid bit is clear as Linux's arm64 ptdump does:
    /// the level, `F` (it faults) and the decoded other bits; that is not a
    /// mapping either.
    pub fn is_hole(&self) -> bool {
        let mut words = self.rest.split_ascii_whitespace();
        let _level = words.next();
        words.next().is_none_or(|w| w == "F") && !self.is_bad()
    }
    pub fn is_bad(&self) -> bool {
        self.rest.contains(" BAD ") || self.rest.starts_with("BAD ")
    }
    pub fn covers(&self, addr: u64) -> bool {
        self.start <= addr && u128::from(addr) < self.end
    }
}

pub fn parse_dump_line(line: &str) -> Option<DumpLine<'_>> {
    let b = line.as_bytes();
    if b.len() < 38 || &b[0..2] != b"0x" || &b[18..21] != b"-0x" {
        return None;
    }
    let start = u64::from_str_radix(&line[2..18], 16).ok()?;
    let end = u64::from_str_radix(&line[21..37], 16).ok()?;
    let end = if end == 0 && start != 0 {
        1u128 << 64
    } else {
        u128::from(end)
    };
    let after = line[37..].trim_start();
    // Skip the size word.
    let rest = after.split_once(' ').map_or("", |(_, r)| r).trim_start();
    Some(DumpLine { start, end, rest })
}

/// The code of a reply as a check: SUCCESS or the failure detail.
pub fn expect_code(r: &Reply, code: i64) -> Outcome {
    ensure!(r.code() == code, "got {r}, want {}", abi::code_name(code));
    if code != ret::SUCCESS {
        return abi::expect_status(r, code);
    }
    Ok(())
}
