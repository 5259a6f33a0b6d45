//! The guest's nested page tables: an identity map (GPA = HPA) of what the
//! guest owns — its RAM (the machine's minus hv's region), low memory and
//! the BIOS areas, the firmware's reserved and ACPI ranges, and the PCI hole
//! below 4 GiB with the IOAPIC, HPET and LAPIC — built with
//! `hv::guest::stage2::build_identity` (mm's TableBuilder underneath). The
//! boot log dumps it (`ptdump s2`) and audits it (`audit s2`: no entry may
//! reach hv's frames) through the console engine.

use alloc::vec::Vec;

use hv::guest::stage2::{self, Stage2Error};
use hv::guest::{MemRange, Named};
use hv::mem::TableSpace;
use pagewalk::x86::Npt;
use ptdump::Marker;

use super::linux::split_for_2m_pages;
use super::start_info::{BootInfo, RegionKind};

const MIB: u64 = 1 << 20;
const FOUR_GIB: u64 = 4 << 30;
const VGA: MemRange = MemRange {
    start: 0xa_0000,
    end: 0xc_0000,
};
/// The standard PC addresses of the platform devices in the PCI hole (the
/// guest learns them from ACPI; hv only uses them to label the dump).
const IOAPIC_BASE: u64 = 0xfec0_0000;
const HPET_BASE: u64 = 0xfed0_0000;
const LAPIC_BASE: u64 = 0xfee0_0000;
const ABOVE_LAPIC: u64 = 0xfef0_0000;

/// What the guest's physical address space holds.
pub struct GuestPhysical {
    /// Identity-mapped as Normal memory (RWX).
    pub ram: Vec<MemRange>,
    /// Identity-mapped as uncached device memory (RW, no execute).
    pub devices: Vec<Named<'static>>,
    /// Where the PCI hole starts (end of the firmware's low memory map).
    pub pci_hole: u64,
}

/// Subtracts every range in `owned` from `r`.
fn without(r: MemRange, owned: &[Named<'_>], out: &mut Vec<MemRange>) {
    let mut pieces = alloc::vec![r];
    for o in owned {
        pieces = pieces
            .into_iter()
            .flat_map(|p| {
                [
                    MemRange::new(p.start, o.range.start.min(p.end)),
                    MemRange::new(o.range.end.max(p.start), p.end),
                ]
            })
            .flatten()
            .collect();
    }
    out.extend(pieces);
}

/// Merges touching or overlapping ranges.
fn merge(mut v: Vec<MemRange>) -> Vec<MemRange> {
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

/// Decides what the guest gets, from the loader's memory map.
pub fn guest_physical(boot: &BootInfo, hv_owned: &[Named<'_>]) -> GuestPhysical {
    let regions = boot.regions();
    // The PCI hole starts where the firmware's map of low memory ends: after
    // the last RAM below 4 GiB and any reserved/ACPI ranges right after it.
    let mut pci_hole = regions
        .iter()
        .filter(|r| r.kind == RegionKind::Ram && r.start < FOUR_GIB)
        .map(|r| r.end().min(FOUR_GIB))
        .max()
        .unwrap_or(MIB);
    while let Some(next) = regions.iter().find(|r| r.start == pci_hole && r.end() <= FOUR_GIB) {
        pci_hole = next.end();
    }
    let pci_hole = pci_hole.next_multiple_of(2 * MIB).max(MIB);

    let mut wanted = Vec::new();
    // Low memory and the BIOS areas, but VGA's window (a device).
    wanted.push(MemRange {
        start: 0,
        end: VGA.start,
    });
    wanted.push(MemRange {
        start: VGA.end,
        end: MIB,
    });
    for r in regions {
        let Some(range) = MemRange::new(r.start, r.end()) else {
            continue;
        };
        let keep = match r.kind {
            RegionKind::Ram | RegionKind::AcpiReclaimable | RegionKind::AcpiNvs => true,
            // Firmware memory below the hole (SeaBIOS's high tables); reserved
            // ranges in the hole are device windows (ECAM, flash) mapped below.
            RegionKind::Reserved => range.end <= pci_hole,
            RegionKind::Unusable | RegionKind::Other(_) => false,
        };
        if keep {
            wanted.push(range);
        }
    }
    let mut ram = Vec::new();
    for r in merge(wanted) {
        // Never past the hole's start below 4 GiB: that part is device space.
        let r = if r.start < pci_hole {
            MemRange::new(r.start, r.end.min(pci_hole))
        } else {
            Some(r)
        };
        if let Some(r) = r {
            without(r, hv_owned, &mut ram);
        }
    }

    // VGA's window sits in low memory; the rest of the devices fill the PCI hole.
    let mut devices = alloc::vec![Named::new("VGA window", VGA)];
    let mut device = |name: &'static str, start: u64, end: u64| {
        let mut pieces = Vec::new();
        if let Some(r) = MemRange::new(start.max(pci_hole), end) {
            without(r, hv_owned, &mut pieces);
        }
        devices.extend(pieces.into_iter().map(|p| Named::new(name, p)));
    };
    device("PCI hole (ECAM, BARs)", pci_hole, IOAPIC_BASE);
    device("IOAPIC", IOAPIC_BASE, HPET_BASE);
    device("HPET, chipset", HPET_BASE, LAPIC_BASE);
    device("LAPIC", LAPIC_BASE, ABOVE_LAPIC);
    device("PCI hole, BIOS flash", ABOVE_LAPIC, FOUR_GIB);
    devices.sort_unstable_by_key(|d| d.range.start);
    GuestPhysical { ram, devices, pci_hole }
}

/// Builds the NPT in hv's table pool; returns its root (the VMCB's N_CR3).
pub fn build<'a>(
    format: &Npt,
    space: &mut TableSpace<'_>,
    guest: &GuestPhysical,
    hv_owned: &[Named<'a>],
    gib_pages: bool,
) -> Result<u64, Stage2Error<'a>> {
    // Without 1 GiB pages the ranges are cut so no 1 GiB leaf can appear.
    let mut ram = Vec::new();
    for r in &guest.ram {
        split_for_2m_pages(*r, gib_pages, |p| ram.push(p));
    }
    let mut devices: Vec<Named<'a>> = Vec::new();
    for d in &guest.devices {
        split_for_2m_pages(d.range, gib_pages, |p| devices.push(Named::new(d.name, p)));
    }
    let builder = stage2::build_identity(format, space, &ram, &devices, hv_owned)?;
    Ok(builder.root().0)
}

/// The markers of `ptdump s2`: one at each part of the guest's physical
/// space and at each range hv keeps out of it (the dump itself and the
/// isolation audit run through the console engine).
pub fn markers(guest: &GuestPhysical, hv_owned: &[Named<'static>]) -> Vec<Marker<'static>> {
    let mut markers: Vec<Marker<'static>> = Vec::new();
    markers.push(Marker::new(0, "Guest Physical (NPT)"));
    for o in hv_owned {
        markers.push(Marker::new(o.range.start, o.name));
        markers.push(Marker::new(o.range.end, "guest RAM"));
    }
    for d in &guest.devices {
        markers.push(Marker::new(d.range.start, d.name));
    }
    markers.push(Marker::new(FOUR_GIB, "above 4 GiB"));
    markers.sort_by_key(|m| m.addr);
    // One marker per address: the latest name wins (a device label over "guest RAM").
    let mut unique: Vec<Marker<'static>> = Vec::with_capacity(markers.len());
    for m in markers {
        match unique.last_mut() {
            Some(last) if last.addr == m.addr => *last = m,
            _ => unique.push(m),
        }
    }
    unique
}
