//! `ptdump`: dumps the page tables held in a copy of physical memory (a raw
//! image, or the ELF core QEMU's `dump-guest-memory` writes) in Linux's
//! formats and runs Linux's W+X check on them.
//!
//! ```text
//! ptdump --arch aarch64 --base 0x40000000 --tcr 0x... --ttbr1 0x... [--ttbr0 0x...] [--mair 0x...] mem.raw
//! ptdump --arch x86_64  --base 0 --cr3 0x... [--la57] mem.raw
//! ptdump --arch x86_64  --elf vmcore.elf            (CR3/CR4 from the core's QEMU note of CPU 0)
//! ptdump --arch aarch64 --elf vmcore.elf --tcr 0x... --ttbr1 0x...
//! ptdump --arch stage2  --base 0x40000000 --vttbr 0x... --vtcr 0x... mem.raw
//! ```
//! Exit status: 0 when every dump and check passed, 1 when a W+X check failed
//! or the tables hold bad entries, 2 for usage, configuration or I/O errors.

mod elfcore;
mod memory;

use std::fmt;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::process::ExitCode;

use pagewalk::arm64::{Half, Stage1, Stage2};
use pagewalk::ept::Ept;
use pagewalk::x86::{Npt, X86_64};
use pagewalk::AddrRange;
use ptdump::{DumpStats, Marker, WxOptions, WxReport};

use elfcore::ElfCore;
use memory::{Segment, SegmentMemory};

const USAGE: &str = "\
usage: ptdump --arch ARCH --base ADDR [ROOTS] [OPTIONS] IMAGE
       ptdump --arch ARCH --base ADDR [ROOTS] [OPTIONS] --raw IMAGE
       ptdump --arch ARCH --elf CORE [ROOTS] [--cpu N] [OPTIONS]

IMAGE is a raw copy of physical memory starting at physical address ADDR.
CORE is an ELF64 core from QEMU's dump-guest-memory (without -p, -z, -l, -s):
its PT_LOAD segments give the physical memory (p_paddr), addresses outside
them are unreadable. Facts about the core and the registers used go to stderr.

