//! hv's memory management: typed addresses, frame allocation and one table
//! builder that maps ranges in every [`pagewalk::Format`].
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod addr;
#[cfg(feature = "alloc")]
mod arena;
mod builder;
mod frame;

pub use addr::{GuestPhysAddr, PhysAddr, VirtAddr};
#[cfg(feature = "alloc")]
pub use arena::Arena;
pub use builder::{MapError, TableBuilder};
pub use frame::{BumpAllocator, FrameAllocator};
pub use pagewalk::PAGE_SIZE;
