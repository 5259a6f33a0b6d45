//! hv's console: one arch-neutral command engine behind every transport (the
//! boot log, the guest-kernel hypercalls, the Linux-userspace doorbell).
//!
//! A command line (`help`, `info`, `ptdump hv|s2|guest [START END]`,
//! `wx hv|guest`, `audit s2`) is parsed by [`parse`] and run against a
//! [`ConsoleTarget`], which the architecture implements by handing out
//! [`TableView`]s: the table format, the memory the tables live in, the root
//! and the markers. The engine picks the matching `ptdump` function. The
//! guest's stage-1 comes in up to [`MAX_PARTS`] parts ([`Views`]: arm64
//! TTBR0_EL1 then TTBR1_EL1, x86 CR3's user then kernel half, built by
//! [`crate::introspect`]); a dump prints them one after the other, and `wx`
//! checks the parts Linux checks (the kernel half).
//!
//! Dumps are produced in address slices of a bounded number of tables (see
//! [`job`]), so a transport can spread a long dump over many calls; the boot
//! log simply runs every slice at once with [`run_to_end`].

pub mod job;
pub mod session;

use alloc::string::String;
use core::fmt::{self, Write};

use pagewalk::arm64::{Stage1, Stage2};
use pagewalk::ept::Ept;
use pagewalk::x86::{Npt, X86_64};
use pagewalk::{AddrRange, TableMemory};
use ptdump::Marker;

use crate::guest::Named;

pub use job::{Job, StepOutcome};
pub use session::{Session, SessionState};

/// The table formats the console can show, one per `ptdump` entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    /// arm64 stage-1 (EL2 or EL1&0 regime, as the `Stage1` says).
    Arm64Stage1(Stage1),
    /// arm64 stage-2 (IPA to PA).
    Arm64Stage2(Stage2),
    /// x86-64 4/5-level tables rooted at CR3.
    X86_64(X86_64),
    /// AMD nested page tables.
    Npt(Npt),
    /// Intel EPT.
    Ept(Ept),
}

impl TableFormat {
    /// Whether ptdump prints sizes from KiB up (arm64 styles) or from bytes up (x86 styles).
    pub(crate) fn sizes_in_kib(&self) -> bool {
        matches!(self, TableFormat::Arm64Stage1(_) | TableFormat::Arm64Stage2(_))
    }

    /// Whether this is a guest-physical (second-stage) format.
    pub fn is_second_stage(&self) -> bool {
        matches!(
            self,
            TableFormat::Arm64Stage2(_) | TableFormat::Npt(_) | TableFormat::Ept(_)
        )
    }
}

/// One set of page tables, as cheap to build as a few references: the arch
/// keeps the format, memory accessor and markers around and lends them out.
#[derive(Clone, Copy)]
pub struct TableView<'a> {
    pub format: TableFormat,
    /// Where the tables live (hv's direct map; `ThroughStage2` for guest tables).
    pub mem: &'a dyn TableMemory,
    pub root: u64,
    /// The addresses a full dump covers (`ptdump X` without START END).
    pub range: AddrRange,
    /// Sorted by address; the first is printed at the start of a dump (the title).
    pub markers: &'a [Marker<'a>],
}

/// Why a set of tables cannot be shown right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAvailable {
    pub reason: &'static str,
}

/// Why `ptdump guest` / `wx guest` cannot run from hv's boot log.
pub const NO_GUEST_YET: NotAvailable = NotAvailable {
    reason: "the guest has not started yet (hv's boot log runs before it)",
};

/// Most parts one set of tables has: the guest's stage-1 is two halves
/// (arm64 TTBR0_EL1 / TTBR1_EL1; x86 CR3's user and kernel halves).
pub const MAX_PARTS: usize = 2;

/// Something `wx` must say about a part that its entries alone do not show
/// (x86 CR0.WP = 0, EFER.NXE = 0), printed as `hv: <text>` before the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WxNote {
    pub text: &'static str,
    /// The note alone fails the check (the kernel can write read-only pages).
    pub fails: bool,
}

/// One part of a set of tables: a root and the addresses it translates.
#[derive(Clone, Copy)]
pub struct ViewPart<'a> {
    /// Which root this is, for hv's own lines (`"TTBR1_EL1"`, `"CR3 kernel half"`).
    pub name: &'a str,
    /// The addresses this part translates (a switched-off half keeps its range).
    pub range: AddrRange,
    /// The tables, or why this part is not walked (TCR_EL1.EPD0/EPD1).
    pub tables: Result<TableView<'a>, NotAvailable>,
    /// Whether `wx` checks this part: Linux checks kernel mappings only.
    pub wx: bool,
    pub wx_note: Option<WxNote>,
}

