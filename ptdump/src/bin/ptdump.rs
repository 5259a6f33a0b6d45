//! `ptdump`: dumps the page tables held in a raw physical memory image in
//! Linux's formats and runs Linux's W+X check on them.
//!
//! ```text
//! ptdump --arch aarch64 --base 0x40000000 --tcr 0x... --ttbr1 0x... [--ttbr0 0x...] [--mair 0x...] mem.raw
//! ptdump --arch x86_64  --base 0 --cr3 0x... [--la57] mem.raw
//! ptdump --arch stage2  --base 0x40000000 --vttbr 0x... --vtcr 0x... mem.raw
//! ```
//! Exit status: 0 when every dump and check passed, 1 when a W+X check failed
//! or the tables hold bad entries, 2 for usage, configuration or I/O errors.

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt;
use std::process::ExitCode;

use pagewalk::arm64::{Half, Stage1, Stage2};
use pagewalk::ept::Ept;
use pagewalk::x86::{Npt, X86_64};
use pagewalk::{AddrRange, ReadFault, TableMemory};
use ptdump::{DumpStats, Marker, WxOptions, WxReport};

const USAGE: &str = "\
usage: ptdump --arch ARCH --base ADDR [ROOTS] [OPTIONS] IMAGE

IMAGE is a raw copy of physical memory starting at physical address ADDR.

ARCH and its roots:
  aarch64   --tcr TCR_EL1 and --ttbr0 X and/or --ttbr1 X [--mair MAIR_EL1]
            --el2: --tcr is TCR_EL2 (non-VHE), only --ttbr0
  x86_64    --cr3 X [--la57] [--no-nxe] [--phys-bits N]
  stage2    --vttbr VTTBR_EL2 --vtcr VTCR_EL2
  npt       --ncr3 X (or --cr3) [--la57] [--phys-bits N]
  ept       --eptp X [--mbec] [--phys-bits N]

OPTIONS:
  --start ADDR / --end ADDR   dump only [start, end) (default: everything)
  --wx-all                    list every W+X range, not only the first
  --no-wx                     skip the W+X check
  --no-dump                   only the W+X check
Numbers are hex with 0x, or decimal.
Exit status: 0 all passed, 1 W+X check failed or bad entries found, 2 error.";

