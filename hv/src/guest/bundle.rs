//! The guest bundle: one file carrying the guest kernel, its initramfs and
//! its command line, so the boot loader (QEMU `-initrd` on arm64, a PVH
//! module on x86_64) hands hv a single blob and nothing collides.
//!
//! Format, version 1, every integer little-endian (`scripts/mkbundle.py` writes it):
//!
//! ```text
//! header (32 bytes)
//!   0  magic        8 bytes  "HVBUNDLE"
//!   8  version      u16      1
//!  10  header_len   u16      32 + 32 * entry_count (entries follow the header)
//!  12  entry_count  u32      1..=8
//!  16  total_len    u64      bytes of the whole bundle, payloads included
//!  24  header_crc   u32      CRC-32 of bytes [0, header_len) with this field zeroed
//!  28  reserved     u32      0
//! entry (32 bytes each, from offset 32)
//!   0  kind         u32      1 kernel, 2 initrd, 3 cmdline
//!   4  reserved     u32      0
//!   8  offset       u64      from the bundle's start; a multiple of 4096, >= header_len
//!  16  length       u64      payload bytes
//!  24  crc          u32      CRC-32 (zlib's) of the payload
//!  28  reserved     u32      0
//! ```
//!
//! Exactly one kernel; at most one initrd and one cmdline (UTF-8, no NUL).
//! Payloads may not overlap and must lie inside `total_len`.

use alloc::vec::Vec;
use core::fmt;

use super::crc32;

pub const MAGIC: [u8; 8] = *b"HVBUNDLE";
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 32;
pub const ENTRY_LEN: usize = 32;
pub const MAX_ENTRIES: u32 = 8;
/// Payload alignment inside the bundle.
pub const PAYLOAD_ALIGN: u64 = 4096;

/// What an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Kernel,
    Initrd,
    Cmdline,
}

impl EntryKind {
    pub const fn from_raw(raw: u32) -> Option<EntryKind> {
        match raw {
            1 => Some(EntryKind::Kernel),
            2 => Some(EntryKind::Initrd),
            3 => Some(EntryKind::Cmdline),
            _ => None,
        }
    }
    pub const fn raw(self) -> u32 {
        match self {
            EntryKind::Kernel => 1,
            EntryKind::Initrd => 2,
            EntryKind::Cmdline => 3,
        }
    }
    pub const fn name(self) -> &'static str {
        match self {
            EntryKind::Kernel => "kernel",
            EntryKind::Initrd => "initrd",
            EntryKind::Cmdline => "cmdline",
        }
    }
}

