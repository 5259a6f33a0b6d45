//! What hv reads from the device tree the boot loader passed in x0.

use core::fmt;

use alloc::vec::Vec;
use fdt::node::FdtNode;
use fdt::Fdt;
use hv::guest::{MemRange, Named};

/// A physical range `[base, base + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub base: u64,
    pub size: u64,
}

impl Range {
    pub const fn end(&self) -> u64 {
        self.base + self.size
    }
    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }
    pub const fn contains_range(&self, other: &Range) -> bool {
        other.base >= self.base && other.end() <= self.end()
    }
    pub const fn overlaps(&self, other: &Range) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x}-{:#x} ({})",
            self.base,
            self.end(),
            hv::selfcheck::Size(self.size)
        )
    }
}

pub const MAX_RAM_RANGES: usize = 8;
/// CPUs hv records from the device tree (the guest runs on at most these).
pub const MAX_CPUS: usize = super::smp::MAX_CPUS;

/// The interrupt controller: distributor plus redistributors (v3) or CPU interface (v2).
#[derive(Clone, Copy, Debug)]
pub struct Gic {
    pub version: u8,
    pub distributor: Range,
    /// GICv3 redistributors, or the GICv2 CPU interface.
    pub second: Option<Range>,
}

/// The platform as the device tree describes it.
pub struct Platform {
    pub dtb: Range,
    pub model: &'static str,
    ram: [Range; MAX_RAM_RANGES],
    ram_count: usize,
    pub uart: Range,
    pub gic: Option<Gic>,
    pub psci_method: Option<&'static str>,
    pub bootargs: &'static str,
    pub initrd: Option<Range>,
    pub cpus: usize,
    /// The `reg` (MPIDR affinity) of the first [`MAX_CPUS`] CPU nodes.
    mpidrs: [u64; MAX_CPUS],
}

#[derive(Debug)]
pub enum PlatformError {
    BadDeviceTree(fdt::FdtError),
    NoMemory,
    NoUart,
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformError::BadDeviceTree(e) => write!(f, "the device tree is not valid: {e:?}"),
            PlatformError::NoMemory => f.write_str("the device tree has no /memory"),
            PlatformError::NoUart => f.write_str("the device tree has no arm,pl011 UART"),
        }
    }
}

fn first_reg(node: fdt::node::FdtNode<'_, '_>) -> Option<Range> {
    node.reg()?.next().and_then(to_range)
}

fn to_range(region: fdt::standard_nodes::MemoryRegion) -> Option<Range> {
    Some(Range {
        base: region.starting_address as usize as u64,
        size: region.size? as u64,
    })
}

impl Platform {
    /// Reads the device tree at `dtb`.
    ///
    /// # Safety
    /// `dtb` must point to a device tree blob hv keeps readable at VA == PA
    /// and never writes, for the rest of its life.
    pub unsafe fn from_dtb(dtb: u64) -> Result<Platform, PlatformError> {
        // SAFETY: forwarded to the caller; `from_ptr` checks the header first.
        let fdt: Fdt<'static> =
            unsafe { Fdt::from_ptr(dtb as usize as *const u8) }.map_err(PlatformError::BadDeviceTree)?;

        let mut ram = [Range { base: 0, size: 0 }; MAX_RAM_RANGES];
        let mut ram_count = 0;
        for node in fdt.all_nodes() {
            let is_memory = node
                .property("device_type")
                .and_then(|p| p.as_str())
                .is_some_and(|t| t == "memory");
            if !is_memory {
                continue;
            }
            for range in node.reg().into_iter().flatten().filter_map(to_range) {
                if range.size > 0 && ram_count < MAX_RAM_RANGES {
                    ram[ram_count] = range;
                    ram_count += 1;
                }
            }
        }
        if ram_count == 0 {
            return Err(PlatformError::NoMemory);
        }

        let uart = fdt
            .chosen()
            .stdout()
            .filter(|n| n.compatible().is_some_and(|c| c.all().any(|s| s == "arm,pl011")))
            .or_else(|| fdt.find_compatible(&["arm,pl011"]))
            .and_then(first_reg)
            .ok_or(PlatformError::NoUart)?;

        let gic = if let Some(node) = fdt.find_compatible(&["arm,gic-v3"]) {
            let mut regs = node.reg().into_iter().flatten().filter_map(to_range);
            regs.next().map(|distributor| Gic {
                version: 3,
                distributor,
                second: regs.next(),
            })
        } else if let Some(node) = fdt.find_compatible(&["arm,cortex-a15-gic", "arm,gic-400"]) {
            let mut regs = node.reg().into_iter().flatten().filter_map(to_range);
            regs.next().map(|distributor| Gic {
                version: 2,
                distributor,
                second: regs.next(),
            })
        } else {
            None
        };

        let psci_method = fdt
            .find_compatible(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])
            .and_then(|n| n.property("method"))
            .and_then(|p| p.as_str());

