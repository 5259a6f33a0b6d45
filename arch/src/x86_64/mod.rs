//! hv on x86_64: PVH entry (see `boot`), COM1 console, IDT, its own W^X
//! page tables, the boot-time self-check, and power-off.

mod acpi;
mod boot;
mod console;
mod guest;
mod idt;
mod linux;
mod npt;
mod paging;
mod power;
mod serial;
mod start_info;
mod svm;

use core::fmt::Write;
use core::panic::PanicInfo;

use alloc::vec::Vec;
use buddy_system_allocator::LockedHeap;
use hv::cmdline::{self, Config};
use hv::console::Verdict;
use hv::guest::{MemRange, Named};
use hv::mem::{DirectMap, Frames, GuestRam, TableSpace};
use hv::selfcheck::{self, Expect, Region};
use log::{info, warn};
use mm::PhysAddr;
use pagewalk::x86::{Npt, X86_64};
use pagewalk::{AddrRange, PAGE_SIZE};
use x86::cpuid::CpuId;

use boot::ImageLayout;
use console::{Console, Target, GUEST_RAM_WINDOW};
use guest::{Guest, SvmPages};
use linux::LinuxBoot;
use paging::{CpuPaging, HvRegions};
use power::Exit;
use serial::Com1;
use start_info::{BootInfo, RegionKind};

