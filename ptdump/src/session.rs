//! A W+X check fed in pieces, for callers that must bound the work of each
//! call (hv's console checks a guest's tables across many hypercalls).

use core::fmt::{self, Write};

use pagewalk::{AddrRange, Format, TableMemory, WalkLimits, WalkSummary};

use crate::engine::{Notes, Style, WxArch, WxCheck};
use crate::{WxOptions, WxReport};

/// A resumable W+X check: each [`WxSession::feed`] walks one sub-range, and
/// the session keeps what Linux's check keeps from one range to the next
/// (the range being merged, the counts, the "first message printed" flags of
/// `WARN_ONCE`, `list_all`). Fed consecutive ranges in ascending order that
/// together make `range`, then [`WxSession::finish`]ed, it prints exactly
/// what the format's `check_wx_with(.., range, options)` prints, whatever
/// the cuts (a W+X range cut by a boundary is still one message, of its
/// whole size), as long as no feed's walk runs out of `options.limits`.
///
/// Made by each stage-1 format's `wx_session` ([`crate::arm64::wx_session`],
/// [`crate::x86::wx_session`]), so a session only ever checks tables of the
/// format it was made for. No heap; the state is a few dozen bytes.
#[derive(Clone, Copy, Debug)]
pub struct WxSession<F> {
    format: F,
    notes: Notes,
    limits: WalkLimits,
}

impl<F: Format> WxSession<F> {
    pub(crate) fn new(format: F, style: Style, arch: WxArch, options: &WxOptions) -> WxSession<F> {
        let check = WxCheck {
            arch,
            list_all: options.list_all,
        };
        WxSession {
            format,
            notes: Notes::check_wx(style, check),
            limits: options.limits,
        }
    }

    /// Walks the tables rooted at `root` over `range` (the next piece, after
    /// the previous feeds' ranges), printing the messages of every range
    /// that is finished. The last range stays open, since the next feed may
    /// continue it. `options.limits` bounds this walk; its summary says what
    /// it cost (`tables`).
    pub fn feed<W, M>(&mut self, out: &mut W, mem: &M, root: u64, range: AddrRange) -> Result<WalkSummary, fmt::Error>
    where
        W: Write + ?Sized,
        M: TableMemory + ?Sized,
    {
        self.feed_with_limits(out, mem, root, range, self.limits)
    }

    /// [`WxSession::feed`] with other bounds for this walk. With
    /// `max_tables: 0` nothing is read: the range is reported as one entry
    /// that could not be checked ([`pagewalk::BadReason::BudgetExhausted`]),
    /// which fails the check (a caller out of budget says so this way).
    pub fn feed_with_limits<W, M>(
        &mut self,
        out: &mut W,
        mem: &M,
        root: u64,
        range: AddrRange,
        limits: WalkLimits,
    ) -> Result<WalkSummary, fmt::Error>
    where
        W: Write + ?Sized,
        M: TableMemory + ?Sized,
    {
        self.notes.walk(out, &self.format, mem, root, range, &[], limits)
    }

    /// The format the session checks.
    pub fn format(&self) -> &F {
        &self.format
    }

    /// The counts so far (the range still open is not counted yet).
    pub fn report(&self) -> WxReport {
        self.notes.wx_report()
    }

    /// Tables the feeds have walked, in all.
    pub fn tables_walked(&self) -> u64 {
        self.notes.stats().tables
    }

    /// Judges the last range, prints Linux's summary line and returns the
    /// outcome.
    pub fn finish<W: Write + ?Sized>(mut self, out: &mut W) -> Result<WxReport, fmt::Error> {
        self.notes.finish(out, &[])?;
        Ok(self.notes.wx_report())
    }
}
