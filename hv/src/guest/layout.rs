//! The guest's physical memory: the machine's RAM minus what hv keeps, and
//! where the kernel, initrd and device tree go inside it.
//!
//! Guest-physical equals host-physical (stage-2 is an identity map), so the
//! guest's RAM is simply the RAM hv does not own: zero, one or two pieces
//! per RAM bank, depending on where hv sits.

use alloc::vec::Vec;
use core::fmt;

use super::{MemRange, Named};

const PAGE: u64 = 4096;
/// arm64 booting.rst: the DTB must not exceed 2 MiB, and shares no 2 MiB
/// region with anything mapped differently: it gets a 2 MiB slot of its own.
pub const DTB_SLOT: u64 = 2 << 20;
/// arm64 booting.rst: the initrd lies in a 1 GiB aligned window of at most
/// 32 GiB that also covers the kernel Image.
const INITRD_WINDOW_ALIGN: u64 = 1 << 30;
const INITRD_WINDOW_MAX: u64 = 32 << 30;

/// How the kernel must be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelPlacement {
    /// At `offset` bytes above a base aligned to `align`, with `size` bytes
    /// free from the kernel's first byte (arm64 Image: 2 MiB, text_offset, image_size).
    /// The lowest such place is taken (arm64: RAM below the base is outside the linear map).
    Aligned { align: u64, offset: u64, size: u64 },
    /// Exactly at `start` (an x86 vmlinux's physical load address).
    Fixed { start: u64, size: u64 },
}

/// What to place.
#[derive(Clone, Copy, Debug)]
pub struct LayoutRequest<'a> {
    pub kernel: KernelPlacement,
    /// Bytes of the initrd; 0 for none.
    pub initrd_size: u64,
    /// Bytes of the guest DTB (at most [`DTB_SLOT`]); 0 for none (x86).
    pub dtb_size: u64,
    /// Guest RAM where nothing may be placed, e.g. the bundle hv is still
    /// copying the kernel out of. It stays guest RAM.
    pub avoid: &'a [Named<'a>],
}

/// Where everything goes (guest-physical = host-physical addresses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestLayout {
    /// The guest's RAM: sorted, disjoint, 4 KiB aligned, never touching hv.
    pub ram: Vec<MemRange>,
    /// The kernel's footprint: it is loaded at `kernel.start` (the entry point on arm64).
    pub kernel: MemRange,
    /// The aligned base the kernel sits `offset` bytes above (== kernel.start for `Fixed`).
    pub kernel_base: u64,
    pub initrd: Option<MemRange>,
    /// The DTB's bytes (its slot is the 2 MiB from `dtb.start`).
    pub dtb: Option<MemRange>,
}

impl GuestLayout {
    pub fn ram_bytes(&self) -> u64 {
        self.ram.iter().map(MemRange::len).sum()
    }
}

/// Why no layout exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Every byte of RAM is hv's (or the RAM list is empty).
    NoGuestRam,
    /// RAM too small: `what` does not fit anywhere.
    NoRoom {
        what: &'static str,
        size: u64,
        guest_ram: u64,
        largest_free: u64,
    },
    /// A fixed placement is not inside one piece of guest RAM.
    FixedOutsideGuestRam {
        what: &'static str,
        range: MemRange,
    },
    /// A fixed placement hits a range to avoid.
    FixedOverlaps {
        what: &'static str,
        range: MemRange,
        other: MemRange,
    },
    DtbTooLarge {
        size: u64,
    },
    /// A placement request that is not satisfiable by construction (zero size, bad alignment).
    BadRequest(&'static str),
    /// The initrd is not in a 1 GiB aligned window of at most 32 GiB with the kernel.
    InitrdTooFarFromKernel {
        kernel: MemRange,
        initrd: MemRange,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayoutError::NoGuestRam => f.write_str("no guest RAM: hv owns all of RAM"),
            LayoutError::NoRoom {
                what,
                size,
                guest_ram,
                largest_free,
            } => write!(
                f,
                "guest RAM too small: no room for the {what} ({} KiB) in {} KiB of guest RAM \
                 (largest free piece {} KiB)",
                size / 1024,
                guest_ram / 1024,
                largest_free / 1024
            ),
            LayoutError::FixedOutsideGuestRam { what, range } => {
                write!(f, "the {what} at [{range}] is not inside guest RAM")
            }
            LayoutError::FixedOverlaps { what, range, other } => {
                write!(f, "the {what} at [{range}] overlaps [{other}]")
            }
            LayoutError::DtbTooLarge { size } => {
                write!(f, "guest DTB is {size} bytes; arm64 Linux takes at most {DTB_SLOT}")
            }
            LayoutError::BadRequest(why) => write!(f, "bad layout request: {why}"),
            LayoutError::InitrdTooFarFromKernel { kernel, initrd } => write!(
                f,
                "initrd [{initrd}] is not within a 1 GiB aligned 32 GiB window with the kernel [{kernel}]"
            ),
        }
    }
}

