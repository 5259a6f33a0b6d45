use crate::addr::PhysAddr;
use crate::PAGE_SIZE;

/// Hands out physical frames for page tables.
pub trait FrameAllocator {
    /// `count` contiguous 4 KiB frames aligned to `align` bytes (a power of
    /// two, at least 4 KiB). Contents are unspecified: the builder zeroes them.
    fn alloc_frames(&mut self, count: usize, align: u64) -> Option<PhysAddr>;
}

impl<A: FrameAllocator + ?Sized> FrameAllocator for &mut A {
    fn alloc_frames(&mut self, count: usize, align: u64) -> Option<PhysAddr> {
        (**self).alloc_frames(count, align)
    }
}

/// Allocates frames upwards from a range and never frees: hv's early tables
/// and test fixtures.
#[derive(Clone, Debug)]
pub struct BumpAllocator {
    next: u64,
    end: u64,
}

impl BumpAllocator {
    /// Frames from `[start, end)`.
    pub const fn new(start: PhysAddr, end: PhysAddr) -> Self {
        BumpAllocator {
            next: start.0,
            end: end.0,
        }
    }
    /// First byte not yet handed out.
    pub fn next_free(&self) -> PhysAddr {
        PhysAddr(self.next)
    }
    /// Bytes left.
    pub fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.next)
    }
}

impl FrameAllocator for BumpAllocator {
    fn alloc_frames(&mut self, count: usize, align: u64) -> Option<PhysAddr> {
        let align = align.max(PAGE_SIZE);
        if !align.is_power_of_two() || count == 0 {
            return None;
        }
        let start = PhysAddr(self.next).align_up(align)?.0;
        let end = start.checked_add((count as u64).checked_mul(PAGE_SIZE)?)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(PhysAddr(start))
    }
}
