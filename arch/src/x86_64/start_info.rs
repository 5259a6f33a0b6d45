//! What the PVH loader hands hv: `struct hvm_start_info` (Xen's
//! public/arch-x86/hvm/start_info.h), read once while the boot identity map
//! still covers it and copied, so hv's own tables need not map it.

use core::fmt;

const MAGIC: u32 = 0x336e_c578;
/// Version 1 added the memory map.
const VERSION_WITH_MEMMAP: u32 = 1;
const MAX_REGIONS: usize = 64;
const MAX_MODULES: usize = 8;
const MAX_CMDLINE: usize = 1024;

#[repr(C)]
#[derive(Clone, Copy)]
struct HvmStartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct HvmMemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct HvmModlistEntry {
    paddr: u64,
    size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}

/// An e820-style memory type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    Ram,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Unusable,
    Other(u32),
}

impl RegionKind {
    fn from_raw(raw: u32) -> RegionKind {
        match raw {
            1 => RegionKind::Ram,
            2 => RegionKind::Reserved,
            3 => RegionKind::AcpiReclaimable,
            4 => RegionKind::AcpiNvs,
            5 => RegionKind::Unusable,
            other => RegionKind::Other(other),
        }
    }
}

impl fmt::Display for RegionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Linux's e820 names, so the map reads like a Linux boot log.
        match self {
            RegionKind::Ram => f.write_str("usable"),
            RegionKind::Reserved => f.write_str("reserved"),
            RegionKind::AcpiReclaimable => f.write_str("ACPI data"),
            RegionKind::AcpiNvs => f.write_str("ACPI NVS"),
            RegionKind::Unusable => f.write_str("unusable"),
            RegionKind::Other(t) => write!(f, "type {t}"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Region {
    pub start: u64,
    pub size: u64,
    pub kind: RegionKind,
}

impl Region {
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Module {
    pub start: u64,
    pub size: u64,
}

/// Why the boot information is unusable.
#[derive(Clone, Copy, Debug)]
pub enum StartInfoError {
    NoPointer,
    BadMagic(u32),
    NoMemoryMap { version: u32 },
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartInfoError::NoPointer => f.write_str("no hvm_start_info (EBX was 0): not started through PVH"),
            StartInfoError::BadMagic(m) => write!(f, "hvm_start_info magic {m:#x}, expected {MAGIC:#x}"),
            StartInfoError::NoMemoryMap { version } => {
                write!(f, "hvm_start_info version {version} carries no memory map")
            }
        }
    }
}

/// The boot information, copied out of the loader's memory.
pub struct BootInfo {
    regions: [Region; MAX_REGIONS],
    region_count: usize,
    /// Entries the loader listed beyond what hv keeps.
    pub regions_dropped: usize,
    modules: [Module; MAX_MODULES],
    module_count: usize,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
    pub rsdp: u64,
}

/// Reads one `T` from a physical address the boot identity map covers.
///
/// # Safety
/// `paddr` must be readable RAM holding a `T`, inside the boot identity map.
unsafe fn read_phys<T: Copy>(paddr: u64) -> T {
    // SAFETY: the caller guarantees the address; unaligned reads are fine on x86.
    unsafe { core::ptr::read_unaligned(paddr as *const T) }
}

impl BootInfo {
    /// Copies the boot information at `paddr` (EBX at the PVH entry).
    ///
    /// # Safety
    /// Call only while the boot identity map is live, with the pointer the
    /// loader passed: the structure and what it points to are then readable.
    pub unsafe fn read(paddr: u64) -> Result<BootInfo, StartInfoError> {
        if paddr == 0 {
            return Err(StartInfoError::NoPointer);
        }
        // SAFETY: the caller passes the loader's pointer; the header is readable.
        let info: HvmStartInfo = unsafe { read_phys(paddr) };
        if info.magic != MAGIC {
            return Err(StartInfoError::BadMagic(info.magic));
        }
        if info.version < VERSION_WITH_MEMMAP || info.memmap_paddr == 0 {
            return Err(StartInfoError::NoMemoryMap { version: info.version });
        }
        let mut boot = BootInfo {
            regions: [Region {
                start: 0,
                size: 0,
                kind: RegionKind::Reserved,
            }; MAX_REGIONS],
            region_count: 0,
            regions_dropped: 0,
            modules: [Module { start: 0, size: 0 }; MAX_MODULES],
            module_count: 0,
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
            rsdp: info.rsdp_paddr,
        };
        for i in 0..info.memmap_entries as u64 {
            // SAFETY: the loader's memory map has `memmap_entries` entries.
            let e: HvmMemmapEntry = unsafe { read_phys(info.memmap_paddr + i * size_of::<HvmMemmapEntry>() as u64) };
            if boot.region_count == MAX_REGIONS {
                boot.regions_dropped += 1;
                continue;
            }
            boot.regions[boot.region_count] = Region {
                start: e.addr,
                size: e.size,
                kind: RegionKind::from_raw(e.kind),
            };
            boot.region_count += 1;
        }
        for i in 0..(info.nr_modules as usize).min(MAX_MODULES) {
            let at = info.modlist_paddr + (i * size_of::<HvmModlistEntry>()) as u64;
            // SAFETY: the loader's module list has `nr_modules` entries.
            let m: HvmModlistEntry = unsafe { read_phys(at) };
            boot.modules[i] = Module {
                start: m.paddr,
                size: m.size,
            };
            boot.module_count += 1;
        }
        if info.cmdline_paddr != 0 {
            while boot.cmdline_len < MAX_CMDLINE {
                // SAFETY: the command line is a NUL-terminated string; reading stops at the NUL.
                let byte: u8 = unsafe { read_phys(info.cmdline_paddr + boot.cmdline_len as u64) };
                if byte == 0 {
                    break;
                }
                boot.cmdline[boot.cmdline_len] = byte;
                boot.cmdline_len += 1;
            }
        }
        Ok(boot)
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.region_count]
    }

    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.module_count]
    }

    /// The command line (`-append`); bytes that are not UTF-8 end it.
    pub fn cmdline(&self) -> &str {
        let bytes = &self.cmdline[..self.cmdline_len];
        match core::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}
