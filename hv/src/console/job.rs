//! One running command, advanced a bounded step at a time.
//!
//! `help`, `info` and `audit` run in one step. A `ptdump` or `wx` is cut into
//! address slices: before each slice a counting walk finds the address where
//! the next [`SLICE_TABLES`] tables would be entered, and the slice is dumped
//! (never across a marker) or W+X-checked up to there. So one step costs at
//! most two walks of `SLICE_TABLES` tables (4 KiB each, 512 entries), whatever
//! the tables look like, and a whole command at most [`MAX_COMMAND_TABLES`]
//! tables.
//!
//! `wx` needs no help to join its slices: ptdump's [`ptdump::WxSession`]
//! keeps the check's state (the range being merged, the counts, the
//! first-message flags) from one slice to the next, so the sliced check
//! prints exactly what one `check_wx_with` over the whole range prints.
//!
//! A slice boundary can fall inside what ptdump would print as one line (two
//! neighbouring blocks with the same attributes). The dump text is therefore
//! passed through a line merger that holds back the last range line of each
//! slice and joins it with the first line of the next when the two are
//! contiguous and print the same attributes, so the sliced output is the
//! output of one whole dump. For the same reason a capped marker's line cap
//! ([`ptdump::Marker::capped`]) is applied there, on the joined lines, with
//! ptdump's own [`LineCap`]: ptdump itself dumps each slice uncapped.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use pagewalk::arm64::Stage1;
use pagewalk::x86::X86_64;
use pagewalk::{walk_with, AddrRange, Flow, Format, Leaf, TableVisit, Visitor, WalkLimits};
use ptdump::{DumpStats, LineCap, Marker, WxOptions, WxSession};

use super::{
    parse, Command, ConsoleTarget, ParseError, TableFormat, TableView, Tables, UserRange, Verdict, ViewPart, Views,
    HELP,
};

/// Tables one dump step may enter (per walk; a step walks twice).
pub const SLICE_TABLES: u64 = 32;
/// Tables one whole `ptdump` or `wx` may enter by default; past it the
/// command stops with a message ([`Job::with_table_limit`] changes it).
pub const MAX_COMMAND_TABLES: u64 = 1 << 16;
/// Deepest table stack any format has (levels -1..=3): the tables a slice
/// enters on the path down to its first entry.
const MAX_DEPTH: u64 = 5;

/// What a step left to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// Call `step` again for more output.
    More,
    /// The command finished.
    Done(Verdict),
}

/// A command in progress.
pub struct Job {
    state: State,
}

enum State {
    Refused(ParseError),
    Once(Command),
    Dump(Box<DumpJob>),
    Wx(Box<WxJob>),
    Finished(Verdict),
}

impl Job {
    /// Parses `line`; nothing runs until [`Job::step`].
    pub fn new(target: &dyn ConsoleTarget, line: &str) -> Job {
        Job::with_table_limit(target, line, MAX_COMMAND_TABLES)
    }

    /// [`Job::new`] with another limit on the tables a whole dump or check may enter.
    pub fn with_table_limit(_target: &dyn ConsoleTarget, line: &str, max_tables: u64) -> Job {
        let state = match parse(line) {
            Err(e) => State::Refused(e),
            Ok(Command::Ptdump { tables, range }) => State::Dump(Box::new(DumpJob::new(tables, range, max_tables))),
            Ok(Command::Wx { tables }) => State::Wx(Box::new(WxJob::new(tables, max_tables))),
            Ok(other) => State::Once(other),
        };
        Job { state }
    }

    /// The command's verdict once it finished.
    pub fn verdict(&self) -> Option<Verdict> {
        match self.state {
            State::Finished(v) => Some(v),
            _ => None,
        }
    }

    /// Tables the dump or check walked so far (0 for other commands).
    pub fn tables_walked(&self) -> u64 {
        match &self.state {
            State::Dump(dump) => dump.tables_walked(),
            State::Wx(wx) => wx.tables_walked(),
            _ => 0,
        }
    }

