//! Issue #8: hostile stage-1 tables. The guest builds its own tables with
//! mm's TableBuilder (an identity map of its RAM and devices, this image
//! mapped W^X plus one deliberate W+X page), plants entries no walker may
//! trust — a table pointer back to the root (a cycle), one into hv's region,
//! one beyond RAM, reserved bits, a block where the level has none, a
//! misaligned 1 GiB block one level down, a non-present entry full of
//! garbage — and a valid mapping after them, installs the tables as the live
//! ones, and asks hv for `ptdump guest` and `wx guest`.
//!
//! Expected: a BAD line for each planted entry (at exactly its address range,
//! with the walker's reason), the garbage entry shown as not mapped, the
//! mapping after them dumped (the dump goes on), the command finishing.
//! Before relying on hv, the guest walks its own tables with pagewalk (reads
//! outside guest RAM refused, as stage-2 refuses them) to prove every planted
//! entry is what it claims.

use core::ptr::addr_of;

use mm::{BumpAllocator, FrameAllocator, PhysAddr, TableBuilder};
use pagewalk::{walk, Access, AddrRange, BadEntry, BadReason, Decoded, Flow, Format, Leaf, Level, MapAttrs, MemType};
use pagewalk::{ReadFault, TableMemory, TableMemoryMut, Visitor};

use crate::arch::{self, S1};
use crate::console::{check, skip, Msg, Outcome};
use crate::output::{self, Lines};
use crate::platform::{Platform, Range, PAGE};
use crate::{bail, ensure, say};

/// Table frames: identity maps take a few dozen, the plants a few.
const POOL_PAGES: usize = 64;
#[repr(C, align(4096))]
struct Pool([u8; POOL_PAGES * PAGE as usize]);
static mut POOL: Pool = Pool([0; POOL_PAGES * PAGE as usize]);

/// A page mapped writable and executable on purpose: `wx guest` must find it.
#[repr(C, align(4096))]
struct WxPage([u8; PAGE as usize]);
static mut WX_PAGE: WxPage = WxPage([0; PAGE as usize]);
/// The page the mapping after the planted entries points to.
static mut AFTER_PAGE: WxPage = WxPage([0; PAGE as usize]);

/// Every planted entry's raw value for a non-present entry: bit 0 clear, everything else garbage.
pub const GARBAGE: u64 = 0xdead_beef_cafe_f00e;
/// Root indices of the planted entries (each covers 512 GiB: nothing else lives there).
const ROOT_CYCLE: u64 = 1;
const ROOT_INTO_HV: u64 = 2;
const ROOT_BEYOND_RAM: u64 = 3;
const ROOT_RESERVED: u64 = 4;
const ROOT_BLOCK: u64 = 5;
const ROOT_GARBAGE: u64 = 6;
const ROOT_AFTER: u64 = 8;
/// Under root entry 0 (which maps RAM), the last 1 GiB slot.
const DEEP_INDEX: u64 = 511;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Cycle,
    IntoHv,
    BeyondRam,
    ReservedBits,
    BlockAtRoot,
    MisalignedBlock,
    Garbage,
    After,
}

impl Kind {
    /// What the BAD line's reason says (pagewalk's BadReason text).
    fn reason(self) -> &'static str {
        match self {
            Kind::Cycle => "is its own ancestor",
            Kind::IntoHv | Kind::BeyondRam => "is not readable",
            Kind::ReservedBits | Kind::MisalignedBlock => "reserved bits set",
            Kind::BlockAtRoot => arch::ROOT_BLOCK_REASON,
            Kind::Garbage | Kind::After => "",
        }
    }
    fn is_bad(self) -> bool {
        !matches!(self, Kind::Garbage | Kind::After)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Plant {
    pub kind: Kind,
    pub va: u64,
    pub size: u64,
    /// Lower or upper half (arm64 TTBR0 / TTBR1).
    pub upper: bool,
}

const MAX_PLANTS: usize = 16;

pub struct Planted {
    pub plants: [Option<Plant>; MAX_PLANTS],
    pub lower_root: u64,
    pub upper_root: Option<u64>,
    pub wx_page: u64,
}

impl Planted {
    fn add(&mut self, p: Plant) {
        if let Some(slot) = self.plants.iter_mut().find(|s| s.is_none()) {
            *slot = Some(p);
        }
    }
    fn iter(&self) -> impl Iterator<Item = &Plant> {
        self.plants.iter().flatten()
    }
}

/// The pool as table memory: physical = virtual (identity), frames bumped upwards.
struct Space {
    frames: BumpAllocator,
}

impl TableMemory for Space {
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        ensure_pool(addr)?;
        // SAFETY: inside the static pool (checked), 8-byte aligned by the builder.
        Ok(unsafe { core::ptr::read_volatile(addr as *const u64) })
    }
}

