//! x86-64 long-mode paging (4-level and 5-level/LA57) and AMD NPT, which
//! uses the same entries over guest-physical addresses.

use crate::format::{bits, AddressSpace, BadReason, ConfigError, Decoded, EncodeError, Format, MapAttrs, MemType};
use crate::types::{Access, Level};

pub const PRESENT: u64 = 1 << 0;
pub const RW: u64 = 1 << 1;
pub const USER: u64 = 1 << 2;
pub const PWT: u64 = 1 << 3;
pub const PCD: u64 = 1 << 4;
pub const ACCESSED: u64 = 1 << 5;
pub const DIRTY: u64 = 1 << 6;
/// Page size (levels 1 and 2) / PAT (4 KiB level).
pub const PSE: u64 = 1 << 7;
pub const PAT_4K: u64 = 1 << 7;
pub const GLOBAL: u64 = 1 << 8;
/// PAT bit of a 2 MiB / 1 GiB page.
pub const PAT_LARGE: u64 = 1 << 12;
pub const NX: u64 = 1 << 63;

/// The paging configuration an x86-64 walk needs (from CR4.LA57, EFER.NXE, CPUID MAXPHYADDR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Paging {
    levels: u32,
    nx_enabled: bool,
    phys_bits: u32,
}

impl Paging {
    fn new(levels: u32, nx_enabled: bool, phys_bits: u32) -> Result<Paging, ConfigError> {
        if levels != 4 && levels != 5 {
            return Err(ConfigError::BadLevels { levels });
        }
        if !(32..=52).contains(&phys_bits) {
            return Err(ConfigError::BadPhysBits { bits: phys_bits });
        }
        Ok(Paging {
            levels,
            nx_enabled,
            phys_bits,
        })
    }

    #[inline]
    fn root_level(&self) -> Level {
        Level(4 - self.levels as i8)
    }

    #[inline]
    fn addr_mask(&self) -> u64 {
        bits(self.phys_bits - 1, 12)
    }

    /// Bits that must be zero in any present entry.
    #[inline]
    fn reserved(&self) -> u64 {
        let mut r = if self.phys_bits < 52 {
            bits(51, self.phys_bits)
        } else {
            0
        };
        if !self.nx_enabled {
            r |= NX;
        }
        r
    }

    #[inline]
    fn decode(&self, level: Level, raw: u64) -> Decoded {
        if raw & PRESENT == 0 {
            return Decoded::Absent;
        }
        let reserved = raw & self.reserved();
        if reserved != 0 {
            return Decoded::Bad(BadReason::ReservedBits(reserved));
        }
        let rights = Access::READ
            .with_if(Access::WRITE, raw & RW != 0)
            .with_if(Access::USER, raw & USER != 0)
            .with_if(Access::EXEC, !(self.nx_enabled && raw & NX != 0));
        if level.is_page() {
            return Decoded::Leaf {
                out: raw & self.addr_mask(),
                access: rights,
            };
        }
        if raw & PSE == 0 {
            return Decoded::Table {
                next: raw & self.addr_mask(),
                allows: rights,
            };
        }
        if level.0 < 1 {
            // PS is reserved in PML5 and PML4 entries.
            return Decoded::Bad(BadReason::ReservedBits(PSE));
        }
        // Bits between the PAT bit and the page's alignment are reserved.
        let low = bits(level.shift() - 1, 13) & raw;
        if low != 0 {
            return Decoded::Bad(BadReason::ReservedBits(low));
        }
        Decoded::Leaf {
            out: raw & self.addr_mask() & !(level.entry_size() - 1),
            access: rights,
        }
    }

    fn split_leaf(&self, level: Level, raw: u64, index: u64) -> u64 {
        let child = level.next();
        let out = (raw & self.addr_mask() & !(level.entry_size() - 1)) + index * child.entry_size();
        let pat = raw & PAT_LARGE != 0;
        let mut attrs = raw & !self.addr_mask() & !(PSE | PAT_LARGE);
        if child.is_page() {
            attrs |= if pat { PAT_4K } else { 0 };
        } else {
            attrs |= PSE | if pat { PAT_LARGE } else { 0 };
        }
        out | attrs
    }

    fn encode_leaf(&self, level: Level, out: u64, attrs: &MapAttrs, force_user: bool) -> Result<u64, EncodeError> {
        if !(1..=3).contains(&level.0) {
            return Err(EncodeError::NoBlockAtLevel(level));
        }
        if out & (level.entry_size() - 1) != 0 || out & !self.addr_mask() != 0 {
            return Err(EncodeError::BadOutputAddress(out));
        }
        let a = attrs.access;
        let exec = a.intersects(Access::EXEC);
        if !a.contains(Access::READ) || (!exec && !self.nx_enabled) {
            return Err(EncodeError::UnsupportedAccess(a));
        }
        // Default PAT: PWT|PCD = UC, PCD = UC-.
        let cache = match attrs.mem {
            MemType::Normal => 0,
            MemType::NormalNonCacheable => PCD,
            MemType::Device | MemType::DeviceStrict => PCD | PWT,
        };
        let mut raw = out | PRESENT | ACCESSED | cache;
        if a.is_writable() {
            raw |= RW | DIRTY;
        }
        if a.contains(Access::USER) || force_user {
            raw |= USER;
        }
        if attrs.global && !force_user {
            raw |= GLOBAL;
        }
        if !exec {
            raw |= NX;
        }
        if !level.is_page() {
            raw |= PSE;
        }
        Ok(raw)
    }
}

