//! Loading a Linux bzImage the way a boot loader does for the 64-bit boot
//! protocol (Documentation/arch/x86/boot.rst): the protected-mode kernel at
//! its preferred address, the initrd, the command line and a zero page
//! (`struct boot_params`) with the setup header copied from the image, an
//! e820 map without hv's memory, and the ACPI RSDP; then a flat GDT and
//! identity page tables so the kernel can start at `startup_64`.
//!
//! Everything here runs while hv's boot identity map (0..4 GiB) is live:
//! hv's own page tables never map guest memory.

use alloc::vec::Vec;
use core::fmt;

use hv::guest::bundle::Bundle;
use hv::guest::layout::{self, GuestLayout, KernelPlacement, LayoutRequest};
use hv::guest::{MemRange, Named};
use hv::mem::DirectMap;
use mm::{BumpAllocator, FrameAllocator, PhysAddr, TableBuilder};
use pagewalk::x86::X86_64;
use pagewalk::{Access, MapAttrs, MemType, ReadFault, TableMemory, TableMemoryMut};

use super::start_info::{BootInfo, RegionKind};

// Setup header fields (offsets into the image and into boot_params alike).
const SETUP_SECTS: usize = 0x1f1;
const BOOT_FLAG: usize = 0x1fe;
const HEADER_MAGIC: usize = 0x202;
const VERSION: usize = 0x206;
const TYPE_OF_LOADER: usize = 0x210;
const LOADFLAGS: usize = 0x211;
const CODE32_START: usize = 0x214;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21c;
const CMD_LINE_PTR: usize = 0x228;
const RELOCATABLE_KERNEL: usize = 0x234;
const XLOADFLAGS: usize = 0x236;
const CMDLINE_SIZE: usize = 0x238;
const HARDWARE_SUBARCH: usize = 0x23c;
const PREF_ADDRESS: usize = 0x258;
const INIT_SIZE: usize = 0x260;
/// The setup header ends at 0x202 + the byte at 0x201.
const HEADER_END_BYTE: usize = 0x201;
// boot_params fields outside the setup header.
const ACPI_RSDP_ADDR: usize = 0x070;
const EXT_RAMDISK_IMAGE: usize = 0x0c0;
const EXT_RAMDISK_SIZE: usize = 0x0c4;
const EXT_CMD_LINE_PTR: usize = 0x0c8;
const E820_ENTRIES: usize = 0x1e8;
const E820_TABLE: usize = 0x2d0;
const E820_MAX: usize = 128;
const E820_ENTRY_LEN: usize = 20;

/// Boot protocol 2.12: xloadflags, 64-bit entry. 2.14: acpi_rsdp_addr.
const MIN_VERSION: u16 = 0x020c;
const VERSION_WITH_RSDP: u16 = 0x020e;
const XLF_KERNEL_64: u16 = 1 << 0;
const LOADED_HIGH: u8 = 1 << 0;
const LOADER_UNDEFINED: u8 = 0xff;
/// startup_64 is 0x200 bytes into the protected-mode kernel.
const STARTUP_64_OFFSET: u64 = 0x200;

/// The guest's boot data in low memory (plain RAM on every PC; Linux's own
/// low-memory users, the 5-level trampoline and the real-mode blob, come
/// later and sit near 0x9_f000): a flat GDT, the guest's identity page
/// tables, the zero page, the command line and a small stack.
const BOOT_AREA: MemRange = MemRange {
    start: 0x1_0000,
    end: 0x2_0000,
};
const GDT_ADDR: u64 = 0x1_0000;
const TABLES: (u64, u64) = (0x1_1000, 0x1_8000);
const BOOT_PARAMS_ADDR: u64 = 0x1_8000;
const CMDLINE_ADDR: u64 = 0x1_9000;
const CMDLINE_MAX: usize = 4096;
const STACK_TOP: u64 = 0x2_0000;
/// The guest's identity map covers the low 4 GiB: the kernel, initrd and
/// boot data all lie there.
const IDENTITY_END: u64 = 4 << 30;

/// __BOOT_CS and __BOOT_DS of the boot protocol.
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;
/// GDT: null, unused, 64-bit code (__BOOT_CS), flat data (__BOOT_DS).
const GDT: [u64; 4] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