    /// Runs one bounded step, writing its output to `out`. `budget` is the
    /// tables a slice may enter (at least [`MAX_DEPTH`] + 1 is used).
    /// An error from `out` ends the command (the session's store is full).
    pub fn step(
        &mut self,
        target: &dyn ConsoleTarget,
        out: &mut dyn Write,
        budget: u64,
    ) -> Result<StepOutcome, fmt::Error> {
        let result = match &mut self.state {
            State::Finished(v) => return Ok(StepOutcome::Done(*v)),
            State::Refused(e) => writeln!(out, "hv: {e}").map(|_| StepOutcome::Done(Verdict::Failed)),
            State::Once(command) => run_once(*command, target, out).map(StepOutcome::Done),
            State::Dump(dump) => dump.step(target, out, budget.max(MAX_DEPTH + 1)),
            State::Wx(wx) => wx.step(target, out, budget.max(MAX_DEPTH + 1)),
        };
        match result {
            Ok(StepOutcome::Done(v)) => self.state = State::Finished(v),
            Ok(StepOutcome::More) => {}
            Err(e) => {
                self.state = State::Finished(Verdict::Failed);
                return Err(e);
            }
        }
        result
    }
}

fn not_available(out: &mut dyn Write, tables: Tables, reason: &str) -> Result<Verdict, fmt::Error> {
    writeln!(out, "hv: '{}' tables not available: {reason}", tables.name())?;
    Ok(Verdict::Failed)
}

fn run_once(command: Command, target: &dyn ConsoleTarget, out: &mut dyn Write) -> Result<Verdict, fmt::Error> {
    match command {
        Command::Help => {
            out.write_str(HELP)?;
            Ok(Verdict::Ok)
        }
        Command::Info => {
            writeln!(out, "hv {} ({})", env!("CARGO_PKG_VERSION"), target.arch())?;
            target.info(out)?;
            Ok(Verdict::Ok)
        }
        Command::AuditS2 => {
            let view = match target.stage2() {
                Ok(view) => view,
                Err(na) => return not_available(out, Tables::Stage2, na.reason),
            };
            let owned = target.hv_owned();
            let report = match &view.format {
                TableFormat::Arm64Stage2(f) => {
                    crate::guest::stage2::audit_and_print(out, f, view.mem, view.root, owned)?
                }
                TableFormat::Npt(f) => crate::guest::stage2::audit_and_print(out, f, view.mem, view.root, owned)?,
                TableFormat::Ept(f) => crate::guest::stage2::audit_and_print(out, f, view.mem, view.root, owned)?,
                _ => {
                    writeln!(out, "hv: audit s2: the stage-2 view is not a second-stage format")?;
                    return Ok(Verdict::Failed);
                }
            };
            Ok(if report.passed() { Verdict::Ok } else { Verdict::Failed })
        }
        // Dumps and checks never run in one step.
        Command::Ptdump { .. } | Command::Wx { .. } => Ok(Verdict::Failed),
    }
}

/// A check in progress on one part, with the arch's session.
enum WxSessionOf {
    Arm64(WxSession<Stage1>),
    X86(WxSession<X86_64>),
}

struct PartCheck {
    session: WxSessionOf,
    /// Where the next slice starts, and the end of the part's range.
    cursor: u128,
    end: u128,
}

impl PartCheck {
    fn tables_walked(&self) -> u64 {
        match &self.session {
            WxSessionOf::Arm64(s) => s.tables_walked(),
            WxSessionOf::X86(s) => s.tables_walked(),
        }
    }

    /// Checks `range` of `view`, walking at most `limits`; `false` (and
    /// nothing done) when the view is no longer of the session's format (the
    /// guest rewrote its translation registers between two calls).
    fn feed(
        &mut self,
        view: &TableView<'_>,
        out: &mut dyn Write,
        range: AddrRange,
        limits: WalkLimits,
    ) -> Result<bool, fmt::Error> {
        let (mem, root) = (view.mem, view.root);
        match (&mut self.session, &view.format) {
            (WxSessionOf::Arm64(s), TableFormat::Arm64Stage1(f)) if s.format() == f => {
                s.feed_with_limits(out, mem, root, range, limits)?
            }
            (WxSessionOf::X86(s), TableFormat::X86_64(f)) if s.format() == f => {
                s.feed_with_limits(out, mem, root, range, limits)?
            }
            _ => return Ok(false),
        };
        Ok(true)
    }

