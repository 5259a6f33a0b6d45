//! The guest's second-stage tables (arm64 stage-2, AMD NPT, Intel EPT): an
//! identity map (IPA/GPA = PA) of guest RAM and the devices the guest may
//! reach, and the isolation audit that proves, with the walker, that no entry
//! of the finished tables reaches memory hv owns.

use alloc::vec::Vec;
use core::fmt;

use mm::{FrameAllocator, MapError, TableBuilder};
use pagewalk::{
    walk, Access, AddrRange, BadEntry, BadReason, Flow, Format, Leaf, Level, MapAttrs, MemType, TableMemory,
    TableMemoryMut, TableVisit, Visitor, PAGE_SIZE,
};

use super::{MemRange, Named};

/// Guest RAM: Normal memory, read/write/execute at every guest level.
pub const RAM_ATTRS: MapAttrs = MapAttrs::new(Access::ALL, MemType::Normal);
/// Guest devices: Device memory, read/write, never executable.
pub const DEVICE_ATTRS: MapAttrs =
    MapAttrs::new(Access::READ.union(Access::WRITE).union(Access::USER), MemType::Device);

/// Why the identity map was not built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage2Error<'a> {
    /// A range handed in for the guest intersects a range hv owns: refused
    /// before anything is mapped.
    WouldMapHv {
        what: &'a str,
        range: MemRange,
        owner: &'a str,
        owned: MemRange,
    },
    /// The table builder refused a range.
    Map {
        what: &'a str,
        range: MemRange,
        error: MapError,
    },
}

impl fmt::Display for Stage2Error<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage2Error::WouldMapHv {
                what,
                range,
                owner,
                owned,
            } => write!(
                f,
                "refusing to map {what} [{range}] for the guest: it overlaps {owner} [{owned}]"
            ),
            Stage2Error::Map { what, range, error } => write!(f, "mapping {what} [{range}] failed: {error}"),
        }
    }
}

/// Builds an identity map of `ram` (Normal, RWX) and `devices` (Device, RW,
/// no execute) in `format`, with tables from `space`. Nothing is mapped if
/// any range touches `hv_owned`. Returns the builder (its `root()` goes to
/// VTTBR_EL2 / the VMCB's N_CR3 / the EPTP).
pub fn build_identity<'f, 'a, F, S>(
    format: &'f F,
    space: &mut S,
    ram: &[MemRange],
    devices: &[Named<'a>],
    hv_owned: &[Named<'a>],
) -> Result<TableBuilder<'f, F>, Stage2Error<'a>>
where
    F: Format + ?Sized,
    S: TableMemoryMut + FrameAllocator,
{
    let ram_named = ram.iter().map(|r| Named::new("guest RAM", *r));
    let all: Vec<(Named<'a>, &MapAttrs)> = ram_named
        .map(|n| (n, &RAM_ATTRS))
        .chain(devices.iter().map(|d| (*d, &DEVICE_ATTRS)))
        .collect();
    for (item, _) in &all {
        if let Some(owner) = hv_owned.iter().find(|o| o.range.overlaps(&item.range)) {
            return Err(Stage2Error::WouldMapHv {
                what: item.name,
                range: item.range,
                owner: owner.name,
                owned: owner.range,
            });
        }
    }
    let map_error = |item: &Named<'a>, error| Stage2Error::Map {
        what: item.name,
        range: item.range,
        error,
    };
    let builder = TableBuilder::new(format, space).map_err(|e| Stage2Error::Map {
        what: "stage-2 root",
        range: MemRange::default(),
        error: e,
    })?;
    for (item, attrs) in &all {
        let r = item.range;
        builder
            .map(space, r.start, r.start, r.len(), attrs)
            .map_err(|e| map_error(item, e))?;
    }
    Ok(builder)
}

/// Owner name the audit gives the pages of the walked tables themselves.
pub const TABLES_OWNER: &str = "stage-2 tables";
/// Violations the report keeps verbatim; the rest are only counted.
pub const MAX_LISTED: usize = 64;

/// One thing wrong with a stage-2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation<'a> {
    /// Guest addresses `ipa` reach `pa`, which `owner` (of hv) holds.
    MapsOwned {
        ipa: MemRange,
        pa: MemRange,
        owner: &'a str,
    },
    /// An entry the walker refused to follow.
    BadEntry {
        ipa: MemRange,
        level: Level,
        raw: u64,
        reason: BadReason,
    },
}

impl fmt::Display for Violation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::MapsOwned { ipa, pa, owner } => {
                write!(f, "IPA {ipa} -> PA {pa} maps {owner}")
            }
            Violation::BadEntry {
                ipa,
                level,
                raw,
                reason,
            } => {
                write!(f, "bad entry for IPA {ipa} at level {level} ({raw:#018x}): {reason}")
            }
        }
    }
}

/// What the audit found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport<'a> {
    pub leaves: u64,
    pub mapped_bytes: u64,
    pub tables: u64,
    /// The first [`MAX_LISTED`] violations (adjacent pieces merged).
    pub violations: Vec<Violation<'a>>,
    /// Violations found beyond those listed.
    pub unlisted: u64,
}

impl AuditReport<'_> {
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.unlisted == 0
    }
    pub fn violation_count(&self) -> u64 {
        self.violations.len() as u64 + self.unlisted
    }
}

struct Mapped(u64);

