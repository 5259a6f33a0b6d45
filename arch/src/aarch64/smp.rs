//! The guest's CPUs: each guest CPU is the physical CPU of the same MPIDR.
//! The guest's PSCI CPU_ON becomes the firmware's CPU_ON into
//! `hv_secondary_entry` (head.rs), which sets up that CPU's EL2 and enters
//! the guest's entry point with its context id in x0.

use core::mem::size_of;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::registers::{Readable, MAIR_EL2, MPIDR_EL1, SCTLR_EL2, TCR_EL2, TTBR0_EL2};
use alloc::vec::Vec;
use hv::guest::MemRange;
use mm::FrameAllocator;
use spin::Once;

use super::boot::FRAMES;
use super::el2::{GuestEl2, SPSR_EL1H_MASKED};
use super::psci::{self, INVALID_ADDRESS, INVALID_PARAMETERS, ON_PENDING};
use super::{cache, fatal};

/// CPUs hv runs the guest on at most.
pub const MAX_CPUS: usize = 16;
/// Per secondary CPU: its exception stack (top half) and hv's stack while it
/// sets up (bottom half), from hv's frame pool.
pub const SECONDARY_STACK_SIZE: usize = 64 << 10;
/// MPIDR_EL1 affinity fields (Aff3, Aff2, Aff1, Aff0).
const MPIDR_AFFINITY: u64 = 0xff_00ff_ffff;

/// The boot CPU's EL2 MMU registers, read by a starting secondary before its
/// MMU is on (so cleaned to the point of coherency): MAIR, TCR, TTBR0, SCTLR.
#[repr(C)]
pub struct SecondaryMmu([AtomicU64; 4]);

pub static SECONDARY_MMU: SecondaryMmu = SecondaryMmu([const { AtomicU64::new(0) }; 4]);
/// Top of each CPU's stack block (read with the MMU on).
pub static SECONDARY_STACKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// What a CPU_ON asked for, per CPU.
struct Slot {
    mpidr: AtomicU64,
    /// Between the guest's CPU_ON and that CPU's entry into the guest.
    pending: AtomicBool,
    entry: AtomicU64,
    context: AtomicU64,
}

static SLOTS: [Slot; MAX_CPUS] = [const {
    Slot {
        mpidr: AtomicU64::new(0),
        pending: AtomicBool::new(false),
        entry: AtomicU64::new(0),
        context: AtomicU64::new(0),
    }
}; MAX_CPUS];
static CPU_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Where a CPU_ON entry point may be: the guest's RAM.
static GUEST_RAM: Once<Vec<MemRange>> = Once::new();

unsafe extern "C" {
    fn hv_secondary_entry();
    fn hv_enter_guest(entry: u64, arg0: u64, spsr: u64, exception_stack_top: u64) -> !;
}

/// Records the guest's CPUs (MPIDRs from the device tree) and RAM, and
/// publishes the boot CPU's MMU setup for the secondaries.
pub fn init(mpidrs: &[u64], guest_ram: &[MemRange]) {
    if mpidrs.len() > MAX_CPUS {
        log::warn!(
            "{} CPUs in the device tree: the guest gets the first {MAX_CPUS}",
            mpidrs.len()
        );
    }
    for (slot, mpidr) in SLOTS.iter().zip(mpidrs) {
        slot.mpidr.store(mpidr & MPIDR_AFFINITY, Ordering::Relaxed);
    }
    CPU_COUNT.store(mpidrs.len().min(MAX_CPUS), Ordering::Release);
    GUEST_RAM.call_once(|| guest_ram.to_vec());
    let regs = [MAIR_EL2.get(), TCR_EL2.get(), TTBR0_EL2.get(), SCTLR_EL2.get()];
    for (cell, value) in SECONDARY_MMU.0.iter().zip(regs) {
        cell.store(value, Ordering::Relaxed);
    }
    let start = SECONDARY_MMU.0.as_ptr() as u64;
    cache::clean_to_poc(start, start + size_of::<SecondaryMmu>() as u64);
}

