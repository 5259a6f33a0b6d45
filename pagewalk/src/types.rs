use core::fmt;
use core::ops::{BitAnd, BitOr};

/// A translation level, numbered as the Arm ARM numbers 4 KiB-granule levels:
/// 3 is the level whose entries map 4 KiB, 2 maps 2 MiB, 1 maps 1 GiB, 0 maps
/// 512 GiB and -1 is the extra top level of x86 5-level paging / EPT and arm64
/// LPA2. Every format names its levels with this number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level(pub i8);

impl Level {
    /// The 4 KiB leaf level.
    pub const PAGE: Level = Level(3);
    /// Topmost level any supported format uses.
    pub const TOP: Level = Level(-1);

    /// log2 of the bytes one entry at this level covers.
    pub const fn shift(self) -> u32 {
        (12 + 9 * (3 - self.0 as i32)) as u32
    }

    /// Bytes one entry at this level covers.
    pub const fn entry_size(self) -> u64 {
        1u64 << self.shift()
    }

    /// The next level down (towards 4 KiB pages).
    pub const fn next(self) -> Level {
        Level(self.0 + 1)
    }

    /// Whether this is the 4 KiB level.
    pub const fn is_page(self) -> bool {
        self.0 == 3
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a mapping permits, as allow-bits. Folding table-level restrictions
/// into a leaf is a plain AND, for every format: x86 RW/US/NX, arm64
/// APTable/XNTable/PXNTable/UXNTable and EPT's per-level R/W/X all only ever
/// take rights away.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Access(u8);

impl Access {
    pub const NONE: Access = Access(0);
    pub const READ: Access = Access(1 << 0);
    pub const WRITE: Access = Access(1 << 1);
    /// Execute at the privileged level (arm64 EL1/EL2 - PXN clear; x86 supervisor; EPT supervisor X).
    pub const EXEC_PRIV: Access = Access(1 << 2);
    /// Execute at the unprivileged level (arm64 EL0 - UXN clear; x86 user; EPT user-execute).
    pub const EXEC_USER: Access = Access(1 << 3);
    /// The unprivileged level may access it (arm64 AP[1]; x86 U/S).
    pub const USER: Access = Access(1 << 4);
    /// Every right.
    pub const ALL: Access = Access(0x1f);
    /// Both execute rights.
    pub const EXEC: Access = Access(Self::EXEC_PRIV.0 | Self::EXEC_USER.0);

    pub const fn bits(self) -> u8 {
        self.0
    }
    pub const fn from_bits_truncate(bits: u8) -> Access {
        Access(bits & Self::ALL.0)
    }
    pub const fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }
    pub const fn intersects(self, other: Access) -> bool {
        self.0 & other.0 != 0
    }
    pub const fn union(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }
    pub const fn without(self, other: Access) -> Access {
        Access(self.0 & !other.0)
    }
    /// `self` with `other` present or absent as `on` says.
    pub const fn with_if(self, other: Access, on: bool) -> Access {
        if on {
            self.union(other)
        } else {
            self.without(other)
        }
    }
    pub const fn is_writable(self) -> bool {
        self.contains(Self::WRITE)
    }
}

impl BitAnd for Access {
    type Output = Access;
    fn bitand(self, rhs: Access) -> Access {
        Access(self.0 & rhs.0)
    }
}

impl BitOr for Access {
    type Output = Access;
    fn bitor(self, rhs: Access) -> Access {
        Access(self.0 | rhs.0)
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::READ, "R"),
            (Self::WRITE, "W"),
            (Self::EXEC_PRIV, "Xp"),
            (Self::EXEC_USER, "Xu"),
            (Self::USER, "U"),
        ];
        f.write_str("Access(")?;
        let mut first = true;
        for (bit, name) in names {
            if self.contains(bit) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

/// A non-empty range of addresses `[start, last]`. Stored with an inclusive
/// end so that a range can reach the very top of the 64-bit space
/// (`AddrRange::new(x, None)`) without any arithmetic overflowing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrRange {
    pub start: u64,
    pub last: u64,
}

impl AddrRange {
    /// The whole 64-bit space.
    pub const ALL: AddrRange = AddrRange {
        start: 0,
        last: u64::MAX,
    };

    /// `[start, end)`; `end == None` means "to the top of the address space".
    /// Returns `None` for an empty range.
    pub const fn new(start: u64, end: Option<u64>) -> Option<AddrRange> {
        match end {
            None => Some(AddrRange { start, last: u64::MAX }),
            Some(end) if end > start => Some(AddrRange { start, last: end - 1 }),
            Some(_) => None,
        }
    }

    /// `[start, start + len)`, clamped at the top of the space; `None` when `len == 0`.
    pub const fn from_len(start: u64, len: u64) -> Option<AddrRange> {
        if len == 0 {
            return None;
        }
        let last = match start.checked_add(len - 1) {
            Some(l) => l,
            None => u64::MAX,
        };
        Some(AddrRange { start, last })
    }

    /// The exclusive end, or `None` when the range reaches the top.
    pub const fn end(&self) -> Option<u64> {
        self.last.checked_add(1)
    }

    /// Bytes in the range; `None` only for the whole 64-bit space.
    // An AddrRange is never empty (the constructors refuse that), so there is no `is_empty`.
    #[allow(clippy::len_without_is_empty)]
    pub const fn len(&self) -> Option<u64> {
        (self.last - self.start).checked_add(1)
    }

    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr <= self.last
    }

    /// The overlap of two ranges.
    pub fn intersect(&self, other: &AddrRange) -> Option<AddrRange> {
        let start = self.start.max(other.start);
        let last = self.last.min(other.last);
        (start <= last).then_some(AddrRange { start, last })
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}-{:#018x}", self.start, self.last)
    }
}