/// A command-line or setup error: printed with the usage hint, exit 2.
#[derive(Debug)]
struct CliError(String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError(msg.into()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arch {
    Aarch64,
    X86_64,
    Stage2,
    Npt,
    Ept,
}

#[derive(Debug, Default)]
struct Args {
    arch: Option<Arch>,
    base: Option<u64>,
    image: Option<String>,
    tcr: Option<u64>,
    ttbr0: Option<u64>,
    ttbr1: Option<u64>,
    mair: Option<u64>,
    el2: bool,
    cr3: Option<u64>,
    la57: bool,
    no_nxe: bool,
    phys_bits: Option<u32>,
    vttbr: Option<u64>,
    vtcr: Option<u64>,
    eptp: Option<u64>,
    mbec: bool,
    start: Option<u64>,
    end: Option<u64>,
    wx_all: bool,
    no_wx: bool,
    no_dump: bool,
}

fn parse_number(flag: &str, text: &str) -> Result<u64, CliError> {
    let cleaned = text.replace('_', "");
    let parsed = match cleaned.strip_prefix("0x").or_else(|| cleaned.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => cleaned.parse(),
    };
    parsed.or_else(|_| err(format!("{flag}: '{text}' is not a number (hex with 0x, or decimal)")))
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>, CliError> {
    let mut args = Args::default();
    while let Some(arg) = argv.next() {
        let mut value = |flag: &str| -> Result<u64, CliError> {
            match argv.next() {
                Some(v) => parse_number(flag, &v),
                None => err(format!("{flag} needs a value")),
            }
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--arch" => {
                let name = argv.next().ok_or_else(|| CliError("--arch needs a value".into()))?;
                args.arch = Some(match name.as_str() {
                    "aarch64" | "arm64" => Arch::Aarch64,
                    "x86_64" | "x86" => Arch::X86_64,
                    "stage2" => Arch::Stage2,
                    "npt" => Arch::Npt,
                    "ept" => Arch::Ept,
                    other => return err(format!("--arch: unknown '{other}' (aarch64, x86_64, stage2, npt, ept)")),
                });
            }
            "--base" => args.base = Some(value("--base")?),
            "--tcr" => args.tcr = Some(value("--tcr")?),
            "--ttbr0" => args.ttbr0 = Some(value("--ttbr0")?),
            "--ttbr1" => args.ttbr1 = Some(value("--ttbr1")?),
            "--mair" => args.mair = Some(value("--mair")?),
            "--el2" => args.el2 = true,
            "--cr3" | "--ncr3" => args.cr3 = Some(value(&arg)?),
            "--la57" => args.la57 = true,
            "--no-nxe" => args.no_nxe = true,
            "--phys-bits" => {
                let bits = value("--phys-bits")?;
                args.phys_bits = Some(u32::try_from(bits).or_else(|_| err("--phys-bits: out of range"))?);
            }
            "--vttbr" => args.vttbr = Some(value("--vttbr")?),
            "--vtcr" => args.vtcr = Some(value("--vtcr")?),
            "--eptp" => args.eptp = Some(value("--eptp")?),
            "--mbec" => args.mbec = true,
            "--start" => args.start = Some(value("--start")?),
            "--end" => args.end = Some(value("--end")?),
            "--wx-all" => args.wx_all = true,
            "--no-wx" => args.no_wx = true,
            "--no-dump" => args.no_dump = true,
            flag if flag.starts_with('-') => return err(format!("unknown option '{flag}'")),
            _ => {
                if args.image.replace(arg.clone()).is_some() {
                    return err(format!("more than one image given ('{arg}')"));
                }
            }
        }
    }
    Ok(Some(args))
}

/// Physical memory read from an image file on demand, one page cached:
/// the walker reads tables entry by entry.
struct FileMemory {
    file: File,
    base: u64,
    len: u64,
    cache: RefCell<Option<(u64, Box<[u8; 4096]>)>>,
}

impl FileMemory {
    fn open(path: &str, base: u64) -> Result<FileMemory, CliError> {
        let file = File::open(path).or_else(|e| err(format!("cannot open '{path}': {e}")))?;
        let len = file
            .metadata()
            .or_else(|e| err(format!("cannot stat '{path}': {e}")))?
            .len();
        if base.checked_add(len).is_none() {
            return err(format!(
                "'{path}' at --base {base:#x} runs past the top of the address space"
            ));
        }
        Ok(FileMemory {
            file,
            base,
            len,
            cache: RefCell::new(None),
        })
    }
}

impl TableMemory for FileMemory {
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        let fault = ReadFault { addr };
        let offset = addr.checked_sub(self.base).ok_or(fault)?;
        if !addr.is_multiple_of(8) || offset.checked_add(8).is_none_or(|end| end > self.len) {
            return Err(fault);
        }
        let page = offset & !0xfff;
        let mut cache = self.cache.borrow_mut();
        if cache.as_ref().is_none_or(|(cached, _)| *cached != page) {
            let mut bytes = Box::new([0u8; 4096]);
            let want = (self.len - page).min(4096) as usize;
            self.file.read_exact_at(&mut bytes[..want], page).map_err(|_| fault)?;
            *cache = Some((page, bytes));
        }
        let (_, bytes) = cache.as_ref().ok_or(fault)?;
        let at = (offset - page) as usize;
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        Ok(u64::from_le_bytes(word))
    }
}

/// `fmt::Write` over stdout, keeping the I/O error.
struct Stdout<W: io::Write> {
    inner: W,
    error: Option<io::Error>,
}

impl<W: io::Write> fmt::Write for Stdout<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.inner.write_all(s.as_bytes()).map_err(|e| {
            self.error = Some(e);
            fmt::Error
        })
    }
}

/// What all dumps and checks found.
#[derive(Default)]
struct Outcome {
    bad_entries: u64,
    wx_failed: bool,
}

impl Outcome {
    fn dumped(&mut self, stats: DumpStats) {
        self.bad_entries += stats.bad_entries;
    }
    /// `also_dumped`: the dump of the same tables already counted their bad entries.
    fn checked(&mut self, report: WxReport, also_dumped: bool) {
        if !also_dumped {
            self.bad_entries += report.bad_entries;
        }
        self.wx_failed |= !report.passed();
    }
}

fn config<T, E: fmt::Display>(what: &str, r: Result<T, E>) -> Result<T, CliError> {
    r.or_else(|e| err(format!("{what}: {e}")))
}

fn need(value: Option<u64>, flag: &str, arch: &str) -> Result<u64, CliError> {
    value.ok_or_else(|| CliError(format!("--arch {arch} needs {flag}")))
}

/// TTBRn_EL1 / VTTBR_EL2 BADDR (bits 47:1): drops the ASID/VMID and CnP.
const TTBR_BADDR: u64 = 0x0000_ffff_ffff_fffe;
/// CR3 / N_CR3 / EPTP table address bits (flags and PCID dropped).
const X86_TABLE_ADDR: u64 = 0x000f_ffff_ffff_f000;