impl TableMemoryMut for Space {
    fn write_u64(&mut self, addr: u64, value: u64) -> Result<(), ReadFault> {
        ensure_pool(addr)?;
        // SAFETY: as in read_u64; the tables are this guest's own memory.
        unsafe { core::ptr::write_volatile(addr as *mut u64, value) };
        Ok(())
    }
}

impl FrameAllocator for Space {
    fn alloc_frames(&mut self, count: usize, align: u64) -> Option<PhysAddr> {
        self.frames.alloc_frames(count, align)
    }
}

fn pool_range() -> Range {
    let start = addr_of!(POOL) as u64;
    Range::new(start, start + POOL_PAGES as u64 * PAGE)
}

fn ensure_pool(addr: u64) -> Result<(), ReadFault> {
    let pool = pool_range();
    if addr.is_multiple_of(8) && pool.start <= addr && addr + 8 <= pool.end {
        Ok(())
    } else {
        Err(ReadFault { addr })
    }
}

fn page_of<T>(p: *const T) -> u64 {
    p as u64
}

pub fn wx_page() -> u64 {
    page_of(addr_of!(WX_PAGE))
}
fn after_page() -> u64 {
    page_of(addr_of!(AFTER_PAGE))
}

const RX: Access = Access::READ.union(Access::EXEC_PRIV);
const RW: Access = Access::READ.union(Access::WRITE);
const RWX: Access = RW.union(Access::EXEC_PRIV);

fn normal(a: Access) -> MapAttrs {
    MapAttrs::new(a, MemType::Normal)
}

/// Maps guest RAM at VA == PA: this image W^X (code RX, rodata R, the rest
/// RW) but for one W+X page, all other RAM RW, and the arch's device pages.
fn map_identity(p: &Platform, b: &TableBuilder<'_, S1>, space: &mut Space) -> Outcome {
    let wx = wx_page();
    let pieces = [
        (p.image.start, p.text_end, normal(RX)),
        (p.text_end, p.rodata_end, normal(Access::READ)),
        (p.rodata_end, wx, normal(RW)),
        (wx, wx + PAGE, normal(RWX)),
        (wx + PAGE, p.image.end, normal(RW)),
    ];
    for (start, end, attrs) in pieces {
        if start < end {
            b.map(space, start, start, end - start, &attrs)
                .map_err(|e| Msg::new(format_args!("mapping the image {start:#x}-{end:#x}: {e}")))?;
        }
    }
    for r in p.ram.as_slice() {
        let (start, end) = (r.start.next_multiple_of(PAGE), r.end & !(PAGE - 1));
        // RAM below and above the image.
        for (s, e) in [(start, end.min(p.image.start)), (start.max(p.image.end), end)] {
            if s < e {
                b.map(space, s, s, e - s, &normal(RW))
                    .map_err(|err| Msg::new(format_args!("mapping RAM {s:#x}-{e:#x}: {err}")))?;
            }
        }
    }
    for &(start, len) in arch::DEVICE_PAGES {
        b.map(space, start, start, len, &MapAttrs::new(RW, MemType::Device))
            .map_err(|e| Msg::new(format_args!("mapping device {start:#x}: {e}")))?;
    }
    Ok(())
}

fn entry_addr(table: u64, index: u64) -> u64 {
    table + index * 8
}