/// Why a bundle was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    /// Fewer bytes than a header.
    TooShort {
        len: usize,
    },
    BadMagic,
    UnsupportedVersion(u16),
    /// `header_len` does not match `entry_count`, or the count is 0 or too large.
    BadHeaderLength {
        header_len: u16,
        entry_count: u32,
    },
    /// The buffer is shorter than the header or `total_len` says: a truncated bundle.
    Truncated {
        declared: u64,
        available: usize,
    },
    HeaderChecksumMismatch {
        stored: u32,
        computed: u32,
    },
    /// A reserved field is not zero.
    ReservedNotZero {
        offset: usize,
    },
    UnknownKind {
        index: usize,
        kind: u32,
    },
    DuplicateEntry(EntryKind),
    MisalignedEntry {
        kind: EntryKind,
        offset: u64,
    },
    /// Payload reaches into the header or past `total_len`.
    EntryOutOfBounds {
        kind: EntryKind,
        offset: u64,
        length: u64,
    },
    OverlappingEntries {
        first: EntryKind,
        second: EntryKind,
    },
    MissingKernel,
    EmptyKernel,
    ChecksumMismatch {
        kind: EntryKind,
        stored: u32,
        computed: u32,
    },
    /// The command line is not UTF-8 or contains a NUL byte.
    BadCmdline,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BundleError::TooShort { len } => {
                write!(f, "bundle too short: {len} bytes, the header alone is {HEADER_LEN}")
            }
            BundleError::BadMagic => f.write_str("bad bundle magic (expected \"HVBUNDLE\")"),
            BundleError::UnsupportedVersion(v) => {
                write!(f, "unsupported bundle version {v} (hv reads version {VERSION})")
            }
            BundleError::BadHeaderLength {
                header_len,
                entry_count,
            } => write!(
                f,
                "bad bundle header: header_len {header_len} for {entry_count} entries (1..={MAX_ENTRIES} allowed)"
            ),
            BundleError::Truncated { declared, available } => {
                write!(
                    f,
                    "bundle truncated: it declares {declared} bytes, only {available} present"
                )
            }
            BundleError::HeaderChecksumMismatch { stored, computed } => write!(
                f,
                "bundle header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            BundleError::ReservedNotZero { offset } => {
                write!(f, "bundle reserved field at byte {offset} is not zero")
            }
            BundleError::UnknownKind { index, kind } => write!(f, "bundle entry {index} has unknown kind {kind}"),
            BundleError::DuplicateEntry(k) => write!(f, "bundle has more than one {} entry", k.name()),
            BundleError::MisalignedEntry { kind, offset } => write!(
                f,
                "bundle {} payload at offset {offset:#x} is not {PAYLOAD_ALIGN}-byte aligned",
                kind.name()
            ),
            BundleError::EntryOutOfBounds { kind, offset, length } => write!(
                f,
                "bundle {} entry out of bounds: offset {offset:#x}, length {length:#x}",
                kind.name()
            ),
            BundleError::OverlappingEntries { first, second } => {
                write!(f, "bundle {} and {} payloads overlap", first.name(), second.name())
            }
            BundleError::MissingKernel => f.write_str("bundle has no kernel entry"),
            BundleError::EmptyKernel => f.write_str("bundle kernel entry is empty"),
            BundleError::ChecksumMismatch { kind, stored, computed } => write!(
                f,
                "bundle {} checksum mismatch: stored {stored:#010x}, computed {computed:#010x}",
                kind.name()
            ),
            BundleError::BadCmdline => f.write_str("bundle command line is not UTF-8 text without NUL"),
        }
    }
}

/// One payload's place in the bundle (offsets from its first byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    pub kind: EntryKind,
    pub offset: u64,
    pub length: u64,
    pub crc: u32,
}

/// A parsed bundle: slices borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bundle<'a> {
    pub kernel: &'a [u8],
    pub initrd: Option<&'a [u8]>,
    /// Empty when the bundle has no cmdline entry.
    pub cmdline: &'a str,
    /// Bytes the bundle occupies (`total_len`).
    pub total_len: u64,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    (u32_at(b, off) as u64) | ((u32_at(b, off + 4) as u64) << 32)
}

/// CRC-32 of the header with its `header_crc` field taken as zero.
fn header_crc(header: &[u8]) -> u32 {
    let c = crc32(&header[..24]);
    let c = super::crc32_update(c, &[0; 4]);
    super::crc32_update(c, &header[28..])
}

