//! arm64 VMSAv8-64 descriptors, 4 KiB granule: stage-1 (TTBR0/TTBR1, EL1&0
//! and EL2 regimes) and stage-2. 16K/64K granules and LPA2 are refused by
//! the constructors, never misread.

use crate::format::{bits, AddressSpace, BadReason, ConfigError, Decoded, EncodeError, Format, MapAttrs, MemType};
use crate::types::{Access, Level};

/// Output address bits [47:12] of a 48-bit-OA, 4 KiB-granule descriptor.
const OA_MASK: u64 = bits(47, 12);
/// OA[51:48] are RES0 in a table descriptor without LPA2.
const OA_HIGH_RES0: u64 = bits(51, 48);
/// In a block or page descriptor only bits 49:48 are RES0: bit 50 is GP
/// (BTI guarded page) and bit 51 is DBM, both set by Linux (PTE_WRITE is DBM).
const LEAF_HIGH_RES0: u64 = bits(49, 48);
const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
/// Descriptor bit 1 set: table (levels 0-2) or page (level 3).
pub const DESC_TABLE: u64 = VALID | TABLE_OR_PAGE;
pub const DESC_BLOCK: u64 = VALID;

// Lower and upper attributes of stage-1 leaves.
pub const ATTR_INDX_SHIFT: u32 = 2;
pub const ATTR_INDX_MASK: u64 = 0b111 << ATTR_INDX_SHIFT;
pub const AP_USER: u64 = 1 << 6;
pub const AP_RDONLY: u64 = 1 << 7;
pub const SH_INNER: u64 = 0b11 << 8;
pub const AF: u64 = 1 << 10;
pub const NG: u64 = 1 << 11;
/// FEAT_BBM nT bit, allowed in block descriptors.
const NT: u64 = 1 << 16;
pub const GP: u64 = 1 << 50;
pub const DBM: u64 = 1 << 51;
pub const CONT: u64 = 1 << 52;
pub const PXN: u64 = 1 << 53;
pub const UXN: u64 = 1 << 54;
/// EL2 (single-privilege) regime: bit 54 is plain XN.
pub const XN: u64 = UXN;

// Table descriptor attributes (stage-1 only).
pub const PXN_TABLE: u64 = 1 << 59;
pub const UXN_TABLE: u64 = 1 << 60;
pub const AP_TABLE_NO_EL0: u64 = 1 << 61;
pub const AP_TABLE_RDONLY: u64 = 1 << 62;
pub const NS_TABLE: u64 = 1 << 63;

// Stage-2 leaf attributes.
pub const S2_MEMATTR_SHIFT: u32 = 2;
pub const S2_MEMATTR_MASK: u64 = 0b1111 << S2_MEMATTR_SHIFT;
pub const S2AP_R: u64 = 1 << 6;
pub const S2AP_W: u64 = 1 << 7;
/// Stage-2 XN[1:0] (XN[0] needs FEAT_XNX).
pub const S2_XN_SHIFT: u32 = 53;
pub const S2_XN_MASK: u64 = 0b11 << S2_XN_SHIFT;

/// MAIR attribute bytes.
pub const MAIR_NORMAL_WB: u8 = 0xff;
pub const MAIR_NORMAL_TAGGED: u8 = 0xf0;
pub const MAIR_NORMAL_NC: u8 = 0x44;
pub const MAIR_DEVICE_NGNRNE: u8 = 0x00;
pub const MAIR_DEVICE_NGNRE: u8 = 0x04;

/// Linux's (and hv's) MAIR layout: 0 Normal, 1 Normal-Tagged, 2 Normal-NC,
/// 3 Device-nGnRnE, 4 Device-nGnRE.
pub const LINUX_MAIR: u64 = (MAIR_NORMAL_WB as u64)
    | (MAIR_NORMAL_TAGGED as u64) << 8
    | (MAIR_NORMAL_NC as u64) << 16
    | (MAIR_DEVICE_NGNRNE as u64) << 24
    | (MAIR_DEVICE_NGNRE as u64) << 32;

/// Stage-2 MemAttr[3:0] values (FWB off).
pub const S2_MEMATTR_DEVICE_NGNRNE: u64 = 0b0000;
pub const S2_MEMATTR_DEVICE_NGNRE: u64 = 0b0001;
pub const S2_MEMATTR_NORMAL_NC: u64 = 0b0101;
pub const S2_MEMATTR_NORMAL_WB: u64 = 0b1111;