/// Builds one half's tables and plants the hostile entries in it.
fn build_half(
    p: &Platform,
    format: &S1,
    base: u64,
    upper: bool,
    space: &mut Space,
    out: &mut Planted,
) -> Result<u64, Msg> {
    let hv = p.hv;
    let b = TableBuilder::new(format, space).map_err(|e| Msg::new(format_args!("new table: {e}")))?;
    let root = b.root().0;
    let root_level = format.root_level();
    let top = Level(root_level.0);
    let slot = top.entry_size();
    if !upper {
        map_identity(p, &b, space)?;
    }
    // The valid mapping after every planted entry.
    let after_va = base + ROOT_AFTER * slot;
    b.map(space, after_va, after_page(), PAGE, &normal(RW))
        .map_err(|e| Msg::new(format_args!("mapping the page after the plants: {e}")))?;
    out.add(Plant {
        kind: Kind::After,
        va: after_va,
        size: PAGE,
        upper,
    });

    let mut plant = |space: &mut Space, index: u64, raw: u64, kind: Kind| -> Outcome {
        space
            .write_u64(entry_addr(root, index), raw)
            .map_err(|e| Msg::new(format_args!("planting: {e}")))?;
        out.add(Plant {
            kind,
            va: base + index * slot,
            size: slot,
            upper,
        });
        Ok(())
    };
    plant(space, ROOT_CYCLE, format.encode_table(top, root), Kind::Cycle)?;
    if let Some(hv) = hv {
        let into = (hv.start + hv.len() / 2) & !(PAGE - 1);
        plant(space, ROOT_INTO_HV, format.encode_table(top, into), Kind::IntoHv)?;
    }
    plant(
        space,
        ROOT_BEYOND_RAM,
        format.encode_table(top, p.beyond_ram),
        Kind::BeyondRam,
    )?;
    // A valid-looking pointer to a real table of ours, with a reserved bit.
    let spare = space
        .alloc_frames(1, PAGE)
        .ok_or(Msg::new(format_args!("table pool exhausted")))?
        .0;
    plant(
        space,
        ROOT_RESERVED,
        format.encode_table(top, spare) | arch::RESERVED_TABLE_BIT,
        Kind::ReservedBits,
    )?;
    plant(space, ROOT_BLOCK, arch::root_block_entry(format, 0), Kind::BlockAtRoot)?;
    plant(space, ROOT_GARBAGE, GARBAGE, Kind::Garbage)?;

    // One level down, under the root entry that maps RAM: a 1 GiB block
    // whose output address is not 1 GiB aligned.
    if !upper {
        let next = match format.decode(top, space.read_u64(root).unwrap_or(0)) {
            Decoded::Table { next, .. } => next,
            other => bail!("root entry 0 is not a table after mapping RAM: {other:?}"),
        };
        let level1 = Level(top.0 + 1);
        let block = format
            .encode_leaf(level1, 0x4000_0000, &normal(RW))
            .map_err(|e| Msg::new(format_args!("encoding a 1 GiB block: {e:?}")))?;
        let at = entry_addr(next, DEEP_INDEX);
        ensure!(
            space.read_u64(at) == Ok(0),
            "the slot for the misaligned block is in use"
        );
        space
            .write_u64(at, block | arch::MISALIGNED_LEAF_BIT)
            .map_err(|e| Msg::new(format_args!("planting: {e}")))?;
        out.add(Plant {
            kind: Kind::MisalignedBlock,
            va: base + DEEP_INDEX * level1.entry_size(),
            size: level1.entry_size(),
            upper,
        });
    }
    Ok(root)
}

fn build(p: &Platform) -> Result<Planted, Msg> {
    let pool = pool_range();
    let mut space = Space {
        frames: BumpAllocator::new(PhysAddr(pool.start), PhysAddr(pool.end)),
    };
    let mut planted = Planted {
        plants: [None; MAX_PLANTS],
        lower_root: 0,
        upper_root: None,
        wx_page: wx_page(),
    };
    let lower = arch::lower_format();
    planted.lower_root = build_half(p, &lower, 0, false, &mut space, &mut planted)?;
    if let Some((upper, base)) = arch::upper_format() {
        planted.upper_root = Some(build_half(p, &upper, base, true, &mut space, &mut planted)?);
    } else {
        plant_kernel_half(&lower, planted.lower_root, &mut space, &mut planted)?;
    }
    Ok(planted)
}