/// Frames for hv's own page tables (a handful are used; the rest is headroom).
const TABLE_POOL_SIZE: u64 = 256 * 1024;
/// The console keeps two outputs of up to 1 MiB (hypercalls and doorbell), each
/// briefly next to its half-size predecessor while it grows: 8 MiB leaves room.
const HEAP_SIZE: u64 = 8 * 1024 * 1024;
/// hv's tables are built while the boot identity map (0..4 GiB) is live.
const BOOT_MAP_END: u64 = 4 << 30;

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Called by the trampoline in 64-bit mode on the boot stack, boot tables live.
#[unsafe(no_mangle)]
extern "C" fn hv_x86_64_main(start_info_paddr: u64) -> ! {
    serial::init_logging();
    let image = ImageLayout::get();
    idt::init(&image);
    info!(
        "hv {} (x86_64), entered through PVH, image {:#x}-{:#x}",
        env!("CARGO_PKG_VERSION"),
        image.image.0,
        image.image.1
    );
    print_cpu();

    // SAFETY: the pointer is the loader's EBX and the boot identity map is live.
    let boot = match unsafe { BootInfo::read(start_info_paddr) } {
        Ok(boot) => boot,
        Err(e) => fail(format_args!("{e}")),
    };
    print_boot_info(&boot);

    let config = cmdline::parse(boot.cmdline(), |w| warn!("{w}"));
    log::set_max_level(config.log_level);
    info!(
        "guest={} selftest: wx={} fault={}",
        config.guest, config.selftests.wx, config.selftests.fault
    );

    // A guest needs SVM with nested paging: refuse before anything else. The
    // test guest (guests/testguest) is a bzImage too and boots the same way.
    let svm_caps = match config.guest {
        cmdline::Guest::Linux | cmdline::Guest::Test => match svm::detect() {
            Ok(caps) => {
                info!(
                    "SVM: {} ASIDs, nested paging; NRIP save {}, decode assists {}, clean bits {}, flush by ASID {}, 1G pages {}",
                    caps.asids,
                    yes_no(caps.nrip_save),
                    yes_no(caps.decode_assists),
                    yes_no(caps.clean_bits),
                    yes_no(caps.flush_by_asid),
                    yes_no(caps.gib_pages)
                );
                Some(caps)
            }
            Err(e) => fail(format_args!("cannot run a guest: {e}")),
        },
        cmdline::Guest::None => None,
    };

    let cpu = CpuPaging::detect();
    if !cpu.nx {
        fail(format_args!("the CPU has no NX: hv cannot map itself W^X"));
    }
    let regions = match place_regions(&boot, &image, &config) {
        Some(r) => r,
        None => fail(format_args!(
            "no RAM below 4 GiB after the image for {} KiB of tables and heap",
            (TABLE_POOL_SIZE + HEAP_SIZE) / 1024
        )),
    };
    // SAFETY: `place_regions` chose RAM that no other part of hv and no
    // module uses; the boot identity map covers it now (< 4 GiB) and hv's own
    // tables map it RW once active. The frame allocator keeps its lists there.
    unsafe {
        HEAP.lock()
            .init(regions.heap.0 as usize, (regions.heap.1 - regions.heap.0) as usize)
    };
    let mut frames = Frames::new();
    frames.add(PhysAddr(regions.tables.0), PhysAddr(regions.tables.1));
    let pool_bytes = frames.free_bytes();
    let mut space = TableSpace {
        // SAFETY: as for the heap: the pool is hv's alone, identity mapped
        // before and after the switch, and only reached through this window.
        mem: unsafe { DirectMap::new(regions.tables.0, regions.tables.1) },
        frames: &mut frames,
    };
    // MAXPHYADDR from CPUID: the walker then flags any entry with reserved address bits set.
    let format = match X86_64::new(4, true, u32::from(cpu.phys_bits)) {
        Ok(format) => format,
        Err(e) => fail(format_args!(
            "x86-64 paging with {} physical address bits: {e:?}",
            cpu.phys_bits
        )),
    };
    // Kept for the console for as long as hv runs.
    let hv_owned: &'static [Named<'static>] = hv_owned(&image, &regions).leak();
    // The guest is loaded while the boot identity map still reaches guest
    // RAM at VA == PA; hv's own tables map it only at the window.
    let linux = svm_caps.map(|caps| load_guest(&boot, hv_owned, &config, cpu.phys_bits, caps.gib_pages));
    let guest_phys = linux.as_ref().map(|_| npt::guest_physical(&boot, hv_owned));
    let guest_ram: Vec<MemRange> = guest_phys.as_ref().map_or(Vec::new(), |g| g.ram.clone());
    let gib_pages = svm_caps.is_some_and(|caps| caps.gib_pages);
    let root = match paging::build(&format, &mut space, &image, &regions, &guest_ram, gib_pages) {
        Ok(root) => root,
        Err(e) => fail(format_args!("building hv's page tables: {e}")),
    };

    // SAFETY: `build` mapped the whole image but the stack guard pages, the
    // table pool, the heap and the SVM pages: everything hv touches from here on.
    if let Err(e) = unsafe { paging::activate(root, &cpu) } {
        fail(format_args!("cannot enforce W^X: {e:?}"));
    }
    info!(
        "own page tables active: root {root:#x}, {} KiB of tables; NX on, WP on, SMEP {}, SMAP {}",
        (pool_bytes - space.frames.free_bytes()) / 1024,
        on_off(cpu.smep),
        on_off(cpu.smap)
    );

    let checked_regions = hv_regions(&image, &regions, &guest_ram);
    let mut console = Console {
        hv: console::Tables {
            format,
            mem: space.mem,
            root: root.0,
            markers: selfcheck::region_markers(HV_TABLES_TITLE, 0, &checked_regions).collect(),
        },
        npt: None,
        hv_owned,
        not_for_buffers: hv_owned,
        // SAFETY: `paging::build` mapped exactly these ranges RW at the
        // window in the tables now active; hv keeps no reference into them.
        ram: unsafe { GuestRam::new(GUEST_RAM_WINDOW, guest_ram) },
        phys_bits: u32::from(cpu.phys_bits),
        layout: layout(&image, &regions),
    };
    let report = self_check(&console, &checked_regions);
    if !report.boot_may_proceed() {
        fail(format_args!(
            "refusing to boot: hv's own page tables failed the self-check (W^X); no guest started"
        ));
    }

    if config.selftests.fault {
        touch_stack_guard(&image);
    }

    match (linux, guest_phys) {
        (Some((linux, power_ports)), Some(guest_phys)) => start_guest(
            &mut space,
            &mut console,
            &regions,
            &guest_phys,
            &linux,
            power_ports,
            gib_pages,
            cpu.phys_bits,
        ),
        _ => {
            info!("no guest to start: powering off");
            power::exit(Exit::PowerOff)
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Every range hv owns: none of it may ever be mapped for a guest.
fn hv_owned(image: &ImageLayout, regions: &HvRegions) -> Vec<Named<'static>> {
    let mut owned = Vec::new();
    let mut add = |name: &'static str, (start, end): (u64, u64)| {
        if let Some(range) = MemRange::new(start, end) {
            owned.push(Named::new(name, range));
        }
    };
    add("hv image", image.image);
    add("hv page tables", regions.tables);
    add("hv heap", regions.heap);
    if let Some(page) = regions.selftest_wx_page {
        add("hv selftest page", (page, page + PAGE_SIZE));
    }
    add("hv SVM control", regions.svm);
    owned
}