        let chosen = fdt.chosen();
        let bootargs = chosen.bootargs().unwrap_or("");
        let chosen_node = fdt.find_node("/chosen");
        let chosen_usize = |name| chosen_node.and_then(|n| n.property(name)).and_then(|p| p.as_usize());
        let initrd_start = chosen_usize("linux,initrd-start");
        let initrd_end = chosen_usize("linux,initrd-end");
        let initrd = match (initrd_start, initrd_end) {
            (Some(start), Some(end)) if end > start => Some(Range {
                base: start as u64,
                size: (end - start) as u64,
            }),
            _ => None,
        };

        let mut mpidrs = [0; MAX_CPUS];
        for (slot, cpu) in mpidrs.iter_mut().zip(fdt.cpus()) {
            // `reg` is the CPU's MPIDR affinity (one or two cells).
            *slot = cpu.property("reg").and_then(|p| p.as_usize()).unwrap_or(0) as u64;
        }

        Ok(Platform {
            dtb: Range {
                base: dtb,
                size: fdt.total_size() as u64,
            },
            model: fdt.root().model(),
            ram,
            ram_count,
            uart,
            gic,
            psci_method,
            bootargs,
            initrd,
            cpus: fdt.cpus().count(),
            mpidrs,
        })
    }

    /// The MPIDRs of the CPUs in the device tree (at most [`MAX_CPUS`]).
    pub fn mpidrs(&self) -> &[u64] {
        &self.mpidrs[..self.cpus.min(MAX_CPUS)]
    }

    pub fn ram(&self) -> &[Range] {
        &self.ram[..self.ram_count]
    }

    /// Prints what hv found.
    pub fn log(&self) {
        log::info!("platform: {} ({} CPU(s) in the device tree)", self.model, self.cpus);
        for range in self.ram() {
            log::info!("  RAM        {range}");
        }
        log::info!("  PL011      {}", self.uart);
        match &self.gic {
            Some(gic) => {
                log::info!("  GICv{} distributor {}", gic.version, gic.distributor);
                if let Some(second) = gic.second {
                    let name = if gic.version >= 3 {
                        "redistributors"
                    } else {
                        "CPU interface"
                    };
                    log::info!("  GICv{} {name} {second}", gic.version);
                }
            }
            None => log::warn!("  no GICv2/v3 in the device tree"),
        }
        log::info!("  PSCI       method {}", self.psci_method.unwrap_or("(none)"));
        log::info!("  DTB        {}", self.dtb);
        match &self.initrd {
            Some(initrd) => log::info!("  initrd     {initrd}"),
            None => log::info!("  initrd     (none)"),
        }
        log::info!("  bootargs   \"{}\"", self.bootargs);
    }
}

/// A `#address-cells` / `#size-cells` value of `node` (for its children).
fn cells(node: FdtNode<'_, '_>, name: &str, default: usize) -> usize {
    node.property(name).and_then(|p| p.as_usize()).unwrap_or(default)
}

/// Reads `count` big-endian cells (at most 2 make a value; more are skipped,
/// as in a PCI child address) from the front of `bytes`.
fn take_cells(bytes: &[u8], count: usize) -> Option<(u64, &[u8])> {
    let len = count * 4;
    if bytes.len() < len {
        return None;
    }
    let value = bytes[..len]
        .chunks_exact(4)
        .rev()
        .take(2)
        .enumerate()
        .fold(0u64, |v, (i, c)| {
            v | (u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64) << (32 * i)
        });
    Some((value, &bytes[len..]))
}

/// The `(address, size)` pairs of a `reg` property in the given cell sizes.
fn reg_pairs(value: &[u8], address_cells: usize, size_cells: usize, mut out: impl FnMut(u64, u64)) {
    if address_cells + size_cells == 0 {
        return;
    }
    let mut rest = value;
    while let Some((address, after)) = take_cells(rest, address_cells) {
        let Some((size, after)) = take_cells(after, size_cells) else {
            break;
        };
        out(address, size);
        rest = after;
    }
}

