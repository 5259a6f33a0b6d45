//! Physical memory as hv reaches it: at VA == PA (identity-mapped, or before
//! the MMU is on), guest RAM through a window in hv's tables, and the frame
//! allocator hv's page tables grow from.

use alloc::vec::Vec;
use core::alloc::Layout;

use mm::{FrameAllocator, PhysAddr, PAGE_SIZE};
use pagewalk::{ReadFault, TableMemory, TableMemoryMut};

use crate::guest::MemRange;
use crate::hypercall::guest_mem::{GuestMemError, PhysMemory};

/// A window of physical memory hv reads and writes at VA == PA. Accesses
/// outside it (or misaligned) are refused, so a corrupted table entry can
/// never make the walker or the builder touch memory hv does not own.
#[derive(Clone, Copy, Debug)]
pub struct DirectMap {
    start: u64,
    end: u64,
}

impl DirectMap {
    /// # Safety
    /// `[start, end)` must be memory hv may read and write at VA == PA for as
    /// long as this value is used, and no Rust reference may alias it.
    pub const unsafe fn new(start: u64, end: u64) -> DirectMap {
        DirectMap { start, end }
    }

    pub const fn start(&self) -> u64 {
        self.start
    }
    pub const fn end(&self) -> u64 {
        self.end
    }

    fn check(&self, addr: u64) -> Result<*mut u64, ReadFault> {
        let inside = addr >= self.start && addr.checked_add(8).is_some_and(|e| e <= self.end);
        if !addr.is_multiple_of(8) || !inside {
            return Err(ReadFault { addr });
        }
        Ok(addr as usize as *mut u64)
    }
}

impl TableMemory for DirectMap {
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        let ptr = self.check(addr)?;
        // SAFETY: `check` keeps the access aligned and inside the window that
        // `new`'s caller promised is readable at VA == PA and unaliased.
        Ok(unsafe { ptr.read_volatile() })
    }
}

impl TableMemoryMut for DirectMap {
    fn write_u64(&mut self, addr: u64, value: u64) -> Result<(), ReadFault> {
        let ptr = self.check(addr)?;
        // SAFETY: as in `read_u64`; the window is writable by the same promise.
        unsafe { ptr.write_volatile(value) };
        Ok(())
    }
}

/// Guest RAM (guest-physical = physical: the stage-2 / NPT is an identity
/// map) as hv reaches it: through a window its own tables map RW + NX at
/// VA = `window_base` + PA, never at VA == PA, so a stray hv pointer into
/// guest RAM still faults. That window is how hypercall buffers and the
/// guest's tables are reached, always after the stage-2 said the guest page
/// is there. Every access must lie inside one of the ranges hv mapped;
/// anything else (a device, hv's own memory) is refused, never touched.
pub struct GuestRam {
    window_base: u64,
    ranges: Vec<MemRange>,
}

impl GuestRam {
    /// No guest RAM (before the guest is loaded).
    pub const fn none(window_base: u64) -> GuestRam {
        GuestRam {
            window_base,
            ranges: Vec::new(),
        }
    }

    /// # Safety
    /// Each range must be guest RAM that hv's active tables map RW at
    /// `window_base` + PA for as long as this value is used; hv holds no
    /// Rust reference into it (the guest changes it at any time).
    pub unsafe fn new(window_base: u64, ranges: Vec<MemRange>) -> GuestRam {
        GuestRam { window_base, ranges }
    }

    pub fn ranges(&self) -> &[MemRange] {
        &self.ranges
    }

    /// Whether one guest RAM range holds all of `[pa, pa + len)`.
    pub fn holds(&self, pa: u64, len: u64) -> bool {
        if len == 0 {
            return true;
        }
        MemRange::from_len(pa, len).is_some_and(|want| self.ranges.iter().any(|r| r.covers(&want)))
    }

    /// hv's address of `[pa, pa + len)`, if one mapped range holds all of it.
    fn window(&self, pa: u64, len: usize) -> Option<*mut u8> {
        (len > 0 && self.holds(pa, len as u64)).then(|| (self.window_base + pa) as usize as *mut u8)
    }
}

impl TableMemory for GuestRam {
    fn read_u64(&self, pa: u64) -> Result<u64, ReadFault> {
        match self.window(pa, 8) {
            // SAFETY: `window` keeps the 8 bytes inside a range `new`'s caller
            // promised is mapped; aligned (checked) so the read is one access.
            Some(ptr) if pa.is_multiple_of(8) => Ok(unsafe { ptr.cast::<u64>().read_volatile() }),
            _ => Err(ReadFault { addr: pa }),
        }
    }
}

