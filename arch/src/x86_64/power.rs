//! Stopping the machine. QEMU's `isa-debug-exit` device (iobase 0xf4) ends
//! QEMU with status `(value << 1) | 1` for a value written to its port; that
//! is the only way a PC guest can hand the host an exit status. The values
//! below are the contract with scripts/run.sh, which maps them back.

use x86::io::outl;

const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Why hv stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Exit {
    /// Clean power-off: QEMU exits with status 33 (run.sh: 0).
    PowerOff = 0x10,
    /// Panic, unexpected exception or a refused boot (W+X): QEMU status 35 (run.sh: non-zero).
    Failure = 0x11,
}

/// Ends the machine with `why`. Without the debug-exit device the write is
/// ignored and the CPU halts with interrupts off, so a wrapper sees no clean exit.
pub fn exit(why: Exit) -> ! {
    // SAFETY: port 0xf4 is QEMU's isa-debug-exit (or nothing); writing it
    // has no effect on hv's memory.
    unsafe { outl(DEBUG_EXIT_PORT, why as u32) };
    halt_forever()
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli; hlt only stops this CPU (an NMI resumes the loop).
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