/// One root serves both halves (x86): hv's `wx guest` judges only the kernel
/// half, as Linux's check does, so that half gets its own W+X alias of the
/// W+X page and a bad entry for the check to find.
fn plant_kernel_half(format: &S1, root: u64, space: &mut Space, out: &mut Planted) -> Outcome {
    let b = TableBuilder::with_root(format, PhysAddr(root));
    let alias = arch::UPPER_HALF_START + out.wx_page;
    b.map(space, alias, out.wx_page, PAGE, &normal(RWX))
        .map_err(|e| Msg::new(format_args!("mapping the kernel-half W+X alias: {e}")))?;
    let top = format.root_level();
    let slot = top.entry_size();
    let spare = space
        .alloc_frames(1, PAGE)
        .ok_or(Msg::new(format_args!("table pool exhausted")))?
        .0;
    let index = 256 + ROOT_RESERVED;
    space
        .write_u64(
            entry_addr(root, index),
            format.encode_table(top, spare) | arch::RESERVED_TABLE_BIT,
        )
        .map_err(|e| Msg::new(format_args!("planting: {e}")))?;
    out.add(Plant {
        kind: Kind::ReservedBits,
        va: arch::UPPER_HALF_START + ROOT_RESERVED * slot,
        size: slot,
        upper: true,
    });
    Ok(())
}

/// What this guest's own walk of its tables found at each plant.
struct SelfWalk<'a> {
    planted: &'a Planted,
    upper: bool,
    bad_seen: [Option<BadReason>; MAX_PLANTS],
    leaf_seen: [bool; MAX_PLANTS],
}

impl Visitor for SelfWalk<'_> {
    fn leaf(&mut self, leaf: &Leaf) -> Flow {
        for (i, p) in self.planted.plants.iter().enumerate() {
            if let Some(p) = p.filter(|p| p.upper == self.upper) {
                if leaf.addr <= p.va && p.va - leaf.addr < leaf.size {
                    self.leaf_seen[i] = true;
                }
            }
        }
        Flow::Continue
    }
    fn bad(&mut self, bad: &BadEntry) -> Flow {
        for (i, p) in self.planted.plants.iter().enumerate() {
            if let Some(p) = p.filter(|p| p.upper == self.upper) {
                if bad.addr == p.va && bad.size == p.size {
                    self.bad_seen[i] = Some(bad.reason);
                }
            }
        }
        Flow::Continue
    }
}

/// Guest RAM as stage-2 shows it to hv's walker: reads outside it fail.
struct GuestRamView<'a>(&'a Platform);

impl TableMemory for GuestRamView<'_> {
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        if !addr.is_multiple_of(8) || !self.0.in_ram(addr, 8) {
            return Err(ReadFault { addr });
        }
        // SAFETY: guest RAM, identity-mapped (or the MMU is off), aligned.
        Ok(unsafe { core::ptr::read_volatile(addr as *const u64) })
    }
}

fn self_walk(p: &Platform, planted: &Planted) -> Outcome {
    let view = GuestRamView(p);
    let mut halves = [(false, planted.lower_root), (true, 0)];
    let count = match planted.upper_root {
        Some(r) => {
            halves[1].1 = r;
            2
        }
        None => 1,
    };
    for &(upper, root) in &halves[..count] {
        let mut v = SelfWalk {
            planted,
            upper,
            bad_seen: [None; MAX_PLANTS],
            leaf_seen: [false; MAX_PLANTS],
        };
        if upper {
            let (f, _) = arch::upper_format().expect("upper half");
            walk(&f, &view, root, AddrRange::ALL, &mut v);
        } else {
            walk(&arch::lower_format(), &view, root, AddrRange::ALL, &mut v);
        }
        for (i, plant) in planted.plants.iter().enumerate() {
            let Some(plant) = plant.filter(|x| x.upper == upper) else {
                continue;
            };
            let seen = v.bad_seen[i];
            match plant.kind {
                Kind::Garbage | Kind::After => {
                    let want_leaf = plant.kind == Kind::After;
                    ensure!(
                        seen.is_none() && v.leaf_seen[i] == want_leaf,
                        "{:?} at {:#x}: walker saw bad={seen:?} leaf={}",
                        plant.kind,
                        plant.va,
                        v.leaf_seen[i]
                    );
                }
                kind => {
                    let Some(reason) = seen else {
                        bail!("{kind:?} at {:#x}: the walker did not report it bad", plant.va);
                    };
                    let text = Msg::new(format_args!("{reason}"));
                    ensure!(
                        text.as_str().contains(kind.reason()),
                        "{kind:?} at {:#x}: reason '{text}' lacks '{}'",
                        plant.va,
                        kind.reason()
                    );
                }
            }
        }
    }
    Ok(())
}

