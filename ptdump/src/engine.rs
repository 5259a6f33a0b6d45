//! The one dumper: Linux's `note_page` state machine fed by `pagewalk::walk`,
//! plus the per-format style that decides what a line shows.

use core::fmt::{self, Write};

use pagewalk::{
    arm64 as a64, ept as e, walk_with, x86 as x, Access, AddrRange, BadEntry, BadReason, Flow, Format, Hole, Leaf,
    Level, TableMemory, Visitor, WalkLimits, WalkSummary,
};

use crate::{DumpStats, LineCap, Marker, WxReport};

const PAGE_SIZE: u128 = 4096;

/// How one family of tables is displayed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Flavor {
    /// arm64 stage-1: `PGD`.. names, Linux's flag columns, memory type from MAIR.
    Arm64 { mair: u64, el2: bool },
    /// KVM stage-2: level number, `F R W X AF BLK`.
    Stage2,
    /// x86 and NPT: flag columns first, then `pgd`.. names.
    X86,
    /// EPT: level number, `R W X [UX] <memtype> IPAT BLK`.
    Ept { mode_based_exec: bool },
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Style {
    pub flavor: Flavor,
    pub root: Level,
}

const ARM64_NAMES: [&str; 5] = ["PGD", "P4D", "PUD", "PMD", "PTE"];
const X86_NAMES: [&str; 5] = ["pgd", "p4d", "pud", "pmd", "pte"];

/// arm64 descriptor bits Linux's `pte_bits` table displays.
const ARM64_SHOWN: u64 = 1 // valid
    | a64::AP_USER
    | a64::AP_RDONLY
    | a64::SH_INNER
    | a64::AF
    | a64::NG
    | a64::CONT
    | 2 // table/page bit: blank, or BLK when clear
    | a64::UXN
    | a64::GP
    | a64::PXN
    | a64::ATTR_INDX_MASK;
/// Stage-2 bits KVM's `stage2_pte_bits` displays (bit 54: XN without FEAT_XNX).
const STAGE2_SHOWN: u64 = 1 | a64::S2AP_R | a64::S2AP_W | (1 << 54) | a64::AF | 2;
const X86_SHOWN: u64 = x::PRESENT | x::USER | x::RW | x::PWT | x::PCD | x::PSE | x::GLOBAL | x::NX;
const EPT_SHOWN: u64 = e::READ | e::WRITE | e::EXEC | e::MEMTYPE_MASK | e::IGNORE_PAT | e::LARGE;

impl Style {
    /// Units Linux prints sizes in: arm64 starts at KiB, x86 at bytes.
    fn kib_based(&self) -> bool {
        matches!(self.flavor, Flavor::Arm64 { .. } | Flavor::Stage2)
    }

    /// Linux names the root level `pgd` whatever its depth, the others from the bottom.
    fn linux_name_index(&self, level: Level) -> usize {
        if level == self.root {
            return 0;
        }
        match level.0 {
            i8::MIN..=0 => 1,
            1 => 2,
            2 => 3,
            _ => 4,
        }
    }

    /// The bits of a leaf that its line displays (what must match to merge).
    fn leaf_key(&self, leaf: &Leaf) -> u64 {
        match self.flavor {
            Flavor::Arm64 { el2: false, .. } => leaf.raw & ARM64_SHOWN,
            Flavor::Arm64 { el2: true, .. } => {
                // One privilege level: no USR, and bit 54 is XN, shown in the NX column.
                let nx = if leaf.access.contains(Access::EXEC_PRIV) {
                    0
                } else {
                    a64::PXN
                };
                (leaf.raw & ARM64_SHOWN & !(a64::AP_USER | a64::UXN | a64::PXN)) | nx
            }
            Flavor::Stage2 => leaf.raw & STAGE2_SHOWN,
            Flavor::X86 => {
                let pat = if (1..=2).contains(&leaf.level.0) {
                    x::PAT_LARGE
                } else {
                    0
                };
                leaf.raw & (X86_SHOWN | pat)
            }
            Flavor::Ept { mode_based_exec } => {
                let user_exec = if mode_based_exec { e::USER_EXEC } else { 0 };
                leaf.raw & (EPT_SHOWN | user_exec)
            }
        }
    }