/// The parts a command walks, in address order (dumps print them one after
/// the other, each with its own markers).
#[derive(Clone, Copy)]
pub struct Views<'a> {
    parts: [Option<ViewPart<'a>>; MAX_PARTS],
}

impl<'a> Views<'a> {
    /// One view, checked whole by `wx` (hv's tables, the stage-2).
    pub fn one(view: TableView<'a>) -> Views<'a> {
        Views::new([
            Some(ViewPart {
                name: "",
                range: view.range,
                tables: Ok(view),
                wx: true,
                wx_note: None,
            }),
            None,
        ])
    }

    /// Parts in address order; `None` slots are skipped.
    pub fn new(parts: [Option<ViewPart<'a>>; MAX_PARTS]) -> Views<'a> {
        Views { parts }
    }

    pub fn parts(&self) -> impl Iterator<Item = &ViewPart<'a>> {
        self.parts.iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.parts().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `index`-th part (skipping empty slots).
    pub fn get(&self, index: usize) -> Option<&ViewPart<'a>> {
        self.parts().nth(index)
    }
}

/// What the architecture provides to the console. Every method must be cheap
/// (the session calls them once per hypercall / doorbell trap) and must not
/// change the tables.
pub trait ConsoleTarget {
    /// `"aarch64"` or `"x86_64"`.
    fn arch(&self) -> &str;
    /// hv's own tables.
    fn hv_tables(&self) -> TableView<'_>;
    /// The guest's stage-2 / NPT / EPT.
    fn stage2(&self) -> Result<TableView<'_>, NotAvailable>;
    /// The vCPU's current stage-1 tables, read through stage-2, in parts
    /// (see [`crate::introspect`], which builds them from the guest's registers).
    fn guest_tables(&self) -> Result<Views<'_>, NotAvailable>;
    /// Physical memory hv owns (image, heap, stacks, tables): what no stage-2
    /// entry may map and no hypercall buffer may land in.
    fn hv_owned(&self) -> &[Named<'_>];
    /// Memory layout and guest state lines for `info` (after the engine's header line).
    fn info(&self, out: &mut dyn Write) -> fmt::Result;
}

/// Which tables a command names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tables {
    Hv,
    Stage2,
    Guest,
}

impl Tables {
    pub fn name(self) -> &'static str {
        match self {
            Tables::Hv => "hv",
            Tables::Stage2 => "s2",
            Tables::Guest => "guest",
        }
    }

    /// The views of these tables, or why there are none.
    pub fn views<'t>(self, target: &'t dyn ConsoleTarget) -> Result<Views<'t>, NotAvailable> {
        match self {
            Tables::Hv => Ok(Views::one(target.hv_tables())),
            Tables::Stage2 => target.stage2().map(Views::one),
            Tables::Guest => target.guest_tables(),
        }
    }
}

/// An address range given on the command line: `[start, end)`, `end == None`
/// meaning the top of the 64-bit space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserRange {
    pub start: u64,
    pub end: Option<u64>,
}

/// A parsed console command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Info,
    Ptdump { tables: Tables, range: Option<UserRange> },
    Wx { tables: Tables },
    AuditS2,
}

/// Why a command line was refused; its `Display` is the message the user sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    UnknownCommand(String),
    /// Wrong arguments: the message says what the command takes.
    Usage(&'static str),
    BadAddress(String),
    EmptyRange {
        start: u64,
        end: Option<u64>,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("empty command (try 'help')"),
            ParseError::UnknownCommand(word) => write!(f, "unknown command '{word}' (try 'help')"),
            ParseError::Usage(usage) => write!(f, "usage: {usage}"),
            ParseError::BadAddress(word) => write!(
                f,
                "bad address '{word}': expected hex (0x...) or decimal, below 2^64 (END may be 2^64)"
            ),
            ParseError::EmptyRange { start, end } => match end {
                Some(end) => write!(f, "empty range: START {start:#x} must be below END {end:#x}"),
                None => write!(f, "empty range at {start:#x}"),
            },
        }
    }
}

const PTDUMP_USAGE: &str = "ptdump hv|s2|guest [START END]";
const WX_USAGE: &str = "wx hv|guest";
const AUDIT_USAGE: &str = "audit s2";

