//! The guest's device tree: the platform's DTB with hv taken out of it.
//!
//! Read with the `fdt` crate, written with `vm-fdt` (rust-vmm's writer: no_std
//! with `alloc`, keeps names and property bytes as given, checks node/property
//! names and nesting, writes the memory reservation block; used by Firecracker
//! and crosvm, so it is kept up). Everything is copied verbatim — phandles, the
//! memory reservation block, /reserved-memory, the PSCI node with `method =
//! "smc"` (hv traps SMC and emulates PSCI) — except:
//!
//! - /memory: one node whose `reg` lists the guest RAM ranges (so Linux never
//!   sees hv's memory); further memory nodes are dropped;
//! - /chosen: `bootargs` and `linux,initrd-start`/`-end` (u64) are the guest's;
//!   other properties (`stdout-path`, `rng-seed`, `kaslr-seed`) stay;
//! - every node whose `compatible` lists one of [`GuestDtbConfig::disable`]
//!   (a device hv withholds, e.g. QEMU's fw-cfg or the GICv3 ITS) gets
//!   `status = "disabled"`, so the guest's drivers leave it alone.
//!
//! `fdt` 0.1.5 panics on some malformed input (it indexes and unwraps), so
//! [`check`] validates the whole blob first: after it, every `fdt` call made
//! here stays in bounds. FDT_NOP tokens are refused: `fdt` 0.1.5's iterators
//! lose nodes and properties that follow one.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use fdt::node::FdtNode;
use fdt::Fdt;
use vm_fdt::{FdtReserveEntry, FdtWriter};

use super::MemRange;

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
const HEADER_LEN: usize = 40;
/// Deeper trees are refused (`fdt` keeps a 64-entry parent stack; real trees nest < 10).
pub const MAX_DEPTH: usize = 32;

/// Why a DTB was refused or could not be written.
#[derive(Debug, PartialEq, Eq)]
pub enum DtbError {
    /// The blob is malformed at byte `offset` (from the DTB's start).
    Malformed {
        offset: usize,
        what: &'static str,
    },
    UnsupportedVersion {
        version: u32,
        last_comp_version: u32,
    },
    /// A `#address-cells` / `#size-cells` value hv cannot encode memory with.
    BadCells {
        name: &'static str,
        value: u32,
    },
    /// A guest RAM range does not fit the root's cell sizes.
    RangeDoesNotFit {
        range: MemRange,
        address_cells: u32,
        size_cells: u32,
    },
    /// The writer refused the tree (e.g. a node or property name it deems invalid).
    Write(vm_fdt::Error),
}

impl fmt::Display for DtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtbError::Malformed { offset, what } => write!(f, "malformed DTB at byte {offset:#x}: {what}"),
            DtbError::UnsupportedVersion {
                version,
                last_comp_version,
            } => write!(
                f,
                "unsupported DTB version {version} (last compatible {last_comp_version}); hv reads version 17"
            ),
            DtbError::BadCells { name, value } => write!(f, "DTB root {name} = {value} is not 1 or 2"),
            DtbError::RangeDoesNotFit {
                range,
                address_cells,
                size_cells,
            } => write!(
                f,
                "guest RAM [{range}] does not fit #address-cells = {address_cells}, #size-cells = {size_cells}"
            ),
            DtbError::Write(e) => write!(f, "writing the guest DTB failed: {e}"),
        }
    }
}

impl From<vm_fdt::Error> for DtbError {
    fn from(e: vm_fdt::Error) -> Self {
        DtbError::Write(e)
    }
}

/// What [`check`] learnt from the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DtbInfo {
    pub total_size: usize,
    pub boot_cpuid_phys: u32,
    /// The memory reservation block, without its terminator.
    pub reservations: Vec<(u64, u64)>,
    pub nodes: usize,
    pub properties: usize,
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(off..off.checked_add(4)?)?.try_into().ok()?))
}
fn be64(b: &[u8], off: usize) -> Option<u64> {
    Some(((be32(b, off)? as u64) << 32) | be32(b, off + 4)? as u64)
}

/// NUL-terminated UTF-8 string at `off` in `block`.
fn c_str(block: &[u8], off: usize) -> Option<&str> {
    let rest = block.get(off..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&rest[..len]).ok()
}

