use core::cell::Cell;
use core::fmt;

use crate::format::Format;
use crate::translate::translate;
use crate::types::Access;
use crate::PAGE_SIZE;

/// A table address that table memory cannot read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadFault {
    pub addr: u64,
}

impl fmt::Display for ReadFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no readable table memory at {:#x}", self.addr)
    }
}

/// Where page tables live. The walker reads one 8-byte entry at a time,
/// always 8-byte aligned, and never assumes a read succeeds.
pub trait TableMemory {
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault>;
}

/// Table memory a builder may also write.
pub trait TableMemoryMut: TableMemory {
    fn write_u64(&mut self, addr: u64, value: u64) -> Result<(), ReadFault>;
}

impl<M: TableMemory + ?Sized> TableMemory for &M {
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        (**self).read_u64(addr)
    }
}

impl<M: TableMemory + ?Sized> TableMemory for &mut M {
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        (**self).read_u64(addr)
    }
}

impl<M: TableMemoryMut + ?Sized> TableMemoryMut for &mut M {
    fn write_u64(&mut self, addr: u64, value: u64) -> Result<(), ReadFault> {
        (**self).write_u64(addr, value)
    }
}

/// Locates an aligned 8-byte word of `[base, base + len)`; `None` outside it.
#[inline]
fn word_offset(base: u64, len: usize, addr: u64) -> Option<usize> {
    if !addr.is_multiple_of(8) {
        return None;
    }
    let off = addr.checked_sub(base)?;
    let end = off.checked_add(8)?;
    (end <= len as u64).then_some(off as usize)
}

/// A copy of physical memory starting at `base`: a test fixture, a memory
/// dump read by the host tool, or hv's view of RAM. Little-endian entries.
#[derive(Clone, Copy)]
pub struct MemoryImage<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl<'a> MemoryImage<'a> {
    pub const fn new(base: u64, bytes: &'a [u8]) -> Self {
        MemoryImage { base, bytes }
    }
    pub const fn base(&self) -> u64 {
        self.base
    }
    pub const fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

impl TableMemory for MemoryImage<'_> {
    // Inlined across crates: the walk loop reads every entry through here.
    #[inline]
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        let off = word_offset(self.base, self.bytes.len(), addr).ok_or(ReadFault { addr })?;
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.bytes[off..off + 8]);
        Ok(u64::from_le_bytes(word))
    }
}

/// A writable memory image, for building tables in tests and tools.
pub struct MemoryImageMut<'a> {
    base: u64,
    bytes: &'a mut [u8],
}

impl<'a> MemoryImageMut<'a> {
    pub fn new(base: u64, bytes: &'a mut [u8]) -> Self {
        MemoryImageMut { base, bytes }
    }
    pub fn base(&self) -> u64 {
        self.base
    }
    pub fn as_image(&self) -> MemoryImage<'_> {
        MemoryImage::new(self.base, self.bytes)
    }
}

impl TableMemory for MemoryImageMut<'_> {
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        self.as_image().read_u64(addr)
    }
}

impl TableMemoryMut for MemoryImageMut<'_> {
    fn write_u64(&mut self, addr: u64, value: u64) -> Result<(), ReadFault> {
        let off = word_offset(self.base, self.bytes.len(), addr).ok_or(ReadFault { addr })?;
        self.bytes[off..off + 8].copy_from_slice(&value.to_le_bytes());
        Ok(())
    }
}

/// Reads a guest's tables: each table address is a guest-physical address,
/// translated through the guest's stage-2 (or NPT / EPT) before the read, and
/// refused unless stage-2 grants read access - exactly what the MMU's own
/// stage-1 walk may touch.
pub struct ThroughStage2<'a, F: Format, M: TableMemory> {
    stage2: &'a F,
    stage2_root: u64,
    host: M,
    /// Last translated page (guest page, host page): consecutive reads of one
    /// table then cost one stage-2 walk, not one per entry.
    last_page: Cell<Option<(u64, u64)>>,
}

impl<'a, F: Format, M: TableMemory> ThroughStage2<'a, F, M> {
    pub fn new(stage2: &'a F, stage2_root: u64, host: M) -> Self {
        ThroughStage2 {
            stage2,
            stage2_root,
            host,
            last_page: Cell::new(None),
        }
    }

    /// Guest-physical to host-physical for one readable address.
    pub fn translate(&self, guest_addr: u64) -> Result<u64, ReadFault> {
        let page = guest_addr & !(PAGE_SIZE - 1);
        if let Some((gpage, hpage)) = self.last_page.get() {
            if gpage == page {
                return Ok(hpage | (guest_addr & (PAGE_SIZE - 1)));
            }
        }
        let t = translate(self.stage2, &self.host, self.stage2_root, guest_addr)
            .map_err(|_| ReadFault { addr: guest_addr })?;
        if !t.access.contains(Access::READ) {
            return Err(ReadFault { addr: guest_addr });
        }
        self.last_page.set(Some((page, t.out & !(PAGE_SIZE - 1))));
        Ok(t.out)
    }
}

impl<F: Format, M: TableMemory> TableMemory for ThroughStage2<'_, F, M> {
    fn read_u64(&self, guest_addr: u64) -> Result<u64, ReadFault> {
        let host_addr = self.translate(guest_addr)?;
        self.host
            .read_u64(host_addr)
            .map_err(|_| ReadFault { addr: guest_addr })
    }
}
