//! Data-cache maintenance for memory another observer reads with its caches
//! off: a guest CPU entering with its MMU off, a secondary CPU starting hv.

use core::arch::asm;

/// Bytes of the smallest data-cache line (CTR_EL0.DminLine).
fn dcache_line() -> u64 {
    let ctr: u64;
    // SAFETY: reads CTR_EL0 (cache type), which has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    4 << ((ctr >> 16) & 0xf)
}

/// Cleans `[start, end)` from the data caches to the point of coherency.
/// The range must be mapped in hv's EL2 stage-1.
pub fn clean_to_poc(start: u64, end: u64) {
    let line = dcache_line();
    let mut addr = start & !(line - 1);
    while addr < end {
        // SAFETY: a clean writes dirty lines back and changes no data; the
        // caller keeps the range mapped, so the VA translates.
        unsafe { asm!("dc cvac, {}", in(reg) addr, options(nostack, preserves_flags)) };
        addr += line;
    }
    // SAFETY: a barrier: the cleans complete before whatever follows.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Invalidates every instruction cache in the inner-shareable domain.
pub fn invalidate_icache() {
    // SAFETY: I-cache invalidation only discards cached instructions.
    unsafe { asm!("ic ialluis", "dsb ish", "isb", options(nostack, preserves_flags)) };
}
