//! hv's boot-time check of its own page tables, for every architecture.
//!
//! Given hv's table format, the memory the tables live in, the root and the
//! named regions hv mapped (text, rodata, data/bss, stacks, heap, devices...),
//! [`run`] prints a Linux-format dump of the tables with a marker at each
//! region, checks every region has exactly the rights hv meant it to have,
//! and runs Linux's W+X check. Boot may go on only if all of it passed.
//!
//! The dump and the W+X verdict come from `ptdump` through [`DumpFormat`],
//! which each table format implements once (see `ptdump_glue`); everything
//! else here walks the tables with `pagewalk::walk`.

use core::fmt::{self, Write};

use ptdump::{Marker, WxReport};

use pagewalk::{walk, Access, AddrRange, BadEntry, Flow, Format, Hole, Leaf, TableMemory, Visitor};

/// Most regions one self-check takes (markers are kept on the stack).
pub const MAX_REGIONS: usize = 32;

/// The rights hv means a region to have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Readable and executable, never writable (code).
    ReadExec,
    /// Read-only, not executable (rodata, the device tree).
    ReadOnly,
    /// Readable and writable, not executable (data, stacks, heap, MMIO).
    ReadWrite,
    /// Not mapped at all (guard pages).
    Unmapped,
}

impl Expect {
    /// The rights a mapping of this region must have (READ/WRITE/EXEC_PRIV only).
    pub const fn access(self) -> Option<Access> {
        match self {
            Expect::ReadExec => Some(Access::READ.union(Access::EXEC_PRIV)),
            Expect::ReadOnly => Some(Access::READ),
            Expect::ReadWrite => Some(Access::READ.union(Access::WRITE)),
            Expect::Unmapped => None,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.access() {
            Some(a) => write_rights(f, a),
            None => f.write_str("unmapped"),
        }
    }
}

/// Bits of [`Access`] the self-check compares: what hv itself may do.
const CHECKED: Access = Access::READ.union(Access::WRITE).union(Access::EXEC_PRIV);

fn checked(a: Access) -> Access {
    Access::from_bits_truncate(a.bits() & CHECKED.bits())
}

fn write_rights(f: &mut dyn Write, a: Access) -> fmt::Result {
    let r = if a.contains(Access::READ) { 'R' } else { '-' };
    let w = if a.contains(Access::WRITE) { 'W' } else { '-' };
    let x = if a.contains(Access::EXEC_PRIV) { 'X' } else { '-' };
    write!(f, "{r}{w}{x}")
}

/// One part of hv's address space, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region<'a> {
    pub name: &'a str,
    pub start: u64,
    pub end: u64,
    pub expect: Expect,
}

impl<'a> Region<'a> {
    pub const fn new(name: &'a str, start: u64, end: u64, expect: Expect) -> Self {
        Region {
            name,
            start,
            end,
            expect,
        }
    }
    fn range(&self) -> Option<AddrRange> {
        AddrRange::new(self.start, Some(self.end))
    }
}

/// Which tables a [`DumpFormat`] reads: the tree at `root` in `mem`, over `range`.
#[derive(Clone, Copy)]
pub struct TableSpan<'t> {
    pub mem: &'t dyn TableMemory,
    pub root: u64,
    pub range: AddrRange,
}

/// A table format ptdump can dump and W+X-check in its architecture's Linux format.
pub trait DumpFormat: Format {
    /// Streams the dump of the span; `markers` are sorted by address.
    fn dump(&self, out: &mut dyn Write, span: TableSpan<'_>, markers: &[Marker<'_>]) -> fmt::Result;
    /// Runs Linux's W+X check over the span, printing its messages and verdict line.
    fn check_wx(&self, out: &mut dyn Write, span: TableSpan<'_>) -> Result<WxReport, fmt::Error>;
}

/// What [`run`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub wx: WxReport,
    /// Contiguous W+X ranges found by hv's own walk (printed with their region).
    pub wx_ranges: u64,
    /// Regions whose mappings differ from what hv meant.
    pub region_mismatches: u64,
    /// Regions that could not be checked (empty, inverted, or too many).
    pub bad_regions: u64,
}

