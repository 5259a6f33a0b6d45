//! The arm64 Linux `Image` header (Documentation/arch/arm64/booting.rst) and
//! where the Image may be placed in guest RAM.
//!
//! ```text
//!  0 code0 u32, 4 code1 u32, 8 text_offset u64, 16 image_size u64, 24 flags u64,
//! 32 res2 u64, 40 res3 u64, 48 res4 u64, 56 magic "ARM\x64", 60 res5 u32 (PE header offset)
//! ```

use core::fmt;

/// Bytes of the header.
pub const HEADER_LEN: usize = 64;
/// "ARM\x64", little-endian at offset 56.
pub const MAGIC: u32 = 0x644d_5241;
/// The Image's load base must be aligned to this (booting.rst: "2MB aligned base").
pub const BASE_ALIGN: u64 = 2 << 20;
/// text_offset a pre-3.17 kernel (image_size == 0) expects.
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;

const FLAG_BE: u64 = 1 << 0;
const FLAG_PAGE_SIZE_SHIFT: u64 = 1;
const FLAG_PHYS_PLACEMENT_ANYWHERE: u64 = 1 << 3;
/// Bits 4..63 are reserved.
const FLAGS_RESERVED: u64 = !0xf;

/// The kernel page size the Image declares (flags bits 1-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    Unspecified,
    K4,
    K16,
    K64,
}

/// Why an Image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    TooShort {
        len: usize,
    },
    BadMagic {
        found: u32,
    },
    /// hv runs little-endian guests only.
    BigEndian,
    ReservedFlags(u64),
    /// text_offset must be 4 KiB aligned and below 2 MiB (it is an offset from a 2 MiB aligned base).
    BadTextOffset(u64),
    /// image_size (the kernel's whole footprint, BSS included) is smaller than the file.
    ImageSizeTooSmall {
        image_size: u64,
        file_len: usize,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ImageError::TooShort { len } => {
                write!(f, "arm64 Image too short: {len} bytes, the header is {HEADER_LEN}")
            }
            ImageError::BadMagic { found } => write!(
                f,
                "not an arm64 Image: magic at offset 56 is {found:#010x}, expected {MAGIC:#010x} (\"ARM\\x64\")"
            ),
            ImageError::BigEndian => f.write_str("arm64 Image is big-endian; hv boots little-endian kernels only"),
            ImageError::ReservedFlags(flags) => write!(f, "arm64 Image sets reserved flag bits ({flags:#x})"),
            ImageError::BadTextOffset(off) => {
                write!(f, "arm64 Image text_offset {off:#x} is not 4K aligned below 2 MiB")
            }
            ImageError::ImageSizeTooSmall { image_size, file_len } => write!(
                f,
                "arm64 Image image_size {image_size:#x} is smaller than the file ({file_len:#x} bytes)"
            ),
        }
    }
}

/// A checked arm64 Image header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arm64Image {
    /// Offset of the Image from its 2 MiB aligned load base.
    pub text_offset: u64,
    /// Bytes the kernel needs from its first byte (BSS and early page tables included).
    pub image_size: u64,
    pub flags: u64,
    /// Bytes of the file itself (copied to the load address).
    pub file_len: u64,
}

