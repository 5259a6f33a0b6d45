//! PSCI: hv calls the firmware's (QEMU's, conduit SMC from EL2) and emulates
//! it for the guest, whose SMCs trap to hv (HCR_EL2.TSC).
//!
//! The guest gets PSCI 1.0 with VERSION, FEATURES, CPU_ON, CPU_OFF,
//! AFFINITY_INFO, MIGRATE_INFO_TYPE, SYSTEM_OFF and SYSTEM_RESET; anything
//! else (CPU_SUSPEND included) is NOT_SUPPORTED. CPU_ON starts the physical
//! CPU through the firmware's CPU_ON into hv's secondary entry, which sets
//! that CPU's EL2 up and enters the guest's entry point (smp.rs).
//! SYSTEM_OFF powers the machine off (QEMU exits 0). SYSTEM_RESET resets the
//! machine through the firmware: QEMU reloads hv and the guest bundle and
//! both boot again (under `-no-reboot`, as scripts/run.sh runs without a
//! terminal, QEMU exits instead, and run.sh reports the reset as a failure).

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::exceptions::Frame;
use super::{power, smp};

pub const PSCI_VERSION: u32 = 0x8400_0000;
pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
pub const CPU_SUSPEND_64: u32 = 0xc400_0001;
pub const CPU_OFF: u32 = 0x8400_0002;
pub const CPU_ON_32: u32 = 0x8400_0003;
pub const CPU_ON_64: u32 = 0xc400_0003;
pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
pub const SYSTEM_OFF: u32 = 0x8400_0008;
pub const SYSTEM_RESET: u32 = 0x8400_0009;
pub const PSCI_FEATURES: u32 = 0x8400_000a;

pub const SUCCESS: i64 = 0;
pub const NOT_SUPPORTED: i64 = -1;
pub const INVALID_PARAMETERS: i64 = -2;
pub const ON_PENDING: i64 = -5;
pub const INTERNAL_FAILURE: i64 = -6;
pub const INVALID_ADDRESS: i64 = -9;

/// The PSCI version hv offers the guest: 1.0 (PSCI_FEATURES exists).
const EMULATED_VERSION: i64 = 0x0001_0000;
/// MIGRATE_INFO_TYPE: no Trusted OS that would need migrating.
const TOS_NOT_PRESENT: i64 = 2;
/// SMC function ids: bit 30 set for SMC64.
const SMC64: u32 = 1 << 30;

/// The functions hv implements for the guest (PSCI_FEATURES says 0 for them).
const IMPLEMENTED: [u32; 10] = [
    PSCI_VERSION,
    CPU_OFF,
    CPU_ON_32,
    CPU_ON_64,
    AFFINITY_INFO_32,
    AFFINITY_INFO_64,
    MIGRATE_INFO_TYPE,
    SYSTEM_OFF,
    SYSTEM_RESET,
    PSCI_FEATURES,
];

/// Calls the firmware's PSCI with SMC from EL2 (SMC Calling Convention:
/// x0-x3 in, x0 out, x4-x17 not preserved).
pub fn firmware_call(function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: u64;
    // SAFETY: a PSCI call to the firmware; it touches no memory of hv's, and
    // the registers SMCCC lets it clobber are declared so.
    unsafe {
        asm!(
            "smc #0",
            inout("x0") function as u64 => ret,
            inout("x1") a1 => _,
            inout("x2") a2 => _,
            inout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    ret as i64
}

/// Guest calls of functions hv does not implement, logged one by one up to a limit.
static UNKNOWN_CALLS: AtomicU64 = AtomicU64::new(0);
const MAX_LOGGED_UNKNOWN: u64 = 16;

/// Handles the guest's SMC in `frame` (ELR already past the SMC): PSCI
/// result in x0, x1-x3 preserved.
pub fn handle_guest_smc(frame: &mut Frame) {
    let function = frame.x[0] as u32;
    let smc64 = function & SMC64 != 0;
    // SMC32 functions take 32-bit arguments: the upper halves are ignored.
    let arg = |i: usize| if smc64 { frame.x[i] } else { frame.x[i] & 0xffff_ffff };
    let result = match function {
        PSCI_VERSION => EMULATED_VERSION,
        PSCI_FEATURES => {
            let queried = arg(1) as u32;
            if IMPLEMENTED.contains(&queried) {
                SUCCESS
            } else {
                NOT_SUPPORTED
            }
        }
        CPU_ON_32 | CPU_ON_64 => smp::cpu_on(arg(1), arg(2), arg(3)),
        CPU_OFF => smp::cpu_off(),
        AFFINITY_INFO_32 | AFFINITY_INFO_64 => firmware_call(function, arg(1), arg(2), 0),
        MIGRATE_INFO_TYPE => TOS_NOT_PRESENT,
        SYSTEM_OFF => {
            log::info!("guest called PSCI SYSTEM_OFF: powering off");
            power::system_off()
        }
        SYSTEM_RESET => {
            log::info!("guest called PSCI SYSTEM_RESET: resetting the machine");
            power::system_reset()
        }
        _ => {
            let n = UNKNOWN_CALLS.fetch_add(1, Ordering::Relaxed);
            if n < MAX_LOGGED_UNKNOWN {
                log::info!(
                    "guest SMC function {function:#010x} ({}) at PC {:#x}: not supported",
                    describe(function),
                    frame.elr.wrapping_sub(4)
                );
            }
            NOT_SUPPORTED
        }
    };
    frame.x[0] = result as u64;
}

fn describe(function: u32) -> &'static str {
    match function {
        CPU_SUSPEND_32 | CPU_SUSPEND_64 => "PSCI CPU_SUSPEND",
        0x8400_0000..=0x8400_001f | 0xc400_0000..=0xc400_001f => "PSCI",
        0x8000_0000..=0x8000_ffff => "Arm architecture service",
        0x8600_0000..=0x8600_ffff | 0xc600_0000..=0xc600_ffff => "hypervisor vendor service",
        _ => "unknown service",
    }
}