impl PhysMemory for &GuestRam {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), GuestMemError> {
        if buf.is_empty() {
            return Ok(());
        }
        let src = self.window(pa, buf.len()).ok_or(GuestMemError::PhysFault { pa })?;
        // SAFETY: `window` keeps the bytes inside mapped guest RAM; `buf` is hv's, so they do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }
    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), GuestMemError> {
        if data.is_empty() {
            return Ok(());
        }
        let dst = self.window(pa, data.len()).ok_or(GuestMemError::PhysFault { pa })?;
        // SAFETY: as in `read`; the window is mapped writable.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }
}

/// Page frames on a buddy allocator (buddy_system_allocator): naturally
/// aligned power-of-two blocks, so any alignment up to the block size is free.
/// Its free lists live on the heap: set the global allocator up first.
pub struct Frames {
    buddy: buddy_system_allocator::FrameAllocator<32>,
    free: u64,
}

impl Default for Frames {
    fn default() -> Self {
        Frames::new()
    }
}

impl Frames {
    pub const fn new() -> Frames {
        Frames {
            buddy: buddy_system_allocator::FrameAllocator::new(),
            free: 0,
        }
    }

    /// Hands the whole pages of `[start, end)` to the allocator.
    pub fn add(&mut self, start: PhysAddr, end: PhysAddr) {
        let first = start.0.div_ceil(PAGE_SIZE);
        let last = end.0 / PAGE_SIZE;
        if last > first {
            self.buddy.add_frame(first as usize, last as usize);
            self.free += (last - first) * PAGE_SIZE;
        }
    }

    /// Returns `count` frames at `start` (as allocated with the same `count` and `align`).
    pub fn free(&mut self, start: PhysAddr, count: usize, align: u64) {
        if let Some(layout) = frame_layout(count, align) {
            self.buddy.dealloc_aligned((start.0 / PAGE_SIZE) as usize, layout);
            self.free += block_frames(layout) as u64 * PAGE_SIZE;
        }
    }

    /// Bytes not handed out.
    pub fn free_bytes(&self) -> u64 {
        self.free
    }
}

/// The buddy layout (in frames) for `count` frames aligned to `align` bytes.
fn frame_layout(count: usize, align: u64) -> Option<Layout> {
    let align_frames = (align.max(PAGE_SIZE) / PAGE_SIZE) as usize;
    if count == 0 || !align.max(PAGE_SIZE).is_power_of_two() {
        return None;
    }
    Layout::from_size_align(count, align_frames).ok()
}

/// Frames the buddy really takes for `layout`.
fn block_frames(layout: Layout) -> usize {
    layout.size().next_power_of_two().max(layout.align())
}

impl FrameAllocator for Frames {
    fn alloc_frames(&mut self, count: usize, align: u64) -> Option<PhysAddr> {
        let layout = frame_layout(count, align)?;
        let frame = self.buddy.alloc_aligned(layout)?;
        self.free -= block_frames(layout) as u64 * PAGE_SIZE;
        Some(PhysAddr(frame as u64 * PAGE_SIZE))
    }
}

/// What `mm::TableBuilder` builds in: identity-mapped table memory plus frames.
pub struct TableSpace<'f> {
    pub mem: DirectMap,
    pub frames: &'f mut Frames,
}

impl TableMemory for TableSpace<'_> {
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        self.mem.read_u64(addr)
    }
}

impl TableMemoryMut for TableSpace<'_> {
    fn write_u64(&mut self, addr: u64, value: u64) -> Result<(), ReadFault> {
        self.mem.write_u64(addr, value)
    }
}