/// Sorted, merged copy of `ranges`.
fn normalize(ranges: impl IntoIterator<Item = MemRange>) -> Vec<MemRange> {
    let mut v: Vec<MemRange> = ranges.into_iter().filter(|r| !r.is_empty()).collect();
    v.sort_unstable();
    let mut out: Vec<MemRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// The machine's RAM minus every range hv owns, 4 KiB aligned inward.
pub fn guest_ram(ram: &[MemRange], hv_owned: &[Named<'_>]) -> Vec<MemRange> {
    let owned = normalize(hv_owned.iter().map(|n| n.range));
    let mut out = Vec::new();
    for bank in normalize(ram.iter().copied()) {
        let mut cursor = bank.start;
        for hole in owned.iter().filter(|o| o.overlaps(&bank)) {
            out.extend(MemRange::new(cursor, hole.start));
            cursor = cursor.max(hole.end);
        }
        out.extend(MemRange::new(cursor, bank.end));
    }
    out.into_iter()
        .filter_map(|r| MemRange::new(r.start.checked_next_multiple_of(PAGE)?, r.end & !(PAGE - 1)))
        .collect()
}

/// The lowest `base` (a multiple of `align`) with `[base + offset, base +
/// offset + size)` inside one piece of `ram` and clear of `taken`.
fn first_fit(ram: &[MemRange], taken: &[MemRange], align: u64, offset: u64, size: u64) -> Option<u64> {
    for piece in ram {
        let mut base = piece.start.saturating_sub(offset).checked_next_multiple_of(align)?;
        loop {
            let start = base.checked_add(offset)?;
            if start < piece.start {
                base = base.checked_add(align)?;
                continue;
            }
            let region = MemRange::from_len(start, size)?;
            if region.end > piece.end {
                break;
            }
            match taken.iter().filter(|t| t.overlaps(&region)).map(|t| t.end).max() {
                None => return Some(base),
                // Skip past the obstacle; `base` strictly grows, so this ends.
                Some(end) => base = end.saturating_sub(offset).checked_next_multiple_of(align)?,
            }
        }
    }
    None
}

/// The largest stretch of `ram` free of `taken` (for the "too small" message).
fn largest_free(ram: &[MemRange], taken: &[MemRange]) -> u64 {
    let taken = normalize(taken.iter().copied());
    let mut best = 0;
    for piece in ram {
        let mut cursor = piece.start;
        for t in taken.iter().filter(|t| t.overlaps(piece)) {
            best = best.max(t.start.saturating_sub(cursor));
            cursor = cursor.max(t.end);
        }
        best = best.max(piece.end.saturating_sub(cursor));
    }
    best
}

/// Computes the guest's RAM and places the kernel (lowest), then the initrd
/// after it, then the DTB in a 2 MiB slot of its own.
pub fn plan(ram: &[MemRange], hv_owned: &[Named<'_>], req: &LayoutRequest<'_>) -> Result<GuestLayout, LayoutError> {
    let guest = guest_ram(ram, hv_owned);
    if guest.is_empty() {
        return Err(LayoutError::NoGuestRam);
    }
    let guest_bytes: u64 = guest.iter().map(MemRange::len).sum();
    let mut taken: Vec<MemRange> = req.avoid.iter().map(|n| n.range).filter(|r| !r.is_empty()).collect();
    // Boot protocols read address 0 as "none" (an initrd or module at 0 is ignored).
    taken.push(MemRange { start: 0, end: PAGE });
    let no_room = |what, size, taken: &[MemRange]| LayoutError::NoRoom {
        what,
        size,
        guest_ram: guest_bytes,
        largest_free: largest_free(&guest, taken),
    };

    let (kernel, kernel_base) = match req.kernel {
        KernelPlacement::Aligned { align, offset, size } => {
            if size == 0 || !align.is_power_of_two() || align < PAGE || offset % PAGE != 0 {
                return Err(LayoutError::BadRequest(
                    "kernel size 0, or alignment/offset not page multiples",
                ));
            }
            let base = first_fit(&guest, &taken, align, offset, size).ok_or_else(|| no_room("kernel", size, &taken))?;
            (
                MemRange::from_len(base + offset, size).ok_or(LayoutError::BadRequest("kernel wraps"))?,
                base,
            )
        }
        KernelPlacement::Fixed { start, size } => {
            let range = MemRange::from_len(start, size).ok_or(LayoutError::BadRequest("kernel empty or wraps"))?;
            if !guest.iter().any(|p| p.covers(&range)) {
                return Err(LayoutError::FixedOutsideGuestRam { what: "kernel", range });
            }
            if let Some(other) = taken.iter().find(|t| t.overlaps(&range)) {
                return Err(LayoutError::FixedOverlaps {
                    what: "kernel",
                    range,
                    other: *other,
                });
            }
            (range, start)
        }
    };
    taken.push(kernel);

    let initrd = match req.initrd_size {
        0 => None,
        size => {
            let start = first_fit(&guest, &taken, PAGE, 0, size).ok_or_else(|| no_room("initrd", size, &taken))?;
            let range = MemRange::from_len(start, size).ok_or(LayoutError::BadRequest("initrd wraps"))?;
            taken.push(range);
            Some(range)
        }
    };

    let dtb = match req.dtb_size {
        0 => None,
        size if size > DTB_SLOT => return Err(LayoutError::DtbTooLarge { size }),
        size => {
            let start =
                first_fit(&guest, &taken, DTB_SLOT, 0, DTB_SLOT).ok_or_else(|| no_room("DTB", DTB_SLOT, &taken))?;
            taken.push(MemRange::from_len(start, DTB_SLOT).ok_or(LayoutError::BadRequest("DTB wraps"))?);
            MemRange::from_len(start, size)
        }
    };

    if let (Some(initrd), KernelPlacement::Aligned { .. }) = (initrd, req.kernel) {
        let window_start = kernel.start.min(initrd.start) & !(INITRD_WINDOW_ALIGN - 1);
        if kernel.end.max(initrd.end) - window_start > INITRD_WINDOW_MAX {
            return Err(LayoutError::InitrdTooFarFromKernel { kernel, initrd });
        }
    }

    Ok(GuestLayout {
        ram: guest,
        kernel,
        kernel_base,
        initrd,
        dtb,
    })
}