    /// Linux shows the bits of a non-present arm64 entry that is not zero (`F`...).
    fn hole_key(&self, hole: &Hole) -> u64 {
        match self.flavor {
            Flavor::Arm64 { el2: false, .. } => hole.raw & ARM64_SHOWN,
            Flavor::Arm64 { el2: true, .. } => hole.raw & ARM64_SHOWN & !(a64::AP_USER | a64::UXN | a64::PXN),
            Flavor::Stage2 => hole.raw & STAGE2_SHOWN,
            Flavor::X86 | Flavor::Ept { .. } => 0,
        }
    }

    fn write_range(&self, w: &mut dyn Write, start: u64, end: u128) -> fmt::Result {
        // The end of a range reaching the top of the space prints as 0, as in Linux.
        write!(w, "0x{:016x}-0x{:016x}   ", start, end as u64)?;
        let (count, unit) = scaled_size(end - start as u128, self.kib_based());
        write!(w, "{count:>9}{unit} ")
    }

    fn write_level(&self, w: &mut dyn Write, level: Level) -> fmt::Result {
        match self.flavor {
            Flavor::Arm64 { .. } => w.write_str(ARM64_NAMES[self.linux_name_index(level)]),
            Flavor::X86 => w.write_str(X86_NAMES[self.linux_name_index(level)]),
            Flavor::Stage2 | Flavor::Ept { .. } => write!(w, "{}", level.0),
        }
    }

    /// One mapping or hole line, without the newline.
    fn write_entry(&self, w: &mut dyn Write, level: Level, key: u64, present: bool) -> fmt::Result {
        match self.flavor {
            Flavor::Arm64 { mair, .. } => {
                self.write_level(w, level)?;
                if key != 0 {
                    write_arm64_flags(w, key, mair)?;
                }
                Ok(())
            }
            Flavor::Stage2 => {
                self.write_level(w, level)?;
                if key != 0 {
                    write_stage2_flags(w, key)?;
                }
                Ok(())
            }
            Flavor::X86 => {
                write_x86_flags(w, key, level)?;
                self.write_level(w, level)
            }
            Flavor::Ept { mode_based_exec } => {
                self.write_level(w, level)?;
                if present {
                    write_ept_flags(w, key, mode_based_exec)?;
                }
                Ok(())
            }
        }
    }
}

/// Linux's `while (!(delta & 1023) && unit[1])` size scaling.
fn scaled_size(bytes: u128, kib_based: bool) -> (u128, char) {
    let units: &[u8] = if kib_based { b"KMGTPE" } else { b"BKMGTPE" };
    let mut count = if kib_based { bytes >> 10 } else { bytes };
    let mut unit = 0;
    while count & 1023 == 0 && unit + 1 < units.len() {
        count >>= 10;
        unit += 1;
    }
    (count, units[unit] as char)
}

fn pick(key: u64, mask: u64, val: u64, set: &'static str, clear: &'static str) -> &'static str {
    if key & mask == val {
        set
    } else {
        clear
    }
}

