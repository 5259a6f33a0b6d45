//! hv's console on the PL011, and the `log` backend that writes to it.

use core::fmt::{self, Write};

use log::{Level, LevelFilter, Log, Metadata, Record};
use spin::Mutex;

use super::pl011::Pl011;

static CONSOLE: Mutex<Option<Pl011>> = Mutex::new(None);
static LOGGER: Logger = Logger;

/// Starts the console on the PL011 at `base` (MMU off or mapped as device).
///
/// # Safety
/// As for [`Pl011::new`].
pub unsafe fn init(base: u64) {
    // SAFETY: forwarded to the caller.
    let mut uart = unsafe { Pl011::new(base) };
    uart.init();
    *CONSOLE.lock() = Some(uart);
    // Only fails when a logger is already set: the first one stays.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
}

/// Runs `f` with the console held, so its lines are not interleaved.
/// Output is dropped when there is no console yet.
pub fn with<R>(f: impl FnOnce(&mut dyn Write) -> R) -> R {
    let mut guard = CONSOLE.lock();
    match guard.as_mut() {
        Some(uart) => f(uart),
        None => f(&mut Discard),
    }
}

/// For the panic and fatal paths: takes the console even if the code that
/// failed was holding it.
pub fn with_emergency<R>(f: impl FnOnce(&mut dyn Write) -> R) -> R {
    if CONSOLE.is_locked() {
        // SAFETY: hv runs on one CPU; the only holder is the code that
        // faulted or panicked, which will never run again.
        unsafe { CONSOLE.force_unlock() };
    }
    with(f)
}

/// Waits until the UART has sent everything.
pub fn flush() {
    if let Some(uart) = CONSOLE.lock().as_ref() {
        uart.flush();
    }
}

struct Discard;

impl Write for Discard {
    fn write_str(&mut self, _: &str) -> fmt::Result {
        Ok(())
    }
}

struct Logger;

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let tag = match record.level() {
            Level::Error => "ERROR: ",
            Level::Warn => "WARN: ",
            Level::Info => "",
            Level::Debug => "debug: ",
            Level::Trace => "trace: ",
        };
        with(|out| {
            let _ = writeln!(out, "hv: {tag}{}", record.args());
        });
    }

    fn flush(&self) {
        flush();
    }
}