/// Reads the power ports from ACPI and loads the Linux guest into its RAM.
fn load_guest(
    boot: &BootInfo,
    hv_owned: &[Named<'_>],
    config: &Config<'_>,
    phys_bits: u8,
    gib_pages: bool,
) -> (LinuxBoot, acpi::PowerPorts) {
    // hv runs the guest on the boot CPU and does not hold the others: a guest
    // could start them (INIT/SIPI through its LAPIC) outside SVM.
    // SAFETY: the boot identity map is live (hv's tables are not active yet).
    match unsafe { acpi::cpu_count(boot.rsdp) } {
        Ok(1) => {}
        Ok(n) => fail(format_args!(
            "the machine has {n} CPUs; hv runs a guest on one CPU only and cannot hold the others yet (QEMU: -smp 1)"
        )),
        Err(e) => fail(format_args!("cannot count the CPUs: ACPI: {e}")),
    }
    // SAFETY: as above.
    let power_ports = match unsafe { acpi::power_ports(boot.rsdp) } {
        Ok(p) => p,
        Err(e) => fail(format_args!("cannot hand the platform to a guest: ACPI: {e}")),
    };
    info!(
        "ACPI: PM1a control port {:#x}, reset register {}",
        power_ports.pm1a_control,
        power_ports
            .reset
            .map_or(alloc::string::String::from("none"), |(p, v)| alloc::format!(
                "port {p:#x} value {v:#x}"
            ))
    );
    // SAFETY: the boot identity map is live and `hv_owned` lists all of hv.
    let linux = match unsafe { linux::load(boot, hv_owned, config.guest_cmdline, phys_bits, gib_pages) } {
        Ok(l) => l,
        Err(e) => fail(format_args!("cannot load the Linux guest: {e}")),
    };
    info!(
        "guest: Linux bzImage, boot protocol {}.{:02}, kernel {} (entry {:#x}), initrd {}",
        linux.version >> 8,
        linux.version & 0xff,
        linux.layout.kernel,
        linux.entry,
        linux
            .layout
            .initrd
            .map_or(alloc::string::String::from("none"), |r| alloc::format!("{r}"))
    );
    info!(
        "guest: boot_params {:#x}, command line {} bytes, {} KiB of guest RAM; e820 for the guest:",
        linux.boot_params,
        linux.cmdline_len,
        linux.layout.ram_bytes() / 1024
    );
    for e in &linux.e820 {
        let kind = match e.kind {
            linux::E820_RAM => "usable",
            linux::E820_RESERVED => "reserved",
            3 => "ACPI data",
            4 => "ACPI NVS",
            _ => "other",
        };
        let hv = if hv_owned.iter().any(|o| o.range.start < e.end && e.start < o.range.end) {
            " (hv, not mapped for the guest)"
        } else {
            ""
        };
        info!("guest:   [mem {:#018x}-{:#018x}] {kind}{hv}", e.start, e.end - 1);
    }
    (linux, power_ports)
}

/// Builds the NPT, dumps and audits it through the console, turns SVM on
/// and runs the guest.
#[allow(clippy::too_many_arguments)]
fn start_guest(
    space: &mut TableSpace<'_>,
    console: &mut Console,
    regions: &HvRegions,
    guest_phys: &npt::GuestPhysical,
    linux: &LinuxBoot,
    power_ports: acpi::PowerPorts,
    gib_pages: bool,
    phys_bits: u8,
) -> ! {
    let hv_owned = console.hv_owned;
    let format = match Npt::new(4, u32::from(phys_bits)) {
        Ok(f) => f,
        Err(e) => fail(format_args!("NPT with {phys_bits} physical address bits: {e:?}")),
    };
    info!(
        "guest physical space: {} RAM ranges, {} device ranges, PCI hole from {:#x}",
        guest_phys.ram.len(),
        guest_phys.devices.len(),
        guest_phys.pci_hole
    );
    let before = space.frames.free_bytes();
    let npt_root = match npt::build(&format, space, guest_phys, hv_owned, gib_pages) {
        Ok(root) => root,
        Err(e) => fail(format_args!("building the NPT: {e}")),
    };
    info!(
        "NPT built: root {npt_root:#x}, {} KiB of tables",
        (before - space.frames.free_bytes()) / 1024
    );
    let mut not_for_buffers: Vec<Named<'static>> = hv_owned.to_vec();
    not_for_buffers.extend(guest_phys.devices.iter().copied());
    console.not_for_buffers = not_for_buffers.leak();
    console.npt = Some(console::Tables {
        format,
        mem: space.mem,
        root: npt_root,
        markers: npt::markers(guest_phys, hv_owned),
    });
    let console = &*console;
    let target = Target::boot(console);
    info!("nested page tables (NPT), root {npt_root:#x}, dump follows");
    console::boot_log(&target, "ptdump s2");
    serial::with_console(|out| writeln!(out, "---[ end of NPT ]---")).ok();
    if console::boot_log(&target, "audit s2") != Verdict::Ok {
        fail(format_args!(
            "refusing to start the guest: the NPT isolation audit failed"
        ));
    }

    let pages = SvmPages::at(regions.svm.0);
    // SAFETY: `detect` found SVM usable; the host save area is hv's own page.
    unsafe { svm::enable(pages.host_save) };
    // SAFETY: the SVM pages are hv's (mapped RW); the NPT passed the audit.
    let guest = unsafe { Guest::new(pages, npt_root, linux, power_ports, console) };
    info!(
        "starting the guest at {:#x} (RSI = boot_params {:#x}); it owns the console from here",
        linux.entry, linux.boot_params
    );
    guest.run()
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off (CPU lacks it)"
    }
}