impl Report {
    /// True when hv may go on to start a guest.
    pub fn boot_may_proceed(&self) -> bool {
        self.wx.passed() && self.wx_ranges == 0 && self.region_mismatches == 0 && self.bad_regions == 0
    }
}

/// What [`run`] is told about the tables.
pub struct Tables<'t, F: DumpFormat + ?Sized> {
    /// Shown in the banner, e.g. "EL2 stage-1".
    pub title: &'t str,
    pub format: &'t F,
    pub mem: &'t dyn TableMemory,
    pub root: u64,
    /// What to dump and check, normally the format's whole input space.
    pub range: AddrRange,
}

impl<F: DumpFormat + ?Sized> Tables<'_, F> {
    fn span(&self) -> TableSpan<'_> {
        TableSpan {
            mem: self.mem,
            root: self.root,
            range: self.range,
        }
    }
}

/// Prints the banner, the dump with a marker per region, the region check and
/// the W+X verdict to `out`; returns what it found. Only a write error on
/// `out` is an `Err`.
pub fn run<F: DumpFormat + ?Sized>(
    out: &mut dyn Write,
    tables: &Tables<'_, F>,
    regions: &[Region<'_>],
) -> Result<Report, fmt::Error> {
    let mut report = Report::default();
    writeln!(
        out,
        "hv: self-check: {} page tables, root {:#x}, {}-bit input, dump follows",
        tables.title,
        tables.root,
        tables.format.input_bits()
    )?;

    let (markers, count) = sorted_markers(tables.title, tables.range.start, regions);
    if regions.len() > MAX_REGIONS {
        writeln!(
            out,
            "hv: self-check: {} regions given, only {MAX_REGIONS} fit: the rest are not checked",
            regions.len()
        )?;
        report.bad_regions += (regions.len() - MAX_REGIONS) as u64;
    }
    tables.format.dump(out, tables.span(), &markers[..count])?;
    writeln!(out, "---[ end of {} page tables ]---", tables.title)?;

    for region in regions.iter().take(MAX_REGIONS) {
        match check_region(out, tables, region)? {
            RegionResult::Ok => {}
            RegionResult::Mismatch => report.region_mismatches += 1,
            RegionResult::Invalid => report.bad_regions += 1,
        }
    }

    report.wx = tables.format.check_wx(out, tables.span())?;
    report.wx_ranges = print_wx_ranges(out, tables, regions)?;

    if report.boot_may_proceed() {
        writeln!(
            out,
            "hv: self-check passed: {} regions mapped as intended, no W+X pages",
            regions.len()
        )?;
    } else {
        writeln!(
            out,
            "hv: self-check FAILED: {} W+X pages, {} W+X ranges, {} regions mapped wrongly, {} bad regions, {} bad entries",
            report.wx.wx_pages, report.wx_ranges, report.region_mismatches, report.bad_regions, report.wx.bad_entries
        )?;
    }
    Ok(report)
}

/// The markers [`run`]'s dump carries: the title at the start of the range,
/// then one per mapped region, sorted by address. For a caller that prints
/// the dump through the console engine (`ptdump hv`) with the same markers.
pub fn region_markers<'a>(title: &'a str, start: u64, regions: &[Region<'a>]) -> impl Iterator<Item = Marker<'a>> {
    let (markers, count) = sorted_markers(title, start, regions);
    markers.into_iter().take(count)
}

/// What [`check_regions`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionReport {
    /// The verdict of Linux's W+X check, run elsewhere (the console's `wx hv`).
    pub linux_wx_passed: bool,
    pub wx_ranges: u64,
    pub region_mismatches: u64,
    pub bad_regions: u64,
}

impl RegionReport {
    /// True when hv may go on to start a guest.
    pub fn boot_may_proceed(&self) -> bool {
        self.linux_wx_passed && self.wx_ranges == 0 && self.region_mismatches == 0 && self.bad_regions == 0
    }
}

/// [`run`] without the dump and Linux's W+X check, for a caller that prints
/// those through the console engine (`ptdump hv`, `wx hv`): every region's
/// rights, hv's own W+X ranges, and the verdict line, which counts the
/// engine's W+X verdict (`linux_wx_passed`) too.
pub fn check_regions<F: DumpFormat + ?Sized>(
    out: &mut dyn Write,
    tables: &Tables<'_, F>,
    regions: &[Region<'_>],
    linux_wx_passed: bool,
) -> Result<RegionReport, fmt::Error> {
    let mut report = RegionReport {
        linux_wx_passed,
        ..RegionReport::default()
    };
    if regions.len() > MAX_REGIONS {
        writeln!(
            out,
            "hv: self-check: {} regions given, only {MAX_REGIONS} fit: the rest are not checked",
            regions.len()
        )?;
        report.bad_regions += (regions.len() - MAX_REGIONS) as u64;
    }
    for region in regions.iter().take(MAX_REGIONS) {
        match check_region(out, tables, region)? {
            RegionResult::Ok => {}
            RegionResult::Mismatch => report.region_mismatches += 1,
            RegionResult::Invalid => report.bad_regions += 1,
        }
    }
    report.wx_ranges = print_wx_ranges(out, tables, regions)?;
    if report.boot_may_proceed() {
        writeln!(
            out,
            "hv: self-check passed: {} regions mapped as intended, no W+X pages",
            regions.len()
        )?;
    } else {
        writeln!(
            out,
            "hv: self-check FAILED: Linux's W+X check {}, {} W+X ranges, {} regions mapped wrongly, {} bad regions",
            if linux_wx_passed { "passed" } else { "FAILED" },
            report.wx_ranges,
            report.region_mismatches,
            report.bad_regions
        )?;
    }
    Ok(report)
}

/// A marker naming the tables at the start of the range (ptdump prints the
/// first marker before the first line, wherever it points), then one for
/// every mapped region, sorted by address. Guard pages get none: they show as
/// holes under the region they guard.
fn sorted_markers<'a>(title: &'a str, start: u64, regions: &[Region<'a>]) -> ([Marker<'a>; MAX_REGIONS + 1], usize) {
    let mut markers = [Marker::new(start, title); MAX_REGIONS + 1];
    let mut count = 1;
    for region in regions.iter().take(MAX_REGIONS) {
        if region.expect == Expect::Unmapped {
            continue;
        }
        // Insertion sort: a handful of regions; keeps the first of equal addresses first.
        let mut at = count;
        while at > 1 && markers[at - 1].addr > region.start {
            markers[at] = markers[at - 1];
            at -= 1;
        }
        markers[at] = Marker::new(region.start, region.name);
        count += 1;
    }
    (markers, count)
}

enum RegionResult {
    Ok,
    Mismatch,
    Invalid,
}

/// Most mismatching ranges printed per region.
const MISMATCH_LINES: u32 = 4;

/// What a piece of a region turned out to be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Found {
    Mapped(Access),
    Unmapped,
    Bad(pagewalk::BadReason),
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Mapped(a) => write_rights(f, *a),
            Found::Unmapped => f.write_str("unmapped"),
            Found::Bad(reason) => write!(f, "a bad entry ({reason})"),
        }
    }
}