/// Installs the tables and proves they are live: the page after the plants
/// reads through its high VA what was written through the identity map.
fn go_live(planted: &Planted) -> Outcome {
    let after = planted
        .iter()
        .find(|p| p.kind == Kind::After && !p.upper)
        .ok_or(Msg::new(format_args!("no lower-half mapping after the plants")))?;
    let token = 0x7465_7374_6775_6573u64 ^ after.va;
    // SAFETY: AFTER_PAGE is this guest's own page, written through the identity map.
    unsafe { core::ptr::write_volatile(after_page() as *mut u64, token) };
    arch::install_tables(planted.lower_root, planted.upper_root);
    // SAFETY: after.va maps AFTER_PAGE in the tables just installed.
    let seen = unsafe { core::ptr::read_volatile(after.va as *const u64) };
    ensure!(
        seen == token,
        "reading {:#x} through the new tables gave {seen:#x}, want {token:#x}",
        after.va
    );
    Ok(())
}

/// Without hv: the tables are built, checked by our own walk and made live.
pub fn run_without_hv(p: &Platform) {
    let planted = match build(p) {
        Ok(t) => t,
        Err(m) => return crate::console::fail("hostile-tables-built", format_args!("{m}")),
    };
    check("hostile-tables-self-walk", self_walk(p, &planted));
    check("hostile-tables-live", go_live(&planted));
}

pub fn run(p: &Platform) {
    let planted = match build(p) {
        Ok(t) => t,
        Err(m) => return crate::console::fail("hostile-tables-built", format_args!("{m}")),
    };
    check("hostile-tables-self-walk", self_walk(p, &planted));
    let live = go_live(&planted);
    let went_live = live.is_ok();
    check("hostile-tables-live", live);
    if !went_live {
        return;
    }
    match ptdump_guest(&planted) {
        Ok(Some(reason)) => {
            skip("hostile-guest", format_args!("ptdump guest not available ({reason})"));
            return;
        }
        Ok(None) => crate::console::pass("hostile-ptdump-guest"),
        Err(m) => crate::console::fail("hostile-ptdump-guest", format_args!("{m}")),
    }
    check("hostile-wx-guest", wx_guest(&planted));
}

/// Per plant: what hv's dump showed.
#[derive(Clone, Copy, Default)]
struct Seen {
    /// A BAD line at exactly the plant's range with the right reason.
    bad_exact: bool,
    /// Any line covering the plant that is a mapping (not a hole, not BAD).
    mapped: bool,
    /// Any line covering it that is BAD.
    bad_any: bool,
    /// Line number of the first line covering it.
    line: u64,
    covered: bool,
}

