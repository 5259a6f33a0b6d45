//! Starting the Linux guest on arm64.
//!
//! The boot loader (QEMU `-initrd`) hands hv one guest bundle (kernel Image,
//! initramfs, command line; `hv::guest::bundle`), found through /chosen
//! `linux,initrd-start/end`. hv
//! 1. plans the guest's memory: all RAM but hv's region, the kernel at the
//!    lowest 2 MiB base, the initrd and the DTB after it, clear of the bundle
//!    and the platform's DTB it still reads (`hv::guest::layout`);
//! 2. writes the guest's DTB: the platform's with hv's region taken out of
//!    /memory and /chosen set for the guest (`hv::guest::dtb`);
//! 3. copies kernel, initrd and DTB through temporary EL2 mappings, cleans
//!    them to the point of coherency (the guest starts with its MMU off);
//! 4. builds the stage-2 identity map of guest RAM and the guest's devices
//!    (`hv::guest::stage2`) — but not the devices hv withholds (fw-cfg, the
//!    GICv3 ITS), the redistributors (hv emulates them, `gicr`) or the
//!    doorbell page — maps guest RAM into hv's own tables at a window
//!    (hypercall buffers, the guest's tables), and runs `ptdump s2` and
//!    `audit s2` through the console engine for the boot log;
//! 5. loads the EL2 guest state and enters the kernel at EL1 with x0 = DTB.

use alloc::string::String;
use alloc::vec::Vec;
use hv::console::Verdict;
use hv::guest::arm64_image::Arm64Image;
use hv::guest::bundle::Bundle;
use hv::guest::dtb::{self, GuestDtbConfig};
use hv::guest::layout::{self, GuestLayout, LayoutRequest, DTB_SLOT};
use hv::guest::stage2;
use hv::guest::{MemRange, Named};
use hv::hypercall::doorbell;
use hv::mem::{GuestRam, TableSpace};
use pagewalk::arm64::Stage2;
use pagewalk::Format;

use super::boot::{self, HvTables, Layout, FRAMES};
use super::el2::GuestEl2;
use super::hvconsole::{self, Stage2View, Target, GUEST_RAM_WINDOW};
use super::platform::{self, Platform, Range};
use super::sysreg::Features;
use super::{cache, console, fatal, gicr, smp};

const PAGE: u64 = 4096;

fn page_range(r: Range) -> MemRange {
    MemRange {
        start: r.base & !(PAGE - 1),
        end: r.end().next_multiple_of(PAGE),
    }
}

