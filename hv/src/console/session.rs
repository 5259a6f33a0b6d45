//! A command's output, kept for delivery in pieces.
//!
//! A transport (hypercall, doorbell) starts a command with [`Session::start`],
//! then asks for output at an offset with [`Session::produce`] and
//! [`Session::read`]. The output is append-only and kept whole, so reading the
//! same offset again returns the same bytes (retries are safe) and every byte
//! is delivered exactly once by a reader that advances its offset by what it
//! got. A new command discards the old output.
//!
//! Bounds: the output is capped at [`OUTPUT_CAP`] bytes; a command that would
//! write more is cut at a line boundary and ends with [`TRUNCATED_LINE`]
//! (never silently). Each `produce` call runs job steps entering at most
//! [`CALL_TABLES`] tables (see [`super::job`]), so one trap does bounded work.

use alloc::vec::Vec;
use core::fmt::{self, Write};

use super::job::{Job, StepOutcome, MAX_COMMAND_TABLES, SLICE_TABLES};
use super::{ConsoleTarget, Verdict};

/// Most bytes of output one command may leave for its reader.
pub const OUTPUT_CAP: usize = 1 << 20;
/// The last line of an output that hit [`OUTPUT_CAP`].
pub const TRUNCATED_LINE: &str = "hv: output truncated at the 1 MiB limit; narrow the command (ptdump X START END)\n";
/// Tables one `produce` call may walk (per walk; a dump step walks twice).
pub const CALL_TABLES: u64 = SLICE_TABLES;
/// Most bytes of one command line.
pub const MAX_COMMAND_LEN: usize = 256;

/// Where a session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// No command since the last reset.
    Idle,
    /// The command has more output to produce.
    Running,
    /// All output is produced.
    Done { verdict: Verdict, truncated: bool },
}

/// The capped output buffer. Once full it refuses writes, which ends the job.
struct OutputStore {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Write for OutputStore {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.truncated {
            return Err(fmt::Error);
        }
        let room = self.cap - TRUNCATED_LINE.len() - self.bytes.len();
        if s.len() <= room {
            self.bytes.extend_from_slice(s.as_bytes());
            return Ok(());
        }
        // Keep whole lines only: cut back to the last newline that fits.
        let fitting = &s.as_bytes()[..room];
        match fitting.iter().rposition(|&b| b == b'\n') {
            Some(nl) => self.bytes.extend_from_slice(&fitting[..=nl]),
            None => {
                let last_nl = self.bytes.iter().rposition(|&b| b == b'\n').map_or(0, |nl| nl + 1);
                self.bytes.truncate(last_nl);
            }
        }
        self.bytes.extend_from_slice(TRUNCATED_LINE.as_bytes());
        self.truncated = true;
        Err(fmt::Error)
    }
}

/// One command's output and the job still producing it.
pub struct Session {
    store: OutputStore,
    job: Option<Job>,
    state: SessionState,
    table_limit: u64,
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    pub fn new() -> Session {
        Session::with_cap(OUTPUT_CAP)
    }

    /// A session with a smaller output cap (tests; at least room for the truncation line).
    pub fn with_cap(cap: usize) -> Session {
        Session {
            store: OutputStore {
                bytes: Vec::new(),
                cap: cap.max(TRUNCATED_LINE.len() + 1),
                truncated: false,
            },
            job: None,
            state: SessionState::Idle,
            table_limit: MAX_COMMAND_TABLES,
        }
    }

    /// Limits the tables one whole dump may walk (default [`MAX_COMMAND_TABLES`]).
    pub fn set_table_limit(&mut self, max_tables: u64) {
        self.table_limit = max_tables;
    }

    /// Drops the output and any running command.
    pub fn reset(&mut self) {
        self.store.bytes = Vec::new();
        self.store.truncated = false;
        self.job = None;
        self.state = SessionState::Idle;
    }

    /// Discards the old output and starts `line`. Nothing runs until [`Session::produce`].
    pub fn start(&mut self, target: &dyn ConsoleTarget, line: &str) {
        self.reset();
        self.job = Some(Job::with_table_limit(target, line, self.table_limit));
        self.state = SessionState::Running;
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Bytes of output produced so far.
    pub fn produced(&self) -> usize {
        self.store.bytes.len()
    }

    /// Runs bounded steps until `want` bytes exist or the command ends, and at
    /// most [`CALL_TABLES`] tables' worth of dump. Returns the state after.
    pub fn produce(&mut self, target: &dyn ConsoleTarget, want: usize) -> SessionState {
        let mut spent = 0;
        while self.state == SessionState::Running && self.produced() < want && spent < CALL_TABLES {
            let Some(job) = self.job.as_mut() else {
                self.state = SessionState::Idle;
                break;
            };
            let before = job.tables_walked();
            let outcome = job.step(target, &mut self.store, CALL_TABLES - spent);
            // Every step costs at least one, so a call runs at most CALL_TABLES steps.
            spent += job.tables_walked().saturating_sub(before).max(1);
            match outcome {
                Ok(StepOutcome::More) => {}
                Ok(StepOutcome::Done(verdict)) => self.finish(verdict),
                // Only the store refuses writes, and only when full.
                Err(fmt::Error) => self.finish(Verdict::Failed),
            }
        }
        self.state
    }

    fn finish(&mut self, verdict: Verdict) {
        self.job = None;
        self.state = SessionState::Done {
            verdict,
            truncated: self.store.truncated,
        };
    }

    /// Copies produced output from `offset` into `buf`; never produces.
    /// Returns the bytes copied (0 at or past the end of what exists).
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> usize {
        let available = self.store.bytes.get(offset..).unwrap_or(&[]);
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        n
    }

    /// The produced output from `offset` on (empty past the end).
    pub fn output_from(&self, offset: usize) -> &[u8] {
        self.store.bytes.get(offset..).unwrap_or(&[])
    }
}