/// Walks one region and reports each maximal range whose rights differ from the expectation.
struct RegionChecker<'o> {
    out: &'o mut dyn Write,
    name: &'o str,
    expect: Expect,
    /// The wrong range being extended: start, end, what it is.
    pending: Option<(u64, u64, Found)>,
    mismatches: u32,
    error: Option<fmt::Error>,
}

impl RegionChecker<'_> {
    fn piece(&mut self, addr: u64, size: u64, found: Found) -> Flow {
        let end = addr.wrapping_add(size);
        let ok = match found {
            Found::Mapped(a) => self.expect.access() == Some(a),
            Found::Unmapped => self.expect == Expect::Unmapped,
            Found::Bad(_) => false,
        };
        match self.pending {
            Some((_, ref mut last_end, kind)) if !ok && kind == found && *last_end == addr => {
                *last_end = end;
                return Flow::Continue;
            }
            _ => self.flush(),
        }
        if !ok {
            self.pending = Some((addr, end, found));
        }
        if self.error.is_some() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    fn flush(&mut self) {
        let Some((start, end, found)) = self.pending.take() else {
            return;
        };
        self.mismatches += 1;
        if self.mismatches <= MISMATCH_LINES && self.error.is_none() {
            if let Err(e) = writeln!(
                self.out,
                "hv: self-check: '{}' should be {} but {start:#018x}-{end:#018x} is {found}",
                self.name, self.expect
            ) {
                self.error = Some(e);
            }
        }
    }
}