ARCH and its roots:
  aarch64   --tcr TCR_EL1 and --ttbr0 X and/or --ttbr1 X [--mair MAIR_EL1]
            --el2: --tcr is TCR_EL2 (non-VHE), only --ttbr0
            (QEMU's arm64 cores hold no system registers: always give them)
  x86_64    --cr3 X [--la57] [--no-nxe] [--phys-bits N]
            with --elf and no --cr3: CR3, and CR4.LA57 for 5-level paging,
            come from the QEMU note (QEMUCPUState) of CPU N (--cpu, default 0)
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
    /// A raw image (positional or `--raw`).
    image: Option<String>,
    elf: Option<String>,
    cpu: Option<u64>,
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
            "--raw" | "--elf" => {
                let path = argv.next().ok_or_else(|| CliError(format!("{arg} needs a file")))?;
                let slot = if arg == "--raw" { &mut args.image } else { &mut args.elf };
                if slot.replace(path.clone()).is_some() {
                    return err(format!("more than one image given ('{path}')"));
                }
            }
            "--cpu" => args.cpu = Some(value("--cpu")?),
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

/// The memory to walk, and the ELF core it came from if any.
struct Input {
    mem: SegmentMemory,
    core: Option<(String, ElfCore)>,
}

fn open(path: &str) -> Result<File, CliError> {
    File::open(path).or_else(|e| err(format!("cannot open '{path}': {e}")))
}

fn starts_with_elf_magic(path: &str) -> bool {
    let mut magic = [0u8; 4];
    File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == *b"\x7fELF"
}

fn open_input(args: &Args) -> Result<Input, CliError> {
    match (&args.image, &args.elf) {
        (Some(_), Some(_)) => err("give either a raw image (with --base) or --elf, not both"),
        (None, None) => err("no image file given"),
        (Some(path), None) => {
            let Some(base) = args.base else {
                if starts_with_elf_magic(path) {
                    return err(format!(
                        "--base is required: '{path}' is an ELF file, did you mean --elf?"
                    ));
                }
                return err("--base is required");
            };
            if args.cpu.is_some() {
                return err("--cpu selects a CPU of an ELF core (--elf)");
            }
            let file = open(path)?;
            let len = file
                .metadata()
                .or_else(|e| err(format!("cannot stat '{path}': {e}")))?
                .len();
            if base.checked_add(len).is_none() {
                return err(format!(
                    "'{path}' at --base {base:#x} runs past the top of the address space"
                ));
            }
            let whole = Segment {
                paddr: base,
                offset: 0,
                file_size: len,
                mem_size: len,
                present: len,
            };
            let mem = SegmentMemory::new(file, vec![whole]).map_err(CliError)?;
            Ok(Input { mem, core: None })
        }
        (None, Some(path)) => {
            if args.base.is_some() {
                return err("--base is for raw images: an ELF core gives its own physical addresses");
            }
            let file = open(path)?;
            let core = elfcore::parse(path, &file).map_err(CliError)?;
            for warning in &core.warnings {
                eprintln!("ptdump: warning: {warning}");
            }
            let mem = SegmentMemory::new(file, core.segments.clone())
                .map_err(|e| CliError(format!("'{path}' is not a usable ELF core: PT_LOAD {e}")))?;
            let bytes: u64 = mem.segments().iter().map(|s| s.mem_size).sum();
            eprintln!(
                "ptdump: {path}: ELF64 core of {}, {} PT_LOAD segments ({} KiB of physical memory), {} CPUs",
                elfcore::machine_name(core.machine),
                mem.segments().len(),
                bytes / 1024,
                core.cpus.len()
            );
            Ok(Input {
                mem,
                core: Some((path.clone(), core)),
            })
        }
    }
}

/// x86 `CR0.PG`, `CR4.LA57`.
const CR0_PG: u64 = 1 << 31;
const CR4_LA57: u64 = 1 << 12;

/// The x86-64 root and whether to use 5-level paging: from the command line,
/// else from the QEMU note of the chosen CPU.
fn x86_roots(args: &Args, core: Option<&(String, ElfCore)>) -> Result<(u64, bool), CliError> {
    let cpu_index = args.cpu.unwrap_or(0);
    let state = core.and_then(|(_, core)| core.cpus.get(usize::try_from(cpu_index).ok()?)?.x86);
    if let Some(cr3) = args.cr3 {
        if let Some(state) = state.filter(|s| s.cr4 & CR4_LA57 != 0 && !args.la57) {
            eprintln!(
                "ptdump: warning: CPU {cpu_index} ran with CR4.LA57 set (CR4={:#x}): add --la57 to walk 5-level tables",
                state.cr4
            );
        }
        return Ok((cr3, args.la57));
    }
    let Some((path, core)) = core else {
        return err("--arch x86_64 needs --cr3");
    };
    if core.machine != object::elf::EM_X86_64 {
        return err(format!(
            "--arch x86_64 needs --cr3: '{path}' is a core of {} (QEMU writes x86_64 only when CPU 0 was in long mode)",
            elfcore::machine_name(core.machine)
        ));
    }
    if core.cpus.is_empty() {
        return err(format!("--arch x86_64 needs --cr3: '{path}' has no CPU notes"));
    }
    let Some(cpu) = usize::try_from(cpu_index).ok().and_then(|i| core.cpus.get(i)) else {
        return err(format!(
            "--cpu {cpu_index}: '{path}' has notes for {} CPUs",
            core.cpus.len()
        ));
    };
    let Some(state) = cpu.x86 else {
        return err(format!(
            "--arch x86_64 needs --cr3: '{path}' has no usable QEMU note (name \"QEMU\", type 0, QEMUCPUState) \
             for CPU {cpu_index}"
        ));
    };
    if state.cr0 & CR0_PG == 0 {
        return err(format!(
            "CPU {cpu_index} ran with paging off (CR0={:#x}): there is no table to walk (give --cr3 to walk one anyway)",
            state.cr0
        ));
    }
    let la57 = args.la57 || state.cr4 & CR4_LA57 != 0;
    eprintln!(
        "ptdump: using CPU {cpu_index}'s QEMU note (QEMUCPUState v{}): CR0={:#x} CR3={:#x} CR4={:#x}: \
         root {:#x}, {}-level paging (CR4.LA57={}{}), NX honoured (EFER is not in the dump; --no-nxe ignores NX)",
        state.version,
        state.cr0,
        state.cr3,
        state.cr4,
        state.cr3 & X86_TABLE_ADDR,
        if la57 { 5 } else { 4 },
        u8::from(state.cr4 & CR4_LA57 != 0),
        if args.la57 && state.cr4 & CR4_LA57 == 0 {
            ", --la57 given"
        } else {
            ""
        },
    );
    Ok((state.cr3, la57))
}

/// Says what the core tells about the arm64 CPU, and what it cannot.
fn arm64_core_facts(args: &Args, core: Option<&(String, ElfCore)>) -> Result<(), CliError> {
    let Some((path, core)) = core else {
        return Ok(());
    };
    let cpu_index = args.cpu.unwrap_or(0);
    let prstatus = usize::try_from(cpu_index)
        .ok()
        .and_then(|i| core.cpus.get(i))
        .and_then(|cpu| cpu.arm64);
    if let Some(regs) = prstatus {
        eprintln!(
            "ptdump: CPU {cpu_index} (NT_PRSTATUS): pc={:#x} pstate={:#x} (EL{})",
            regs.pc,
            regs.pstate,
            regs.exception_level()
        );
        if regs.exception_level() == 2 && !args.el2 {
            eprintln!("ptdump: note: CPU {cpu_index} was at EL2: its own tables are TTBR0_EL2's (--el2 --tcr TCR_EL2)");
        }
    }
    if args.tcr.is_none() || (args.ttbr0.is_none() && args.ttbr1.is_none()) {
        return err(format!(
            "--arch aarch64 needs --tcr and --ttbr0 and/or --ttbr1: QEMU's arm64 cores hold no system \
             registers ('{path}' has only NT_PRSTATUS: x0-x30, sp, pc, pstate), so give them from the guest \
             or a debugger"
        ));
    }
    Ok(())
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
    let range = match (args.start, args.end) {
        (None, None) => AddrRange::ALL,
        (start, end) => {
            AddrRange::new(start.unwrap_or(0), end).ok_or_else(|| CliError("--start must be below --end".into()))?
        }
    };
    let Input { mem, core } = open_input(args)?;
    if let Some((path, core)) = &core {
        let expected = match arch {
            Arch::Aarch64 | Arch::Stage2 => object::elf::EM_AARCH64,
            Arch::X86_64 | Arch::Npt | Arch::Ept => object::elf::EM_X86_64,
        };
        if core.machine != expected {
            eprintln!(
                "ptdump: warning: '{path}' is a core of {}, not {}",
                elfcore::machine_name(core.machine),
                elfcore::machine_name(expected)
            );
        }
    }
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
            arm64_core_facts(args, core.as_ref())?;
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
                    let mut markers = vec![Marker::new(start, &marker_name)];
                    // Linux 6.1's layout is fixed for a 48-bit VA kernel only.
                    if half == Half::Upper && !args.el2 && format.va_bits() == 48 {
                        markers.extend_from_slice(&ptdump::arm64::LINUX_6_1_VA48_MARKERS);
                    }
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
            let (cr3, la57) = x86_roots(args, core.as_ref())?;
            let levels = if la57 { 5 } else { 4 };
            let format = config(
                "x86_64 paging",
                X86_64::new(levels, !args.no_nxe, args.phys_bits.unwrap_or(52)),
            )?;
            let root = cr3 & X86_TABLE_ADDR;
            if dump {
                let kernel =
                    pagewalk::Format::offset_to_addr(&format, 1 << (pagewalk::Format::input_bits(&format) - 1));
                // Linux's fixed kernel-half markers, ESPfix area capped as Linux caps it.
                let mut markers = vec![Marker::new(0, "User Space"), Marker::new(kernel, "Kernel Space")];
                markers.extend_from_slice(ptdump::x86::linux_kernel_markers(la57));
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