/// Which translation regime a stage-1 table serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regime {
    /// EL1&0 (and VHE EL2&0): two privilege levels, AP[1], PXN and UXN.
    El1And0,
    /// Non-VHE EL2: one privilege level; bit 54 is XN, AP[1] and PXN do not exist.
    El2,
}

/// Which half of the VA space (and which TTBR) a stage-1 table serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    /// TTBR0: `[0, 2^va_bits)`.
    Lower,
    /// TTBR1: `[2^64 - 2^va_bits, 2^64)`.
    Upper,
}

/// Level and entry count of the root table resolving `va_bits` with 4 KiB granule.
fn root_geometry(va_bits: u32) -> (Level, usize) {
    let levels = (va_bits - 12).div_ceil(9);
    let root = Level(4 - levels as i8);
    (root, 1usize << (va_bits - root.shift()))
}

fn level_name_ok_for_block(level: Level) -> bool {
    level.0 == 1 || level.0 == 2
}

/// Checks what every 4 KiB-granule VMSAv8-64 descriptor shares and returns
/// whether it is a leaf, with its output address, or a table pointer.
enum Shape {
    Absent,
    Table(u64),
    Leaf(u64),
    Bad(BadReason),
}

#[inline]
fn shape(level: Level, raw: u64) -> Shape {
    if raw & VALID == 0 {
        return Shape::Absent;
    }
    let is_table_bit = raw & TABLE_OR_PAGE != 0;
    let is_leaf = level.is_page() || !is_table_bit;
    let res0 = raw & if is_leaf { LEAF_HIGH_RES0 } else { OA_HIGH_RES0 };
    if res0 != 0 {
        return Shape::Bad(BadReason::ReservedBits(res0));
    }
    if level.is_page() {
        return if is_table_bit {
            Shape::Leaf(raw & OA_MASK)
        } else {
            Shape::Bad(BadReason::ReservedDescriptor)
        };
    }
    if is_table_bit {
        return Shape::Table(raw & OA_MASK);
    }
    if !level_name_ok_for_block(level) {
        return Shape::Bad(BadReason::BlockNotAllowed);
    }
    let low = bits(level.shift() - 1, 12) & !NT;
    if raw & low != 0 {
        return Shape::Bad(BadReason::ReservedBits(raw & low));
    }
    Shape::Leaf(raw & OA_MASK & !(level.entry_size() - 1))
}

fn check_output(level: Level, out: u64) -> Result<(), EncodeError> {
    if out & (level.entry_size() - 1) != 0 || out & !OA_MASK != 0 {
        return Err(EncodeError::BadOutputAddress(out));
    }
    Ok(())
}

/// One piece of a block, one level down, same attributes.
fn split_block(level: Level, raw: u64, index: u64) -> u64 {
    let child = level.next();
    let out = (raw & OA_MASK & !(level.entry_size() - 1)) + index * child.entry_size();
    let attrs = raw & !OA_MASK & !(VALID | TABLE_OR_PAGE) & !NT;
    out | attrs | leaf_type(child)
}

fn leaf_type(level: Level) -> u64 {
    if level.is_page() {
        DESC_TABLE
    } else {
        DESC_BLOCK
    }
}

/// arm64 stage-1 tables, 4 KiB granule, 48-bit output addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage1 {
    va_bits: u32,
    half: Half,
    regime: Regime,
    mair: u64,
    root_level: Level,
    root_entries: usize,
}

impl Stage1 {
    /// A stage-1 format resolving `va_bits` (25..=48) of one half.
    pub fn new(va_bits: u32, half: Half, regime: Regime) -> Result<Stage1, ConfigError> {
        if !(25..=48).contains(&va_bits) {
            return Err(if va_bits > 48 && va_bits <= 52 {
                ConfigError::Lpa2Unsupported
            } else {
                ConfigError::AddressBitsOutOfRange { bits: va_bits }
            });
        }
        if regime == Regime::El2 && half == Half::Upper {
            return Err(ConfigError::AddressBitsOutOfRange { bits: va_bits });
        }
        let (root_level, root_entries) = root_geometry(va_bits);
        Ok(Stage1 {
            va_bits,
            half,
            regime,
            mair: LINUX_MAIR,
            root_level,
            root_entries,
        })
    }

