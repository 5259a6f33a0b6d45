//! The hv image: one binary per architecture. Everything arch-specific lives
//! below this crate; the arch-neutral core is the `hv` crate.
#![no_std]
#![no_main]

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;