/// Loads the guest from the bundle, builds its stage-2 and enters it on
/// this (the boot) CPU. `hv_cmdline_tail` is what followed `--` on hv's
/// command line: appended to the bundle's guest command line.
pub fn run_linux(
    platform: &Platform,
    tables: &HvTables,
    mut hv_console: hvconsole::Console,
    hv_cmdline_tail: &str,
) -> ! {
    let Some(bundle_range) = platform.initrd else {
        fatal(format_args!(
            "guest=linux but the boot loader passed no guest bundle: hand it to hv as the initrd (QEMU -initrd)"
        ))
    };
    let bundle_pages = page_range(bundle_range);
    tables.map_window("the guest bundle", bundle_pages.start, bundle_pages.end, false);
    // SAFETY: the bundle's pages are mapped read-only at VA == PA just above;
    // nothing writes them while this slice lives (the layout keeps every
    // copy destination clear of them).
    let bundle_bytes: &[u8] =
        unsafe { core::slice::from_raw_parts(bundle_range.base as usize as *const u8, bundle_range.size as usize) };
    let bundle = Bundle::parse(bundle_bytes).unwrap_or_else(|e| fatal(format_args!("guest bundle: {e}")));
    let image = Arm64Image::parse(bundle.kernel).unwrap_or_else(|e| fatal(format_args!("guest kernel: {e}")));
    log::info!(
        "guest bundle at {bundle_range}: kernel {} KiB (arm64 Image, text_offset {:#x}, image_size {:#x}), initrd {} KiB",
        bundle.kernel.len() / 1024,
        image.text_offset,
        image.image_size,
        bundle.initrd.map_or(0, |i| i.len() / 1024)
    );

    let hv_owned = boot::hv_owned();
    let ram: Vec<MemRange> = platform
        .ram()
        .iter()
        .filter_map(|r| MemRange::from_len(r.base, r.size))
        .collect();
    let avoid = [
        Named::new("guest bundle", bundle_pages),
        Named::new("platform DTB", page_range(platform.dtb)),
    ];
    let plan = layout::plan(
        &ram,
        &hv_owned,
        &LayoutRequest {
            kernel: image.placement(),
            initrd_size: bundle.initrd.map_or(0, |i| i.len() as u64),
            dtb_size: DTB_SLOT,
            avoid: &avoid,
        },
    )
    .unwrap_or_else(|e| fatal(format_args!("guest memory layout: {e}")));

    let mut bootargs = String::from(bundle.cmdline.trim());
    if !hv_cmdline_tail.is_empty() {
        if !bootargs.is_empty() {
            bootargs.push(' ');
        }
        bootargs.push_str(hv_cmdline_tail);
    }
    // SAFETY: hv maps the platform's DTB read-only at VA == PA (boot.rs) and
    // nothing writes it before the guest runs.
    let platform_dtb: &'static [u8] =
        unsafe { core::slice::from_raw_parts(platform.dtb.base as usize as *const u8, platform.dtb.size as usize) };
    let guest_dtb = dtb::guest_dtb(
        platform_dtb,
        &GuestDtbConfig {
            ram: &plan.ram,
            bootargs: &bootargs,
            initrd: plan.initrd,
            disable: &platform::WITHHELD,
        },
    )
    .unwrap_or_else(|e| fatal(format_args!("guest device tree: {e}")));
    let dtb_range = plan
        .dtb
        .unwrap_or_else(|| fatal(format_args!("guest memory layout placed no DTB")));
    if guest_dtb.len() as u64 > dtb_range.len() {
        fatal(format_args!(
            "the guest DTB ({} bytes) does not fit its {} byte slot",
            guest_dtb.len(),
            dtb_range.len()
        ));
    }
    log_layout(&plan, guest_dtb.len(), &bootargs);

    load(tables, &plan, &bundle, &guest_dtb);
    tables.unmap_window(bundle_pages.start, bundle_pages.end);

    // The guest's devices come from the DTB (dtb::guest_dtb checked it above),
    // less what hv emulates: the GICv3 redistributors and the doorbell page.
    let features = Features::read();
    let ipa_bits = features.pa_bits();
    let redistributors = platform
        .gic
        .filter(|gic| gic.version >= 3)
        .and_then(|gic| gic.second)
        .map(page_range);
    let doorbell_page = MemRange {
        start: doorbell::MMIO_BASE,
        end: doorbell::MMIO_BASE + doorbell::MMIO_SIZE,
    };
    let mut emulated = alloc::vec![Named::new("the doorbell page", doorbell_page)];
    if let Some(range) = redistributors {
        emulated.push(Named::new("the GIC redistributors", range));
    }
    let devices: Vec<Named<'static>> = carve(platform::guest_devices(platform_dtb), &emulated)
        .into_iter()
        .filter(|d| {
            let fits = d.range.end <= 1 << ipa_bits;
            let clear = !plan
                .ram
                .iter()
                .chain(hv_owned.iter().map(|o| &o.range))
                .any(|r| r.overlaps(&d.range));
            if !fits || !clear {
                log::warn!(
                    "device {} [{}] not mapped for the guest: {}",
                    d.name,
                    d.range,
                    if fits { "it overlaps RAM" } else { "beyond the IPA size" }
                );
            }
            fits && clear
        })
        .collect();

    let format =
        Stage2::for_ipa_bits(ipa_bits).unwrap_or_else(|e| fatal(format_args!("stage-2 for {ipa_bits}-bit IPA: {e:?}")));
    let mut frames = FRAMES.lock();
    let mut space = TableSpace {
        mem: tables.mem,
        frames: &mut frames,
    };
    let root = stage2::build_identity(&format, &mut space, &plan.ram, &devices, &hv_owned)
        .unwrap_or_else(|e| fatal(format_args!("guest stage-2: {e}")))
        .root()
        .0;
    drop(frames);
    let el2 = GuestEl2::new(&features, format.vtcr_geometry(), root);

    // hv reaches guest RAM at a window in its own tables (never at VA == PA).
    for piece in &plan.ram {
        tables.map_guest_ram(GUEST_RAM_WINDOW, piece.start, piece.end);
    }
    log::info!(
        "guest RAM mapped for hv at {:#x} + PA (RW, never executable): hypercall buffers and the guest's tables",
        GUEST_RAM_WINDOW
    );
    // SAFETY: exactly these ranges were mapped RW at the window just above, in
    // the tables hv runs on; hv keeps no reference into them.
    hv_console.ram = unsafe { GuestRam::new(GUEST_RAM_WINDOW, plan.ram.clone()) };
    hv_console.mark_guest_ram_window();
    hv_console.hv_owned = hv_owned.clone();
    hv_console.stage2 = Some(Stage2View {
        format,
        root,
        vtcr: el2.vtcr,
        vttbr: el2.vttbr,
    });
    log::info!(
        "guest stage-2: {ipa_bits}-bit IPA, start level {}, {} root entries at {root:#x}; VTCR_EL2 {:#x}, VTTBR_EL2 {:#x}",
        format.root_level().0,
        format.root_entries(),
        el2.vtcr,
        el2.vttbr
    );
    let target = Target::boot(&hv_console);
    hvconsole::boot_log(&target, "ptdump s2");
    if hvconsole::boot_log(&target, "audit s2") != Verdict::Ok {
        fatal(format_args!(
            "refusing to start the guest: its stage-2 maps memory hv owns"
        ));
    }
    let hv_console = hvconsole::publish(hv_console);
    if let Some(range) = redistributors {
        gicr::init(range, hv_console.ram.ranges());
    }

    smp::init(platform.mpidrs(), &plan.ram);
    let el2 = el2.publish();
    el2.load();
    log::info!(
        "entering the guest: kernel at {:#x} (EL1h), DTB at {:#x}, {} MiB of RAM, {} CPU(s)",
        plan.kernel.start,
        dtb_range.start,
        plan.ram_bytes() >> 20,
        platform.mpidrs().len()
    );
    console::flush();
    // SAFETY: the EL2 guest state is loaded above; kernel and DTB were copied
    // into guest RAM and cleaned by `load`; this CPU takes no exception now,
    // so its exception stack is idle.
    unsafe { smp::enter_guest_on_boot_cpu(plan.kernel.start, dtb_range.start, Layout::get().exception_stack.end()) }
}