/// arm64's `pte_bits`, each column written as `" %s"`.
fn write_arm64_flags(w: &mut dyn Write, key: u64, mair: u64) -> fmt::Result {
    let columns = [
        pick(key, 1, 1, " ", "F"),
        pick(key, a64::AP_USER, a64::AP_USER, "USR", "   "),
        pick(key, a64::AP_RDONLY, a64::AP_RDONLY, "ro", "RW"),
        pick(key, a64::PXN, a64::PXN, "NX", "x "),
        pick(key, a64::SH_INNER, a64::SH_INNER, "SHD", "   "),
        pick(key, a64::AF, a64::AF, "AF", "  "),
        pick(key, a64::NG, a64::NG, "NG", "  "),
        pick(key, a64::CONT, a64::CONT, "CON", "   "),
        pick(key, 2, 2, "   ", "BLK"),
        pick(key, a64::UXN, a64::UXN, "UXN", "   "),
        pick(key, a64::GP, a64::GP, "GP", "  "),
    ];
    for column in columns {
        write!(w, " {column}")?;
    }
    let index = (key & a64::ATTR_INDX_MASK) >> a64::ATTR_INDX_SHIFT;
    let attr = (mair >> (index * 8)) as u8;
    match attr {
        a64::MAIR_DEVICE_NGNRNE => w.write_str(" DEVICE/nGnRnE"),
        a64::MAIR_DEVICE_NGNRE => w.write_str(" DEVICE/nGnRE"),
        a64::MAIR_NORMAL_NC => w.write_str(" MEM/NORMAL-NC"),
        a64::MAIR_NORMAL_WB => w.write_str(" MEM/NORMAL"),
        a64::MAIR_NORMAL_TAGGED => w.write_str(" MEM/NORMAL-TAGGED"),
        // Linux's MAIR has no other types; name the raw attribute rather than hide it.
        other => write!(w, " MAIR/0x{other:02x}"),
    }
}

/// KVM's `stage2_pte_bits`, each column written as `" %s"`.
fn write_stage2_flags(w: &mut dyn Write, key: u64) -> fmt::Result {
    let columns = [
        pick(key, 1, 1, " ", "F"),
        pick(key, a64::S2AP_R | 1, a64::S2AP_R | 1, "R", " "),
        pick(key, a64::S2AP_W | 1, a64::S2AP_W | 1, "W", " "),
        pick(key, (1 << 54) | 1, 1, "X", " "),
        pick(key, a64::AF | 1, a64::AF | 1, "AF", "  "),
        pick(key, 2 | 1, 1, "BLK", "   "),
    ];
    for column in columns {
        write!(w, " {column}")?;
    }
    Ok(())
}

/// x86's `printk_prot` columns (30 blanks for a non-present range).
fn write_x86_flags(w: &mut dyn Write, key: u64, level: Level) -> fmt::Result {
    if key & x::PRESENT == 0 {
        return w.write_str("                              ");
    }
    let pat = if level.is_page() {
        key & x::PAT_4K != 0
    } else {
        key & x::PAT_LARGE != 0
    };
    let columns = [
        if key & x::USER != 0 { "USR " } else { "    " },
        if key & x::RW != 0 { "RW " } else { "ro " },
        if key & x::PWT != 0 { "PWT " } else { "    " },
        if key & x::PCD != 0 { "PCD " } else { "    " },
        if !level.is_page() && key & x::PSE != 0 {
            "PSE "
        } else {
            "    "
        },
        if pat { "PAT " } else { "    " },
        if key & x::GLOBAL != 0 { "GLB " } else { "    " },
        if key & x::NX != 0 { "NX " } else { "x  " },
    ];
    for column in columns {
        w.write_str(column)?;
    }
    Ok(())
}

/// EPT columns: `R W X [UX] <memtype> IPAT BLK`.
fn write_ept_flags(w: &mut dyn Write, key: u64, mode_based_exec: bool) -> fmt::Result {
    w.write_str(pick(key, e::READ, e::READ, " R", "  "))?;
    w.write_str(pick(key, e::WRITE, e::WRITE, " W", "  "))?;
    w.write_str(pick(key, e::EXEC, e::EXEC, " X", "  "))?;
    if mode_based_exec {
        w.write_str(pick(key, e::USER_EXEC, e::USER_EXEC, " UX", "   "))?;
    }
    let memtype = (key & e::MEMTYPE_MASK) >> e::MEMTYPE_SHIFT;
    match e::memtype_name(memtype) {
        Some(name) => write!(w, " {name}")?,
        None => write!(w, " MT{memtype}")?,
    }
    w.write_str(pick(key, e::IGNORE_PAT, e::IGNORE_PAT, " IPAT", "     "))?;
    w.write_str(pick(key, e::LARGE, e::LARGE, " BLK", "    "))
}

