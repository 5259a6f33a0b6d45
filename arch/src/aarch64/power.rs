//! Ending the machine: PSCI SYSTEM_OFF for a clean stop, semihosting
//! SYS_EXIT with a failure code for a refused boot or a crash.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

use super::console;

/// PSCI 0.2+ SYSTEM_OFF and SYSTEM_RESET (SMC32 function ids).
const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
const PSCI_SYSTEM_RESET: u64 = 0x8400_0009;
/// Semihosting operation SYS_EXIT.
const SYS_EXIT: u64 = 0x18;
/// SYS_EXIT reason ADP_Stopped_ApplicationExit: QEMU exits with the subcode.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x2_0026;

/// Set once a failure exit has been tried: if the semihosting call itself
/// traps (semihosting off), the exception path must not try again.
static FAILING: AtomicBool = AtomicBool::new(false);

/// Powers the machine off through PSCI (conduit SMC: hv runs at EL2, where an
/// SMC reaches the firmware / QEMU's PSCI). QEMU exits with status 0.
pub fn system_off() -> ! {
    console::flush();
    // SAFETY: SYSTEM_OFF does not return when PSCI implements it; if it does
    // return (no PSCI firmware) x0 holds an error code and hv halts below.
    unsafe {
        asm!("smc #0", inout("x0") PSCI_SYSTEM_OFF => _, options(nostack));
    }
    log::error!("PSCI SYSTEM_OFF returned; halting");
    halt()
}

/// Resets the machine through PSCI SYSTEM_RESET: QEMU reloads its images
/// (hv and the guest bundle) and boots again, or exits when run with `-no-reboot`.
pub fn system_reset() -> ! {
    console::flush();
    // SAFETY: as for SYSTEM_OFF: it does not return when PSCI implements it.
    unsafe {
        asm!("smc #0", inout("x0") PSCI_SYSTEM_RESET => _, options(nostack));
    }
    log::error!("PSCI SYSTEM_RESET returned; halting");
    halt()
}

/// Ends the machine with a failure status: semihosting SYS_EXIT(code) makes
/// QEMU (with -semihosting-config enable=on) exit with `code`. Without
/// semihosting hv halts, and the runner's timeout reports it.
pub fn fail_exit(code: u32) -> ! {
    console::flush();
    if !FAILING.swap(true, Ordering::SeqCst) {
        let block: [u64; 2] = [ADP_STOPPED_APPLICATION_EXIT, code as u64];
        // SAFETY: the semihosting call reads the two-word block on this stack
        // and ends the machine; nothing in hv's state is touched.
        unsafe {
            asm!("hlt #0xf000", in("x0") SYS_EXIT, in("x1") block.as_ptr(), options(nostack));
        }
    }
    halt()
}

pub fn halt() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}