fn print_cpu() {
    let cpuid = CpuId::new();
    let vendor = cpuid.get_vendor_info();
    let brand = cpuid.get_processor_brand_string();
    info!(
        "CPU: {} \"{}\"",
        vendor.as_ref().map_or("unknown vendor", |v| v.as_str()),
        brand.as_ref().map_or("", |b| b.as_str().trim())
    );
}

fn print_boot_info(boot: &BootInfo) {
    info!("memory map from hvm_start_info:");
    for r in boot.regions() {
        info!(
            "  [mem {:#018x}-{:#018x}] {}",
            r.start,
            r.end().saturating_sub(1),
            r.kind
        );
    }
    if boot.regions_dropped > 0 {
        warn!("{} more memory-map entries ignored", boot.regions_dropped);
    }
    info!("command line: \"{}\"", boot.cmdline());
    for (i, m) in boot.modules().iter().enumerate() {
        info!("module {i}: {:#x}-{:#x} ({} bytes)", m.start, m.start + m.size, m.size);
    }
    if boot.rsdp != 0 {
        info!("ACPI RSDP at {:#x}", boot.rsdp);
    }
}

/// Places the table pool and the heap (and the `selftest=wx` page) in RAM
/// above the image and below 4 GiB, clear of the loader's modules.
fn place_regions(boot: &BootInfo, image: &ImageLayout, config: &Config<'_>) -> Option<HvRegions> {
    let wx_page = if config.selftests.wx { PAGE_SIZE } else { 0 };
    let need = TABLE_POOL_SIZE + HEAP_SIZE + wx_page + SvmPages::SIZE;
    let mut start = image.image.1.next_multiple_of(PAGE_SIZE);
    // Each step moves `start` past an obstacle, so the loop ends.
    'search: loop {
        let end = start.checked_add(need)?;
        if end > BOOT_MAP_END {
            return None;
        }
        for m in boot.modules() {
            if m.start < end && start < m.start + m.size {
                start = (m.start + m.size).next_multiple_of(PAGE_SIZE);
                continue 'search;
            }
        }
        let in_ram = boot
            .regions()
            .iter()
            .any(|r| r.kind == RegionKind::Ram && r.start <= start && end <= r.end());
        if in_ram {
            break;
        }
        // Move to the next RAM region above `start`.
        start = boot
            .regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Ram && r.start > start)
            .map(|r| r.start.next_multiple_of(PAGE_SIZE))
            .min()?;
    }
    let tables = (start, start + TABLE_POOL_SIZE);
    let heap = (tables.1, tables.1 + HEAP_SIZE);
    let svm_start = heap.1 + wx_page;
    Some(HvRegions {
        tables,
        heap,
        svm: (svm_start, svm_start + SvmPages::SIZE),
        lapic: paging::lapic_base(),
        selftest_wx_page: config.selftests.wx.then_some(heap.1),
    })
}

/// The title of hv's tables in dumps (the first marker).
const HV_TABLES_TITLE: &str = "x86_64 4-level";