    /// The format TCR_EL1 selects for `half` (T0SZ/TG0 or T1SZ/TG1; DS refused).
    pub fn from_tcr_el1(tcr: u64, half: Half) -> Result<Stage1, ConfigError> {
        if tcr & (1 << 59) != 0 {
            return Err(ConfigError::Lpa2Unsupported);
        }
        let (tsz, granule_kib) = match half {
            Half::Lower => (
                tcr & 0x3f,
                match (tcr >> 14) & 3 {
                    0b00 => 4,
                    0b01 => 64,
                    0b10 => 16,
                    _ => 0,
                },
            ),
            Half::Upper => (
                (tcr >> 16) & 0x3f,
                match (tcr >> 30) & 3 {
                    0b10 => 4,
                    0b11 => 64,
                    0b01 => 16,
                    _ => 0,
                },
            ),
        };
        if granule_kib != 4 {
            return Err(ConfigError::UnsupportedGranule { kib: granule_kib });
        }
        Stage1::new(64 - tsz as u32, half, Regime::El1And0)
    }

    /// The format of a non-VHE EL2 table that TCR_EL2 selects.
    pub fn from_tcr_el2(tcr: u64) -> Result<Stage1, ConfigError> {
        let granule_kib = match (tcr >> 14) & 3 {
            0b00 => 4,
            0b01 => 64,
            0b10 => 16,
            _ => 0,
        };
        if granule_kib != 4 {
            return Err(ConfigError::UnsupportedGranule { kib: granule_kib });
        }
        Stage1::new(64 - (tcr & 0x3f) as u32, Half::Lower, Regime::El2)
    }

    /// Uses `mair` (MAIR_ELx) to choose and name memory types.
    pub fn with_mair(mut self, mair: u64) -> Stage1 {
        self.mair = mair;
        self
    }

    pub fn mair(&self) -> u64 {
        self.mair
    }
    pub fn regime(&self) -> Regime {
        self.regime
    }
    pub fn half(&self) -> Half {
        self.half
    }
    pub fn va_bits(&self) -> u32 {
        self.va_bits
    }

    /// The MAIR attribute byte a leaf selects.
    pub fn mair_attr(&self, raw: u64) -> u8 {
        let index = (raw & ATTR_INDX_MASK) >> ATTR_INDX_SHIFT;
        (self.mair >> (index * 8)) as u8
    }

    #[inline]
    fn leaf_access(&self, raw: u64) -> Access {
        let mut access = Access::READ.with_if(Access::WRITE, raw & AP_RDONLY == 0);
        match self.regime {
            Regime::El2 => access.with_if(Access::EXEC_PRIV, raw & XN == 0),
            Regime::El1And0 => {
                let user = raw & AP_USER != 0;
                access = access
                    .with_if(Access::USER, user)
                    .with_if(Access::EXEC_USER, raw & UXN == 0)
                    // Memory EL0 may write is never privileged-executable.
                    .with_if(Access::EXEC_PRIV, raw & PXN == 0 && !(user && raw & AP_RDONLY == 0));
                access
            }
        }
    }

    #[inline]
    fn table_allows(&self, raw: u64) -> Access {
        let mut allows = Access::ALL.with_if(Access::WRITE, raw & AP_TABLE_RDONLY == 0);
        match self.regime {
            Regime::El2 => allows.with_if(Access::EXEC, raw & UXN_TABLE == 0),
            Regime::El1And0 => {
                allows = allows
                    .with_if(Access::USER, raw & AP_TABLE_NO_EL0 == 0)
                    .with_if(Access::EXEC_USER, raw & UXN_TABLE == 0)
                    .with_if(Access::EXEC_PRIV, raw & PXN_TABLE == 0);
                allows
            }
        }
    }

    fn attr_index(&self, mem: MemType) -> Option<u64> {
        let wanted: &[u8] = match mem {
            MemType::Normal => &[MAIR_NORMAL_WB],
            MemType::NormalNonCacheable => &[MAIR_NORMAL_NC],
            MemType::Device => &[MAIR_DEVICE_NGNRE],
            MemType::DeviceStrict => &[MAIR_DEVICE_NGNRNE],
        };
        (0..8u64).find(|&i| wanted.contains(&((self.mair >> (i * 8)) as u8)))
    }
}