/// What the guest starts with (the VMCB gets this).
#[derive(Clone, Debug)]
pub struct LinuxBoot {
    pub entry: u64,
    pub boot_params: u64,
    pub cr3: u64,
    pub gdt_base: u64,
    pub gdt_limit: u16,
    pub stack_top: u64,
    pub layout: GuestLayout,
    pub cmdline_len: usize,
    pub e820: Vec<E820Entry>,
    pub version: u16,
}

/// One entry of the guest's e820 map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub start: u64,
    pub end: u64,
    pub kind: u32,
}

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// Why the guest cannot be loaded.
#[derive(Debug)]
pub enum LoadError {
    NoModule,
    ModuleAbove4G { start: u64, end: u64 },
    Bundle(hv::guest::bundle::BundleError),
    NotBzImage(&'static str),
    OldProtocol(u16),
    Not64Bit,
    Layout(layout::LayoutError),
    CmdlineTooLong { len: usize, max: usize },
    TooManyE820,
    BootArea(MemRange),
    BadPhysBits(u8),
    Tables(mm::MapError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NoModule => f.write_str(
                "guest=linux but the loader passed no module: hand hv the guest bundle as the PVH module (QEMU -initrd)",
            ),
            LoadError::ModuleAbove4G { start, end } => {
                write!(f, "the guest bundle at {start:#x}-{end:#x} is not below 4 GiB")
            }
            LoadError::Bundle(e) => write!(f, "guest bundle: {e}"),
            LoadError::NotBzImage(why) => write!(f, "the guest kernel is not a bzImage: {why}"),
            LoadError::OldProtocol(v) => write!(
                f,
                "the bzImage speaks boot protocol {}.{:02}; hv needs 2.12+ (64-bit entry)",
                v >> 8,
                v & 0xff
            ),
            LoadError::Not64Bit => f.write_str("the bzImage has no 64-bit entry (xloadflags XLF_KERNEL_64 clear)"),
            LoadError::Layout(e) => write!(f, "placing the guest: {e}"),
            LoadError::CmdlineTooLong { len, max } => {
                write!(f, "guest command line is {len} bytes; the kernel takes at most {max}")
            }
            LoadError::TooManyE820 => write!(f, "the guest's e820 map needs more than {E820_MAX} entries"),
            LoadError::BootArea(r) => write!(f, "the guest boot area [{r}] is not guest RAM"),
            LoadError::BadPhysBits(bits) => write!(f, "x86-64 paging with {bits} physical address bits"),
            LoadError::Tables(e) => write!(f, "building the guest's boot page tables: {e}"),
        }
    }
}

/// The parts of a bzImage hv uses.
struct BzImage<'a> {
    /// The setup header, from 0x1f1 to its end.
    header: &'a [u8],
    /// The protected-mode kernel (after the setup sectors).
    kernel: &'a [u8],
    version: u16,
    pref_address: u64,
    init_size: u64,
    cmdline_size: usize,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from(u32_at(b, off)) | u64::from(u32_at(b, off + 4)) << 32
}

impl<'a> BzImage<'a> {
    fn parse(image: &'a [u8]) -> Result<BzImage<'a>, LoadError> {
        if image.len() < 0x270 {
            return Err(LoadError::NotBzImage("shorter than a setup header"));
        }
        if u16_at(image, BOOT_FLAG) != 0xaa55 || &image[HEADER_MAGIC..HEADER_MAGIC + 4] != b"HdrS" {
            return Err(LoadError::NotBzImage("no 0xAA55 boot flag / \"HdrS\" magic"));
        }
        let version = u16_at(image, VERSION);
        if version < MIN_VERSION {
            return Err(LoadError::OldProtocol(version));
        }
        if u16_at(image, XLOADFLAGS) & XLF_KERNEL_64 == 0 {
            return Err(LoadError::Not64Bit);
        }
        if image[LOADFLAGS] & LOADED_HIGH == 0 || image[RELOCATABLE_KERNEL] == 0 {
            return Err(LoadError::NotBzImage("not a relocatable big kernel"));
        }
        let setup_sects = match image[SETUP_SECTS] {
            0 => 4,
            n => usize::from(n),
        };
        let kernel_offset = (setup_sects + 1) * 512;
        let header_end = HEADER_MAGIC + usize::from(image[HEADER_END_BYTE]);
        if kernel_offset >= image.len() || header_end > kernel_offset || header_end < INIT_SIZE + 4 {
            return Err(LoadError::NotBzImage("setup sectors or header length out of range"));
        }
        Ok(BzImage {
            header: &image[SETUP_SECTS..header_end],
            kernel: &image[kernel_offset..],
            version,
            pref_address: u64_at(image, PREF_ADDRESS),
            init_size: u64::from(u32_at(image, INIT_SIZE)),
            cmdline_size: u32_at(image, CMDLINE_SIZE) as usize,
        })
    }
}

/// Reads `len` bytes at physical `addr` through the boot identity map.
///
/// # Safety
/// The boot identity map must be live, `[addr, addr + len)` below 4 GiB and
/// not written while the slice lives.
unsafe fn phys_slice(addr: u64, len: u64) -> &'static [u8] {
    // SAFETY: the caller's promise.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) }
}