    /// Linux's summary line; whether the part passed.
    fn finish(self, out: &mut dyn Write) -> Result<bool, fmt::Error> {
        let report = match self.session {
            WxSessionOf::Arm64(s) => s.finish(out)?,
            WxSessionOf::X86(s) => s.finish(out)?,
        };
        Ok(report.passed())
    }
}

/// Linux's W+X check on every part Linux would check (for a guest, the
/// kernel half only), with the arch's messages, one slice per step; fails if
/// any part fails.
struct WxJob {
    tables: Tables,
    max_tables: u64,
    /// The part being checked (an index into the target's [`Views`]).
    part: usize,
    /// Set up when a part's check starts, with its view at hand.
    check: Option<PartCheck>,
    /// Tables walked by the parts already finished.
    walked_before: u64,
    /// Parts Linux's check covers, met so far.
    checked: usize,
    verdict: Verdict,
}

impl WxJob {
    fn new(tables: Tables, max_tables: u64) -> WxJob {
        WxJob {
            tables,
            max_tables,
            part: 0,
            check: None,
            walked_before: 0,
            checked: 0,
            verdict: Verdict::Ok,
        }
    }

    fn tables_walked(&self) -> u64 {
        self.walked_before + self.check.as_ref().map_or(0, PartCheck::tables_walked)
    }

    fn fail(&mut self) {
        self.verdict = Verdict::Failed;
    }

    /// Moves on to the next part.
    fn next_part(&mut self) {
        if let Some(check) = self.check.take() {
            self.walked_before += check.tables_walked();
        }
        self.part += 1;
    }

    /// Checks the parts one after the other; a step walks one slice at most
    /// (starting or finishing a part costs no walk).
    fn step(
        &mut self,
        target: &dyn ConsoleTarget,
        out: &mut dyn Write,
        budget: u64,
    ) -> Result<StepOutcome, fmt::Error> {
        let views = match self.tables.views(target) {
            Ok(views) => views,
            Err(na) => return not_available(out, self.tables, na.reason).map(StepOutcome::Done),
        };
        let name = self.tables.name();
        loop {
            let Some(part) = views.get(self.part) else {
                return self.finish(out).map(StepOutcome::Done);
            };
            if !part.wx {
                self.part += 1;
                continue;
            }
            let view = match part.tables {
                Ok(view) => view,
                Err(na) => {
                    if self.check.is_none() {
                        self.checked += 1;
                        self.header(&views, part, out)?;
                    }
                    writeln!(out, "hv: wx {name}: {} not checked: {}", part.name, na.reason)?;
                    self.fail();
                    self.next_part();
                    continue;
                }
            };
            let Some(check) = self.check.as_mut() else {
                self.checked += 1;
                self.header(&views, part, out)?;
                if let Some(note) = part.wx_note {
                    writeln!(out, "hv: {}", note.text)?;
                    if note.fails {
                        self.fail();
                    }
                }
                // hv's console lists every offending range; slices bound the walks.
                let options = WxOptions {
                    list_all: true,
                    limits: WalkLimits::default(),
                };
                let session = match &view.format {
                    TableFormat::Arm64Stage1(f) => WxSessionOf::Arm64(ptdump::arm64::wx_session(f, &options)),
                    TableFormat::X86_64(f) => WxSessionOf::X86(ptdump::x86::wx_session(f, &options)),
                    _ => {
                        writeln!(
                            out,
                            "hv: wx: the '{name}' tables are second-stage tables; W+X is checked on stage-1 tables"
                        )?;
                        return Ok(StepOutcome::Done(Verdict::Failed));
                    }
                };
                self.check = Some(PartCheck {
                    session,
                    cursor: u128::from(part.range.start),
                    end: end_of(&part.range),
                });
                continue;
            };
            if check.cursor >= check.end {
                if let Some(check) = self.check.take() {
                    self.walked_before += check.tables_walked();
                    if !check.finish(out)? {
                        self.fail();
                    }
                }
                self.part += 1;
                continue;
            }
            let rest = AddrRange::new(check.cursor as u64, end_as_option(check.end)).unwrap_or(AddrRange::ALL);
            let walked = self.walked_before + check.tables_walked();
            if walked >= self.max_tables {
                // Nothing more is read: the rest is one entry the check
                // could not judge, which fails it with Linux's messages.
                let fed = check.feed(&view, out, rest, WalkLimits { max_tables: 0 })?;
                writeln!(
                    out,
                    "hv: wx {name} stopped after {walked} tables (the limit for one command); the rest is not checked"
                )?;
                if !fed {
                    self.changed(part, out)?;
                } else if let Some(check) = self.check.take() {
                    check.finish(out)?;
                }
                self.fail();
                self.next_part();
                continue;
            }
            let slice_end = budget_stop(&view, check.cursor, check.end, budget);
            let slice = AddrRange::new(check.cursor as u64, end_as_option(slice_end)).unwrap_or(AddrRange::ALL);
            let limits = WalkLimits {
                max_tables: budget + MAX_DEPTH,
            };
            if !check.feed(&view, out, slice, limits)? {
                self.changed(part, out)?;
                self.fail();
                self.next_part();
                continue;
            }
            check.cursor = slice_end;
            return Ok(StepOutcome::More);
        }
    }

