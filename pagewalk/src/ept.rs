//! Intel EPT (guest-physical to host-physical), 4- and 5-level.

use crate::format::{bits, AddressSpace, BadReason, ConfigError, Decoded, EncodeError, Format, MapAttrs, MemType};
use crate::types::{Access, Level};

pub const READ: u64 = 1 << 0;
pub const WRITE: u64 = 1 << 1;
/// Execute (supervisor-mode execute when mode-based execute control is on).
pub const EXEC: u64 = 1 << 2;
pub const MEMTYPE_SHIFT: u32 = 3;
pub const MEMTYPE_MASK: u64 = 0b111 << MEMTYPE_SHIFT;
pub const IGNORE_PAT: u64 = 1 << 6;
pub const LARGE: u64 = 1 << 7;
pub const ACCESSED: u64 = 1 << 8;
pub const DIRTY: u64 = 1 << 9;
/// User-mode execute (mode-based execute control).
pub const USER_EXEC: u64 = 1 << 10;
pub const SUPPRESS_VE: u64 = 1 << 63;

pub const MEMTYPE_UC: u64 = 0;
pub const MEMTYPE_WC: u64 = 1;
pub const MEMTYPE_WT: u64 = 4;
pub const MEMTYPE_WP: u64 = 5;
pub const MEMTYPE_WB: u64 = 6;

/// Name of an EPT memory type (Xen's spelling), `None` for reserved ones.
pub fn memtype_name(memtype: u64) -> Option<&'static str> {
    match memtype {
        MEMTYPE_UC => Some("UC"),
        MEMTYPE_WC => Some("WC"),
        MEMTYPE_WT => Some("WT"),
        MEMTYPE_WP => Some("WP"),
        MEMTYPE_WB => Some("WB"),
        _ => None,
    }
}

/// Intel extended page tables rooted at the EPTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ept {
    levels: u32,
    mode_based_exec: bool,
    phys_bits: u32,
}

impl Ept {
    /// `levels` 4 or 5 (EPTP page-walk length), `mode_based_exec` (MBEC: bit 10
    /// is user execute), `phys_bits` (MAXPHYADDR).
    pub fn new(levels: u32, mode_based_exec: bool, phys_bits: u32) -> Result<Ept, ConfigError> {
        if levels != 4 && levels != 5 {
            return Err(ConfigError::BadLevels { levels });
        }
        if !(32..=52).contains(&phys_bits) {
            return Err(ConfigError::BadPhysBits { bits: phys_bits });
        }
        Ok(Ept {
            levels,
            mode_based_exec,
            phys_bits,
        })
    }
    pub fn four_level() -> Ept {
        Ept {
            levels: 4,
            mode_based_exec: false,
            phys_bits: 52,
        }
    }
    pub fn five_level() -> Ept {
        Ept {
            levels: 5,
            mode_based_exec: false,
            phys_bits: 52,
        }
    }
    /// The format an EPTP value selects (bits 5:3 = walk length - 1).
    pub fn from_eptp(eptp: u64, mode_based_exec: bool, phys_bits: u32) -> Result<Ept, ConfigError> {
        Ept::new(((eptp >> 3) & 7) as u32 + 1, mode_based_exec, phys_bits)
    }
    pub fn mode_based_exec(&self) -> bool {
        self.mode_based_exec
    }

    #[inline]
    fn addr_mask(&self) -> u64 {
        bits(self.phys_bits - 1, 12)
    }

    #[inline]
    fn rights(&self, raw: u64) -> Access {
        let priv_exec = raw & EXEC != 0;
        let user_exec = if self.mode_based_exec {
            raw & USER_EXEC != 0
        } else {
            priv_exec
        };
        Access::USER
            .with_if(Access::READ, raw & READ != 0)
            .with_if(Access::WRITE, raw & WRITE != 0)
            .with_if(Access::EXEC_PRIV, priv_exec)
            .with_if(Access::EXEC_USER, user_exec)
    }
}