fn slot_of(mpidr: u64) -> Option<usize> {
    let count = CPU_COUNT.load(Ordering::Acquire);
    SLOTS[..count]
        .iter()
        .position(|s| s.mpidr.load(Ordering::Relaxed) == mpidr & MPIDR_AFFINITY)
}

/// The stack block of CPU `index`, allocated on its first start.
fn stack_top(index: usize) -> Option<u64> {
    let top = SECONDARY_STACKS[index].load(Ordering::Acquire);
    if top != 0 {
        return Some(top);
    }
    let pages = SECONDARY_STACK_SIZE / 4096;
    let base = FRAMES.lock().alloc_frames(pages, 4096)?.0;
    let top = base + SECONDARY_STACK_SIZE as u64;
    SECONDARY_STACKS[index].store(top, Ordering::Release);
    Some(top)
}

/// The guest's PSCI CPU_ON(target, entry, context).
pub fn cpu_on(target: u64, entry: u64, context: u64) -> i64 {
    let Some(index) = slot_of(target) else {
        return INVALID_PARAMETERS;
    };
    let in_ram = GUEST_RAM.get().is_some_and(|ram| ram.iter().any(|r| r.contains(entry)));
    if !in_ram {
        log::info!("guest CPU_ON for MPIDR {target:#x} with entry {entry:#x} outside its RAM: refused");
        return INVALID_ADDRESS;
    }
    let slot = &SLOTS[index];
    if slot
        .pending
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return ON_PENDING;
    }
    let Some(_) = stack_top(index) else {
        slot.pending.store(false, Ordering::Release);
        log::error!("no memory left for CPU {index}'s stacks: CPU_ON refused");
        return psci::INTERNAL_FAILURE;
    };
    slot.entry.store(entry, Ordering::Relaxed);
    slot.context.store(context, Ordering::Release);
    let result = psci::firmware_call(
        psci::CPU_ON_64,
        slot.mpidr.load(Ordering::Relaxed),
        hv_secondary_entry as *const () as usize as u64,
        index as u64,
    );
    if result != psci::SUCCESS {
        slot.pending.store(false, Ordering::Release);
    }
    result
}

/// The guest's PSCI CPU_OFF: this CPU powers off through the firmware.
/// Returns only if the firmware refuses (e.g. the last CPU: DENIED).
pub fn cpu_off() -> i64 {
    psci::firmware_call(psci::CPU_OFF, 0, 0, 0)
}

/// A secondary CPU in hv, MMU on, on its own stack (head.rs).
#[no_mangle]
extern "C" fn hv_secondary_main(index: u64) -> ! {
    let index = index as usize;
    let Some(el2) = GuestEl2::get() else {
        fatal(format_args!("CPU {index} started before the guest's EL2 setup existed"))
    };
    el2.load();
    let slot = &SLOTS[index];
    let context = slot.context.load(Ordering::Acquire);
    let entry = slot.entry.load(Ordering::Relaxed);
    slot.pending.store(false, Ordering::Release);
    log::debug!(
        "CPU {index} (MPIDR {:#x}) enters the guest at {entry:#x}",
        MPIDR_EL1.get() & MPIDR_AFFINITY
    );
    let top = SECONDARY_STACKS[index].load(Ordering::Acquire);
    // SAFETY: entry, context and SPSR are what the guest's CPU_ON asked for
    // (EL1h, interrupts masked); `top` is this CPU's exception stack, which
    // nothing uses now that this CPU leaves its setup code for good.
    unsafe { hv_enter_guest(entry, context, SPSR_EL1H_MASKED, top) }
}

/// The boot CPU enters the guest: x0 = the guest's DTB.
///
/// # Safety
/// The guest's EL2 state must be loaded on this CPU, `entry` and `dtb` must
/// be in guest RAM (copied, cleaned to the point of coherency), and
/// `exception_stack_top` this CPU's idle exception stack.
pub unsafe fn enter_guest_on_boot_cpu(entry: u64, dtb: u64, exception_stack_top: u64) -> ! {
    // SAFETY: forwarded to the caller.
    unsafe { hv_enter_guest(entry, dtb, SPSR_EL1H_MASKED, exception_stack_top) }
}
