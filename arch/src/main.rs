//! The hv image: one binary per architecture. Everything arch-specific lives
//! below this crate; the arch-neutral core is the `hv` crate.
#![no_std]
#![no_main]

// hv's heap (the frame allocator's free lists, the self-check's region list).
extern crate alloc;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;