/// Every part of hv's address space the self-check judges, with the rights
/// hv means it to have (guard pages unmapped).
fn hv_regions(image: &ImageLayout, regions: &HvRegions, guest_ram: &[MemRange]) -> Vec<Region<'static>> {
    let boot_guard = image.stacks.0;
    let fault_guard = image.boot_stack.1;
    let mut parts = alloc::vec![
        Region::new("hv text", image.text.0, image.text.1, Expect::ReadExec),
        Region::new("hv rodata", image.rodata.0, image.rodata.1, Expect::ReadOnly),
        Region::new("hv data/bss", image.data.0, image.data.1, Expect::ReadWrite),
        Region::new("hv stack guard", boot_guard, boot_guard + PAGE_SIZE, Expect::Unmapped),
        Region::new("hv stacks", image.boot_stack.0, image.boot_stack.1, Expect::ReadWrite),
        Region::new(
            "hv fault stack guard",
            fault_guard,
            fault_guard + PAGE_SIZE,
            Expect::Unmapped,
        ),
        Region::new(
            "hv fault stack",
            image.fault_stack.0,
            image.fault_stack.1,
            Expect::ReadWrite,
        ),
        Region::new("hv page tables", regions.tables.0, regions.tables.1, Expect::ReadWrite),
        Region::new("hv heap", regions.heap.0, regions.heap.1, Expect::ReadWrite),
        Region::new("hv SVM control", regions.svm.0, regions.svm.1, Expect::ReadWrite),
    ];
    if let Some(lapic) = regions.lapic {
        parts.push(Region::new("hv devices", lapic, lapic + PAGE_SIZE, Expect::ReadWrite));
    }
    if let Some(page) = regions.selftest_wx_page {
        // hv means this page to be a plain data page; selftest=wx maps it W+X.
        parts.push(Region::new(
            "selftest=wx page",
            page,
            page + PAGE_SIZE,
            Expect::ReadWrite,
        ));
    }
    for r in guest_ram {
        parts.push(Region::new(
            "guest RAM window",
            GUEST_RAM_WINDOW + r.start,
            GUEST_RAM_WINDOW + r.end,
            Expect::ReadWrite,
        ));
    }
    parts
}

/// hv's physical layout for the console's `info`.
fn layout(image: &ImageLayout, regions: &HvRegions) -> Vec<Named<'static>> {
    let mut parts = Vec::new();
    let mut add = |name: &'static str, (start, end): (u64, u64)| {
        if let Some(range) = MemRange::new(start, end) {
            parts.push(Named::new(name, range));
        }
    };
    add("hv image", image.image);
    add("  text", image.text);
    add("  rodata", image.rodata);
    add("  data/bss", image.data);
    add("  stacks", image.boot_stack);
    add("  fault stack", image.fault_stack);
    add("hv page tables", regions.tables);
    add("hv heap", regions.heap);
    add("hv SVM control", regions.svm);
    if let Some(lapic) = regions.lapic {
        add("LAPIC (hv's mapping)", (lapic, lapic + PAGE_SIZE));
    }
    parts
}

/// hv's boot-time check of its own tables, through the console engine:
/// `ptdump hv` (with a marker per region) and `wx hv` (Linux's check), then
/// the self-check's region-by-region comparison and W+X ranges.
fn self_check(console: &Console, checked_regions: &[Region<'static>]) -> selfcheck::RegionReport {
    let target = Target::boot(console);
    let hv = &console.hv;
    info!(
        "self-check: {HV_TABLES_TITLE} page tables, root {:#x}, {}-bit input, dump follows",
        hv.root,
        pagewalk::Format::input_bits(&hv.format)
    );
    console::boot_log(&target, "ptdump hv");
    serial::with_console(|out| writeln!(out, "---[ end of {HV_TABLES_TITLE} page tables ]---")).ok();
    let wx = console::boot_log(&target, "wx hv");
    let tables = selfcheck::Tables {
        title: HV_TABLES_TITLE,
        format: &hv.format,
        mem: &hv.mem,
        root: hv.root,
        range: AddrRange::ALL,
    };
    let result = serial::with_console(|out| selfcheck::check_regions(out, &tables, checked_regions, wx == Verdict::Ok));
    // Writing to the UART cannot fail; keep the type honest anyway.
    result.unwrap_or_else(|_| fail(format_args!("console write failed during the self-check")))
}

/// `selftest=fault`: read the unmapped guard page below the boot stack. The
/// page-fault handler must report it and stop the machine.
fn touch_stack_guard(image: &ImageLayout) -> ! {
    let guard = image.stacks.0;
    info!("selftest=fault: reading the stack guard page at {guard:#x}");
    // SAFETY: deliberately faulting: the guard page is unmapped, so this read
    // raises #PF, whose handler reports it and exits; it never returns a value.
    let value = unsafe { core::ptr::read_volatile(guard as *const u64) };
    fail(format_args!(
        "the stack guard page at {guard:#x} is readable (read {value:#x})"
    ))
}

/// Stops hv with a failure. scripts/run.sh treats a line starting with
/// `hv: FATAL:` as a failed boot whatever QEMU's exit status.
fn fail(why: core::fmt::Arguments<'_>) -> ! {
    // Not through the console lock: a failure may be found while it is held.
    let _ = writeln!(Com1, "hv: FATAL: {why}");
    power::exit(Exit::Failure)
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    // Not through the console lock: the panic may have hit while it was held.
    let _ = writeln!(Com1, "\nhv: FATAL: panic: {info}");
    power::exit(Exit::Failure)
}