    /// The part's name and range, when there is more than one part.
    fn header(&self, views: &Views<'_>, part: &ViewPart<'_>, out: &mut dyn Write) -> fmt::Result {
        if views.len() > 1 {
            writeln!(
                out,
                "hv: wx {}: Linux's check covers the kernel's mappings: {} {}",
                self.tables.name(),
                part.name,
                part.range
            )?;
        }
        Ok(())
    }

    /// The part's format changed between two steps: what was checked so far
    /// belongs to other tables, so the part fails unjudged.
    fn changed(&self, part: &ViewPart<'_>, out: &mut dyn Write) -> fmt::Result {
        writeln!(
            out,
            "hv: wx {}: {} changed format during the check (translation registers rewritten); not checked",
            self.tables.name(),
            part.name
        )
    }

    /// After the last part: the verdict, or why nothing was checked.
    fn finish(&mut self, out: &mut dyn Write) -> Result<Verdict, fmt::Error> {
        if self.checked == 0 {
            writeln!(
                out,
                "hv: wx {}: no part of these tables holds kernel mappings",
                self.tables.name()
            )?;
            return Ok(Verdict::Failed);
        }
        Ok(self.verdict)
    }
}

/// A marker to print when the dump reaches `pos`.
struct PendingMarker {
    pos: u128,
    name: String,
    max_lines: Option<u32>,
}

struct DumpJob {
    tables: Tables,
    user_range: Option<UserRange>,
    max_tables: u64,
    /// The part being dumped (an index into the target's [`Views`]).
    part: usize,
    /// Set up when a part starts, with its view at hand.
    plan: Option<Plan>,
    /// Tables walked by the parts already finished.
    walked_before: u64,
    /// Whether some part's range met the user's range.
    met_range: bool,
}

impl DumpJob {
    fn new(tables: Tables, user_range: Option<UserRange>, max_tables: u64) -> DumpJob {
        DumpJob {
            tables,
            user_range,
            max_tables,
            part: 0,
            plan: None,
            walked_before: 0,
            met_range: false,
        }
    }

    fn tables_walked(&self) -> u64 {
        self.walked_before + self.plan.as_ref().map_or(0, |p| p.tables_walked)
    }