/// Copies `bytes` to guest-physical (= physical) `dest`.
///
/// # Safety
/// The boot identity map must be live and `[dest, dest + len)` guest RAM
/// nothing else uses (the layout guarantees it), not overlapping `bytes`.
unsafe fn copy_to(dest: u64, bytes: &[u8]) {
    // SAFETY: the caller's promise.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dest as *mut u8, bytes.len()) }
}

/// The guest's e820 map: the loader's map with every range hv owns cut out
/// of it and listed as reserved (so the guest's /dev/mem may name it, and
/// every access then meets hv's nested page tables).
pub fn guest_e820(boot: &BootInfo, hv_owned: &[Named<'_>]) -> Result<Vec<E820Entry>, LoadError> {
    let mut out: Vec<E820Entry> = Vec::new();
    for r in boot.regions() {
        let kind = match r.kind {
            RegionKind::Ram => E820_RAM,
            RegionKind::Reserved => E820_RESERVED,
            RegionKind::AcpiReclaimable => 3,
            RegionKind::AcpiNvs => 4,
            RegionKind::Unusable => 5,
            RegionKind::Other(t) => t,
        };
        let mut cursor = r.start;
        let end = r.end();
        let mut holes: Vec<MemRange> = hv_owned
            .iter()
            .filter_map(|o| o.range.intersect(&MemRange { start: r.start, end }))
            .collect();
        holes.sort_unstable();
        for hole in holes {
            if hole.start > cursor {
                out.push(E820Entry {
                    start: cursor,
                    end: hole.start,
                    kind,
                });
            }
            out.push(E820Entry {
                start: hole.start,
                end: hole.end,
                kind: E820_RESERVED,
            });
            cursor = cursor.max(hole.end);
        }
        if end > cursor {
            out.push(E820Entry {
                start: cursor,
                end,
                kind,
            });
        }
    }
    out.sort_unstable_by_key(|e| e.start);
    // hv's region comes in several parts: one reserved entry for all of it.
    let mut merged: Vec<E820Entry> = Vec::with_capacity(out.len());
    for e in out {
        match merged.last_mut() {
            Some(last) if last.kind == e.kind && last.end == e.start => last.end = e.end,
            _ => merged.push(e),
        }
    }
    let out = merged;
    if out.len() > E820_MAX {
        return Err(LoadError::TooManyE820);
    }
    Ok(out)
}

/// Guest low memory as table space: a window of it, frames bumped upwards.
struct BootTables {
    mem: DirectMap,
    frames: BumpAllocator,
}

impl TableMemory for BootTables {
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        self.mem.read_u64(addr)
    }
}
impl TableMemoryMut for BootTables {
    fn write_u64(&mut self, addr: u64, value: u64) -> Result<(), ReadFault> {
        self.mem.write_u64(addr, value)
    }
}
impl FrameAllocator for BootTables {
    fn alloc_frames(&mut self, count: usize, align: u64) -> Option<PhysAddr> {
        self.frames.alloc_frames(count, align)
    }
}

/// `[start, end)` cut where a 1 GiB page would otherwise be used, for CPUs without them.
pub fn split_for_2m_pages(range: MemRange, gib_pages: bool, mut f: impl FnMut(MemRange)) {
    const GIB: u64 = 1 << 30;
    const TWO_MIB: u64 = 2 << 20;
    if gib_pages {
        return f(range);
    }
    let mut start = range.start;
    while start < range.end {
        // Cutting 2 MiB before each GiB boundary leaves no aligned 1 GiB stretch.
        let cut = (start / GIB) * GIB + GIB - TWO_MIB;
        let cut = if cut <= start { cut + GIB } else { cut };
        let end = cut.min(range.end);
        f(MemRange { start, end });
        start = end;
    }
}