/// Forwards to `out` but drops blanks at the end of each line, so that a
/// line whose last columns are empty never ends in spaces.
pub(crate) struct TrimWriter<'a, W: Write + ?Sized> {
    out: &'a mut W,
    pending_blanks: usize,
}

impl<'a, W: Write + ?Sized> TrimWriter<'a, W> {
    pub(crate) fn new(out: &'a mut W) -> Self {
        TrimWriter { out, pending_blanks: 0 }
    }

    /// The writer underneath, for text whose blanks must stay (Linux's skip
    /// line ends in one). Only between lines: no blank is pending there.
    fn inner(&mut self) -> &mut W {
        debug_assert_eq!(self.pending_blanks, 0);
        self.out
    }

    fn emit_blanks(&mut self) -> fmt::Result {
        const BLANKS: &str = "                                ";
        while self.pending_blanks > 0 {
            let n = self.pending_blanks.min(BLANKS.len());
            self.out.write_str(&BLANKS[..n])?;
            self.pending_blanks -= n;
        }
        Ok(())
    }
}

impl<W: Write + ?Sized> Write for TrimWriter<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            match c {
                ' ' => {
                    let n = rest.find(|c| c != ' ').unwrap_or(rest.len());
                    self.pending_blanks += n;
                    rest = &rest[n..];
                }
                '\n' => {
                    self.pending_blanks = 0;
                    self.out.write_char('\n')?;
                    rest = &rest[1..];
                }
                _ => {
                    self.emit_blanks()?;
                    let n = rest.find([' ', '\n']).unwrap_or(rest.len());
                    self.out.write_str(&rest[..n])?;
                    rest = &rest[n..];
                }
            }
        }
        Ok(())
    }
}

/// Which architecture's W+X rules and messages apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WxArch {
    /// `check_uxn`: EL1&0 regime, where EL0-executable kernel memory is flagged too.
    Arm64 {
        check_uxn: bool,
    },
    X86,
}

impl WxArch {
    fn prefix(self) -> &'static str {
        match self {
            WxArch::Arm64 { .. } => "arm64/mm",
            WxArch::X86 => "x86/mm",
        }
    }
}

/// A W+X check riding on the dumper.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WxCheck {
    pub arch: WxArch,
    pub list_all: bool,
}

/// What the W+X check keeps between ranges: the counts and Linux's
/// `WARN_ONCE` "first message printed" flags.
#[derive(Clone, Copy, Debug, Default)]
struct WxState {
    report: WxReport,
    warned_wx: bool,
    warned_uxn: bool,
    warned_bad: bool,
}

/// What a range shows; equal values on adjacent ranges at one level merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum What {
    Hole { key: u64 },
    Leaf { key: u64, access: Access },
    Bad { reason: BadReason, raw: u64 },
}

#[derive(Clone, Copy, Debug)]
struct Run {
    start: u64,
    /// Exclusive; 2^64 for a range reaching the top of the space.
    end: u128,
    level: Level,
    what: What,
}

/// Everything Linux's `note_page` keeps from one report to the next. It owns
/// no borrowed data, so that one dump or check can be fed by several walks
/// over consecutive sub-ranges (each walk bounded on its own) and print
/// exactly what one walk over their union prints: the range being merged,
/// the section and its line cap, the W+X counts and flags all carry over.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Notes {
    style: Style,
    next_marker: usize,
    started: bool,
    /// End of the last range fed, for markers that sit at the very end.
    last_end: u128,
    run: Option<Run>,
    print_lines: bool,
    /// The line cap of the section being printed.
    cap: LineCap,
    wx: Option<(WxCheck, WxState)>,
    stats: DumpStats,
}

