//! Arch-neutral guest setup: the guest bundle (kernel + initrd + command
//! line in one file), arm64 Image header checks, the guest's memory layout,
//! the identity stage-2 / NPT / EPT and its isolation audit, and the guest's
//! device tree. The arch code calls these; nothing here touches hardware.

pub mod arm64_image;
pub mod bundle;
pub mod dtb;
pub mod layout;
pub mod stage2;

use core::fmt;

/// A half-open physical (or guest-physical) range `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MemRange {
    pub start: u64,
    pub end: u64,
}

impl MemRange {
    /// `[start, end)`; `None` when empty or reversed.
    pub const fn new(start: u64, end: u64) -> Option<MemRange> {
        if end > start {
            Some(MemRange { start, end })
        } else {
            None
        }
    }

    /// `[start, start + len)`; `None` when empty or when it would pass 2^64.
    pub const fn from_len(start: u64, len: u64) -> Option<MemRange> {
        match start.checked_add(len) {
            Some(end) => MemRange::new(start, end),
            None => None,
        }
    }

    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr < self.end
    }

    /// Whether `other` lies entirely inside `self`.
    pub const fn covers(&self, other: &MemRange) -> bool {
        other.start >= self.start && other.end <= self.end
    }

    pub fn intersect(&self, other: &MemRange) -> Option<MemRange> {
        MemRange::new(self.start.max(other.start), self.end.min(other.end))
    }

    pub fn overlaps(&self, other: &MemRange) -> bool {
        self.intersect(other).is_some()
    }
}

impl fmt::Debug for MemRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.start, self.end)
    }
}

/// Inclusive-last notation, as Linux prints physical ranges.
impl fmt::Display for MemRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#014x}-{:#014x}", self.start, self.end.wrapping_sub(1))
    }
}

/// A range with the name of whoever owns or uses it (for error messages and
/// audit reports): `"hv image"`, `"hv heap"`, `"pl011"`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Named<'a> {
    pub name: &'a str,
    pub range: MemRange,
}

impl<'a> Named<'a> {
    pub const fn new(name: &'a str, range: MemRange) -> Named<'a> {
        Named { name, range }
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`), for the bundle format.
/// crc32fast's slice-by-16 code is several times faster than a byte-wise
/// table, which matters when hv checks a 30+ MB guest bundle under TCG.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32_update(0, bytes)
}

/// Continues a CRC-32 over more bytes: `crc32_update(crc32(a), b) == crc32(a ++ b)`.
pub fn crc32_update(crc: u32, bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(crc);
    hasher.update(bytes);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;

    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The CRC-32 catalogue's check value for "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32_update(crc32(b"1234"), b"56789"), 0xCBF4_3926);
    }

    #[test]
    fn ranges_intersect_and_cover() {
        let a = MemRange::new(0x1000, 0x3000).unwrap();
        let b = MemRange::new(0x2000, 0x5000).unwrap();
        assert_eq!(a.intersect(&b), MemRange::new(0x2000, 0x3000));
        assert!(MemRange::new(0x3000, 0x3000).is_none());
        assert!(MemRange::from_len(u64::MAX, 2).is_none());
        assert!(!a.overlaps(&MemRange::new(0x3000, 0x4000).unwrap()));
        assert!(b.covers(&MemRange::new(0x2000, 0x5000).unwrap()));
        assert_eq!(format!("{a}"), "0x000000001000-0x000000002fff");
    }
}
