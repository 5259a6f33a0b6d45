//! The per-architecture half: entry, console, hypercall instruction,
//! exceptions, power-off, the guest's own stage-1 tables.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::*;

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

/// Fills guest RAM outside this image (identity-mapped or MMU off).
pub fn raw_fill(addr: u64, len: u64, byte: u8) {
    // SAFETY: callers pass guest RAM that nothing else uses (checked against
    // the image and the loader's boot data by the caller).
    unsafe { core::ptr::write_bytes(addr as *mut u8, byte, len as usize) }
}

/// The first byte in `[addr, addr + len)` of guest RAM that is not `byte`.
pub fn raw_first_changed(addr: u64, len: u64, byte: u8) -> Option<u64> {
    (0..len)
        .find(|i| {
            // SAFETY: as in raw_fill.
            unsafe { core::ptr::read_volatile((addr + i) as *const u8) != byte }
        })
        .map(|i| addr + i)
}

/// Set while a probing hypercall may trap into the guest; the exception
/// handler then records the trap and skips the instruction.
pub(crate) static TRAPPED: Flag = Flag::new();

/// A flag for one CPU with no interrupts: plain loads and stores (no
/// exclusives, which need Normal memory and the MMU may be off).
pub(crate) struct Flag(core::cell::UnsafeCell<bool>);

// SAFETY: the guest runs on one CPU with interrupts masked; the exception
// handler runs synchronously on the same CPU.
unsafe impl Sync for Flag {}

impl Flag {
    pub const fn new() -> Flag {
        Flag(core::cell::UnsafeCell::new(false))
    }
    pub fn get(&self) -> bool {
        // SAFETY: see the Sync impl.
        unsafe { core::ptr::read_volatile(self.0.get()) }
    }
    pub fn set(&self, v: bool) {
        // SAFETY: see the Sync impl.
        unsafe { core::ptr::write_volatile(self.0.get(), v) }
    }
}