/// Validates a whole flattened device tree (version 17): header, memory
/// reservation block, and every token of the structure block against the
/// strings block. Total on any input.
pub fn check(dtb: &[u8]) -> Result<DtbInfo, DtbError> {
    let bad = |offset: usize, what| Err(DtbError::Malformed { offset, what });
    if dtb.len() < HEADER_LEN {
        return bad(dtb.len(), "shorter than the 40-byte header");
    }
    let h = |i: usize| be32(dtb, i * 4).unwrap_or(0) as usize;
    if h(0) as u32 != FDT_MAGIC {
        return bad(0, "bad magic (expected 0xd00dfeed)");
    }
    let (total, off_struct, off_strings, off_rsv) = (h(1), h(2), h(3), h(4));
    let (version, last_comp) = (h(5) as u32, h(6) as u32);
    let (size_strings, size_struct) = (h(8), h(9));
    if version < 17 || last_comp > 17 {
        return Err(DtbError::UnsupportedVersion {
            version,
            last_comp_version: last_comp,
        });
    }
    if total > dtb.len() || total < HEADER_LEN {
        return bad(4, "totalsize exceeds the buffer or is below the header size");
    }
    let dtb = &dtb[..total];
    let in_blob = |off: usize, len: usize| off >= HEADER_LEN && off.checked_add(len).is_some_and(|e| e <= total);
    if off_struct % 4 != 0 || size_struct % 4 != 0 || !in_blob(off_struct, size_struct) {
        return bad(8, "structure block outside the blob or misaligned");
    }
    if !in_blob(off_strings, size_strings) {
        return bad(12, "strings block outside the blob");
    }
    if off_rsv % 8 != 0 || !in_blob(off_rsv, 16) {
        return bad(16, "memory reservation block outside the blob or misaligned");
    }

    let mut reservations = Vec::new();
    let mut at = off_rsv;
    loop {
        let (Some(addr), Some(size)) = (be64(dtb, at), be64(dtb, at + 8)) else {
            return bad(at, "memory reservation block runs off the blob (no terminator)");
        };
        if addr == 0 && size == 0 {
            break;
        }
        reservations.push((addr, size));
        at += 16;
    }

    let structs = &dtb[off_struct..off_struct + size_struct];
    let strings = &dtb[off_strings..off_strings + size_strings];
    let (mut pos, mut depth, mut nodes, mut properties) = (0usize, 0usize, 0usize, 0usize);
    // Whether the current node has had a child yet (properties must come first).
    let mut had_child = [false; MAX_DEPTH + 1];
    let mut root_done = false;
    loop {
        let abs = off_struct + pos;
        let Some(token) = be32(structs, pos) else {
            return bad(abs, "structure block ends without FDT_END");
        };
        pos += 4;
        match token {
            FDT_BEGIN_NODE => {
                if root_done {
                    return bad(abs, "a second root node");
                }
                let Some(name) = c_str(structs, pos) else {
                    return bad(abs + 4, "node name not NUL-terminated UTF-8");
                };
                if depth == 0 && !name.is_empty() {
                    return bad(abs + 4, "root node has a name");
                }
                if depth > 0 && name.is_empty() {
                    return bad(abs + 4, "node without a name");
                }
                if depth == MAX_DEPTH {
                    return bad(abs, "nodes nested too deeply");
                }
                had_child[depth] = true;
                depth += 1;
                had_child[depth] = false;
                nodes += 1;
                pos = (pos + name.len() + 1).next_multiple_of(4);
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return bad(abs, "FDT_END_NODE without a node");
                }
                depth -= 1;
                root_done = depth == 0;
            }
            FDT_PROP => {
                if depth == 0 {
                    return bad(abs, "property outside any node");
                }
                if had_child[depth] {
                    return bad(abs, "property after a child node");
                }
                let (Some(len), Some(name_off)) = (be32(structs, pos), be32(structs, pos + 4)) else {
                    return bad(abs, "property header runs off the structure block");
                };
                let (len, name_off) = (len as usize, name_off as usize);
                if c_str(strings, name_off).is_none() {
                    return bad(abs + 8, "property name offset outside the strings block or not UTF-8");
                }
                let value = pos + 8;
                if value.checked_add(len).is_none_or(|e| e > structs.len()) {
                    return bad(abs + 4, "property value runs off the structure block");
                }
                properties += 1;
                pos = (value + len).next_multiple_of(4);
            }
            FDT_NOP => return bad(abs, "FDT_NOP tokens are not supported"),
            FDT_END => {
                if !root_done {
                    return bad(abs, "FDT_END before the root node is closed");
                }
                break;
            }
            _ => return bad(abs, "unknown structure block token"),
        }
    }
    Ok(DtbInfo {
        total_size: total,
        boot_cpuid_phys: be32(dtb, 28).unwrap_or(0),
        reservations,
        nodes,
        properties,
    })
}

