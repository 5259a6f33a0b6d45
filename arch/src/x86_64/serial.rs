//! The 16550 UART at COM1 (port I/O 0x3F8), polled, no interrupts; and the
//! `log` backend that writes to it.

use core::fmt::{self, Write};

use log::{LevelFilter, Log, Metadata, Record};
use spin::Mutex;
use x86::io::{inb, outb};

const COM1: u16 = 0x3f8;
// Register offsets from the base port.
const DATA: u16 = 0; // THR/RBR; divisor low with DLAB
const IER: u16 = 1; // interrupt enable; divisor high with DLAB
const FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;

const LCR_DLAB: u8 = 1 << 7;
const LCR_8N1: u8 = 0x03;
const FCR_ENABLE_CLEAR_14: u8 = 0xc7;
const MCR_DTR_RTS: u8 = 0x03;
const LSR_THR_EMPTY: u8 = 1 << 5;
/// 115200 baud from the 1.8432 MHz clock.
const DIVISOR_115200: u8 = 1;

/// A writer to COM1. Stateless: the port is the state, so a panic or fault
/// handler can make its own without waiting for a lock another path holds.
pub struct Com1;

impl Com1 {
    /// Programs the UART: 115200 8N1, FIFOs on, interrupts off.
    pub fn init() {
        // SAFETY: COM1's I/O ports belong to hv (no guest runs yet); these
        // writes only program the UART.
        unsafe {
            outb(COM1 + IER, 0);
            outb(COM1 + LCR, LCR_DLAB);
            outb(COM1 + DATA, DIVISOR_115200);
            outb(COM1 + IER, 0);
            outb(COM1 + LCR, LCR_8N1);
            outb(COM1 + FCR, FCR_ENABLE_CLEAR_14);
            outb(COM1 + MCR, MCR_DTR_RTS);
        }
    }

    fn put(byte: u8) {
        // SAFETY: reading the line status and writing the transmit register
        // of hv's own UART has no other effect.
        unsafe {
            while inb(COM1 + LSR) & LSR_THR_EMPTY == 0 {
                core::hint::spin_loop();
            }
            outb(COM1 + DATA, byte);
        }
    }
}

impl Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                Com1::put(b'\r');
            }
            Com1::put(b);
        }
        Ok(())
    }
}

/// Serialises whole lines from different paths (only one CPU today, but a
/// fault inside a log call must not interleave mid-line garbage).
static CONSOLE: Mutex<Com1> = Mutex::new(Com1);

/// Runs `f` with the console locked: multi-line output (the table dump) stays together.
pub fn with_console<R>(f: impl FnOnce(&mut Com1) -> R) -> R {
    f(&mut CONSOLE.lock())
}

struct Logger;

impl Log for Logger {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }
    fn log(&self, record: &Record) {
        let mut out = CONSOLE.lock();
        let _ = match record.level() {
            log::Level::Info => writeln!(out, "hv: {}", record.args()),
            level => writeln!(out, "hv: {level}: {}", record.args()),
        };
    }
    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Brings up COM1 and routes `log` to it.
pub fn init_logging() {
    Com1::init();
    // A second call (there is none) would only fail to replace the logger.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
}
