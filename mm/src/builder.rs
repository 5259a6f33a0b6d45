//! Builds page tables in any [`Format`]: largest blocks where aligned,
//! splitting blocks where a change needs a finer grain. It finds its way
//! with the walker (a one-address walk says which entry covers an address)
//! and writes entries the format encodes: no second walk loop here.

use core::fmt;

use pagewalk::{
    walk, AddrRange, BadEntry, BadReason, EncodeError, Flow, Format, Hole, Leaf, Level, MapAttrs, ReadFault,
    TableMemoryMut, Visitor, ENTRIES_PER_TABLE, PAGE_SIZE,
};

use crate::addr::PhysAddr;
use crate::frame::FrameAllocator;

/// Why a map or unmap did not complete. Entries written before the error
/// stay written; nothing is half-written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Address, output address or length not 4 KiB aligned, or the range wraps.
    Misaligned,
    /// The address is outside the format's address space.
    OutOfRange(u64),
    /// Part of the range is already mapped (at this address).
    AlreadyMapped(u64),
    /// No frames left for a table.
    OutOfFrames,
    /// The format cannot encode the request.
    Encode(EncodeError),
    /// The existing table holds a malformed entry covering this address.
    BadEntry { addr: u64, reason: BadReason },
    /// Table memory refused a read or write.
    Memory(ReadFault),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Misaligned => f.write_str("range not 4K aligned or wraps"),
            MapError::OutOfRange(a) => write!(f, "{a:#x} is outside the address space"),
            MapError::AlreadyMapped(a) => write!(f, "{a:#x} is already mapped"),
            MapError::OutOfFrames => f.write_str("out of frames for page tables"),
            MapError::Encode(e) => write!(f, "{e}"),
            MapError::BadEntry { addr, reason } => {
                write!(f, "bad entry covering {addr:#x}: {reason}")
            }
            MapError::Memory(e) => write!(f, "{e}"),
        }
    }
}

impl From<EncodeError> for MapError {
    fn from(e: EncodeError) -> Self {
        MapError::Encode(e)
    }
}

impl From<ReadFault> for MapError {
    fn from(e: ReadFault) -> Self {
        MapError::Memory(e)
    }
}

/// Memory that holds tables and the frames to grow them.
pub trait TableSpace: TableMemoryMut + FrameAllocator {}
impl<T: TableMemoryMut + FrameAllocator> TableSpace for T {}

/// The entry that covers one address, as the walker found it.
#[derive(Clone, Copy, Debug)]
enum Covering {
    Hole { level: Level, entry_addr: u64 },
    Leaf { level: Level, entry_addr: u64, raw: u64 },
    Bad { reason: BadReason },
}

struct Probe(Option<Covering>);

impl Visitor for Probe {
    fn leaf(&mut self, l: &Leaf) -> Flow {
        self.0 = Some(Covering::Leaf {
            level: l.level,
            entry_addr: l.entry_addr,
            raw: l.raw,
        });
        Flow::Stop
    }
    fn hole(&mut self, h: &Hole) -> Flow {
        self.0 = Some(Covering::Hole {
            level: h.level,
            entry_addr: h.entry_addr,
        });
        Flow::Stop
    }
    fn bad(&mut self, b: &BadEntry) -> Flow {
        self.0 = Some(Covering::Bad { reason: b.reason });
        Flow::Stop
    }
}

/// A page-table tree in one format, rooted at `root`.
#[derive(Clone, Copy, Debug)]
pub struct TableBuilder<'f, F: Format + ?Sized> {
    format: &'f F,
    root: u64,
}

impl<'f, F: Format + ?Sized> TableBuilder<'f, F> {
    /// Allocates an empty root (contiguous and aligned for concatenated stage-2 roots).
    pub fn new<S: TableSpace + ?Sized>(format: &'f F, space: &mut S) -> Result<Self, MapError> {
        let tables = format.root_entries().div_ceil(ENTRIES_PER_TABLE).max(1);
        let root = alloc_zeroed(space, tables)?;
        Ok(TableBuilder { format, root })
    }

    /// Continues building an existing tree.
    pub fn with_root(format: &'f F, root: PhysAddr) -> Self {
        TableBuilder { format, root: root.0 }
    }