/// [`Notes`] at work during one walk, with the writer and markers it is lent.
struct Dumper<'a, 'm, W: Write + ?Sized> {
    out: TrimWriter<'a, W>,
    notes: &'a mut Notes,
    markers: &'a [Marker<'m>],
    write_failed: bool,
}

impl<W: Write + ?Sized> Dumper<'_, '_, W> {
    fn feed(&mut self, piece: Run) -> fmt::Result {
        if !self.notes.started {
            self.notes.started = true;
            if let Some(first) = self.markers.first() {
                self.print_marker(first)?;
                self.notes.next_marker = 1;
            }
        }
        let mut start = piece.start;
        while let Some(marker) = self.markers.get(self.notes.next_marker) {
            if u128::from(marker.addr) >= piece.end {
                break;
            }
            if marker.addr > start {
                self.merge(Run {
                    start,
                    end: u128::from(marker.addr),
                    ..piece
                })?;
                start = marker.addr;
            }
            self.flush()?;
            self.print_marker(marker)?;
            self.notes.next_marker += 1;
        }
        self.notes.last_end = piece.end;
        self.merge(Run { start, ..piece })
    }

    fn merge(&mut self, piece: Run) -> fmt::Result {
        if let Some(run) = &mut self.notes.run {
            let mergeable = !matches!(piece.what, What::Bad { .. });
            if mergeable && run.end == u128::from(piece.start) && run.level == piece.level && run.what == piece.what {
                run.end = piece.end;
                return Ok(());
            }
        }
        self.flush()?;
        self.notes.run = Some(piece);
        Ok(())
    }

    fn flush(&mut self) -> fmt::Result {
        let Some(run) = self.notes.run.take() else {
            return Ok(());
        };
        if self.notes.print_lines {
            let print = match run.what {
                // A diagnostic: never held back, and not counted against the cap.
                What::Bad { .. } => {
                    self.notes.cap.write_skipped(self.out.inner())?;
                    true
                }
                What::Hole { .. } | What::Leaf { .. } => self.notes.cap.admit(),
            };
            if print {
                self.write_line(&run)?;
                self.notes.stats.lines += 1;
            } else {
                self.notes.stats.skipped += 1;
            }
        }
        if self.notes.wx.is_some() {
            self.judge_wx(&run)?;
        }
        Ok(())
    }

    fn write_line(&mut self, run: &Run) -> fmt::Result {
        let style = self.notes.style;
        let w: &mut dyn Write = &mut self.out;
        style.write_range(w, run.start, run.end)?;
        match run.what {
            What::Hole { key } => style.write_entry(w, run.level, key, false)?,
            What::Leaf { key, .. } => style.write_entry(w, run.level, key, true)?,
            What::Bad { reason, raw } => {
                style.write_level(w, run.level)?;
                write!(w, " BAD {reason} raw=0x{raw:016x}")?;
            }
        }
        w.write_char('\n')
    }

    /// Ends the current section (its skip line, if it held lines back) and
    /// opens `marker`'s.
    fn print_marker(&mut self, marker: &Marker<'_>) -> fmt::Result {
        self.notes.cap.write_skipped(self.out.inner())?;
        self.notes.cap = LineCap::new(marker.max_lines());
        self.notes.stats.markers += 1;
        writeln!(self.out, "---[ {} ]---", marker.name)
    }