impl Arm64Image {
    /// Checks the header of the Image in `bytes` (the whole file).
    pub fn parse(bytes: &[u8]) -> Result<Arm64Image, ImageError> {
        if bytes.len() < HEADER_LEN {
            return Err(ImageError::TooShort { len: bytes.len() });
        }
        let u64_at = |off: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[off..off + 8]);
            u64::from_le_bytes(w)
        };
        let magic = u32::from_le_bytes([bytes[56], bytes[57], bytes[58], bytes[59]]);
        if magic != MAGIC {
            return Err(ImageError::BadMagic { found: magic });
        }
        let (mut text_offset, image_size, flags) = (u64_at(8), u64_at(16), u64_at(24));
        if image_size == 0 {
            // Before Linux 3.17 the header fields were unset: booting.rst says
            // assume text_offset 0x80000 and little-endian.
            text_offset = LEGACY_TEXT_OFFSET;
        } else {
            if flags & FLAG_BE != 0 {
                return Err(ImageError::BigEndian);
            }
            if flags & FLAGS_RESERVED != 0 {
                return Err(ImageError::ReservedFlags(flags));
            }
        }
        if text_offset % 4096 != 0 || text_offset >= BASE_ALIGN {
            return Err(ImageError::BadTextOffset(text_offset));
        }
        if image_size != 0 && image_size < bytes.len() as u64 {
            return Err(ImageError::ImageSizeTooSmall {
                image_size,
                file_len: bytes.len(),
            });
        }
        Ok(Arm64Image {
            text_offset,
            image_size,
            flags: if image_size == 0 { 0 } else { flags },
            file_len: bytes.len() as u64,
        })
    }

    pub fn page_size(&self) -> PageSize {
        match (self.flags >> FLAG_PAGE_SIZE_SHIFT) & 3 {
            1 => PageSize::K4,
            2 => PageSize::K16,
            3 => PageSize::K64,
            _ => PageSize::Unspecified,
        }
    }

    /// Flags bit 3: the 2 MiB base may be anywhere in RAM. When clear, the
    /// base should be as low as possible (RAM below it is outside the linear map).
    pub fn placement_anywhere(&self) -> bool {
        self.flags & FLAG_PHYS_PLACEMENT_ANYWHERE != 0
    }

    /// Bytes that must be free from the Image's first byte. A legacy header
    /// (image_size 0) gives no size: the file plus a generous 16 MiB for BSS
    /// and early tables stands in for it.
    pub fn footprint(&self) -> u64 {
        if self.image_size != 0 {
            self.image_size
        } else {
            (self.file_len + (16 << 20)).next_multiple_of(4096)
        }
    }

    /// What the layout needs to place this Image.
    pub fn placement(&self) -> super::layout::KernelPlacement {
        super::layout::KernelPlacement::Aligned {
            align: BASE_ALIGN,
            offset: self.text_offset,
            size: self.footprint(),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    /// A header as Debian's 6.1 arm64 Image has it (text_offset 0, image_size 0x201_0000, flags 0xa).
    pub(crate) fn header(text_offset: u64, image_size: u64, flags: u64, file_len: usize) -> Vec<u8> {
        let mut b = std::vec![0u8; file_len.max(HEADER_LEN)];
        b[0..4].copy_from_slice(b"MZ@\xfa");
        b[8..16].copy_from_slice(&text_offset.to_le_bytes());
        b[16..24].copy_from_slice(&image_size.to_le_bytes());
        b[24..32].copy_from_slice(&flags.to_le_bytes());
        b[56..60].copy_from_slice(b"ARM\x64");
        b
    }

    #[test]
    fn debian_header_parses() {
        let img = Arm64Image::parse(&header(0, 0x201_0000, 0xa, 0x1000)).unwrap();
        assert_eq!(img.text_offset, 0);
        assert_eq!(img.image_size, 0x201_0000);
        assert_eq!(img.page_size(), PageSize::K4);
        assert!(img.placement_anywhere());
        assert_eq!(img.footprint(), 0x201_0000);
    }

    #[test]
    fn broken_headers_are_refused_with_the_reason() {
        assert_eq!(Arm64Image::parse(&[0; 63]), Err(ImageError::TooShort { len: 63 }));
        let mut bad_magic = header(0, 0x20_0000, 0xa, 64);
        bad_magic[59] = 0x65;
        assert!(matches!(
            Arm64Image::parse(&bad_magic),
            Err(ImageError::BadMagic { .. })
        ));
        assert_eq!(
            Arm64Image::parse(&header(0, 0x20_0000, 0xb, 64)),
            Err(ImageError::BigEndian)
        );
        assert_eq!(
            Arm64Image::parse(&header(0, 0x20_0000, 0x1a, 64)),
            Err(ImageError::ReservedFlags(0x1a))
        );
        assert_eq!(
            Arm64Image::parse(&header(0x1234, 0x20_0000, 0xa, 64)),
            Err(ImageError::BadTextOffset(0x1234))
        );
        assert_eq!(
            Arm64Image::parse(&header(0x20_0000, 0x20_0000, 0xa, 64)),
            Err(ImageError::BadTextOffset(0x20_0000))
        );
        assert_eq!(
            Arm64Image::parse(&header(0, 0x1000, 0xa, 0x2000)),
            Err(ImageError::ImageSizeTooSmall {
                image_size: 0x1000,
                file_len: 0x2000
            })
        );
    }

    #[test]
    fn legacy_header_gets_the_documented_text_offset() {
        let img = Arm64Image::parse(&header(0, 0, 0xff, 0x3000)).unwrap();
        assert_eq!(img.text_offset, LEGACY_TEXT_OFFSET);
        assert_eq!(img.page_size(), PageSize::Unspecified);
        assert!(!img.placement_anywhere());
        assert_eq!(img.footprint(), 0x3000 + (16 << 20));
    }
}