/// `devices` without the parts `emulated` covers (a device range may be split).
fn carve(devices: Vec<Named<'static>>, emulated: &[Named<'static>]) -> Vec<Named<'static>> {
    let mut out = Vec::with_capacity(devices.len() + emulated.len());
    for device in devices {
        let mut pieces = alloc::vec![device.range];
        for cut in emulated {
            pieces = pieces
                .into_iter()
                .flat_map(|p| {
                    if !p.overlaps(&cut.range) {
                        return [Some(p), None];
                    }
                    log::info!(
                        "{} [{}] not mapped for the guest: hv emulates {}",
                        device.name,
                        cut.range,
                        cut.name
                    );
                    [
                        MemRange::new(p.start, cut.range.start),
                        MemRange::new(cut.range.end, p.end),
                    ]
                })
                .flatten()
                .collect();
        }
        out.extend(pieces.into_iter().map(|range| Named::new(device.name, range)));
    }
    out
}

fn log_layout(plan: &GuestLayout, dtb_len: usize, bootargs: &str) {
    for piece in &plan.ram {
        log::info!("guest RAM  [{piece}] ({} MiB)", piece.len() >> 20);
    }
    log::info!("guest kernel [{}] (2 MiB base {:#x})", plan.kernel, plan.kernel_base);
    if let Some(initrd) = plan.initrd {
        log::info!("guest initrd [{initrd}]");
    }
    if let Some(dtb) = plan.dtb {
        log::info!("guest DTB  [{dtb}] ({dtb_len} bytes)");
    }
    log::info!("guest bootargs \"{bootargs}\"");
}

/// Copies kernel, initrd and DTB to their places through temporary EL2
/// windows, zeroes the rest of the kernel's footprint, and cleans it all to
/// the point of coherency: the guest's first accesses bypass the caches.
fn load(tables: &HvTables, plan: &GuestLayout, bundle: &Bundle<'_>, dtb: &[u8]) {
    let mut pieces: Vec<(MemRange, &[u8])> = alloc::vec![(plan.kernel, bundle.kernel)];
    if let (Some(range), Some(bytes)) = (plan.initrd, bundle.initrd) {
        pieces.push((range, bytes));
    }
    if let Some(range) = plan.dtb {
        pieces.push((range, dtb));
    }
    for (range, bytes) in pieces {
        let end = range.end.next_multiple_of(PAGE);
        tables.map_window("a guest load window", range.start, end, true);
        // SAFETY: `[range.start, end)` is guest RAM the layout reserved for
        // this piece (clear of hv, the bundle and the platform DTB), mapped
        // writable at VA == PA just above; no other reference to it exists.
        let dest =
            unsafe { core::slice::from_raw_parts_mut(range.start as usize as *mut u8, (end - range.start) as usize) };
        dest[..bytes.len()].copy_from_slice(bytes);
        // The kernel's BSS and the rest of each page start zeroed.
        dest[bytes.len()..].fill(0);
        cache::clean_to_poc(range.start, end);
        tables.unmap_window(range.start, end);
    }
    cache::invalidate_icache();
}