impl Visitor for RegionChecker<'_> {
    fn leaf(&mut self, leaf: &Leaf) -> Flow {
        self.piece(leaf.addr, leaf.size, Found::Mapped(checked(leaf.access)))
    }
    fn hole(&mut self, hole: &Hole) -> Flow {
        self.piece(hole.addr, hole.size, Found::Unmapped)
    }
    fn bad(&mut self, bad: &BadEntry) -> Flow {
        self.piece(bad.addr, bad.size, Found::Bad(bad.reason))
    }
}

fn check_region<F: DumpFormat + ?Sized>(
    out: &mut dyn Write,
    tables: &Tables<'_, F>,
    region: &Region<'_>,
) -> Result<RegionResult, fmt::Error> {
    let Some(range) = region.range().filter(|_| region.end > region.start) else {
        writeln!(
            out,
            "hv: self-check: region '{}' {:#x}-{:#x} is empty or inverted",
            region.name, region.start, region.end
        )?;
        return Ok(RegionResult::Invalid);
    };
    let Some(range) = range.intersect(&tables.range).filter(|r| *r == range) else {
        writeln!(
            out,
            "hv: self-check: region '{}' {:#x}-{:#x} lies outside the checked range",
            region.name, region.start, region.end
        )?;
        return Ok(RegionResult::Invalid);
    };
    let mut checker = RegionChecker {
        out: &mut *out,
        name: region.name,
        expect: region.expect,
        pending: None,
        mismatches: 0,
        error: None,
    };
    walk(tables.format, tables.mem, tables.root, range, &mut checker);
    checker.flush();
    if let Some(e) = checker.error {
        return Err(e);
    }
    let mismatches = checker.mismatches;
    if mismatches > MISMATCH_LINES {
        writeln!(
            out,
            "hv: self-check: '{}': {} more wrong ranges not shown",
            region.name,
            mismatches - MISMATCH_LINES
        )?;
    }
    Ok(if mismatches == 0 {
        RegionResult::Ok
    } else {
        RegionResult::Mismatch
    })
}

/// Collects maximal contiguous W+X ranges (effective rights, folded across levels).
struct WxRanges {
    current: Option<(u64, u64)>,
    found: [(u64, u64); 8],
    count: usize,
    total: u64,
}

impl WxRanges {
    fn close(&mut self) {
        if let Some(range) = self.current.take() {
            if self.count < self.found.len() {
                self.found[self.count] = range;
                self.count += 1;
            }
            self.total += 1;
        }
    }
}

impl Visitor for WxRanges {
    fn leaf(&mut self, leaf: &Leaf) -> Flow {
        if leaf.access.contains(Access::WRITE.union(Access::EXEC_PRIV)) {
            let end = leaf.addr.wrapping_add(leaf.size);
            match &mut self.current {
                Some((_, last_end)) if *last_end == leaf.addr => *last_end = end,
                _ => {
                    self.close();
                    self.current = Some((leaf.addr, end));
                }
            }
        } else {
            self.close();
        }
        Flow::Continue
    }
    fn hole(&mut self, _hole: &Hole) -> Flow {
        self.close();
        Flow::Continue
    }
    fn bad(&mut self, _bad: &BadEntry) -> Flow {
        self.close();
        Flow::Continue
    }
}