/// Identity page tables for the guest's entry (the kernel builds its own at once).
fn build_boot_tables(phys_bits: u8, gib_pages: bool) -> Result<u64, LoadError> {
    let format = X86_64::new(4, true, u32::from(phys_bits)).map_err(|_| LoadError::BadPhysBits(phys_bits))?;
    let mut space = BootTables {
        // SAFETY: the window is inside the guest's boot area, which the
        // layout keeps free and the boot identity map covers.
        mem: unsafe { DirectMap::new(TABLES.0, TABLES.1) },
        frames: BumpAllocator::new(PhysAddr(TABLES.0), PhysAddr(TABLES.1)),
    };
    let builder = TableBuilder::new(&format, &mut space).map_err(LoadError::Tables)?;
    let rwx = MapAttrs::new(
        Access::READ.union(Access::WRITE).union(Access::EXEC_PRIV),
        MemType::Normal,
    );
    let mut result = Ok(());
    split_for_2m_pages(
        MemRange {
            start: 0,
            end: IDENTITY_END,
        },
        gib_pages,
        |r| {
            if result.is_ok() {
                result = builder.map(&mut space, r.start, r.start, r.len(), &rwx);
            }
        },
    );
    result.map_err(LoadError::Tables)?;
    Ok(builder.root().0)
}