/// The `help` text.
pub const HELP: &str = "\
hv console commands:
  help                            this text
  info                            hv version, architecture, memory layout, guest state
  ptdump hv|s2|guest [START END]  dump hv's tables, the guest's stage-2/NPT, or the guest's
                                  own tables, over [START, END) (hex 0x... or decimal)
  wx hv|guest                     Linux's W+X check of hv's tables or the guest's kernel half
  audit s2                        check that no stage-2/NPT entry maps memory hv owns
";

/// Parses one command line (words separated by blanks).
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let mut words = line.split_ascii_whitespace();
    let Some(verb) = words.next() else {
        return Err(ParseError::Empty);
    };
    let args: [Option<&str>; 4] = [words.next(), words.next(), words.next(), words.next()];
    let arg_count = args.iter().flatten().count();
    match verb {
        "help" if arg_count == 0 => Ok(Command::Help),
        "help" => Err(ParseError::Usage("help")),
        "info" if arg_count == 0 => Ok(Command::Info),
        "info" => Err(ParseError::Usage("info")),
        "ptdump" => {
            let tables = match args[0] {
                Some("hv") => Tables::Hv,
                Some("s2") => Tables::Stage2,
                Some("guest") => Tables::Guest,
                _ => return Err(ParseError::Usage(PTDUMP_USAGE)),
            };
            let range = match arg_count {
                1 => None,
                3 => {
                    let (start, end) = (args[1].unwrap_or(""), args[2].unwrap_or(""));
                    let start = match parse_addr(start)? {
                        Some(start) => start,
                        None => return Err(ParseError::BadAddress(start.into())),
                    };
                    let end = parse_addr(end)?;
                    if end.is_some_and(|end| end <= start) {
                        return Err(ParseError::EmptyRange { start, end });
                    }
                    Some(UserRange { start, end })
                }
                _ => return Err(ParseError::Usage(PTDUMP_USAGE)),
            };
            Ok(Command::Ptdump { tables, range })
        }
        "wx" => match (args[0], arg_count) {
            (Some("hv"), 1) => Ok(Command::Wx { tables: Tables::Hv }),
            (Some("guest"), 1) => Ok(Command::Wx { tables: Tables::Guest }),
            _ => Err(ParseError::Usage(WX_USAGE)),
        },
        "audit" => match (args[0], arg_count) {
            (Some("s2"), 1) => Ok(Command::AuditS2),
            _ => Err(ParseError::Usage(AUDIT_USAGE)),
        },
        other => Err(ParseError::UnknownCommand(other.into())),
    }
}

/// Parses `0x...` (hex) or decimal, `_` allowed between digits. `Ok(None)`
/// is exactly 2^64 (the top of the space, valid only as an END).
fn parse_addr(word: &str) -> Result<Option<u64>, ParseError> {
    let bad = || ParseError::BadAddress(word.into());
    let (digits, radix) = match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (word, 10),
    };
    if digits.is_empty() || digits.starts_with('_') {
        return Err(bad());
    }
    let mut value: u128 = 0;
    for c in digits.chars().filter(|&c| c != '_') {
        let digit = c.to_digit(radix).ok_or_else(bad)?;
        value = value * u128::from(radix) + u128::from(digit);
        if value > 1 << 64 {
            return Err(bad());
        }
    }
    if value == 1 << 64 {
        Ok(None)
    } else {
        Ok(Some(value as u64))
    }
}

/// How a finished command ended, for exit statuses and hypercall flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// A refused command line, tables not available, a W+X or audit failure.
    Failed,
}

/// Runs one command line to the end, streaming everything to `out` (the boot
/// log; the UART has no size limit). Hypercalls and the doorbell go through a
/// [`Session`] instead, which bounds the work per call.
pub fn run_to_end(target: &dyn ConsoleTarget, line: &str, out: &mut dyn Write) -> Result<Verdict, fmt::Error> {
    let mut job = Job::new(target, line);
    loop {
        match job.step(target, out, job::SLICE_TABLES)? {
            StepOutcome::More => continue,
            StepOutcome::Done(verdict) => return Ok(verdict),
        }
    }
}

/// Runs one console command for hv's boot log, framed so the log shows
/// which lines the engine produced: `hv> CMD` before, `hv> CMD: ok|FAILED` after.
pub fn boot_log(target: &dyn ConsoleTarget, line: &str, out: &mut dyn Write) -> Verdict {
    let _ = writeln!(out, "hv> {line}");
    // The UART never refuses a write; a failed command is the engine's verdict.
    let verdict = run_to_end(target, line, out).unwrap_or(Verdict::Failed);
    let word = if verdict == Verdict::Ok { "ok" } else { "FAILED" };
    let _ = writeln!(out, "hv> {line}: {word}");
    verdict
}