impl fmt::Display for Mapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1 << 20) {
            write!(f, "{} MiB", self.0 >> 20)
        } else {
            write!(f, "{} KiB", self.0 >> 10)
        }
    }
}

/// The verdict line, then one line per listed violation.
impl fmt::Display for AuditReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (leaves, mapped) = (self.leaves, Mapped(self.mapped_bytes));
        if self.passed() {
            return writeln!(
                f,
                "hv: stage-2 isolation audit: passed, no stage-2 entry maps memory hv owns ({leaves} leaves, {mapped} mapped)"
            );
        }
        writeln!(
            f,
            "hv: stage-2 isolation audit: FAILED, {} violation(s) ({leaves} leaves, {mapped} mapped)",
            self.violation_count()
        )?;
        for v in &self.violations {
            writeln!(f, "hv: stage-2 isolation audit:   {v}")?;
        }
        if self.unlisted > 0 {
            writeln!(f, "hv: stage-2 isolation audit:   ... and {} more", self.unlisted)?;
        }
        Ok(())
    }
}

/// Collects the pages every walked table occupies.
struct TablePages {
    root: u64,
    root_bytes: u64,
    pages: Vec<MemRange>,
}

impl Visitor for TablePages {
    fn leaf(&mut self, _: &Leaf) -> Flow {
        Flow::Continue
    }
    fn table_enter(&mut self, t: &TableVisit) -> Flow {
        let bytes = if t.table == self.root {
            self.root_bytes
        } else {
            PAGE_SIZE
        };
        self.pages.extend(MemRange::from_len(t.table, bytes));
        Flow::Continue
    }
}

struct Checker<'o, 'a> {
    owned: &'o [Named<'a>],
    report: AuditReport<'a>,
}

impl<'a> Checker<'_, 'a> {
    fn record(&mut self, v: Violation<'a>) {
        // Merge with the previous violation when it simply continues it.
        if let (
            Some(Violation::MapsOwned { ipa, pa, owner }),
            Violation::MapsOwned {
                ipa: next_ipa,
                pa: next_pa,
                owner: next_owner,
            },
        ) = (self.report.violations.last_mut(), v)
        {
            if *owner == next_owner && ipa.end == next_ipa.start && pa.end == next_pa.start {
                ipa.end = next_ipa.end;
                pa.end = next_pa.end;
                return;
            }
        }
        if self.report.violations.len() < MAX_LISTED {
            self.report.violations.push(v);
        } else {
            self.report.unlisted += 1;
        }
    }
}

impl Visitor for Checker<'_, '_> {
    fn leaf(&mut self, leaf: &Leaf) -> Flow {
        self.report.leaves += 1;
        self.report.mapped_bytes += leaf.size;
        let Some(out) = MemRange::from_len(leaf.out, leaf.size) else {
            return Flow::Continue;
        };
        for owned in self.owned {
            if let Some(hit) = out.intersect(&owned.range) {
                let ipa_start = leaf.addr + (hit.start - leaf.out);
                let ipa = MemRange::from_len(ipa_start, hit.len()).unwrap_or_default();
                self.record(Violation::MapsOwned {
                    ipa,
                    pa: hit,
                    owner: owned.name,
                });
            }
        }
        Flow::Continue
    }
    fn bad(&mut self, bad: &BadEntry) -> Flow {
        self.record(Violation::BadEntry {
            ipa: MemRange::from_len(bad.addr, bad.size).unwrap_or_default(),
            level: bad.level,
            raw: bad.raw,
            reason: bad.reason,
        });
        Flow::Continue
    }
}

/// Walks the whole stage-2 rooted at `root` and checks that no leaf's output
/// range intersects `hv_owned` or the pages of the stage-2 tables themselves,
/// and that no entry is malformed.
pub fn audit<'a, F, M>(format: &F, mem: &M, root: u64, hv_owned: &[Named<'a>]) -> AuditReport<'a>
where
    F: Format + ?Sized,
    M: TableMemory + ?Sized,
{
    let root_bytes = (format.root_entries() as u64 * 8).next_multiple_of(PAGE_SIZE);
    let mut tables = TablePages {
        root,
        root_bytes,
        pages: Vec::new(),
    };
    let summary = walk(format, mem, root, AddrRange::ALL, &mut tables);

    let mut owned: Vec<Named<'a>> = hv_owned.to_vec();
    tables.pages.sort_unstable();
    // A subtree linked twice is entered twice.
    tables.pages.dedup();
    for page in tables.pages {
        match owned.last_mut() {
            Some(last) if last.name == TABLES_OWNER && last.range.end == page.start => last.range.end = page.end,
            _ => owned.push(Named::new(TABLES_OWNER, page)),
        }
    }
    let mut checker = Checker {
        owned: &owned,
        report: AuditReport {
            leaves: 0,
            mapped_bytes: 0,
            tables: summary.tables,
            violations: Vec::new(),
            unlisted: 0,
        },
    };
    walk(format, mem, root, AddrRange::ALL, &mut checker);
    checker.report
}

/// Runs [`audit`] and prints its report to `out`.
pub fn audit_and_print<'a, F, M>(
    out: &mut dyn fmt::Write,
    format: &F,
    mem: &M,
    root: u64,
    hv_owned: &[Named<'a>],
) -> Result<AuditReport<'a>, fmt::Error>
where
    F: Format + ?Sized,
    M: TableMemory + ?Sized,
{
    let report = audit(format, mem, root, hv_owned);
    write!(out, "{report}")?;
    Ok(report)
}