/// Loads the guest from the PVH module (the bundle) into guest RAM.
///
/// # Safety
/// Call while the boot identity map (0..4 GiB, writable) is live, with
/// `hv_owned` listing every range hv uses: everything outside them that the
/// layout picks is overwritten.
pub unsafe fn load(
    boot: &BootInfo,
    hv_owned: &[Named<'_>],
    extra_cmdline: &str,
    phys_bits: u8,
    gib_pages: bool,
) -> Result<LinuxBoot, LoadError> {
    let module = *boot.modules().first().ok_or(LoadError::NoModule)?;
    let module_end = module.start.saturating_add(module.size);
    if module_end > 4 << 30 {
        return Err(LoadError::ModuleAbove4G {
            start: module.start,
            end: module_end,
        });
    }
    // SAFETY: the module is below 4 GiB (checked) and nothing writes it
    // until the kernel is copied out (the layout avoids it).
    let bytes = unsafe { phys_slice(module.start, module.size) };
    let bundle = Bundle::parse(bytes).map_err(LoadError::Bundle)?;
    let image = BzImage::parse(bundle.kernel)?;

    let ram: Vec<MemRange> = boot
        .regions()
        .iter()
        .filter(|r| r.kind == RegionKind::Ram)
        .filter_map(|r| MemRange::new(r.start, r.end()))
        .collect();
    let bundle_range =
        MemRange::from_len(module.start, module.size.next_multiple_of(4096)).ok_or(LoadError::NoModule)?;
    let avoid = [
        // The real-mode IVT/BDA, EBDA and BIOS areas, and hv's boot data for the guest.
        Named::new("low memory", MemRange { start: 0, end: 1 << 20 }),
        Named::new("guest bundle", bundle_range),
    ];
    // The decompressor works in [load address, + init_size); KASLR then
    // moves the kernel anywhere in e820 RAM it likes.
    let layout = layout::plan(
        &ram,
        hv_owned,
        &LayoutRequest {
            kernel: KernelPlacement::Fixed {
                start: image.pref_address,
                size: image.init_size.max(image.kernel.len() as u64).next_multiple_of(4096),
            },
            initrd_size: bundle.initrd.map_or(0, |i| i.len() as u64),
            dtb_size: 0,
            avoid: &avoid,
        },
    )
    .map_err(LoadError::Layout)?;
    if !layout.ram.iter().any(|r| r.covers(&BOOT_AREA)) {
        return Err(LoadError::BootArea(BOOT_AREA));
    }

    // The command line: the bundle's, then what followed `--` on hv's.
    let max = image.cmdline_size.min(CMDLINE_MAX - 1);
    let mut cmdline: Vec<u8> = Vec::with_capacity(max + 1);
    cmdline.extend_from_slice(bundle.cmdline.trim().as_bytes());
    if !extra_cmdline.is_empty() {
        if !cmdline.is_empty() {
            cmdline.push(b' ');
        }
        cmdline.extend_from_slice(extra_cmdline.as_bytes());
    }
    if cmdline.len() > max {
        return Err(LoadError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    let cmdline_len = cmdline.len();
    cmdline.push(0);

    let e820 = guest_e820(boot, hv_owned)?;

    let mut zero_page = alloc::vec![0u8; 4096];
    zero_page[SETUP_SECTS..SETUP_SECTS + image.header.len()].copy_from_slice(image.header);
    zero_page[TYPE_OF_LOADER] = LOADER_UNDEFINED;
    zero_page[LOADFLAGS] |= LOADED_HIGH;
    let kernel_pa = layout.kernel.start;
    zero_page[CODE32_START..CODE32_START + 4].copy_from_slice(&(kernel_pa as u32).to_le_bytes());
    if let Some(initrd) = layout.initrd {
        let (start, len) = (initrd.start, initrd.len());
        zero_page[RAMDISK_IMAGE..RAMDISK_IMAGE + 4].copy_from_slice(&(start as u32).to_le_bytes());
        zero_page[RAMDISK_SIZE..RAMDISK_SIZE + 4].copy_from_slice(&(len as u32).to_le_bytes());
        zero_page[EXT_RAMDISK_IMAGE..EXT_RAMDISK_IMAGE + 4].copy_from_slice(&((start >> 32) as u32).to_le_bytes());
        zero_page[EXT_RAMDISK_SIZE..EXT_RAMDISK_SIZE + 4].copy_from_slice(&((len >> 32) as u32).to_le_bytes());
    }
    zero_page[CMD_LINE_PTR..CMD_LINE_PTR + 4].copy_from_slice(&(CMDLINE_ADDR as u32).to_le_bytes());
    zero_page[EXT_CMD_LINE_PTR..EXT_CMD_LINE_PTR + 4].copy_from_slice(&((CMDLINE_ADDR >> 32) as u32).to_le_bytes());
    zero_page[HARDWARE_SUBARCH..HARDWARE_SUBARCH + 4].copy_from_slice(&0u32.to_le_bytes());
    if image.version >= VERSION_WITH_RSDP {
        zero_page[ACPI_RSDP_ADDR..ACPI_RSDP_ADDR + 8].copy_from_slice(&boot.rsdp.to_le_bytes());
    }
    zero_page[E820_ENTRIES] = e820.len() as u8;
    for (i, e) in e820.iter().enumerate() {
        let at = E820_TABLE + i * E820_ENTRY_LEN;
        zero_page[at..at + 8].copy_from_slice(&e.start.to_le_bytes());
        zero_page[at + 8..at + 16].copy_from_slice(&(e.end - e.start).to_le_bytes());
        zero_page[at + 16..at + 20].copy_from_slice(&e.kind.to_le_bytes());
    }

    // SAFETY: the layout placed the kernel and initrd in guest RAM clear of
    // hv, of the bundle and of low memory; the boot area is guest RAM the
    // layout never hands out (it is inside the avoided low megabyte).
    unsafe {
        copy_to(kernel_pa, image.kernel);
        if let (Some(initrd), Some(bytes)) = (layout.initrd, bundle.initrd) {
            copy_to(initrd.start, bytes);
        }
        let gdt_bytes: Vec<u8> = GDT.iter().flat_map(|d| d.to_le_bytes()).collect();
        copy_to(GDT_ADDR, &gdt_bytes);
        copy_to(BOOT_PARAMS_ADDR, &zero_page);
        copy_to(CMDLINE_ADDR, &cmdline);
    }
    let cr3 = build_boot_tables(phys_bits, gib_pages)?;

    Ok(LinuxBoot {
        entry: kernel_pa + STARTUP_64_OFFSET,
        boot_params: BOOT_PARAMS_ADDR,
        cr3,
        gdt_base: GDT_ADDR,
        gdt_limit: (GDT.len() * 8 - 1) as u16,
        stack_top: STACK_TOP,
        layout,
        cmdline_len,
        e820,
        version: image.version,
    })
}
