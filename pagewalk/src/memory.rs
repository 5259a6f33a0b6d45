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

/// Where page tables live. The walker reads 8-byte entries, always 8-byte
/// aligned, and never assumes a read succeeds.
pub trait TableMemory {
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault>;

    /// Reads consecutive entries from `addr` into `out`, in address order,
    /// stopping at the first that cannot be read. Returns how many were read:
    /// `out.len()` when all were; `n < out.len()` means the entry at
    /// `addr + 8 * n` faulted and nothing after it was read.
    ///
    /// The walker reads a table's entries through here, a batch at a time.
    /// The default reads them one by one with [`TableMemory::read_u64`], so a
    /// memory that counts or checks reads sees exactly the reads it would see
    /// entry by entry; a memory that can check a whole batch at once (as
    /// [`MemoryImage`] does) overrides it to skip the per-entry checks.
    #[inline]
    fn read_entries(&self, addr: u64, out: &mut [u64]) -> usize {
        read_each(self, addr, out)
    }
}

/// [`TableMemory::read_entries`] one entry at a time.
#[inline]
fn read_each<M: TableMemory + ?Sized>(mem: &M, addr: u64, out: &mut [u64]) -> usize {
    for (i, slot) in out.iter_mut().enumerate() {
        match mem.read_u64(addr.wrapping_add(i as u64 * 8)) {
            Ok(raw) => *slot = raw,
            Err(_) => return i,
        }
    }
    out.len()
}

/// Table memory a builder may also write.
pub trait TableMemoryMut: TableMemory {
    fn write_u64(&mut self, addr: u64, value: u64) -> Result<(), ReadFault>;
}

impl<M: TableMemory + ?Sized> TableMemory for &M {
    #[inline]
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        (**self).read_u64(addr)
    }
    #[inline]
    fn read_entries(&self, addr: u64, out: &mut [u64]) -> usize {
        (**self).read_entries(addr, out)
    }
}