    /// Linux's `note_prot_uxn` / `note_prot_wx` (arm64) and `note_wx` (x86),
    /// on effective rights, for one finished range.
    fn judge_wx(&mut self, run: &Run) -> fmt::Result {
        let Some((check, mut state)) = self.notes.wx else {
            return Ok(());
        };
        let prefix = check.arch.prefix();
        let pages = ((run.end - u128::from(run.start)) / PAGE_SIZE) as u64;
        let addr = run.start;
        match run.what {
            What::Leaf { access, .. } => {
                if check.arch == (WxArch::Arm64 { check_uxn: true }) && access.contains(Access::EXEC_USER) {
                    state.report.non_uxn_pages += pages;
                    if check.list_all || !state.warned_uxn {
                        state.warned_uxn = true;
                        writeln!(
                            self.out,
                            "{prefix}: Found non-UXN mapping at address {addr:016x}/0x{addr:x}"
                        )?;
                        if check.list_all {
                            self.write_line(run)?;
                        }
                    }
                }
                if access.contains(Access::WRITE) && access.contains(Access::EXEC_PRIV) {
                    state.report.wx_pages += pages;
                    if check.list_all || !state.warned_wx {
                        state.warned_wx = true;
                        writeln!(
                            self.out,
                            "{prefix}: Found insecure W+X mapping at address {addr:016x}/0x{addr:x}"
                        )?;
                        if check.list_all {
                            self.write_line(run)?;
                        }
                    }
                }
            }
            What::Bad { reason, raw } => {
                if check.list_all || !state.warned_bad {
                    state.warned_bad = true;
                    writeln!(
                        self.out,
                        "{prefix}: Cannot check entry at address {addr:016x}/0x{addr:x}: {reason} raw=0x{raw:016x}"
                    )?;
                    if check.list_all {
                        self.write_line(run)?;
                    }
                }
            }
            What::Hole { .. } => {}
        }
        self.notes.wx = Some((check, state));
        Ok(())
    }

    /// After the last walk: the last line, the markers at the very end, the
    /// last section's skip line and (for a W+X check) Linux's verdict.
    fn finish(&mut self) -> fmt::Result {
        self.flush()?;
        if self.notes.started {
            while let Some(marker) = self.markers.get(self.notes.next_marker) {
                if u128::from(marker.addr) > self.notes.last_end {
                    break;
                }
                self.print_marker(marker)?;
                self.notes.next_marker += 1;
            }
            // The end of the dump ends the last section too (Linux, whose last
            // section is never capped, has nothing to say here).
            self.notes.cap.write_skipped(self.out.inner())?;
        }
        match self.notes.wx {
            Some((check, state)) => write_verdict(&mut self.out, check.arch, &state.report),
            None => Ok(()),
        }
    }

    fn step(&mut self, result: fmt::Result) -> Flow {
        match result {
            Ok(()) => Flow::Continue,
            Err(fmt::Error) => {
                self.write_failed = true;
                Flow::Stop
            }
        }
    }
}

fn piece(addr: u64, size: u64, level: Level, what: What) -> Run {
    Run {
        start: addr,
        end: u128::from(addr) + u128::from(size),
        level,
        what,
    }
}

impl<W: Write + ?Sized> Visitor for Dumper<'_, '_, W> {
    fn leaf(&mut self, leaf: &Leaf) -> Flow {
        self.notes.stats.leaves += 1;
        let what = What::Leaf {
            key: self.notes.style.leaf_key(leaf),
            access: leaf.access,
        };
        let result = self.feed(piece(leaf.addr, leaf.size, leaf.level, what));
        self.step(result)
    }

    fn hole(&mut self, hole: &Hole) -> Flow {
        self.notes.stats.holes += 1;
        let what = What::Hole {
            key: self.notes.style.hole_key(hole),
        };
        let result = self.feed(piece(hole.addr, hole.size, hole.level, what));
        self.step(result)
    }

    fn bad(&mut self, bad: &BadEntry) -> Flow {
        self.notes.stats.bad_entries += 1;
        if let Some((_, state)) = &mut self.notes.wx {
            state.report.bad_entries += 1;
        }
        let what = What::Bad {
            reason: bad.reason,
            raw: bad.raw,
        };
        let result = self.feed(piece(bad.addr, bad.size, bad.level, what));
        self.step(result)
    }
}

impl Notes {
    /// A dump printing every range line in `style`.
    pub(crate) fn dump(style: Style) -> Notes {
        Notes::new(style, true, None)
    }