fn run(args: &Args, out: &mut dyn fmt::Write) -> Result<Outcome, CliError> {
    let arch = args.arch.ok_or_else(|| CliError("--arch is required".into()))?;
    let base = args.base.ok_or_else(|| CliError("--base is required".into()))?;
    let image = args
        .image
        .as_deref()
        .ok_or_else(|| CliError("no image file given".into()))?;
    let range = match (args.start, args.end) {
        (None, None) => AddrRange::ALL,
        (start, end) => {
            AddrRange::new(start.unwrap_or(0), end).ok_or_else(|| CliError("--start must be below --end".into()))?
        }
    };
    let mem = FileMemory::open(image, base)?;
    let wx_options = WxOptions {
        list_all: args.wx_all,
        ..WxOptions::default()
    };
    let mut outcome = Outcome::default();
    let io = |_: fmt::Error| CliError("writing the output failed".into());
    let dump = !args.no_dump;
    let wx = !args.no_wx;

    match arch {
        Arch::Aarch64 => {
            let tcr = need(args.tcr, "--tcr", "aarch64")?;
            if args.ttbr0.is_none() && args.ttbr1.is_none() {
                return err("--arch aarch64 needs --ttbr0 and/or --ttbr1");
            }
            if args.el2 && args.ttbr1.is_some() {
                return err("--el2: the non-VHE EL2 regime has no TTBR1");
            }
            let halves = [(Half::Lower, args.ttbr0, "TTBR0"), (Half::Upper, args.ttbr1, "TTBR1")];
            for (half, ttbr, name) in halves {
                let Some(ttbr) = ttbr else { continue };
                let format = if args.el2 {
                    config("TCR_EL2", Stage1::from_tcr_el2(tcr))?
                } else {
                    config(&format!("TCR_EL1 ({name})"), Stage1::from_tcr_el1(tcr, half))?
                };
                let format = args.mair.map_or(format, |mair| format.with_mair(mair));
                let root = ttbr & TTBR_BADDR;
                let start = pagewalk::Format::offset_to_addr(&format, 0);
                let marker_name = format!("{name} root {root:#x}");
                if dump {
                    let markers = [Marker::new(start, &marker_name)];
                    outcome.dumped(ptdump::arm64::dump(out, &format, &mem, root, range, &markers).map_err(io)?);
                }
                if wx {
                    writeln!(out, "ptdump: W+X check of {name}:").map_err(io)?;
                    let report = ptdump::arm64::check_wx_with(out, &format, &mem, root, range, &wx_options);
                    outcome.checked(report.map_err(io)?, dump);
                }
            }
        }
        Arch::X86_64 => {
            let cr3 = need(args.cr3, "--cr3", "x86_64")?;
            let levels = if args.la57 { 5 } else { 4 };
            let format = config(
                "x86_64 paging",
                X86_64::new(levels, !args.no_nxe, args.phys_bits.unwrap_or(52)),
            )?;
            let root = cr3 & X86_TABLE_ADDR;
            if dump {
                let kernel =
                    pagewalk::Format::offset_to_addr(&format, 1 << (pagewalk::Format::input_bits(&format) - 1));
                let markers = [Marker::new(0, "User Space"), Marker::new(kernel, "Kernel Space")];
                outcome.dumped(ptdump::x86::dump(out, &format, &mem, root, range, &markers).map_err(io)?);
            }
            if wx {
                let report = ptdump::x86::check_wx_with(out, &format, &mem, root, range, &wx_options);
                outcome.checked(report.map_err(io)?, dump);
            }
        }
        Arch::Stage2 => {
            let vttbr = need(args.vttbr, "--vttbr", "stage2")?;
            let vtcr = need(args.vtcr, "--vtcr", "stage2")?;
            let format = config("VTCR_EL2", Stage2::from_vtcr(vtcr))?;
            if dump {
                let stats = ptdump::stage2::dump(
                    out,
                    &format,
                    &mem,
                    vttbr & TTBR_BADDR,
                    range,
                    &ptdump::stage2::GUEST_IPA,
                );
                outcome.dumped(stats.map_err(io)?);
            }
        }
        Arch::Npt => {
            let ncr3 = need(args.cr3, "--ncr3", "npt")?;
            let levels = if args.la57 { 5 } else { 4 };
            let format = config("NPT paging", Npt::new(levels, args.phys_bits.unwrap_or(52)))?;
            if dump {
                let markers = &ptdump::npt::GUEST_PHYSICAL;
                let stats = ptdump::npt::dump(out, &format, &mem, ncr3 & X86_TABLE_ADDR, range, markers);
                outcome.dumped(stats.map_err(io)?);
            }
        }
        Arch::Ept => {
            let eptp = need(args.eptp, "--eptp", "ept")?;
            let format = config("EPTP", Ept::from_eptp(eptp, args.mbec, args.phys_bits.unwrap_or(52)))?;
            if dump {
                let markers = &ptdump::ept::GUEST_PHYSICAL;
                let stats = ptdump::ept::dump(out, &format, &mem, eptp & X86_TABLE_ADDR, range, markers);
                outcome.dumped(stats.map_err(io)?);
            }
        }
    }
    Ok(outcome)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ptdump: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut out = Stdout {
        inner: io::BufWriter::new(io::stdout().lock()),
        error: None,
    };
    let result = run(&args, &mut out);
    let flushed = out.inner.flush();
    match (result, out.error.or(flushed.err())) {
        (_, Some(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(2),
        (_, Some(e)) => {
            eprintln!("ptdump: writing the output failed: {e}");
            ExitCode::from(2)
        }
        (Err(e), None) => {
            eprintln!("ptdump: {e}\n(ptdump --help for usage)");
            ExitCode::from(2)
        }
        (Ok(outcome), None) => {
            if outcome.bad_entries > 0 {
                eprintln!("ptdump: {} bad entries in the tables", outcome.bad_entries);
            }
            if outcome.wx_failed || outcome.bad_entries > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
