use alloc::vec;
use alloc::vec::Vec;

use pagewalk::{MemoryImage, ReadFault, TableMemory, TableMemoryMut};

use crate::addr::PhysAddr;
use crate::frame::{BumpAllocator, FrameAllocator};

/// Heap-backed physical memory for host tests and tools: a byte image at
/// `base` whose frames are handed out by a bump allocator.
pub struct Arena {
    base: u64,
    bytes: Vec<u8>,
    frames: BumpAllocator,
}

impl Arena {
    /// `size` bytes of zeroed memory at physical address `base`.
    pub fn new(base: u64, size: usize) -> Arena {
        let end = base + size as u64;
        Arena {
            base,
            bytes: vec![0; size],
            frames: BumpAllocator::new(PhysAddr(base), PhysAddr(end)),
        }
    }
    #[inline]
    pub fn image(&self) -> MemoryImage<'_> {
        MemoryImage::new(self.base, &self.bytes)
    }
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
    pub fn base(&self) -> u64 {
        self.base
    }
    /// Bytes of frames handed out so far.
    pub fn used(&self) -> u64 {
        self.frames.next_free().0 - self.base
    }
}

impl TableMemory for Arena {
    #[inline]
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        self.image().read_u64(addr)
    }
    // The image checks a whole batch of entries at once.
    #[inline]
    fn read_entries(&self, addr: u64, out: &mut [u64]) -> usize {
        self.image().read_entries(addr, out)
    }
}

impl TableMemoryMut for Arena {
    fn write_u64(&mut self, addr: u64, value: u64) -> Result<(), ReadFault> {
        pagewalk::MemoryImageMut::new(self.base, &mut self.bytes).write_u64(addr, value)
    }
}

impl FrameAllocator for Arena {
    fn alloc_frames(&mut self, count: usize, align: u64) -> Option<PhysAddr> {
        self.frames.alloc_frames(count, align)
    }
}