/// x86-64 long-mode page tables rooted at CR3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct X86_64 {
    paging: Paging,
}

impl X86_64 {
    /// `levels` 4 or 5 (CR4.LA57), `nx_enabled` (EFER.NXE), `phys_bits` (MAXPHYADDR).
    pub fn new(levels: u32, nx_enabled: bool, phys_bits: u32) -> Result<X86_64, ConfigError> {
        Ok(X86_64 {
            paging: Paging::new(levels, nx_enabled, phys_bits)?,
        })
    }
    /// 4-level paging, NX on, 52-bit physical addresses.
    pub fn four_level() -> X86_64 {
        X86_64 {
            paging: Paging {
                levels: 4,
                nx_enabled: true,
                phys_bits: 52,
            },
        }
    }
    /// 5-level paging (LA57), NX on, 52-bit physical addresses.
    pub fn five_level() -> X86_64 {
        X86_64 {
            paging: Paging {
                levels: 5,
                nx_enabled: true,
                phys_bits: 52,
            },
        }
    }
    pub fn levels(&self) -> u32 {
        self.paging.levels
    }
}

impl Format for X86_64 {
    #[inline]
    fn root_level(&self) -> Level {
        self.paging.root_level()
    }
    #[inline]
    fn root_entries(&self) -> usize {
        512
    }
    #[inline]
    fn address_space(&self) -> AddressSpace {
        AddressSpace::SignExtended
    }
    #[inline]
    fn decode(&self, level: Level, raw: u64) -> Decoded {
        self.paging.decode(level, raw)
    }
    fn encode_table(&self, _level: Level, next: u64) -> u64 {
        (next & self.paging.addr_mask()) | PRESENT | RW | USER | ACCESSED
    }
    fn leaf_allowed(&self, level: Level) -> bool {
        (1..=3).contains(&level.0)
    }
    fn split_leaf(&self, level: Level, raw: u64, index: u64) -> u64 {
        self.paging.split_leaf(level, raw, index)
    }
    fn encode_leaf(&self, level: Level, out: u64, attrs: &MapAttrs) -> Result<u64, EncodeError> {
        self.paging.encode_leaf(level, out, attrs, false)
    }
}

/// AMD nested page tables (guest-physical to host-physical) rooted at the
/// VMCB's N_CR3. Every guest access is a user access to the nested walk, so
/// an entry without U/S grants nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Npt {
    paging: Paging,
}

impl Npt {
    pub fn new(levels: u32, phys_bits: u32) -> Result<Npt, ConfigError> {
        Ok(Npt {
            paging: Paging::new(levels, true, phys_bits)?,
        })
    }
    /// 4-level NPT, 48-bit guest-physical space.
    pub fn four_level() -> Npt {
        Npt {
            paging: Paging {
                levels: 4,
                nx_enabled: true,
                phys_bits: 52,
            },
        }
    }
    pub fn levels(&self) -> u32 {
        self.paging.levels
    }
}

fn nested_rights(a: Access) -> Access {
    if a.contains(Access::USER) {
        a
    } else {
        Access::NONE
    }
}

impl Format for Npt {
    #[inline]
    fn root_level(&self) -> Level {
        self.paging.root_level()
    }
    #[inline]
    fn root_entries(&self) -> usize {
        512
    }
    #[inline]
    fn address_space(&self) -> AddressSpace {
        AddressSpace::Direct
    }
    #[inline]
    fn decode(&self, level: Level, raw: u64) -> Decoded {
        match self.paging.decode(level, raw) {
            Decoded::Leaf { out, access } => Decoded::Leaf {
                out,
                access: nested_rights(access),
            },
            Decoded::Table { next, allows } => Decoded::Table {
                next,
                allows: nested_rights(allows),
            },
            other => other,
        }
    }
    fn encode_table(&self, _level: Level, next: u64) -> u64 {
        (next & self.paging.addr_mask()) | PRESENT | RW | USER | ACCESSED
    }
    fn leaf_allowed(&self, level: Level) -> bool {
        (1..=3).contains(&level.0)
    }
    fn split_leaf(&self, level: Level, raw: u64, index: u64) -> u64 {
        self.paging.split_leaf(level, raw, index)
    }
    fn encode_leaf(&self, level: Level, out: u64, attrs: &MapAttrs) -> Result<u64, EncodeError> {
        self.paging.encode_leaf(level, out, attrs, true)
    }
}