/// Prints each W+X range with the region it falls in; returns how many there are.
fn print_wx_ranges<F: DumpFormat + ?Sized>(
    out: &mut dyn Write,
    tables: &Tables<'_, F>,
    regions: &[Region<'_>],
) -> Result<u64, fmt::Error> {
    let mut ranges = WxRanges {
        current: None,
        found: [(0, 0); 8],
        count: 0,
        total: 0,
    };
    walk(tables.format, tables.mem, tables.root, tables.range, &mut ranges);
    ranges.close();
    for &(start, end) in &ranges.found[..ranges.count] {
        let owner = regions
            .iter()
            .find(|r| r.start <= start && start < r.end)
            .map_or("outside every hv region", |r| r.name);
        writeln!(
            out,
            "hv: W+X range {start:#018x}-{end:#018x} {} ({owner})",
            Size(end.wrapping_sub(start))
        )?;
    }
    if ranges.total > ranges.count as u64 {
        writeln!(
            out,
            "hv: ... and {} more W+X ranges",
            ranges.total - ranges.count as u64
        )?;
    }
    Ok(ranges.total)
}

/// A byte count the way ptdump prints sizes: the largest unit that divides it.
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [char; 6] = ['K', 'M', 'G', 'T', 'P', 'E'];
        if self.0 == 0 {
            // A range ending at 2^64 wraps to 0 bytes: the whole 64-bit space.
            return f.write_str("16E");
        }
        let mut value = self.0 >> 10;
        let mut unit = 0;
        if !self.0.is_multiple_of(1024) {
            return write!(f, "{}B", self.0);
        }
        while unit + 1 < UNITS.len() && value.is_multiple_of(1024) {
            value >>= 10;
            unit += 1;
        }
        write!(f, "{value}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    use mm::{Arena, TableBuilder};
    use pagewalk::arm64::{Half, Regime, Stage1};
    use pagewalk::{MapAttrs, MemType};

    use super::*;

    /// A stand-in dump/W+X backend so the self-check logic is tested on its own:
    /// one line per leaf and the W+X page count from the walker.
    struct Plain(Stage1);

    struct Lines<'o>(&'o mut dyn Write, &'o [Marker<'o>], usize);
    impl Visitor for Lines<'_> {
        fn leaf(&mut self, l: &Leaf) -> Flow {
            while self.2 < self.1.len() && self.1[self.2].addr <= l.addr {
                writeln!(self.0, "---[ {} ]---", self.1[self.2].name).unwrap();
                self.2 += 1;
            }
            writeln!(
                self.0,
                "{:#x} {} {}",
                l.addr,
                Size(l.size),
                Found::Mapped(checked(l.access))
            )
            .unwrap();
            Flow::Continue
        }
    }
    struct CountWx(u64);
    impl Visitor for CountWx {
        fn leaf(&mut self, l: &Leaf) -> Flow {
            if l.access.contains(Access::WRITE.union(Access::EXEC_PRIV)) {
                self.0 += l.size / 4096;
            }
            Flow::Continue
        }
    }

    impl Format for Plain {
        fn root_level(&self) -> pagewalk::Level {
            self.0.root_level()
        }
        fn root_entries(&self) -> usize {
            self.0.root_entries()
        }
        fn address_space(&self) -> pagewalk::AddressSpace {
            self.0.address_space()
        }
        fn decode(&self, level: pagewalk::Level, raw: u64) -> pagewalk::Decoded {
            self.0.decode(level, raw)
        }
        fn encode_table(&self, level: pagewalk::Level, next: u64) -> u64 {
            self.0.encode_table(level, next)
        }
        fn encode_leaf(
            &self,
            level: pagewalk::Level,
            out: u64,
            attrs: &MapAttrs,
        ) -> Result<u64, pagewalk::EncodeError> {
            self.0.encode_leaf(level, out, attrs)
        }
        fn leaf_allowed(&self, level: pagewalk::Level) -> bool {
            self.0.leaf_allowed(level)
        }
        fn split_leaf(&self, level: pagewalk::Level, raw: u64, index: u64) -> u64 {
            self.0.split_leaf(level, raw, index)
        }
    }

    impl DumpFormat for Plain {
        fn dump(&self, out: &mut dyn Write, span: TableSpan<'_>, markers: &[Marker<'_>]) -> fmt::Result {
            walk(self, span.mem, span.root, span.range, &mut Lines(out, markers, 0));
            Ok(())
        }
        fn check_wx(&self, out: &mut dyn Write, span: TableSpan<'_>) -> Result<WxReport, fmt::Error> {
            let mut count = CountWx(0);
            walk(self, span.mem, span.root, span.range, &mut count);
            writeln!(out, "W+X pages: {}", count.0)?;
            Ok(WxReport {
                wx_pages: count.0,
                ..WxReport::default()
            })
        }
    }

    const RX: Access = Access::READ.union(Access::EXEC_PRIV);
    const RO: Access = Access::READ;
    const RW: Access = Access::READ.union(Access::WRITE);
    const RWX: Access = RW.union(Access::EXEC_PRIV);

    /// hv-like layout: text, rodata, a guard page, a stack, a device page.
    fn build(extra_wx: bool) -> (Plain, Arena, u64) {
        let format = Plain(Stage1::new(39, Half::Lower, Regime::El2).unwrap());
        let mut arena = Arena::new(0x8000_0000, 64 * 4096);
        let builder = TableBuilder::new(&format, &mut arena).unwrap();
        let normal = |a| MapAttrs::new(a, MemType::Normal);
        builder
            .map(&mut arena, 0x4020_0000, 0x4020_0000, 0x2000, &normal(RX))
            .unwrap();
        builder
            .map(&mut arena, 0x4020_2000, 0x4020_2000, 0x1000, &normal(RO))
            .unwrap();
        // 0x4020_3000 is the guard page.
        builder
            .map(&mut arena, 0x4020_4000, 0x4020_4000, 0x4000, &normal(RW))
            .unwrap();
        builder
            .map(
                &mut arena,
                0x0900_0000,
                0x0900_0000,
                0x1000,
                &MapAttrs::new(RW, MemType::Device),
            )
            .unwrap();
        if extra_wx {
            builder
                .map(&mut arena, 0x4020_8000, 0x4020_8000, 0x2000, &normal(RWX))
                .unwrap();
        }
        let root = builder.root().0;
        (format, arena, root)
    }

    fn regions() -> Vec<Region<'static>> {
        std::vec![
            Region::new("hv stacks", 0x4020_4000, 0x4020_8000, Expect::ReadWrite),
            Region::new("hv text", 0x4020_0000, 0x4020_2000, Expect::ReadExec),
            Region::new("guard", 0x4020_3000, 0x4020_4000, Expect::Unmapped),
            Region::new("hv rodata", 0x4020_2000, 0x4020_3000, Expect::ReadOnly),
            Region::new("PL011", 0x0900_0000, 0x0900_1000, Expect::ReadWrite),
        ]
    }

    fn run_on(format: &Plain, arena: &Arena, root: u64, regions: &[Region<'_>]) -> (Report, String) {
        let mut out = String::new();
        let tables = Tables {
            title: "test",
            format,
            mem: arena,
            root,
            range: AddrRange::new(0, Some(1 << 39)).unwrap(),
        };
        let report = run(&mut out, &tables, regions).unwrap();
        (report, out)
    }

    #[test]
    fn clean_tables_pass_with_sorted_markers() {
        let (format, arena, root) = build(false);
        let (report, out) = run_on(&format, &arena, root, &regions());
        assert!(report.boot_may_proceed(), "{out}");
        assert_eq!(report, Report::default());
        let marker_order: Vec<_> = out.lines().filter(|l| l.starts_with("---[")).collect();
        assert_eq!(
            marker_order,
            [
                "---[ test ]---",
                "---[ PL011 ]---",
                "---[ hv text ]---",
                "---[ hv rodata ]---",
                "---[ hv stacks ]---",
                "---[ end of test page tables ]---"
            ]
        );
        assert!(
            out.contains("hv: self-check passed: 5 regions mapped as intended, no W+X pages"),
            "{out}"
        );
        assert!(out.starts_with("hv: self-check: test page tables, root 0x80000000, 39-bit input"));
    }

    #[test]
    fn wx_page_refuses_boot_and_names_its_range() {
        let (format, arena, root) = build(true);
        let mut regions = regions();
        regions.push(Region::new(
            "selftest W+X page",
            0x4020_8000,
            0x4020_a000,
            Expect::ReadWrite,
        ));
        let (report, out) = run_on(&format, &arena, root, &regions);
        assert!(!report.boot_may_proceed());
        assert_eq!(report.wx.wx_pages, 2);
        assert_eq!(report.wx_ranges, 1);
        // The region expected RW, so the region check flags it too.
        assert_eq!(report.region_mismatches, 1);
        assert!(
            out.contains("hv: W+X range 0x0000000040208000-0x000000004020a000 8K (selftest W+X page)"),
            "{out}"
        );
        assert!(
            out.contains(
                "hv: self-check: 'selftest W+X page' should be RW- but 0x0000000040208000-0x000000004020a000 is RWX"
            ),
            "{out}"
        );
        assert!(
            out.contains("hv: self-check FAILED: 2 W+X pages, 1 W+X ranges, 1 regions mapped wrongly"),
            "{out}"
        );
    }

    #[test]
    fn wrong_rights_and_missing_guard_are_caught() {
        let (format, arena, root) = build(false);
        let regions = [
            // rodata claimed as code, a guard over mapped memory, an unmapped "heap".
            Region::new("hv rodata", 0x4020_2000, 0x4020_3000, Expect::ReadExec),
            Region::new("guard", 0x4020_4000, 0x4020_5000, Expect::Unmapped),
            Region::new("hv heap", 0x4030_0000, 0x4030_2000, Expect::ReadWrite),
        ];
        let (report, out) = run_on(&format, &arena, root, &regions);
        assert!(!report.boot_may_proceed());
        assert_eq!(report.region_mismatches, 3, "{out}");
        assert_eq!(report.wx_ranges, 0);
        assert!(
            out.contains("'hv rodata' should be R-X but 0x0000000040202000-0x0000000040203000 is R--"),
            "{out}"
        );
        assert!(
            out.contains("'guard' should be unmapped but 0x0000000040204000-0x0000000040205000 is RW-"),
            "{out}"
        );
        assert!(
            out.contains("'hv heap' should be RW- but 0x0000000040300000-0x0000000040302000 is unmapped"),
            "{out}"
        );
    }

    #[test]
    fn empty_and_out_of_range_regions_are_refused() {
        let (format, arena, root) = build(false);
        let regions = [
            Region::new("empty", 0x4020_0000, 0x4020_0000, Expect::ReadExec),
            Region::new("beyond", 1 << 40, (1 << 40) + 4096, Expect::ReadWrite),
        ];
        let (report, out) = run_on(&format, &arena, root, &regions);
        assert_eq!(report.bad_regions, 2, "{out}");
        assert!(!report.boot_may_proceed());
        assert!(
            out.contains("region 'empty' 0x40200000-0x40200000 is empty or inverted"),
            "{out}"
        );
        assert!(
            out.contains("region 'beyond' 0x10000000000-0x10000001000 lies outside the checked range"),
            "{out}"
        );
    }

    #[test]
    fn sizes_print_like_ptdump() {
        let text = |n| std::format!("{}", Size(n));
        assert_eq!(text(4096), "4K");
        assert_eq!(text(2 << 20), "2M");
        assert_eq!(text(3 << 30), "3G");
        assert_eq!(text(1 << 40), "1T");
        assert_eq!(text(1536), "1536B");
        assert_eq!(text(0), "16E");
    }
}