/// What the guest's DTB says that the platform's does not.
#[derive(Clone, Copy, Debug)]
pub struct GuestDtbConfig<'a> {
    /// Guest RAM (from the layout): the only memory Linux will see.
    pub ram: &'a [MemRange],
    /// `/chosen/bootargs`.
    pub bootargs: &'a str,
    /// Where the initrd was placed, if any.
    pub initrd: Option<MemRange>,
    /// `compatible` strings of devices the guest does not get: each node that
    /// lists one (at any depth) is written with `status = "disabled"`.
    pub disable: &'a [&'a str],
}

fn root_cells(root: FdtNode<'_, '_>, name: &'static str, default: u32) -> Result<u32, DtbError> {
    let value = match root.property(name) {
        None => default,
        Some(p) => match p.value.try_into() {
            Ok(bytes) => u32::from_be_bytes(bytes),
            Err(_) => return Err(DtbError::BadCells { name, value: u32::MAX }),
        },
    };
    if value == 1 || value == 2 {
        Ok(value)
    } else {
        Err(DtbError::BadCells { name, value })
    }
}

fn is_memory_node(node: FdtNode<'_, '_>) -> bool {
    node.name == "memory"
        || node.name.starts_with("memory@")
        || node.property("device_type").and_then(|p| p.as_str()) == Some("memory")
}

/// `reg` for the guest RAM ranges in the root's cell sizes; ranges longer
/// than one size cell can say are split.
fn memory_reg(ram: &[MemRange], address_cells: u32, size_cells: u32) -> Result<Vec<u8>, DtbError> {
    let max_size = if size_cells == 1 { 0xffff_f000 } else { u64::MAX };
    let mut reg = Vec::new();
    for range in ram {
        let mut start = range.start;
        while start < range.end {
            let len = (range.end - start).min(max_size);
            if address_cells == 1 && start.checked_add(len).is_none_or(|e| e > 1 << 32) {
                return Err(DtbError::RangeDoesNotFit {
                    range: *range,
                    address_cells,
                    size_cells,
                });
            }
            for (value, cells) in [(start, address_cells), (len, size_cells)] {
                if cells == 2 {
                    reg.extend_from_slice(&value.to_be_bytes());
                } else {
                    reg.extend_from_slice(&(value as u32).to_be_bytes());
                }
            }
            start += len;
        }
    }
    Ok(reg)
}

fn copy_properties(w: &mut FdtWriter, node: FdtNode<'_, '_>, skip: &[&str]) -> Result<(), DtbError> {
    for p in node.properties().filter(|p| !skip.contains(&p.name)) {
        w.property(p.name, p.value)?;
    }
    Ok(())
}

/// Whether `node`'s `compatible` names one of `disable`.
fn is_disabled(node: FdtNode<'_, '_>, disable: &[&str]) -> bool {
    !disable.is_empty() && node.compatible().is_some_and(|c| c.all().any(|s| disable.contains(&s)))
}