    /// Dumps the parts one after the other; a step works on one part only
    /// (parts that are skipped cost no walk).
    fn step(
        &mut self,
        target: &dyn ConsoleTarget,
        out: &mut dyn Write,
        budget: u64,
    ) -> Result<StepOutcome, fmt::Error> {
        let views = match self.tables.views(target) {
            Ok(views) => views,
            Err(na) => return not_available(out, self.tables, na.reason).map(StepOutcome::Done),
        };
        loop {
            let Some(part) = views.get(self.part) else {
                return self.finish(&views, out).map(StepOutcome::Done);
            };
            let user = self
                .user_range
                .map(|u| AddrRange::new(u.start, u.end).and_then(|r| r.intersect(&part.range)));
            if user == Some(None) {
                self.part += 1;
                continue;
            }
            self.met_range = true;
            let view = match part.tables {
                Ok(view) => view,
                Err(na) => {
                    writeln!(out, "hv: {} not walked: {}", part.name, na.reason)?;
                    self.part += 1;
                    continue;
                }
            };
            if self.plan.is_none() {
                let remaining = self.max_tables.saturating_sub(self.walked_before);
                match Plan::new(&view, self.user_range, remaining) {
                    Ok(plan) => {
                        self.plan = Some(Plan {
                            walked_before: self.walked_before,
                            ..plan
                        })
                    }
                    // The part's range met the user's; its view's range does not (a broken target).
                    Err(_) => {
                        self.part += 1;
                        continue;
                    }
                }
            }
            let Some(plan) = self.plan.as_mut() else {
                return Ok(StepOutcome::Done(Verdict::Failed));
            };
            return match plan.step(&view, out, budget)? {
                StepOutcome::More => Ok(StepOutcome::More),
                StepOutcome::Done(Verdict::Failed) => Ok(StepOutcome::Done(Verdict::Failed)),
                StepOutcome::Done(Verdict::Ok) => {
                    self.walked_before += plan.tables_walked;
                    self.plan = None;
                    self.part += 1;
                    Ok(StepOutcome::More)
                }
            };
        }
    }

    /// After the last part: the verdict, or why nothing was dumped.
    fn finish(&mut self, views: &Views<'_>, out: &mut dyn Write) -> Result<Verdict, fmt::Error> {
        if self.met_range {
            return Ok(Verdict::Ok);
        }
        write!(
            out,
            "hv: ptdump {}: the range lies outside the tables' address range",
            self.tables.name()
        )?;
        for (i, part) in views.parts().enumerate() {
            write!(out, "{}{}", if i == 0 { " " } else { " and " }, part.range)?;
        }
        writeln!(out)?;
        Ok(Verdict::Failed)
    }
}

/// One part's dump: its slices' bounds and markers.
struct Plan {
    cursor: u128,
    end: u128,
    markers: Vec<PendingMarker>,
    /// First marker not printed yet.
    next_marker: usize,
    merger: LineMerger,
    tables_walked: u64,
    max_tables: u64,
    /// Tables earlier parts of the command walked (for the limit message).
    walked_before: u64,
}

const TOP: u128 = 1 << 64;

fn end_of(range: &AddrRange) -> u128 {
    u128::from(range.last) + 1
}

impl Plan {
    /// The slices' bounds and the markers in print order; `Err` with the
    /// tables' range when the user's range misses it.
    fn new(view: &TableView<'_>, user: Option<UserRange>, max_tables: u64) -> Result<Plan, AddrRange> {
        let range = match user {
            None => view.range,
            Some(u) => AddrRange::new(u.start, u.end)
                .and_then(|r| r.intersect(&view.range))
                .ok_or(view.range)?,
        };
        let (start, end) = (u128::from(range.start), end_of(&range));
        let mut markers = Vec::new();
        // ptdump prints the first marker (the title) at the start whatever its
        // address, the others when the dump reaches them; those past the end never.
        for (i, m) in view.markers.iter().enumerate() {
            let addr = u128::from(m.addr);
            let keep = match user {
                _ if i == 0 => true,
                None => addr <= end,
                // A partial dump keeps the title, the marker of the region it
                // starts in, and those it crosses.
                Some(_) => {
                    addr <= end && (addr > start || view.markers.get(i + 1).is_none_or(|n| u128::from(n.addr) > start))
                }
            };
            if keep {
                let pos = if i == 0 { start } else { addr.max(start) };
                markers.push(PendingMarker {
                    pos,
                    name: m.name.into(),
                    max_lines: m.max_lines(),
                });
            }
        }
        let caps = markers.iter().map(|m| m.max_lines).collect();
        Ok(Plan {
            cursor: start,
            end,
            markers,
            next_marker: 0,
            merger: LineMerger::new(view.format.sizes_in_kib(), caps),
            tables_walked: 0,
            max_tables,
            walked_before: 0,
        })
    }