impl Format for Stage1 {
    #[inline]
    fn root_level(&self) -> Level {
        self.root_level
    }
    #[inline]
    fn root_entries(&self) -> usize {
        self.root_entries
    }
    #[inline]
    fn address_space(&self) -> AddressSpace {
        match self.half {
            Half::Lower => AddressSpace::Direct,
            Half::Upper => AddressSpace::UpperHalf,
        }
    }
    #[inline]
    fn decode(&self, level: Level, raw: u64) -> Decoded {
        match shape(level, raw) {
            Shape::Absent => Decoded::Absent,
            Shape::Bad(reason) => Decoded::Bad(reason),
            Shape::Table(next) => {
                if self.regime == Regime::El2 {
                    let res0 = raw & (PXN_TABLE | AP_TABLE_NO_EL0);
                    if res0 != 0 {
                        return Decoded::Bad(BadReason::ReservedBits(res0));
                    }
                }
                Decoded::Table {
                    next,
                    allows: self.table_allows(raw),
                }
            }
            Shape::Leaf(out) => {
                if self.regime == Regime::El2 && raw & PXN != 0 {
                    return Decoded::Bad(BadReason::ReservedBits(PXN));
                }
                Decoded::Leaf {
                    out,
                    access: self.leaf_access(raw),
                }
            }
        }
    }
    fn encode_table(&self, _level: Level, next: u64) -> u64 {
        (next & OA_MASK) | DESC_TABLE
    }
    fn leaf_allowed(&self, level: Level) -> bool {
        level.is_page() || level_name_ok_for_block(level)
    }
    fn split_leaf(&self, level: Level, raw: u64, index: u64) -> u64 {
        split_block(level, raw, index)
    }
    fn encode_leaf(&self, level: Level, out: u64, attrs: &MapAttrs) -> Result<u64, EncodeError> {
        if !self.leaf_allowed(level) {
            return Err(EncodeError::NoBlockAtLevel(level));
        }
        check_output(level, out)?;
        let a = attrs.access;
        if !a.contains(Access::READ) {
            return Err(EncodeError::UnsupportedAccess(a));
        }
        let index = self
            .attr_index(attrs.mem)
            .ok_or(EncodeError::UnsupportedMemType(attrs.mem))?;
        let mut raw = out | leaf_type(level) | AF | SH_INNER | (index << ATTR_INDX_SHIFT);
        if !a.is_writable() {
            raw |= AP_RDONLY;
        }
        if !attrs.global {
            raw |= NG;
        }
        match self.regime {
            Regime::El2 => {
                if a.contains(Access::USER) {
                    return Err(EncodeError::UnsupportedAccess(a));
                }
                // AP[1] is RES1 in a single-privilege regime (KVM's hyp tables set it too).
                raw |= AP_USER;
                if !a.contains(Access::EXEC_PRIV) {
                    raw |= XN;
                }
            }
            Regime::El1And0 => {
                if a.contains(Access::USER) {
                    raw |= AP_USER;
                }
                if !a.contains(Access::EXEC_PRIV) {
                    raw |= PXN;
                }
                if !a.contains(Access::EXEC_USER) {
                    raw |= UXN;
                }
                if self.leaf_access(raw) != a & Access::ALL {
                    return Err(EncodeError::UnsupportedAccess(a));
                }
            }
        }
        Ok(raw)
    }
}

/// arm64 stage-2 tables (IPA to PA), 4 KiB granule, with a start level and
/// up to 16 concatenated root tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2 {
    ipa_bits: u32,
    start_level: Level,
    root_entries: usize,
}

impl Stage2 {
    /// `ipa_bits` (32..=48) resolved from `start_level` (0..=2).
    pub fn new(ipa_bits: u32, start_level: i8) -> Result<Stage2, ConfigError> {
        if ipa_bits > 48 && ipa_bits <= 52 {
            return Err(ConfigError::Lpa2Unsupported);
        }
        if !(32..=48).contains(&ipa_bits) {
            return Err(ConfigError::AddressBitsOutOfRange { bits: ipa_bits });
        }
        let level = Level(start_level);
        let bad = ConfigError::BadStartLevel {
            level: start_level,
            ipa_bits,
        };
        if !(0..=2).contains(&start_level) || ipa_bits <= level.shift() {
            return Err(bad);
        }
        let index_bits = ipa_bits - level.shift();
        // One table resolves 9 bits; concatenation adds at most 4 more (16 tables).
        if index_bits > 13 {
            return Err(bad);
        }
        Ok(Stage2 {
            ipa_bits,
            start_level: level,
            root_entries: 1 << index_bits,
        })
    }

    /// The start level KVM would pick: the fewest levels with at most 16
    /// concatenated root tables.
    pub fn for_ipa_bits(ipa_bits: u32) -> Result<Stage2, ConfigError> {
        let start = (0..=2)
            .rev()
            .find(|&l| ipa_bits > Level(l).shift() && ipa_bits - Level(l).shift() <= 13);
        Stage2::new(ipa_bits, start.unwrap_or(0))
    }

