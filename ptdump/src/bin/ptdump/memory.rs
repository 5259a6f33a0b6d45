//! Physical memory read on demand from a file whose byte ranges hold
//! physical address ranges: one range for a raw image, one per `PT_LOAD`
//! segment for an ELF core.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;

use pagewalk::{ReadFault, TableMemory};

/// Physical `[paddr, paddr + mem_size)` backed by the file at `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub paddr: u64,
    pub offset: u64,
    /// Bytes the segment says the file holds (ELF `p_filesz`).
    pub file_size: u64,
    /// Bytes of physical memory it covers (ELF `p_memsz`): past `file_size`
    /// the memory reads as zeros, as the ELF specification says.
    pub mem_size: u64,
    /// Bytes of `file_size` the file really holds: less when it is truncated.
    /// `[present, file_size)` is unreadable.
    pub present: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        // Checked on construction: `paddr + mem_size` does not overflow.
        self.paddr + self.mem_size
    }
}

const PAGE: u64 = 4096;

/// The memory the walker reads. Addresses outside every segment, and the
/// missing tail of a truncated one, fault: the walker reports them as bad.
pub struct SegmentMemory {
    file: File,
    /// Sorted by `paddr`, not overlapping.
    segments: Vec<Segment>,
    /// One file page: the walker reads a table entry by entry.
    cache: RefCell<Option<(u64, Box<[u8; PAGE as usize]>)>>,
}

impl SegmentMemory {
    /// `segments` in any order; they must not overlap nor wrap around the
    /// address space, and `present <= file_size <= mem_size`.
    pub fn new(file: File, mut segments: Vec<Segment>) -> Result<SegmentMemory, String> {
        for s in &segments {
            if s.paddr.checked_add(s.mem_size).is_none() {
                return Err(format!(
                    "segment at {:#x} of {:#x} bytes runs past the top of the address space",
                    s.paddr, s.mem_size
                ));
            }
            if s.present > s.file_size || s.file_size > s.mem_size {
                return Err(format!("segment at {:#x}: inconsistent sizes", s.paddr));
            }
        }
        segments.retain(|s| s.mem_size > 0);
        segments.sort_by_key(|s| s.paddr);
        if let Some(pair) = segments.windows(2).find(|pair| pair[0].end() > pair[1].paddr) {
            return Err(format!(
                "segments [{:#x}, {:#x}) and [{:#x}, {:#x}) overlap",
                pair[0].paddr,
                pair[0].end(),
                pair[1].paddr,
                pair[1].end()
            ));
        }
        Ok(SegmentMemory {
            file,
            segments,
            cache: RefCell::new(None),
        })
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    fn segment_of(&self, addr: u64) -> Option<&Segment> {
        let after = self.segments.partition_point(|s| s.paddr <= addr);
        let segment = self.segments[..after].last()?;
        (addr < segment.end()).then_some(segment)
    }

    fn read_file(&self, offset: u64, word: &mut [u8; 8]) -> Result<(), ()> {
        let page = offset & !(PAGE - 1);
        if offset - page > PAGE - 8 {
            // Straddles two file pages (a segment at an unaligned file offset).
            return self.file.read_exact_at(word, offset).map_err(|_| ());
        }
        let mut cache = self.cache.borrow_mut();
        let cached = match &mut *cache {
            Some((at, bytes)) if *at == page => bytes,
            slot => {
                let mut bytes = Box::new([0u8; PAGE as usize]);
                let mut filled = 0;
                // The page may run past the end of the file: keep what is there.
                while filled < bytes.len() {
                    match self.file.read_at(&mut bytes[filled..], page + filled as u64) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => return Err(()),
                    }
                }
                if ((offset - page) as usize) + 8 > filled {
                    return Err(());
                }
                &mut slot.insert((page, bytes)).1
            }
        };
        let at = (offset - page) as usize;
        word.copy_from_slice(&cached[at..at + 8]);
        Ok(())
    }
}

impl TableMemory for SegmentMemory {
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        let fault = ReadFault { addr };
        if !addr.is_multiple_of(8) {
            return Err(fault);
        }
        let segment = self.segment_of(addr).ok_or(fault)?;
        let within = addr - segment.paddr;
        // The 8 bytes must lie in one segment.
        if within + 8 > segment.mem_size {
            return Err(fault);
        }
        if within >= segment.file_size {
            return Ok(0);
        }
        if within + 8 > segment.present {
            return Err(fault);
        }
        let mut word = [0u8; 8];
        self.read_file(segment.offset + within, &mut word).map_err(|_| fault)?;
        Ok(u64::from_le_bytes(word))
    }
}
