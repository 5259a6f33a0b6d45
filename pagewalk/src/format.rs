use core::fmt;

use crate::types::{Access, Level};

/// How the walker's table-index space (offsets from 0 up to the format's
/// input size) maps onto the addresses it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressSpace {
    /// Offset = address (stage-2 IPAs, NPT/EPT guest-physical, arm64 TTBR0).
    Direct,
    /// x86 canonical virtual addresses: the upper half of the index space is
    /// sign-extended to the top of the 64-bit space.
    SignExtended,
    /// arm64 TTBR1: the whole index space sits at the top of the 64-bit space.
    UpperHalf,
}

/// How the walker must treat one entry. Every raw entry decodes to exactly one
/// of these (the Hafnium split), so an invalid-but-meaningful entry is never
/// mistaken for a table pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Not present: nothing mapped, never descended into. Other bits may hold
    /// anything (x86 swap entries, Linux's PROT_NONE); they are not read.
    Absent,
    /// A pointer to the next-level table. `allows` is what this level leaves
    /// to the levels below (ANDed into their leaves).
    Table { next: u64, allows: Access },
    /// A mapping of the whole entry: output address of its first byte.
    Leaf { out: u64, access: Access },
    /// Present but malformed: reported, never followed.
    Bad(BadReason),
}

/// Why an entry (or the table it points to) was not followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadReason {
    /// Bits the architecture reserves (must be zero) are set.
    ReservedBits(u64),
    /// A block/huge-page mapping at a level where the format has none.
    BlockNotAllowed,
    /// arm64: descriptor type 0b01 at level 3 is reserved.
    ReservedDescriptor,
    /// A block's output address is not aligned to its size.
    MisalignedOutput,
    /// EPT: writable but not readable (an EPT misconfiguration).
    WriteWithoutRead,
    /// EPT: a memory type the architecture reserves.
    ReservedMemoryType(u8),
    /// The table this entry points to cannot be read from table memory.
    UnreadableTable { table: u64 },
    /// The table this entry points to is one of its own ancestors.
    TableCycle { table: u64 },
    /// The walk's table budget is spent; this subtree was not walked.
    BudgetExhausted,
}

impl fmt::Display for BadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BadReason::ReservedBits(bits) => write!(f, "reserved bits set ({bits:#x})"),
            BadReason::BlockNotAllowed => f.write_str("block mapping not allowed at this level"),
            BadReason::ReservedDescriptor => f.write_str("reserved descriptor type"),
            BadReason::MisalignedOutput => f.write_str("output address not aligned to the block size"),
            BadReason::WriteWithoutRead => f.write_str("writable but not readable (EPT misconfiguration)"),
            BadReason::ReservedMemoryType(t) => write!(f, "reserved memory type {t}"),
            BadReason::UnreadableTable { table } => {
                write!(f, "next table at {table:#x} is not readable")
            }
            BadReason::TableCycle { table } => {
                write!(f, "next table at {table:#x} is its own ancestor")
            }
            BadReason::BudgetExhausted => f.write_str("walk budget exhausted; subtree not walked"),
        }
    }
}

/// Memory type of a mapping, arch-neutral enough for a table builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemType {
    /// Normal write-back cacheable memory.
    Normal,
    /// Normal memory, non-cacheable (x86 UC-, arm64 Normal-NC).
    NormalNonCacheable,
    /// Device memory: arm64 Device-nGnRE, x86 UC.
    Device,
    /// Strongest device ordering: arm64 Device-nGnRnE, x86 UC.
    DeviceStrict,
}

/// What a table builder asks a format to encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MapAttrs {
    pub access: Access,
    pub mem: MemType,
    /// x86 G / arm64 !nG: the mapping is global (not per address space).
    pub global: bool,
}

impl MapAttrs {
    pub const fn new(access: Access, mem: MemType) -> MapAttrs {
        MapAttrs {
            access,
            mem,
            global: true,
        }
    }
}

/// Why a format cannot encode a requested mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The format cannot express this combination of rights.
    UnsupportedAccess(Access),
    /// The format (or its configuration, e.g. arm64 MAIR) has no such memory type.
    UnsupportedMemType(MemType),
    /// No leaf of this size at this level.
    NoBlockAtLevel(Level),
    /// The output address is not aligned to the entry size, or beyond the format's output size.
    BadOutputAddress(u64),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EncodeError::UnsupportedAccess(a) => write!(f, "format cannot express {a:?}"),
            EncodeError::UnsupportedMemType(m) => write!(f, "format has no memory type {m:?}"),
            EncodeError::NoBlockAtLevel(l) => write!(f, "no block mapping at level {l}"),
            EncodeError::BadOutputAddress(a) => {
                write!(f, "output address {a:#x} misaligned or out of range")
            }
        }
    }
}

