//! The guest's own console (PL011 / COM1, owned by the guest) and the
//! PASS / FAIL / SKIP bookkeeping.

use core::fmt::{self, Write};

use crate::arch;

/// Writes straight to the guest's UART.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                arch::uart_put(b'\r');
            }
            arch::uart_put(b);
        }
        Ok(())
    }
}

#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::console::Console, $($arg)*);
    }};
}

/// A counter for one CPU (plain loads and stores: the MMU may be off, and
/// exclusives need Normal memory).
struct Counter(core::cell::UnsafeCell<u32>);

// SAFETY: one CPU, no interrupts; the exception handler runs synchronously.
unsafe impl Sync for Counter {}

impl Counter {
    const fn new() -> Counter {
        Counter(core::cell::UnsafeCell::new(0))
    }
    fn get(&self) -> u32 {
        // SAFETY: see the Sync impl.
        unsafe { core::ptr::read_volatile(self.0.get()) }
    }
    fn bump(&self) {
        // SAFETY: see the Sync impl.
        unsafe { core::ptr::write_volatile(self.0.get(), self.get() + 1) }
    }
}

static PASSED: Counter = Counter::new();
static FAILED: Counter = Counter::new();
static SKIPPED: Counter = Counter::new();

pub fn pass(name: &str) {
    PASSED.bump();
    say!("PASS {name}");
}

pub fn fail(name: &str, detail: fmt::Arguments<'_>) {
    FAILED.bump();
    say!("FAIL {name}: {detail}");
}

pub fn skip(name: &str, why: fmt::Arguments<'_>) {
    SKIPPED.bump();
    say!("SKIP {name}: {why}");
}

/// A failure detail, formatted without allocation.
pub struct Msg {
    buf: [u8; 200],
    len: usize,
}

impl Msg {
    pub fn new(args: fmt::Arguments<'_>) -> Msg {
        let mut m = Msg { buf: [0; 200], len: 0 };
        let _ = m.write_fmt(args);
        m
    }
    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 sequences are ever copied in (see write_str).
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl Write for Msg {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut tmp = [0u8; 4];
            let bytes = c.encode_utf8(&mut tmp).as_bytes();
            if self.len + bytes.len() > self.buf.len() {
                return Ok(()); // cut, never fail
            }
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(())
    }
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a check returns: Err carries the FAIL detail.
pub type Outcome = Result<(), Msg>;

/// `Err(Msg)` from a format string.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::console::Msg::new(format_args!($($arg)*)))
    };
}

/// Fails with the message unless `cond`.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::bail!($($arg)*);
        }
    };
}

/// Prints PASS or FAIL for one case.
pub fn check(name: &str, outcome: Outcome) {
    match outcome {
        Ok(()) => pass(name),
        Err(m) => fail(name, format_args!("{m}")),
    }
}

/// Prints the summary line and powers off. `selftest_only`: no hv was
/// found and none was required, so the summary says so (and is never taken
/// for an hv run).
pub fn finish_and_power_off(selftest_only: bool) -> ! {
    let (p, f, s) = (PASSED.get(), FAILED.get(), SKIPPED.get());
    let skipped = if s > 0 { " (" } else { "" };
    if selftest_only {
        say!("testguest: selftest-only (no hv): {p} passed, {f} failed, {s} skipped");
    } else if s > 0 {
        say!("testguest: {p} passed, {f} failed{skipped}{s} skipped)");
    } else {
        say!("testguest: {p} passed, {f} failed");
    }
    arch::power_off()
}