    /// A W+X check: prints only `check`'s messages and its verdict.
    pub(crate) fn check_wx(style: Style, check: WxCheck) -> Notes {
        Notes::new(style, false, Some((check, WxState::default())))
    }

    fn new(style: Style, print_lines: bool, wx: Option<(WxCheck, WxState)>) -> Notes {
        Notes {
            style,
            next_marker: 0,
            started: false,
            last_end: 0,
            run: None,
            print_lines,
            cap: LineCap::new(None),
            wx,
            stats: DumpStats::default(),
        }
    }

    /// Walks `range` and notes what the walk reports. The last range stays
    /// open (the next walk may continue it) until [`Notes::finish`]. Every
    /// call must get the same `markers`, and ranges in ascending order.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn walk<W, F, M>(
        &mut self,
        out: &mut W,
        format: &F,
        mem: &M,
        root: u64,
        range: AddrRange,
        markers: &[Marker<'_>],
        limits: WalkLimits,
    ) -> Result<WalkSummary, fmt::Error>
    where
        W: Write + ?Sized,
        F: Format + ?Sized,
        M: TableMemory + ?Sized,
    {
        let mut dumper = Dumper {
            out: TrimWriter::new(out),
            notes: self,
            markers,
            write_failed: false,
        };
        let summary = walk_with(format, mem, root, range, limits, &mut dumper);
        if dumper.write_failed {
            return Err(fmt::Error);
        }
        self.stats.tables += summary.tables;
        Ok(summary)
    }

    /// Ends the output: see [`Dumper::finish`].
    pub(crate) fn finish<W: Write + ?Sized>(&mut self, out: &mut W, markers: &[Marker<'_>]) -> fmt::Result {
        Dumper {
            out: TrimWriter::new(out),
            notes: self,
            markers,
            write_failed: false,
        }
        .finish()
    }

    pub(crate) fn stats(&self) -> DumpStats {
        self.stats
    }

    /// The W+X counts so far (all zero for a dump).
    pub(crate) fn wx_report(&self) -> WxReport {
        self.wx.map(|(_, state)| state.report).unwrap_or_default()
    }
}

/// The body of every format's `dump_with_limits`: walks `range` and prints it in `style`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dump<W, F, M>(
    out: &mut W,
    format: &F,
    mem: &M,
    root: u64,
    range: AddrRange,
    markers: &[Marker<'_>],
    style: Style,
    limits: WalkLimits,
) -> Result<DumpStats, fmt::Error>
where
    W: Write + ?Sized,
    F: Format + ?Sized,
    M: TableMemory + ?Sized,
{
    let mut notes = Notes::dump(style);
    notes.walk(out, format, mem, root, range, markers, limits)?;
    notes.finish(out, markers)?;
    Ok(notes.stats())
}

/// Linux's summary line; entries that could not be checked fail the check
/// too and are counted at the end of Linux's FAILED line.
fn write_verdict(w: &mut dyn Write, arch: WxArch, r: &WxReport) -> fmt::Result {
    match arch {
        WxArch::Arm64 { .. } => {
            if r.passed() {
                return writeln!(w, "Checked W+X mappings: passed, no W+X pages found");
            }
            write!(
                w,
                "Checked W+X mappings: FAILED, {} W+X pages found, {} non-UXN pages found",
                r.wx_pages, r.non_uxn_pages
            )?;
            if r.bad_entries > 0 {
                write!(w, ", {} bad entries", r.bad_entries)?;
            }
            writeln!(w)
        }
        WxArch::X86 => {
            if r.passed() {
                return writeln!(w, "x86/mm: Checked W+X mappings: passed, no W+X pages found.");
            }
            write!(
                w,
                "x86/mm: Checked W+X mappings: FAILED, {} W+X pages found",
                r.wx_pages
            )?;
            if r.bad_entries > 0 {
                write!(w, ", {} bad entries", r.bad_entries)?;
            }
            writeln!(w, ".")
        }
    }
}