impl FrameAllocator for TableSpace<'_> {
    fn alloc_frames(&mut self, count: usize, align: u64) -> Option<PhysAddr> {
        self.frames.alloc_frames(count, align)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;

    use mm::TableBuilder;
    use pagewalk::arm64::{Half, Regime, Stage1};
    use pagewalk::{translate, Access, MapAttrs, MemType};

    use super::*;

    #[test]
    fn frames_are_aligned_counted_and_reusable() {
        let mut frames = Frames::new();
        frames.add(PhysAddr(0x4000_0800), PhysAddr(0x4010_0000));
        // The partial first page is not handed out.
        assert_eq!(frames.free_bytes(), 0x10_0000 - PAGE_SIZE);
        let a = frames.alloc_frames(1, PAGE_SIZE).unwrap();
        assert!(a.0 >= 0x4000_1000 && a.0 < 0x4010_0000);
        let b = frames.alloc_frames(3, 0x10_000).unwrap();
        assert_eq!(b.0 % 0x10_000, 0);
        assert_ne!(a, b);
        // 3 frames aligned to 64K take a whole 16-frame buddy block.
        assert_eq!(frames.free_bytes(), 0x10_0000 - PAGE_SIZE - 17 * PAGE_SIZE);
        frames.free(b, 3, 0x10_000);
        assert_eq!(frames.free_bytes(), 0x10_0000 - 2 * PAGE_SIZE);
        assert!(frames.alloc_frames(0, PAGE_SIZE).is_none());
        assert!(frames.alloc_frames(1, 3 * PAGE_SIZE).is_none());
        assert!(frames.alloc_frames(1024, PAGE_SIZE).is_none(), "more than there is");
    }

    #[test]
    fn direct_map_refuses_outside_and_misaligned() {
        let mut buf = vec![0u64; 512];
        let start = buf.as_mut_ptr() as u64;
        // SAFETY: `buf` is ours, 4 KiB long, and only reached through `mem` below.
        let mut mem = unsafe { DirectMap::new(start, start + 4096) };
        mem.write_u64(start + 8, 0x1234).unwrap();
        assert_eq!(mem.read_u64(start + 8), Ok(0x1234));
        assert_eq!(mem.read_u64(start + 4096), Err(ReadFault { addr: start + 4096 }));
        assert_eq!(mem.read_u64(start + 4), Err(ReadFault { addr: start + 4 }));
        assert_eq!(mem.read_u64(start - 8), Err(ReadFault { addr: start - 8 }));
        assert_eq!(mem.read_u64(u64::MAX - 7), Err(ReadFault { addr: u64::MAX - 7 }));
        assert_eq!(buf[1], 0x1234);
    }

    #[test]
    fn guest_ram_reaches_only_its_ranges_through_the_window() {
        let mut buf = vec![0u64; 1024];
        let host = buf.as_mut_ptr() as u64;
        // Two guest RAM pages at PA 0x1000 and 0x3000, backed by buf's first and third pages.
        let ranges = vec![
            MemRange::new(0x1000, 0x2000).unwrap(),
            MemRange::new(0x3000, 0x4000).unwrap(),
        ];
        // SAFETY: window + 0x1000..0x4000 is `buf`, ours and reached only through `ram` below.
        let ram = unsafe { GuestRam::new(host - 0x1000, ranges) };
        let mut phys = &ram;
        phys.write(0x1008, &0xabcd_u64.to_le_bytes()).unwrap();
        assert_eq!(ram.read_u64(0x1008), Ok(0xabcd));
        assert_eq!(buf[1], 0xabcd);
        let mut word = [0u8; 8];
        (&ram).read(0x3000, &mut word).unwrap();
        assert_eq!(u64::from_le_bytes(word), buf[1024 / 2]);
        // Between the ranges, across a range end, misaligned, and past the end: refused.
        assert_eq!(ram.read_u64(0x2000), Err(ReadFault { addr: 0x2000 }));
        assert_eq!(ram.read_u64(0x1004), Err(ReadFault { addr: 0x1004 }));
        assert_eq!(
            (&ram).read(0x1ffc, &mut word),
            Err(GuestMemError::PhysFault { pa: 0x1ffc })
        );
        assert_eq!(phys.write(0x4000, &[1]), Err(GuestMemError::PhysFault { pa: 0x4000 }));
        assert!(ram.holds(0x3000, 0x1000) && !ram.holds(0x1000, 0x3000) && ram.holds(0x2000, 0));
        assert!(GuestRam::none(0).ranges().is_empty());
    }

    #[test]
    fn builder_runs_on_direct_memory_and_buddy_frames() {
        // Page-aligned host memory standing in for hv's table pool.
        let mut pool = vec![0u8; 40 * 4096];
        let base = (pool.as_mut_ptr() as u64).next_multiple_of(PAGE_SIZE);
        let end = base + 32 * PAGE_SIZE;
        let mut frames = Frames::new();
        frames.add(PhysAddr(base), PhysAddr(end));
        // SAFETY: `[base, end)` lies inside `pool`, which nothing else touches meanwhile.
        let mut space = TableSpace {
            mem: unsafe { DirectMap::new(base, end) },
            frames: &mut frames,
        };
        let format = Stage1::new(48, Half::Lower, Regime::El2).unwrap();
        let builder = TableBuilder::new(&format, &mut space).unwrap();
        let attrs = MapAttrs::new(Access::READ.union(Access::WRITE), MemType::Normal);
        builder
            .map(&mut space, 0x4000_0000, 0x4000_0000, 0x20_1000, &attrs)
            .unwrap();
        let t = translate(&format, &space, builder.root().0, 0x4020_0abc).unwrap();
        assert_eq!(t.out, 0x4020_0abc);
        assert!(t.access.is_writable() && !t.access.contains(Access::EXEC_PRIV));
        // root + L1 + L2 + one L3 for the trailing 4K page.
        assert_eq!(space.frames.free_bytes(), 28 * PAGE_SIZE);
        drop(pool);
    }
}
