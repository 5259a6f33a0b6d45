//! What the guest learned at boot: its RAM (DTB /memory or e820), where hv
//! sits (the hole hv cut into RAM), addresses nothing maps, its command line.

use core::fmt;

use crate::console;
use crate::ensure;

pub const PAGE: u64 = 4096;
pub const MAX_RANGES: usize = 16;

/// `[start, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub const fn new(start: u64, end: u64) -> Range {
        Range { start, end }
    }
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
    pub fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end && other.start < self.end
    }
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}-{:#x}", self.start, self.end)
    }
}

/// A small sorted list of ranges.
#[derive(Clone, Copy, Default)]
pub struct Ranges {
    items: [Range; MAX_RANGES],
    count: usize,
}

impl Ranges {
    pub fn push(&mut self, r: Range) {
        if r.is_empty() || self.count == MAX_RANGES {
            return;
        }
        let mut at = self.count;
        while at > 0 && self.items[at - 1].start > r.start {
            self.items[at] = self.items[at - 1];
            at -= 1;
        }
        self.items[at] = r;
        self.count += 1;
    }
    pub fn as_slice(&self) -> &[Range] {
        &self.items[..self.count]
    }
    pub fn covers(&self, r: &Range) -> bool {
        self.as_slice().iter().any(|x| x.start <= r.start && r.end <= x.end)
    }
    pub fn end(&self) -> u64 {
        self.as_slice().iter().map(|r| r.end).max().unwrap_or(0)
    }
}

impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.as_slice().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

pub struct Platform {
    /// Guest RAM as the boot information lists it.
    pub ram: Ranges,
    /// hv's region: RAM the boot information leaves out (None without hv).
    pub hv: Option<Range>,
    /// A guest-physical page outside RAM that no second-stage entry maps.
    pub unmapped: u64,
    /// A guest-physical address beyond every RAM range (and device) the platform has.
    pub beyond_ram: u64,
    /// A device MMIO page the guest owns (stage-2 maps it as device memory).
    pub device_page: u64,
    /// This image in guest RAM.
    pub image: Range,
    /// What the loader handed over in RAM (DTB, boot_params, command line): never scribbled on.
    pub boot_data: Ranges,
    /// Parts of the image: code (RX), rodata (R), the rest (RW).
    pub text_end: u64,
    pub rodata_end: u64,
    /// `testguest.expect=hv`: a missing hv is a failure.
    pub expect_hv: bool,
    /// `testguest.seed=N`.
    pub seed: u64,
    /// `testguest.random=N`: random calls to make.
    pub random_calls: u32,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RAM {} ({} ranges), image {}",
            self.ram,
            self.ram.as_slice().len(),
            self.image
        )?;
        match self.hv {
            Some(hv) => write!(f, ", hv region {hv}"),
            None => f.write_str(", no hv region"),
        }
    }
}

impl Platform {
    /// Parses `testguest.*` words of the command line into `self`.
    pub fn apply_cmdline(&mut self, cmdline: &str) {
        for word in cmdline.split_ascii_whitespace() {
            if word == "testguest.expect=hv" {
                self.expect_hv = true;
            } else if let Some(v) = word.strip_prefix("testguest.seed=") {
                if let Some(n) = parse_u64(v) {
                    self.seed = n;
                }
            } else if let Some(v) = word.strip_prefix("testguest.random=") {
                if let Some(n) = parse_u64(v) {
                    self.random_calls = n.min(1_000_000) as u32;
                }
            }
        }
    }

    /// The boot information must describe a sane machine before any test
    /// trusts it.
    pub fn self_check(&self) {
        console::check("boot-info", self.check_boot_info());
    }

    fn check_boot_info(&self) -> console::Outcome {
        ensure!(!self.ram.as_slice().is_empty(), "no RAM in the boot information");
        ensure!(
            self.ram.covers(&self.image),
            "the image {} is not inside RAM {}",
            self.image,
            self.ram
        );
        if let Some(hv) = self.hv {
            ensure!(
                !self.ram.as_slice().iter().any(|r| r.overlaps(&hv)),
                "hv region {hv} overlaps RAM {}",
                self.ram
            );
            ensure!(!hv.overlaps(&self.image), "hv region {hv} overlaps the image");
        }
        Ok(())
    }

    pub fn boot_data_overlaps(&self, addr: u64, len: u64) -> bool {
        let r = Range::new(addr, addr.saturating_add(len));
        self.boot_data.as_slice().iter().any(|b| b.overlaps(&r))
    }

    /// Whether `[addr, addr + len)` lies in guest RAM.
    pub fn in_ram(&self, addr: u64, len: u64) -> bool {
        addr.checked_add(len)
            .is_some_and(|end| self.ram.covers(&Range::new(addr, end)))
    }
}

/// Decimal or 0x-hex.
pub fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Sets up a platform value with the image's own bounds (linker symbols).
pub fn image_bounds() -> (Range, u64, u64) {
    extern "C" {
        static __image_start: u8;
        static __image_end: u8;
        static __text_end: u8;
        static __rodata_end: u8;
    }
    let start = core::ptr::addr_of!(__image_start) as u64;
    let end = core::ptr::addr_of!(__image_end) as u64;
    (
        Range::new(start, end),
        core::ptr::addr_of!(__text_end) as u64,
        core::ptr::addr_of!(__rodata_end) as u64,
    )
}