    pub fn root(&self) -> PhysAddr {
        PhysAddr(self.root)
    }
    pub fn format(&self) -> &'f F {
        self.format
    }

    fn covering<S: TableSpace + ?Sized>(&self, space: &S, addr: u64) -> Result<Covering, MapError> {
        let mut probe = Probe(None);
        walk(
            self.format,
            space,
            self.root,
            AddrRange {
                start: addr,
                last: addr,
            },
            &mut probe,
        );
        match probe.0 {
            None => Err(MapError::OutOfRange(addr)),
            Some(Covering::Bad { reason }) => Err(MapError::BadEntry { addr, reason }),
            Some(c) => Ok(c),
        }
    }

    /// Maps `[va, va + len)` to `[pa, pa + len)` with `attrs`, using the
    /// largest leaves alignment allows. Refuses to replace an existing mapping.
    pub fn map<S: TableSpace + ?Sized>(
        &self,
        space: &mut S,
        va: u64,
        pa: u64,
        len: u64,
        attrs: &MapAttrs,
    ) -> Result<(), MapError> {
        check_range(va, len)?;
        if !pa.is_multiple_of(PAGE_SIZE) || pa.checked_add(len).is_none() {
            return Err(MapError::Misaligned);
        }
        let (mut va, mut pa, mut left) = (va, pa, len);
        while left > 0 {
            let mut level = self.largest_leaf(va, pa, left);
            loop {
                match self.covering(space, va)? {
                    Covering::Leaf { .. } => return Err(MapError::AlreadyMapped(va)),
                    Covering::Bad { reason } => return Err(MapError::BadEntry { addr: va, reason }),
                    Covering::Hole { level: at, entry_addr } if at < level => {
                        let table = alloc_zeroed(space, 1)?;
                        space.write_u64(entry_addr, self.format.encode_table(at, table))?;
                    }
                    Covering::Hole { level: at, entry_addr } if at == level => {
                        space.write_u64(entry_addr, self.format.encode_leaf(level, pa, attrs)?)?;
                        break;
                    }
                    // A table already covers this address below `level`: map finer.
                    Covering::Hole { .. } => level = level.next(),
                }
            }
            let size = level.entry_size();
            left -= size;
            va = va.wrapping_add(size);
            pa += size;
        }
        Ok(())
    }

    /// Removes every mapping in `[va, va + len)`, splitting blocks that
    /// straddle its edges. Tables are left in place (possibly empty).
    pub fn unmap<S: TableSpace + ?Sized>(&self, space: &mut S, va: u64, len: u64) -> Result<(), MapError> {
        check_range(va, len)?;
        let (mut va, mut left) = (va, len);
        while left > 0 {
            let (level, entry_addr, raw) = match self.covering(space, va)? {
                Covering::Hole { level, .. } => {
                    let step = (level.entry_size() - (va & (level.entry_size() - 1))).min(left);
                    left -= step;
                    va = va.wrapping_add(step);
                    continue;
                }
                Covering::Leaf { level, entry_addr, raw } => (level, entry_addr, raw),
                Covering::Bad { reason } => return Err(MapError::BadEntry { addr: va, reason }),
            };
            let size = level.entry_size();
            if va % size == 0 && left >= size {
                space.write_u64(entry_addr, 0)?;
                left -= size;
                va = va.wrapping_add(size);
            } else {
                self.split(space, level, entry_addr, raw)?;
            }
        }
        Ok(())
    }

    /// Replaces the block `raw` at `entry_addr` with a table of its pieces.
    fn split<S: TableSpace + ?Sized>(
        &self,
        space: &mut S,
        level: Level,
        entry_addr: u64,
        raw: u64,
    ) -> Result<(), MapError> {
        let table = alloc_zeroed(space, 1)?;
        for i in 0..ENTRIES_PER_TABLE as u64 {
            space.write_u64(table + i * 8, self.format.split_leaf(level, raw, i))?;
        }
        space.write_u64(entry_addr, self.format.encode_table(level, table))?;
        Ok(())
    }

    /// The highest level whose leaves fit `va`/`pa` alignment and `left`.
    fn largest_leaf(&self, va: u64, pa: u64, left: u64) -> Level {
        let mut level = self.format.root_level();
        while !level.is_page() {
            let size = level.entry_size();
            if self.format.leaf_allowed(level) && va.is_multiple_of(size) && pa.is_multiple_of(size) && left >= size {
                return level;
            }
            level = level.next();
        }
        level
    }
}

fn check_range(va: u64, len: u64) -> Result<(), MapError> {
    // `va + len` may be exactly 2^64 (a range ending at the top of the space).
    if !va.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) || (len > 0 && va.checked_add(len - 1).is_none())
    {
        return Err(MapError::Misaligned);
    }
    Ok(())
}

fn alloc_zeroed<S: TableSpace + ?Sized>(space: &mut S, tables: usize) -> Result<u64, MapError> {
    let align = (tables as u64 * PAGE_SIZE).next_power_of_two();
    let base = space.alloc_frames(tables, align).ok_or(MapError::OutOfFrames)?.0;
    for offset in (0..tables as u64 * PAGE_SIZE).step_by(8) {
        space.write_u64(base + offset, 0)?;
    }
    Ok(base)
}