    fn step(&mut self, view: &TableView<'_>, out: &mut dyn Write, budget: u64) -> Result<StepOutcome, fmt::Error> {
        if self.cursor >= self.end {
            return self.finish(out).map(|_| StepOutcome::Done(Verdict::Ok));
        }
        if self.tables_walked >= self.max_tables {
            self.merger.flush(out)?;
            writeln!(
                out,
                "hv: ptdump stopped after {} tables (the limit for one command); dump a smaller range with START END",
                self.walked_before + self.tables_walked
            )?;
            return Ok(StepOutcome::Done(Verdict::Failed));
        }
        // Markers due at the cursor open this slice; the next one closes it.
        let due = self.markers[self.next_marker..]
            .iter()
            .take_while(|m| m.pos <= self.cursor)
            .count();
        let next_marker_pos = self.markers[self.next_marker + due..]
            .first()
            .map_or(self.end, |m| m.pos.min(self.end));
        let slice_end = budget_stop(view, self.cursor, next_marker_pos, budget);
        let slice = AddrRange::new(self.cursor as u64, end_as_option(slice_end)).unwrap_or(AddrRange::ALL);

        let at = self.cursor as u64;
        let mut markers: Vec<Marker<'_>> = Vec::with_capacity(due);
        for m in &self.markers[self.next_marker..self.next_marker + due] {
            markers.push(Marker::new(at, &m.name));
        }
        let limits = WalkLimits {
            max_tables: budget + MAX_DEPTH,
        };
        let stats = {
            let mut writer = self.merger.writer(out);
            dump_slice(&mut writer, view, slice, &markers, limits)?
        };
        self.merger.boundary();
        self.tables_walked += stats.tables;
        // ptdump prints markers only once the walk reports something; when a
        // slice reported nothing (say the x86 non-canonical hole) they stay due.
        if stats.markers as usize >= due {
            self.next_marker += due;
        }
        self.cursor = slice_end;
        if self.cursor >= self.end {
            return self.finish(out).map(|_| StepOutcome::Done(Verdict::Ok));
        }
        Ok(StepOutcome::More)
    }

    /// Flushes the held line and prints the markers ptdump prints after the
    /// last range (those at or before its end).
    fn finish(&mut self, out: &mut dyn Write) -> fmt::Result {
        self.merger.flush(out)?;
        let Some(last_end) = self.merger.last_end else {
            return Ok(());
        };
        while let Some(m) = self.markers.get(self.next_marker) {
            if m.pos > last_end {
                break;
            }
            self.merger.line(&format!("---[ {} ]---", m.name), out)?;
            self.next_marker += 1;
        }
        self.merger.end_section(out)
    }
}

fn end_as_option(end: u128) -> Option<u64> {
    (end < TOP).then_some(end as u64)
}

/// Counts tables entered and remembers where the one past the budget starts.
struct BudgetStop {
    budget: u64,
    entered: u64,
    stop: Option<u64>,
}

impl Visitor for BudgetStop {
    fn leaf(&mut self, _leaf: &Leaf) -> Flow {
        Flow::Continue
    }
    fn table_enter(&mut self, table: &TableVisit) -> Flow {
        self.entered += 1;
        if self.entered > self.budget {
            self.stop = Some(table.addr);
            return Flow::Stop;
        }
        Flow::Continue
    }
}