impl<M: TableMemory + ?Sized> TableMemory for &mut M {
    #[inline]
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        (**self).read_u64(addr)
    }
    #[inline]
    fn read_entries(&self, addr: u64, out: &mut [u64]) -> usize {
        (**self).read_entries(addr, out)
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

    // One bounds check for the batch; entry by entry only when the batch
    // runs off the image (or is misaligned), to find where it stops.
    #[inline]
    fn read_entries(&self, addr: u64, out: &mut [u64]) -> usize {
        // A translation reads one entry a table: no copy loop (a memcpy call) for it.
        if let [only] = out {
            return match self.read_u64(addr) {
                Ok(raw) => {
                    *only = raw;
                    1
                }
                Err(_) => 0,
            };
        }
        let bytes = out.len() * 8;
        let inside = word_offset(self.base, self.bytes.len(), addr).filter(|&off| bytes <= self.bytes.len() - off);
        let Some(off) = inside else {
            return read_each(self, addr, out);
        };
        for (slot, word) in out.iter_mut().zip(self.bytes[off..off + bytes].chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(word);
            *slot = u64::from_le_bytes(le);
        }
        out.len()
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
    #[inline]
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        self.as_image().read_u64(addr)
    }
    #[inline]
    fn read_entries(&self, addr: u64, out: &mut [u64]) -> usize {
        self.as_image().read_entries(addr, out)
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

    /// A batch inside one guest page is one translation and one host batch.
    fn read_entries(&self, guest_addr: u64, out: &mut [u64]) -> usize {
        let last = guest_addr.wrapping_add((out.len() as u64 * 8).saturating_sub(1));
        if out.is_empty() || guest_addr & !(PAGE_SIZE - 1) != last & !(PAGE_SIZE - 1) {
            return read_each(self, guest_addr, out);
        }
        match self.translate(guest_addr) {
            Ok(host_addr) => self.host.read_entries(host_addr, out),
            // Every entry of the batch shares the page that failed.
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use super::*;
    use crate::arm64::Stage2;
    use crate::walk::{walk_with, BadEntry, Flow, Hole, Leaf, TableVisit, Visitor, WalkLimits};
    use crate::x86::X86_64;
    use crate::AddrRange;

    /// Only `read_u64`: the walker falls back to the per-entry default.
    struct PerEntry<'a>(MemoryImage<'a>);

    impl TableMemory for PerEntry<'_> {
        fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
            self.0.read_u64(addr)
        }
    }

    #[derive(Default, PartialEq, Debug)]
    struct Log(Vec<(u8, u64, u64, u64)>);

    impl Visitor for Log {
        fn leaf(&mut self, l: &Leaf) -> Flow {
            self.0
                .push((0, l.addr, l.size, l.out ^ l.raw ^ u64::from(l.access.bits())));
            Flow::Continue
        }
        fn hole(&mut self, h: &Hole) -> Flow {
            self.0.push((1, h.addr, h.size, h.raw));
            Flow::Continue
        }
        fn bad(&mut self, b: &BadEntry) -> Flow {
            self.0.push((2, b.addr, b.size, b.entry_addr));
            Flow::Continue
        }
        fn table_enter(&mut self, t: &TableVisit) -> Flow {
            self.0.push((3, t.addr, t.size, t.table));
            Flow::Continue
        }
    }

    fn image_bytes(words: &[u64]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn image_batches_stop_where_the_image_ends() {
        let bytes = image_bytes(&[1, 2, 3, 4]);
        let image = MemoryImage::new(0x1000, &bytes);
        let mut out = [0u64; 4];
        assert_eq!(image.read_entries(0x1000, &mut out), 4);
        assert_eq!(out, [1, 2, 3, 4]);
        let mut out = [0u64; 4];
        assert_eq!(image.read_entries(0x1010, &mut out), 2);
        assert_eq!(out[..2], [3, 4]);
        assert_eq!(image.read_entries(0x0ff8, &mut out), 0);
        assert_eq!(image.read_entries(0x1004, &mut out), 0);
        assert_eq!(image.read_entries(u64::MAX - 7, &mut out), 0);
        let mut one = [0u64; 1];
        assert_eq!(image.read_entries(0x1018, &mut one), 1);
        assert_eq!(one, [4]);
        assert_eq!(image.read_entries(0x1020, &mut one), 0);
    }

    /// Pseudo-random tables (many entries pointing into the image, some
    /// past its end): the batched image and per-entry reads report the same.
    #[test]
    fn batched_and_per_entry_walks_agree() {
        const BASE: u64 = 0x40_0000;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut seen = crate::WalkSummary::default();
        for round in 0..24 {
            let mut words = Vec::new();
            for i in 0..6 * 512u32 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let mut w = seed;
                if !(seed >> 40).is_multiple_of(3) {
                    // Present, pointing at one of the 6 pages or the one after.
                    let page = (seed >> 20) % 7;
                    w = (w & 0xfff0_0000_0000_0fe0) | (BASE + page * 0x1000) | 0b11;
                    if i.is_multiple_of(5) {
                        w &= !(0xfff << 52);
                    }
                }
                words.push(w);
            }
            let bytes = image_bytes(&words);
            let image = MemoryImage::new(BASE, &bytes);
            let root = BASE + (round % 6) * 0x1000;
            let range = AddrRange::new(seed >> (round % 24), Some(seed | (1 << 63))).unwrap_or(AddrRange::ALL);
            let x86 = X86_64::new(4, true, 46).unwrap();
            let s2 = Stage2::new(40, 1).unwrap();
            for f in [&x86 as &dyn crate::Format, &s2] {
                for range in [range, AddrRange::ALL] {
                    let (mut batched, mut single) = (Log::default(), Log::default());
                    // Shared subtrees: bound the walk.
                    let limits = WalkLimits { max_tables: 100 };
                    let a = walk_with(f, &image, root, range, limits, &mut batched);
                    let b = walk_with(f, &PerEntry(image), root, range, limits, &mut single);
                    assert_eq!(a, b);
                    assert_eq!(batched, single);
                    seen.tables += a.tables;
                    seen.leaves += a.leaves;
                    seen.holes += a.holes;
                    seen.bad += a.bad;
                }
            }
        }
        // The tables exercised every kind of report, deep walks included.
        assert!(
            seen.tables > 500 && seen.leaves > 500 && seen.holes > 500 && seen.bad > 500,
            "{seen:?}"
        );
    }

    #[test]
    fn through_stage2_batches_within_a_page_and_across() {
        // Guest page 0x8000 -> host 0x2000 and guest 0x9000 -> host 0x3000.
        let s2 = Stage2::new(32, 1).unwrap();
        let mut host = std::vec![0u8; 0x5000];
        let mut put = |addr: u64, v: u64| host[addr as usize..addr as usize + 8].copy_from_slice(&v.to_le_bytes());
        let attrs = crate::MapAttrs::new(crate::Access::READ, crate::MemType::Normal);
        put(0x0000, s2.encode_table(crate::Level(1), 0x1000));
        put(0x1000, s2.encode_table(crate::Level(2), 0x4000));
        put(0x4000 + 8 * 8, s2.encode_leaf(crate::Level(3), 0x2000, &attrs).unwrap());
        put(0x4000 + 9 * 8, s2.encode_leaf(crate::Level(3), 0x3000, &attrs).unwrap());
        put(0x2ff8, 7);
        put(0x3000, 8);
        let mem = ThroughStage2::new(&s2, 0, MemoryImage::new(0, &host));
        let mut out = [0u64; 2];
        assert_eq!(mem.read_entries(0x8ff8, &mut out), 2);
        assert_eq!(out, [7, 8]);
        assert_eq!(mem.read_entries(0x8ff0, &mut out), 2);
        assert_eq!(out, [0, 7]);
        // The page after 0x9000 is not mapped.
        assert_eq!(mem.read_entries(0x9ff8, &mut out), 1);
        assert_eq!(mem.read_entries(0xa000, &mut out), 0);
    }
}