    /// The format VTCR_EL2 selects (T0SZ, SL0, TG0; SL2/DS refused).
    pub fn from_vtcr(vtcr: u64) -> Result<Stage2, ConfigError> {
        if vtcr & (1 << 32) != 0 || vtcr & (1 << 33) != 0 {
            return Err(ConfigError::Lpa2Unsupported);
        }
        let granule_kib = match (vtcr >> 14) & 3 {
            0b00 => 4,
            0b01 => 64,
            0b10 => 16,
            _ => 0,
        };
        if granule_kib != 4 {
            return Err(ConfigError::UnsupportedGranule { kib: granule_kib });
        }
        let ipa_bits = 64 - (vtcr & 0x3f) as u32;
        let start = match (vtcr >> 6) & 3 {
            0 => 2,
            1 => 1,
            2 => 0,
            _ => return Err(ConfigError::BadStartLevel { level: 3, ipa_bits }),
        };
        Stage2::new(ipa_bits, start)
    }

    /// VTCR_EL2 fields this format needs: T0SZ, SL0, TG0=4K (PS, SH, cacheability are the caller's).
    pub fn vtcr_geometry(&self) -> u64 {
        let sl0 = match self.start_level.0 {
            2 => 0,
            1 => 1,
            _ => 2,
        };
        (64 - self.ipa_bits as u64) | (sl0 << 6)
    }

    pub fn ipa_bits(&self) -> u32 {
        self.ipa_bits
    }
    pub fn start_level(&self) -> Level {
        self.start_level
    }

    #[inline]
    fn leaf_access(raw: u64) -> Access {
        let exec = match (raw & S2_XN_MASK) >> S2_XN_SHIFT {
            0b00 => Access::EXEC,
            0b01 => Access::EXEC_USER,
            0b10 => Access::NONE,
            _ => Access::EXEC_PRIV,
        };
        Access::USER
            .with_if(Access::READ, raw & S2AP_R != 0)
            .with_if(Access::WRITE, raw & S2AP_W != 0)
            .union(exec)
    }
}

impl Format for Stage2 {
    #[inline]
    fn root_level(&self) -> Level {
        self.start_level
    }
    #[inline]
    fn root_entries(&self) -> usize {
        self.root_entries
    }
    #[inline]
    fn address_space(&self) -> AddressSpace {
        AddressSpace::Direct
    }
    #[inline]
    fn decode(&self, level: Level, raw: u64) -> Decoded {
        match shape(level, raw) {
            Shape::Absent => Decoded::Absent,
            Shape::Bad(reason) => Decoded::Bad(reason),
            Shape::Table(next) => {
                // Stage-2 table descriptors carry no attributes: bits 63:59 are RES0.
                let res0 = raw & bits(63, 59);
                if res0 != 0 {
                    return Decoded::Bad(BadReason::ReservedBits(res0));
                }
                Decoded::Table {
                    next,
                    allows: Access::ALL,
                }
            }
            Shape::Leaf(out) => Decoded::Leaf {
                out,
                access: Stage2::leaf_access(raw),
            },
        }
    }
    fn encode_table(&self, _level: Level, next: u64) -> u64 {
        (next & OA_MASK) | DESC_TABLE
    }
    fn leaf_allowed(&self, level: Level) -> bool {
        level.is_page() || level_name_ok_for_block(level)
    }
    fn split_leaf(&self, level: Level, raw: u64, index: u64) -> u64 {
        split_block(level, raw, index)
    }
    fn encode_leaf(&self, level: Level, out: u64, attrs: &MapAttrs) -> Result<u64, EncodeError> {
        if !self.leaf_allowed(level) {
            return Err(EncodeError::NoBlockAtLevel(level));
        }
        check_output(level, out)?;
        let a = attrs.access;
        let memattr = match attrs.mem {
            MemType::Normal => S2_MEMATTR_NORMAL_WB,
            MemType::NormalNonCacheable => S2_MEMATTR_NORMAL_NC,
            MemType::Device => S2_MEMATTR_DEVICE_NGNRE,
            MemType::DeviceStrict => S2_MEMATTR_DEVICE_NGNRNE,
        };
        let xn: u64 = match (a.contains(Access::EXEC_PRIV), a.contains(Access::EXEC_USER)) {
            (true, true) => 0b00,
            (false, true) => 0b01,
            (false, false) => 0b10,
            (true, false) => 0b11,
        };
        let mut raw = out | leaf_type(level) | AF | SH_INNER | (memattr << S2_MEMATTR_SHIFT) | (xn << S2_XN_SHIFT);
        if a.contains(Access::READ) {
            raw |= S2AP_R;
        }
        if a.contains(Access::WRITE) {
            raw |= S2AP_W;
        }
        Ok(raw)
    }
}
