//! What hv reads from the device tree the boot loader passed in x0.

use core::fmt;

use fdt::Fdt;

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
        })
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