/// Where a slice starting at `start` must end so that dumping it enters at
/// most `budget` tables: the start of the first table past the budget, or `end`.
fn budget_stop(view: &TableView<'_>, start: u128, end: u128, budget: u64) -> u128 {
    let Some(range) = AddrRange::new(start as u64, end_as_option(end)) else {
        return end;
    };
    let mut counter = BudgetStop {
        budget,
        entered: 0,
        stop: None,
    };
    // The counting walk itself stops at the budget: this bounds its cost too.
    let limits = WalkLimits { max_tables: budget + 1 };
    walk_with(
        view.format.as_format(),
        view.mem,
        view.root,
        range,
        limits,
        &mut counter,
    );
    match counter.stop {
        // The walk is in address order, so a later table starts further on;
        // only a path deeper than the budget could stop at `start`.
        Some(stop) if u128::from(stop) > start && u128::from(stop) < end => u128::from(stop),
        _ => end,
    }
}

impl TableFormat {
    /// The format, for a walk.
    pub fn as_format(&self) -> &dyn Format {
        match self {
            TableFormat::Arm64Stage1(f) => f,
            TableFormat::Arm64Stage2(f) => f,
            TableFormat::X86_64(f) => f,
            TableFormat::Npt(f) => f,
            TableFormat::Ept(f) => f,
        }
    }
}

fn dump_slice(
    out: &mut dyn Write,
    view: &TableView<'_>,
    range: AddrRange,
    markers: &[Marker<'_>],
    limits: WalkLimits,
) -> Result<DumpStats, fmt::Error> {
    let (mem, root) = (view.mem, view.root);
    match &view.format {
        TableFormat::Arm64Stage1(f) => ptdump::arm64::dump_with_limits(out, f, mem, root, range, markers, limits),
        TableFormat::Arm64Stage2(f) => ptdump::stage2::dump_with_limits(out, f, mem, root, range, markers, limits),
        TableFormat::X86_64(f) => ptdump::x86::dump_with_limits(out, f, mem, root, range, markers, limits),
        TableFormat::Npt(f) => ptdump::npt::dump_with_limits(out, f, mem, root, range, markers, limits),
        TableFormat::Ept(f) => ptdump::ept::dump_with_limits(out, f, mem, root, range, markers, limits),
    }
}

/// Joins a range line cut by a slice boundary back into one.
struct LineMerger {
    sizes_in_kib: bool,
    /// Text of the line being written (ptdump writes a line in pieces).
    partial: String,
    /// The last range line, not yet passed on.
    held: Option<String>,
    /// The next complete line is the first of a new slice.
    at_boundary: bool,
    /// End of the last range line passed on or held.
    last_end: Option<u128>,
    /// The line cap of each marker, in print order, and how many markers
    /// were printed: the section being printed is the last one's.
    caps: Vec<Option<u32>>,
    markers_seen: usize,
    cap: LineCap,
}

/// A ptdump range line: `0x<start>-0x<end>   <size> <rest>`.
struct RangeLine<'a> {
    start: u64,
    end: u128,
    /// Everything after the size column, leading blank included.
    rest: &'a str,
}

fn parse_range_line(line: &str) -> Option<RangeLine<'_>> {
    let hex = |s: &str| u64::from_str_radix(s, 16).ok();
    let start = hex(line.get(2..18)?)?;
    if line.get(0..2)? != "0x" || line.get(18..21)? != "-0x" || line.get(37..40)? != "   " {
        return None;
    }
    let end = match hex(line.get(21..37)?)? {
        // ptdump prints an end at 2^64 as 0.
        0 => TOP,
        end => u128::from(end),
    };
    let sized = line.get(40..)?.trim_start_matches(' ');
    let size_len = sized.find(' ').unwrap_or(sized.len());
    let (size, rest) = sized.split_at(size_len);
    let unit_ok = size.ends_with(['B', 'K', 'M', 'G', 'T', 'P', 'E']);
    let digits_ok = size.len() >= 2 && size[..size.len() - 1].bytes().all(|b| b.is_ascii_digit());
    (unit_ok && digits_ok).then_some(RangeLine { start, end, rest })
}

/// ptdump's size column: the largest unit that divides the size.
fn size_column(bytes: u128, in_kib: bool) -> (u128, char) {
    let units: &[u8] = if in_kib { b"KMGTPE" } else { b"BKMGTPE" };
    let mut count = if in_kib { bytes >> 10 } else { bytes };
    let mut unit = 0;
    while count != 0 && count & 1023 == 0 && unit + 1 < units.len() {
        count >>= 10;
        unit += 1;
    }
    (count, units[unit] as char)
}

