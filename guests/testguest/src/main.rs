//! hv's bare-metal test guest (issues #7 and #8).
//!
//! Booted by hv like a Linux kernel (arm64 Image at EL1 with x0 = DTB; x86
//! bzImage through the 64-bit boot protocol), it calls every hypercall of
//! docs/hypercalls.md with valid and hostile arguments, then thousands of
//! seeded random calls, then installs hostile stage-1 tables and asks hv to
//! dump them. One `PASS name` / `FAIL name: detail` / `SKIP name: why` line
//! per case, then `testguest: N passed, M failed`, then power-off.
//!
//! Without hv below it (bare QEMU), the hypercall instruction traps into the
//! guest itself (HVC / VMMCALL undefined); the guest then runs only its
//! self-checks and ends with `testguest: selftest-only (no hv): ...`, a
//! line the hv test never accepts. `testguest.expect=hv` on the command line
//! turns a missing hv into a failure.

#![no_std]
#![no_main]
// Failure details are formatted into a fixed 200-byte buffer and returned by
// value: there is no allocator to box them, and the copies are cheap next to a hypercall.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

mod abi;
mod arch;
mod cases;
mod console;
mod hostile;
mod output;
mod platform;
mod random;

use core::fmt::Write;
use core::panic::PanicInfo;

use platform::Platform;

/// Called by the arch entry once the console works and the platform is known.
pub fn run(platform: &Platform) -> ! {
    say!("testguest: {} test guest, {}", arch::NAME, platform);
    platform.self_check();
    match abi::detect() {
        abi::Detection::Hv => {
            console::pass("detect-hv: VENDOR_HYP_CALL_UID is hv's UUID");
            cases::run_all(platform);
            random::run(platform);
            hostile::run(platform);
            let ok = abi::call(abi::id::HV_VERSION, [0; 4]);
            console::check("hv-alive-at-end", abi::expect_version(&ok));
            console::finish_and_power_off(false)
        }
        abi::Detection::NoHv(why) => {
            if platform.expect_hv {
                console::fail("detect-hv", format_args!("no hv below this guest: {why}"));
            } else {
                console::skip("hypercalls", format_args!("no hv below this guest ({why})"));
            }
            hostile::run_without_hv(platform);
            console::finish_and_power_off(!platform.expect_hv)
        }
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    let mut out = console::Console;
    let _ = writeln!(out, "FAIL panic: {info}");
    console::finish_and_power_off(false)
}