/// `Ok(Some(reason))`: hv says the guest tables are not available (the only SKIP).
fn ptdump_guest(planted: &Planted) -> Result<Option<Msg>, Msg> {
    let mut seen = [Seen::default(); MAX_PLANTS];
    let mut line_no = 0u64;
    let mut not_available: Option<Msg> = None;
    let mut halves = [false; 2];
    let mut bad_lines = 0u64;
    let mut lines = Lines::new(|line: &str| {
        line_no += 1;
        if line_no == 1 {
            if let Some(reason) = line.strip_prefix("hv: 'guest' tables not available: ") {
                not_available = Some(Msg::new(format_args!("{reason}")));
            }
        }
        let Some(d) = output::parse_dump_line(line) else {
            return;
        };
        halves[usize::from(d.start >= arch::UPPER_HALF_START)] = true;
        if d.is_bad() {
            bad_lines += 1;
        }
        for (i, p) in planted.plants.iter().enumerate() {
            let Some(p) = p else { continue };
            if !d.covers(p.va) {
                continue;
            }
            let s = &mut seen[i];
            if !s.covered {
                s.covered = true;
                s.line = line_no;
            }
            if d.is_bad() {
                s.bad_any = true;
                if d.start == p.va && d.end == u128::from(p.va) + u128::from(p.size) && d.rest.contains(p.kind.reason())
                {
                    s.bad_exact = true;
                }
            } else if !d.is_hole() {
                s.mapped = true;
            }
        }
    });
    let s = output::stream("ptdump guest", 4096, 4096, &mut |b| lines.feed(b))?;
    lines.finish();
    if let Some(reason) = not_available {
        ensure!(
            s.flags & crate::abi::flags::FAILED != 0 && line_no == 1,
            "'not available' but flags {:#x} and {line_no} lines",
            s.flags
        );
        return Ok(Some(reason));
    }
    say!(
        "testguest: ptdump guest: {line_no} lines, {bad_lines} BAD, {} bytes in {} calls",
        s.sum.len,
        s.calls
    );
    ensure!(
        s.flags == 0,
        "'ptdump guest' ended with flags {:#x} (FAILED/TRUNCATED)",
        s.flags
    );
    ensure!(
        halves[0] || halves[1],
        "'ptdump guest' printed no range lines ({line_no} lines)"
    );
    let mut checked = 0;
    let mut last_bad_line = [0u64; 2];
    for (i, p) in planted.plants.iter().enumerate() {
        let Some(p) = p else { continue };
        // Only the halves hv chose to dump are judged (arm64: TTBR0 and/or TTBR1).
        if !halves[usize::from(p.upper)] {
            continue;
        }
        let s = seen[i];
        checked += 1;
        ensure!(s.covered, "{:?} at {:#x}: no dump line covers it", p.kind, p.va);
        if p.kind.is_bad() {
            ensure!(
                s.bad_exact,
                "{:?} at {:#x}+{:#x}: no BAD line with exactly that range and '{}'",
                p.kind,
                p.va,
                p.size,
                p.kind.reason()
            );
            ensure!(!s.mapped, "{:?} at {:#x}: also shown as a mapping", p.kind, p.va);
            last_bad_line[usize::from(p.upper)] = last_bad_line[usize::from(p.upper)].max(s.line);
        } else if p.kind == Kind::Garbage {
            ensure!(
                !s.mapped && !s.bad_any,
                "the non-present entry with garbage bits at {:#x} is shown as mapped or BAD",
                p.va
            );
        }
    }
    for p in planted
        .iter()
        .filter(|p| p.kind == Kind::After && halves[usize::from(p.upper)])
    {
        let s = seen[planted
            .plants
            .iter()
            .position(|x| x.is_some_and(|x| x.va == p.va && x.kind == p.kind))
            .unwrap_or(0)];
        ensure!(
            s.mapped && s.line > last_bad_line[usize::from(p.upper)],
            "the mapping at {:#x} after the planted entries is missing: the dump did not go on",
            p.va
        );
    }
    ensure!(checked > 0, "no planted entry in the halves hv dumped");
    Ok(None)
}

fn wx_guest(planted: &Planted) -> Outcome {
    let wx = planted.wx_page;
    let mut found_wx_page = false;
    let mut other_wx: Option<u64> = None;
    let mut cannot_check = 0u64;
    let mut lower_judged = false;
    let mut verdict_failed = false;
    let mut lines = Lines::new(|line: &str| {
        if let Some(rest) = line
            .split_once("Found insecure W+X mapping at address ")
            .map(|(_, r)| r)
        {
            let addr = rest.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok());
            // x86 also maps the page at a kernel-half alias (plant_kernel_half).
            if addr == Some(wx) || (arch::upper_format().is_none() && addr == Some(arch::UPPER_HALF_START + wx)) {
                found_wx_page = true;
            } else {
                other_wx = Some(addr.unwrap_or(u64::MAX));
            }
        }
        if let Some(rest) = line.split_once("Cannot check entry at address ").map(|(_, r)| r) {
            cannot_check += 1;
            let addr = rest.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok());
            lower_judged |= addr.is_some_and(|a| a < arch::UPPER_HALF_START);
        }
        if line.contains("Checked W+X mappings: FAILED") {
            verdict_failed = true;
        }
    });
    let s = output::stream("wx guest", 4096, 4096, &mut |b| lines.feed(b))?;
    lines.finish();
    ensure!(
        s.flags == crate::abi::flags::FAILED,
        "'wx guest' flags {:#x}, want FAILED (W+X page and unjudgeable entries)",
        s.flags
    );
    ensure!(verdict_failed, "no 'Checked W+X mappings: FAILED' verdict line");
    ensure!(cannot_check > 0, "no 'Cannot check entry' line for the planted entries");
    // arm64: the W+X page is in TTBR0's half, judged only when hv judged that
    // half; x86: its kernel-half alias is always judged.
    ensure!(
        found_wx_page || (!lower_judged && arch::upper_format().is_some()),
        "the W+X page at {wx:#x} was not reported"
    );
    if let Some(a) = other_wx {
        bail!("W+X reported at {a:#x}, which this guest maps W^X");
    }
    Ok(())
}

/// The table pool, for cache maintenance before the MMU goes on (arm64).
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub fn pool_bounds() -> Range {
    pool_range()
}