fn is_enabled(node: FdtNode<'_, '_>) -> bool {
    node.property("status")
        .and_then(|p| p.as_str())
        .is_none_or(|s| s == "okay" || s == "ok")
}

/// Devices (by `compatible`) the guest does not get: not mapped in its
/// stage-2, `status = "disabled"` in its device tree. Both write physical
/// memory themselves, bypassing stage-2: fw-cfg's DMA interface, and the
/// GICv3 ITS (its device, collection and command tables; withholding it also
/// keeps Linux from enabling LPIs, whose redistributor tables hv guards in
/// `gicr`).
pub const WITHHELD: [&str; 2] = ["qemu,fw-cfg-mmio", "arm,gic-v3-its"];

fn is_withheld(node: FdtNode<'_, '_>) -> bool {
    node.compatible()
        .is_some_and(|c| c.all().any(|s| WITHHELD.contains(&s)))
}

/// The devices the guest owns, from the device tree at `dtb`: the `reg` of
/// every enabled node under the root (memory, CPUs and /chosen aside), the
/// CPU-side windows of a bus's `ranges` (PCIe memory and I/O space, QEMU's
/// platform bus), and the `reg` of the children of a node whose `ranges` is
/// empty (the GICv3 ITS below the GIC). Page-aligned outward, sorted, and
/// merged where they overlap (32 virtio-mmio slots share a few pages).
///
/// [`WITHHELD`] devices are left out (QEMU's fw-cfg, the GICv3 ITS): they
/// write physical memory without going through stage-2, so a guest could aim
/// them at hv's region.
///
/// `dtb` must have passed `hv::guest::dtb::check` (fdt 0.1.5 panics on some
/// malformed input).
pub fn guest_devices(dtb: &'static [u8]) -> Vec<Named<'static>> {
    let mut found: Vec<Named<'static>> = Vec::new();
    let Ok(fdt) = Fdt::new(dtb) else {
        return found;
    };
    let Some(root) = fdt.find_node("/") else {
        return found;
    };
    let (root_ac, root_sc) = (cells(root, "#address-cells", 2), cells(root, "#size-cells", 1));
    let mut add = |name: &'static str, address: u64, size: u64| {
        let start = address & !0xfff;
        let end = address.saturating_add(size).saturating_add(0xfff) & !0xfff;
        if let Some(range) = MemRange::new(start, end) {
            found.push(Named::new(name, range));
        }
    };
    for node in root.children() {
        let is_memory =
            node.name.starts_with("memory") || node.property("device_type").and_then(|p| p.as_str()) == Some("memory");
        let skipped = ["chosen", "cpus", "aliases", "reserved-memory"];
        if is_memory || skipped.contains(&node.name) || !is_enabled(node) {
            continue;
        }
        if is_withheld(node) {
            log::info!("{} withheld from the guest: its DMA would bypass stage-2", node.name);
            continue;
        }
        let name = node.name;
        if let Some(reg) = node.property("reg") {
            reg_pairs(reg.value, root_ac, root_sc, |a, s| add(name, a, s));
        }
        let Some(ranges) = node.property("ranges") else {
            continue;
        };
        let (child_ac, child_sc) = (cells(node, "#address-cells", 2), cells(node, "#size-cells", 1));
        if ranges.value.is_empty() {
            // Identity translation: the children's `reg` are CPU addresses.
            for child in node.children().filter(|c| is_enabled(*c)) {
                if is_withheld(child) {
                    log::info!(
                        "{} withheld from the guest: it writes physical memory, bypassing stage-2",
                        child.name
                    );
                    continue;
                }
                if let Some(reg) = child.property("reg") {
                    reg_pairs(reg.value, child_ac, child_sc, |a, s| add(child.name, a, s));
                }
            }
            continue;
        }
        if child_ac + root_ac + child_sc == 0 {
            continue;
        }
        let mut rest = ranges.value;
        while let Some((_, after)) = take_cells(rest, child_ac) {
            let Some((parent, after)) = take_cells(after, root_ac) else {
                break;
            };
            let Some((size, after)) = take_cells(after, child_sc) else {
                break;
            };
            add(name, parent, size);
            rest = after;
        }
    }
    found.sort_unstable_by_key(|d| d.range.start);
    let mut merged: Vec<Named<'static>> = Vec::with_capacity(found.len());
    for device in found {
        match merged.last_mut() {
            Some(last) if device.range.start < last.range.end => {
                last.range.end = last.range.end.max(device.range.end);
            }
            _ => merged.push(device),
        }
    }
    merged
}
