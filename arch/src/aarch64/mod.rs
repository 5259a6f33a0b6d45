//! hv on arm64: entered at EL2 by QEMU's `-kernel` (or any arm64 Image boot
//! loader) with the device tree in x0; runs identity-mapped at EL2.

mod boot;
mod cache;
mod console;
mod el2;
mod exceptions;
mod gicr;
mod guest;
mod head;
mod hvconsole;
mod mmio;
mod pl011;
mod platform;
mod power;
mod psci;
mod smp;
mod sysreg;
mod traps;

use core::fmt;
use core::panic::PanicInfo;

use aarch64_cpu::registers::{Readable, ID_AA64MMFR0_EL1, MIDR_EL1};
use hv::cmdline::{self, Guest};

use platform::Platform;

/// Exit status hv gives QEMU (semihosting) when it stops on a failure.
const EXIT_FAILURE: u32 = 1;
/// ... when there is not even a console to say why (no usable device tree).
const EXIT_NO_CONSOLE: u32 = 2;

/// The boot CPU's Rust entry, at EL2 with the MMU off (head.rs).
#[no_mangle]
extern "C" fn hv_main_el2(dtb: u64) -> ! {
    let platform = start_console(dtb);
    // First pass for the log level; the second, with the level set, reports what was ignored.
    let config = cmdline::parse(platform.bootargs, |_| {});
    log::set_max_level(config.log_level);
    console::with(|out| {
        let _ = writeln!(
            out,
            "hv {} (aarch64) starting at EL2 on {}",
            env!("CARGO_PKG_VERSION"),
            cpu_name()
        );
    });
    cmdline::parse(platform.bootargs, |warning| log::warn!("{warning}"));
    platform.log();
    if platform.psci_method != Some("smc") {
        log::warn!("PSCI method is not smc: hv calls PSCI with SMC from EL2 anyway");
    }

    let tables = boot::setup(&platform, config.selftests.wx);
    // hv's console: the boot log runs its commands (`ptdump hv`, `wx hv`)
    // through the same engine the guest's hypercalls and doorbell reach.
    let hv_console = hvconsole::Console::new(&tables, boot::hv_owned());
    let report = hvconsole::self_check(&hv_console, &tables, &tables.regions);
    if !report.boot_may_proceed() {
        fatal(format_args!(
            "refusing to boot: hv's own page tables failed the self-check (W^X); no guest started"
        ));
    }

    if config.selftests.fault {
        boot::touch_guard_page();
    }
    if config.selftests.panic {
        panic!("selftest=panic: panicking on purpose");
    }
    match config.guest {
        Guest::None => {
            log::info!("no guest to run (guest=none): powering off");
            power::system_off()
        }
        // The test guest (guests/testguest) is an arm64 Image in a bundle, loaded as Linux is.
        Guest::Linux | Guest::Test => guest::run_linux(&platform, &tables, hv_console, config.guest_cmdline),
    }
}

/// Reached from head.rs when the boot loader entered hv below (or above) EL2.
#[no_mangle]
extern "C" fn hv_wrong_el(dtb: u64, el: u64) -> ! {
    start_console(dtb);
    fatal(format_args!(
        "hv was entered at EL{el} but must start at EL2 (on QEMU: -M virt,virtualization=on)"
    ))
}

/// Reads the device tree and starts the PL011 console it names.
fn start_console(dtb: u64) -> Platform {
    // SAFETY: the boot protocol puts the device tree's address in x0; hv
    // never writes it and keeps it mapped read-only at VA == PA.
    let platform = match unsafe { Platform::from_dtb(dtb) } {
        Ok(platform) => platform,
        // No console to say it on: the exit status is all there is.
        Err(_) => power::fail_exit(EXIT_NO_CONSOLE),
    };
    // SAFETY: the device tree's PL011; the MMU is off, so it is reached at
    // VA == PA as device memory, and hv maps it that way before the MMU goes on.
    unsafe { console::init(platform.uart.base) };
    platform
}

/// A readable name for the boot CPU.
fn cpu_name() -> CpuName {
    CpuName {
        midr: MIDR_EL1.get(),
        pa_bits: match ID_AA64MMFR0_EL1.get() & 0xf {
            0 => 32,
            1 => 36,
            2 => 40,
            3 => 42,
            4 => 44,
            5 => 48,
            _ => 52,
        },
    }
}

struct CpuName {
    midr: u64,
    pa_bits: u32,
}

impl fmt::Display for CpuName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let implementer = (self.midr >> 24) & 0xff;
        let part = (self.midr >> 4) & 0xfff;
        let name = match (implementer, part) {
            (0x41, 0xd03) => "Cortex-A53",
            (0x41, 0xd07) => "Cortex-A57",
            (0x41, 0xd08) => "Cortex-A72",
            (0x41, 0xd0c) => "Neoverse-N1",
            (0x41, 0xd40) => "Neoverse-V1",
            (0x41, 0xd49) => "Neoverse-N2",
            (0x41, _) => "an Arm core",
            // Implementer 0 is reserved for software models: QEMU's `max`.
            (0x00, _) => "a software-defined CPU (QEMU max)",
            _ => "a CPU",
        };
        write!(f, "{name} (MIDR {:#010x}), {}-bit PA", self.midr, self.pa_bits)
    }
}

/// Stops hv on a failure it cannot go on from: one `hv: FATAL:` line (the
/// runner looks for it), then a non-zero exit status through semihosting.
pub fn fatal(args: fmt::Arguments<'_>) -> ! {
    console::with_emergency(|out| {
        let _ = writeln!(out, "hv: FATAL: {args}");
    });
    power::fail_exit(EXIT_FAILURE)
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    match info.location() {
        Some(at) => fatal(format_args!(
            "panic at {}:{}:{}: {}",
            at.file(),
            at.line(),
            at.column(),
            info.message()
        )),
        None => fatal(format_args!("panic: {}", info.message())),
    }
}