/// Copies `node` and its children; a node [`is_disabled`] keeps everything
/// but its `status`, which becomes "disabled" (written where the old one was,
/// or last).
fn copy_subtree(w: &mut FdtWriter, node: FdtNode<'_, '_>, disable: &[&str]) -> Result<(), DtbError> {
    let handle = w.begin_node(node.name)?;
    if is_disabled(node, disable) {
        let mut status_written = false;
        for p in node.properties() {
            if p.name == "status" {
                if !status_written {
                    w.property_string("status", "disabled")?;
                    status_written = true;
                }
            } else {
                w.property(p.name, p.value)?;
            }
        }
        if !status_written {
            w.property_string("status", "disabled")?;
        }
    } else {
        copy_properties(w, node, &[])?;
    }
    for child in node.children() {
        copy_subtree(w, child, disable)?;
    }
    w.end_node(handle)?;
    Ok(())
}

const CHOSEN_REPLACED: &[&str] = &["bootargs", "linux,initrd-start", "linux,initrd-end"];

fn write_chosen(w: &mut FdtWriter, chosen: Option<FdtNode<'_, '_>>, cfg: &GuestDtbConfig<'_>) -> Result<(), DtbError> {
    let handle = w.begin_node(chosen.map_or("chosen", |c| c.name))?;
    if let Some(c) = chosen {
        copy_properties(w, c, CHOSEN_REPLACED)?;
    }
    w.property_string("bootargs", cfg.bootargs)?;
    if let Some(initrd) = cfg.initrd {
        w.property_u64("linux,initrd-start", initrd.start)?;
        w.property_u64("linux,initrd-end", initrd.end)?;
    }
    if let Some(c) = chosen {
        for child in c.children() {
            copy_subtree(w, child, cfg.disable)?;
        }
    }
    w.end_node(handle)?;
    Ok(())
}

fn write_memory(
    w: &mut FdtWriter,
    template: Option<FdtNode<'_, '_>>,
    reg: &[u8],
    first: Option<&MemRange>,
    disable: &[&str],
) -> Result<(), DtbError> {
    let name = match first {
        Some(r) => alloc::format!("memory@{:x}", r.start),
        None => String::from("memory"),
    };
    let handle = w.begin_node(&name)?;
    match template {
        Some(t) => copy_properties(w, t, &["reg"])?,
        None => w.property_string("device_type", "memory")?,
    }
    w.property("reg", reg)?;
    if let Some(t) = template {
        for child in t.children() {
            copy_subtree(w, child, disable)?;
        }
    }
    w.end_node(handle)?;
    Ok(())
}

/// The guest's DTB from the platform's: see the module comment for what changes.
pub fn guest_dtb(platform: &[u8], cfg: &GuestDtbConfig<'_>) -> Result<Vec<u8>, DtbError> {
    let info = check(platform)?;
    let fdt = Fdt::new(&platform[..info.total_size]).map_err(|_| DtbError::Malformed {
        offset: 0,
        what: "rejected by the fdt reader",
    })?;
    let root = fdt.find_node("/").ok_or(DtbError::Malformed {
        offset: 0,
        what: "no root node",
    })?;
    let address_cells = root_cells(root, "#address-cells", 2)?;
    let size_cells = root_cells(root, "#size-cells", 1)?;
    let reg = memory_reg(cfg.ram, address_cells, size_cells)?;

    let reservations = info
        .reservations
        .iter()
        .map(|&(addr, size)| FdtReserveEntry::new(addr, size))
        .collect::<Result<Vec<_>, _>>()?;
    let mut w = FdtWriter::new_with_mem_reserv(&reservations)?;
    w.set_boot_cpuid_phys(info.boot_cpuid_phys);

    let top = w.begin_node("")?;
    copy_properties(&mut w, root, &[])?;
    let (mut memory_written, mut chosen_written) = (false, false);
    for child in root.children() {
        if is_memory_node(child) {
            if !memory_written {
                write_memory(&mut w, Some(child), &reg, cfg.ram.first(), cfg.disable)?;
                memory_written = true;
            }
        } else if child.name == "chosen" {
            if !chosen_written {
                write_chosen(&mut w, Some(child), cfg)?;
                chosen_written = true;
            }
        } else {
            copy_subtree(&mut w, child, cfg.disable)?;
        }
    }
    if !memory_written {
        write_memory(&mut w, None, &reg, cfg.ram.first(), cfg.disable)?;
    }
    if !chosen_written {
        write_chosen(&mut w, None, cfg)?;
    }
    w.end_node(top)?;
    Ok(w.finish()?)
}