impl Format for Ept {
    #[inline]
    fn root_level(&self) -> Level {
        Level(4 - self.levels as i8)
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
        let present = raw & (READ | WRITE | EXEC) != 0 || (self.mode_based_exec && raw & USER_EXEC != 0);
        if !present {
            return Decoded::Absent;
        }
        if raw & (READ | WRITE) == WRITE {
            return Decoded::Bad(BadReason::WriteWithoutRead);
        }
        let high = if self.phys_bits < 52 {
            raw & bits(51, self.phys_bits)
        } else {
            0
        };
        if high != 0 {
            return Decoded::Bad(BadReason::ReservedBits(high));
        }
        let rights = self.rights(raw);
        let is_leaf = level.is_page() || raw & LARGE != 0;
        if !is_leaf {
            // Bits 6:3 of a non-leaf entry (7:3 at the top levels) are reserved.
            let res = raw & bits(6, 3);
            if res != 0 {
                return Decoded::Bad(BadReason::ReservedBits(res));
            }
            return Decoded::Table {
                next: raw & self.addr_mask(),
                allows: rights,
            };
        }
        if level.0 < 1 {
            return Decoded::Bad(BadReason::ReservedBits(LARGE));
        }
        let memtype = (raw & MEMTYPE_MASK) >> MEMTYPE_SHIFT;
        if memtype_name(memtype).is_none() {
            return Decoded::Bad(BadReason::ReservedMemoryType(memtype as u8));
        }
        if !level.is_page() {
            let low = raw & bits(level.shift() - 1, 12);
            if low != 0 {
                return Decoded::Bad(BadReason::ReservedBits(low));
            }
        }
        Decoded::Leaf {
            out: raw & self.addr_mask() & !(level.entry_size() - 1),
            access: rights,
        }
    }
    fn encode_table(&self, _level: Level, next: u64) -> u64 {
        let user_exec = if self.mode_based_exec { USER_EXEC } else { 0 };
        (next & self.addr_mask()) | READ | WRITE | EXEC | user_exec
    }
    fn leaf_allowed(&self, level: Level) -> bool {
        (1..=3).contains(&level.0)
    }
    fn split_leaf(&self, level: Level, raw: u64, index: u64) -> u64 {
        let child = level.next();
        let out = (raw & self.addr_mask() & !(level.entry_size() - 1)) + index * child.entry_size();
        let attrs = raw & !self.addr_mask() & !LARGE;
        out | attrs | if child.is_page() { 0 } else { LARGE }
    }
    fn encode_leaf(&self, level: Level, out: u64, attrs: &MapAttrs) -> Result<u64, EncodeError> {
        if !self.leaf_allowed(level) {
            return Err(EncodeError::NoBlockAtLevel(level));
        }
        if out & (level.entry_size() - 1) != 0 || out & !self.addr_mask() != 0 {
            return Err(EncodeError::BadOutputAddress(out));
        }
        let a = attrs.access;
        if a.is_writable() && !a.contains(Access::READ) {
            return Err(EncodeError::UnsupportedAccess(a));
        }
        if !self.mode_based_exec && a.contains(Access::EXEC_PRIV) != a.contains(Access::EXEC_USER) {
            return Err(EncodeError::UnsupportedAccess(a));
        }
        let memtype = match attrs.mem {
            MemType::Normal => MEMTYPE_WB,
            MemType::NormalNonCacheable => MEMTYPE_WC,
            MemType::Device | MemType::DeviceStrict => MEMTYPE_UC,
        };
        let mut raw = out | (memtype << MEMTYPE_SHIFT);
        if a.contains(Access::READ) {
            raw |= READ;
        }
        if a.is_writable() {
            raw |= WRITE;
        }
        if a.contains(Access::EXEC_PRIV) {
            raw |= EXEC;
        }
        if self.mode_based_exec && a.contains(Access::EXEC_USER) {
            raw |= USER_EXEC;
        }
        if !level.is_page() {
            raw |= LARGE;
        }
        if raw & (READ | WRITE | EXEC | USER_EXEC) == 0 {
            // A mapping with no rights is not present in EPT.
            return Err(EncodeError::UnsupportedAccess(a));
        }
        Ok(raw)
    }
}