impl<'a> Bundle<'a> {
    /// Parses and fully checks a bundle. `bytes` may be longer than the
    /// bundle (a boot loader rounds sizes up); it may not be shorter.
    /// Total: any input gives `Ok` or an error, never a panic.
    pub fn parse(bytes: &'a [u8]) -> Result<Bundle<'a>, BundleError> {
        if bytes.len() < HEADER_LEN {
            return Err(BundleError::TooShort { len: bytes.len() });
        }
        if bytes[..8] != MAGIC {
            return Err(BundleError::BadMagic);
        }
        let version = u16_at(bytes, 8);
        if version != VERSION {
            return Err(BundleError::UnsupportedVersion(version));
        }
        let header_len = u16_at(bytes, 10);
        let entry_count = u32_at(bytes, 12);
        if entry_count == 0
            || entry_count > MAX_ENTRIES
            || header_len as usize != HEADER_LEN + entry_count as usize * ENTRY_LEN
        {
            return Err(BundleError::BadHeaderLength {
                header_len,
                entry_count,
            });
        }
        let total_len = u64_at(bytes, 16);
        let header_len = header_len as usize;
        if bytes.len() < header_len || (bytes.len() as u64) < total_len || total_len < header_len as u64 {
            return Err(BundleError::Truncated {
                declared: total_len.max(header_len as u64),
                available: bytes.len(),
            });
        }
        let header = &bytes[..header_len];
        let stored = u32_at(header, 24);
        let computed = header_crc(header);
        if stored != computed {
            return Err(BundleError::HeaderChecksumMismatch { stored, computed });
        }
        if u32_at(header, 28) != 0 {
            return Err(BundleError::ReservedNotZero { offset: 28 });
        }

        let mut found: [Option<EntryInfo>; 3] = [None; 3];
        for index in 0..entry_count as usize {
            let e = HEADER_LEN + index * ENTRY_LEN;
            for reserved in [e + 4, e + 28] {
                if u32_at(header, reserved) != 0 {
                    return Err(BundleError::ReservedNotZero { offset: reserved });
                }
            }
            let raw_kind = u32_at(header, e);
            let kind = EntryKind::from_raw(raw_kind).ok_or(BundleError::UnknownKind { index, kind: raw_kind })?;
            let info = EntryInfo {
                kind,
                offset: u64_at(header, e + 8),
                length: u64_at(header, e + 16),
                crc: u32_at(header, e + 24),
            };
            if !info.offset.is_multiple_of(PAYLOAD_ALIGN) {
                return Err(BundleError::MisalignedEntry {
                    kind,
                    offset: info.offset,
                });
            }
            let in_bounds = info.offset >= header_len as u64
                && info.offset.checked_add(info.length).is_some_and(|end| end <= total_len);
            if !in_bounds {
                return Err(BundleError::EntryOutOfBounds {
                    kind,
                    offset: info.offset,
                    length: info.length,
                });
            }
            let slot = &mut found[kind.raw() as usize - 1];
            if slot.is_some() {
                return Err(BundleError::DuplicateEntry(kind));
            }
            *slot = Some(info);
        }

        // Empty payloads occupy nothing and so overlap nothing.
        let present = || found.iter().flatten().filter(|e| e.length > 0);
        for a in present() {
            for b in present() {
                if a.kind.raw() < b.kind.raw() && a.offset < b.offset + b.length && b.offset < a.offset + a.length {
                    let (first, second) = if a.offset <= b.offset { (a, b) } else { (b, a) };
                    return Err(BundleError::OverlappingEntries {
                        first: first.kind,
                        second: second.kind,
                    });
                }
            }
        }

        let kernel_info = found[0].ok_or(BundleError::MissingKernel)?;
        if kernel_info.length == 0 {
            return Err(BundleError::EmptyKernel);
        }
        let payload = |info: &EntryInfo| -> Result<&'a [u8], BundleError> {
            // In bounds: offset + length <= total_len <= bytes.len() was checked above.
            let data = &bytes[info.offset as usize..(info.offset + info.length) as usize];
            let computed = crc32(data);
            if computed != info.crc {
                return Err(BundleError::ChecksumMismatch {
                    kind: info.kind,
                    stored: info.crc,
                    computed,
                });
            }
            Ok(data)
        };
        let kernel = payload(&kernel_info)?;
        let initrd = found[1].as_ref().map(payload).transpose()?;
        let cmdline = match found[2].as_ref().map(payload).transpose()? {
            None => "",
            Some(raw) => match core::str::from_utf8(raw) {
                Ok(s) if !s.contains('\0') => s,
                _ => return Err(BundleError::BadCmdline),
            },
        };
        Ok(Bundle {
            kernel,
            initrd,
            cmdline,
            total_len,
        })
    }

