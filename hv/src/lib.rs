//! hv's arch-neutral core: the command line, the boot-time self-check of hv's
//! own page tables, and the pieces every architecture's boot shares.
//! No assembly and no `cfg(target_arch)` here: it all builds and tests on the host.
#![no_std]

extern crate alloc;

pub mod cmdline;
pub mod console;
pub mod guest;
pub mod hypercall;
pub mod introspect;
pub mod mem;
mod ptdump_glue;
pub mod selfcheck;