impl LineMerger {
    fn new(sizes_in_kib: bool, caps: Vec<Option<u32>>) -> LineMerger {
        LineMerger {
            sizes_in_kib,
            partial: String::new(),
            held: None,
            at_boundary: false,
            last_end: None,
            caps,
            markers_seen: 0,
            cap: LineCap::new(None),
        }
    }

    fn writer<'m>(&'m mut self, out: &'m mut dyn Write) -> MergeWriter<'m> {
        MergeWriter { merger: self, out }
    }

    fn boundary(&mut self) {
        self.at_boundary = true;
    }

    /// Passes the held line on and ends the output: the section's skip line.
    fn flush(&mut self, out: &mut dyn Write) -> fmt::Result {
        self.pass_held(out)?;
        self.end_section(out)?;
        if !self.partial.is_empty() {
            out.write_str(&self.partial)?;
            self.partial.clear();
        }
        Ok(())
    }

    /// Passes the held (final) range line on, unless the section's cap holds
    /// it back; bad-entry lines are diagnostics, always passed on, uncounted.
    fn pass_held(&mut self, out: &mut dyn Write) -> fmt::Result {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        let bad = parse_range_line(&held).is_some_and(|l| l.rest.contains(" BAD "));
        if bad {
            self.cap.write_skipped(out)?;
        } else if !self.cap.admit() {
            return Ok(());
        }
        writeln!(out, "{held}")
    }

    /// Ends the current section: its skip line, if its cap held lines back.
    fn end_section(&mut self, out: &mut dyn Write) -> fmt::Result {
        self.cap.write_skipped(out)
    }

    fn line(&mut self, line: &str, out: &mut dyn Write) -> fmt::Result {
        let first_of_slice = core::mem::replace(&mut self.at_boundary, false);
        let Some(parsed) = parse_range_line(line) else {
            self.pass_held(out)?;
            // ptdump prints nothing else between range lines when dumping.
            if line.starts_with("---[ ") && line.ends_with(" ]---") {
                self.end_section(out)?;
                let max_lines = self.caps.get(self.markers_seen).copied().flatten();
                self.cap = LineCap::new(max_lines);
                self.markers_seen += 1;
            }
            return writeln!(out, "{line}");
        };
        if first_of_slice {
            if let Some(merged) = self.held.as_deref().and_then(|held| self.merge(held, &parsed)) {
                self.last_end = Some(parsed.end);
                self.held = Some(merged);
                return Ok(());
            }
        }
        self.pass_held(out)?;
        self.last_end = Some(parsed.end);
        self.held = Some(line.into());
        Ok(())
    }

    /// The one line ptdump would have printed for `held` followed by `next`,
    /// if it would have merged them.
    fn merge(&self, held: &str, next: &RangeLine<'_>) -> Option<String> {
        let first = parse_range_line(held)?;
        // ptdump never merges bad entries; everything else it merges on equal text.
        if first.end != u128::from(next.start) || first.rest != next.rest || first.rest.contains(" BAD ") {
            return None;
        }
        let (count, unit) = size_column(next.end - u128::from(first.start), self.sizes_in_kib);
        Some(format!(
            "0x{:016x}-0x{:016x}   {count:>9}{unit}{}",
            first.start, next.end as u64, first.rest
        ))
    }
}

struct MergeWriter<'m> {
    merger: &'m mut LineMerger,
    out: &'m mut dyn Write,
}

impl Write for MergeWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(newline) = rest.find('\n') {
            let (piece, after) = rest.split_at(newline);
            rest = &after[1..];
            if self.merger.partial.is_empty() {
                self.merger.line(piece, self.out)?;
            } else {
                let mut line = core::mem::take(&mut self.merger.partial);
                line.push_str(piece);
                self.merger.line(&line, self.out)?;
            }
        }
        self.merger.partial.push_str(rest);
        Ok(())
    }
}