    /// Where each payload sits, for diagnostics (`hv: bundle: kernel at +0x1000, ...`).
    pub fn entries(bytes: &[u8]) -> Result<impl Iterator<Item = EntryInfo> + '_, BundleError> {
        Bundle::parse(bytes)?;
        let count = u32_at(bytes, 12) as usize;
        Ok((0..count).filter_map(move |index| {
            let e = HEADER_LEN + index * ENTRY_LEN;
            Some(EntryInfo {
                kind: EntryKind::from_raw(u32_at(bytes, e))?,
                offset: u64_at(bytes, e + 8),
                length: u64_at(bytes, e + 16),
                crc: u32_at(bytes, e + 24),
            })
        }))
    }
}

/// Writes a bundle: payloads in the order kernel, initrd, cmdline, each at
/// the next 4 KiB boundary. `scripts/mkbundle.py` writes the same bytes for
/// the same inputs; this one serves tests and host tools.
pub fn write(kernel: &[u8], initrd: Option<&[u8]>, cmdline: Option<&str>) -> Vec<u8> {
    let mut parts: Vec<(EntryKind, &[u8])> = alloc::vec![(EntryKind::Kernel, kernel)];
    if let Some(i) = initrd {
        parts.push((EntryKind::Initrd, i));
    }
    if let Some(c) = cmdline {
        parts.push((EntryKind::Cmdline, c.as_bytes()));
    }
    let header_len = HEADER_LEN + parts.len() * ENTRY_LEN;
    let align = |n: usize| n.next_multiple_of(PAYLOAD_ALIGN as usize);
    let mut out = alloc::vec![0u8; align(header_len)];
    for (i, (kind, data)) in parts.iter().enumerate() {
        let offset = align(out.len());
        out.resize(offset, 0);
        out.extend_from_slice(data);
        let e = HEADER_LEN + i * ENTRY_LEN;
        out[e..e + 4].copy_from_slice(&kind.raw().to_le_bytes());
        out[e + 8..e + 16].copy_from_slice(&(offset as u64).to_le_bytes());
        out[e + 16..e + 24].copy_from_slice(&(data.len() as u64).to_le_bytes());
        out[e + 24..e + 28].copy_from_slice(&crc32(data).to_le_bytes());
    }
    let total = out.len() as u64;
    out[..8].copy_from_slice(&MAGIC);
    out[8..10].copy_from_slice(&VERSION.to_le_bytes());
    out[10..12].copy_from_slice(&(header_len as u16).to_le_bytes());
    out[12..16].copy_from_slice(&(parts.len() as u32).to_le_bytes());
    out[16..24].copy_from_slice(&total.to_le_bytes());
    let crc = header_crc(&out[..header_len]);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_borrowed_slices() {
        let bytes = write(b"KERNEL", Some(b"INITRD!"), Some("console=ttyAMA0 quiet"));
        let b = Bundle::parse(&bytes).unwrap();
        assert_eq!(b.kernel, b"KERNEL");
        assert_eq!(b.initrd, Some(&b"INITRD!"[..]));
        assert_eq!(b.cmdline, "console=ttyAMA0 quiet");
        assert_eq!(b.total_len, bytes.len() as u64);
        // Payloads start on 4 KiB boundaries.
        assert_eq!(b.kernel.as_ptr() as usize - bytes.as_ptr() as usize, 4096);
        assert_eq!(b.initrd.unwrap().as_ptr() as usize - bytes.as_ptr() as usize, 8192);
        let kinds: alloc::vec::Vec<_> = Bundle::entries(&bytes).unwrap().map(|e| e.kind).collect();
        assert_eq!(kinds, [EntryKind::Kernel, EntryKind::Initrd, EntryKind::Cmdline]);
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = write(b"K", Some(b"I"), None);
        for len in 0..bytes.len() {
            assert!(Bundle::parse(&bytes[..len]).is_err(), "len {len}");
        }
        // Padding after the bundle is fine.
        let mut padded = bytes.clone();
        padded.resize(bytes.len() + 100, 0xaa);
        assert!(Bundle::parse(&padded).is_ok());
    }
}