/// One page-table format: geometry and entry coding. The walk loop lives in
/// [`crate::walk`] alone; a format never walks.
pub trait Format {
    /// Level of the root table.
    fn root_level(&self) -> Level;
    /// Entries in the root table: 512, fewer when the input size leaves the
    /// top level partly used, up to 16 x 512 for concatenated stage-2 roots.
    fn root_entries(&self) -> usize;
    /// How table-index offsets map onto reported addresses.
    fn address_space(&self) -> AddressSpace;
    /// Decodes one entry found at `level`.
    fn decode(&self, level: Level, raw: u64) -> Decoded;
    /// Rights a walk starts from before any table restricts them.
    fn root_allows(&self) -> Access {
        Access::ALL
    }

    /// Encodes a pointer to a next-level table that restricts nothing.
    fn encode_table(&self, level: Level, next: u64) -> u64;
    /// Encodes a leaf mapping `out` at `level`.
    fn encode_leaf(&self, level: Level, out: u64, attrs: &MapAttrs) -> Result<u64, EncodeError>;
    /// Whether a leaf may sit at `level` (4 KiB level always; blocks per format).
    fn leaf_allowed(&self, level: Level) -> bool;
    /// The entry that maps piece `index` (0..512) of the leaf `raw` at
    /// `level` one level down, with the same attributes: how a table builder
    /// splits a block.
    fn split_leaf(&self, level: Level, raw: u64, index: u64) -> u64;

    /// Bits of input address the root resolves: the index space is `[0, 1 << input_bits)`.
    #[inline]
    fn input_bits(&self) -> u32 {
        let entries = self.root_entries().max(1) as u64;
        // root_entries is a power of two for every format.
        self.root_level().shift() + (63 - entries.leading_zeros())
    }

    /// Maps an index-space offset to the address the walk reports.
    #[inline]
    fn offset_to_addr(&self, offset: u64) -> u64 {
        let bits = self.input_bits();
        match self.address_space() {
            AddressSpace::Direct => offset,
            AddressSpace::SignExtended => {
                let shift = 64 - bits;
                (((offset << shift) as i64) >> shift) as u64
            }
            AddressSpace::UpperHalf => offset | high_bits(bits),
        }
    }
}

/// The bits above an `input_bits`-wide space, all ones (the TTBR1 base).
const fn high_bits(bits: u32) -> u64 {
    if bits >= 64 {
        0
    } else {
        u64::MAX << bits
    }
}

/// A format configuration that hv cannot walk or that is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// 16 KiB / 64 KiB translation granule: refused rather than misread.
    UnsupportedGranule { kib: u32 },
    /// arm64 52-bit addresses (FEAT_LPA2, TCR.DS=1).
    Lpa2Unsupported,
    /// Input address size outside what the format allows.
    AddressBitsOutOfRange { bits: u32 },
    /// Stage-2 start level and IPA size need more than 16 concatenated root tables, or none.
    BadStartLevel { level: i8, ipa_bits: u32 },
    /// x86 / EPT paging depth other than 4 or 5.
    BadLevels { levels: u32 },
    /// Physical address width outside 32..=52.
    BadPhysBits { bits: u32 },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::UnsupportedGranule { kib } => {
                write!(f, "{kib}K translation granule is not supported (only 4K)")
            }
            ConfigError::Lpa2Unsupported => f.write_str("52-bit LPA2 tables are not supported"),
            ConfigError::AddressBitsOutOfRange { bits } => {
                write!(f, "{bits}-bit input addresses are out of range")
            }
            ConfigError::BadStartLevel { level, ipa_bits } => {
                write!(f, "start level {level} cannot translate a {ipa_bits}-bit IPA space")
            }
            ConfigError::BadLevels { levels } => {
                write!(f, "{levels}-level paging is not supported")
            }
            ConfigError::BadPhysBits { bits } => {
                write!(f, "{bits}-bit physical addresses are out of range")
            }
        }
    }
}

/// Mask of address bits `[hi:lo]` inclusive.
pub(crate) const fn bits(hi: u32, lo: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}
