//! ELF64 core files as QEMU's `dump-guest-memory` writes them (without
//! `-p`/paging, without `-z`/`-l`/`-s` compression): `PT_LOAD` segments map
//! guest-physical addresses (`p_paddr`) to file ranges, `PT_NOTE` segments
//! hold per-CPU register notes.
//!
//! Notes read (QEMU `dump/dump.c` writes every CPU's `CORE` notes, then
//! every CPU's `QEMU` note, CPUs in the same order each time):
//! - x86_64: name `QEMU`, type 0, desc `QEMUCPUState` (`target/i386/arch_dump.c`):
//!   `u32 version (1), u32 size, u64 rax..r15 (16), rip, rflags`, ten
//!   segments `{u32 selector, limit, flags, pad; u64 base}` (cs ds es fs gs ss
//!   ldt tr gdt idt), `u64 cr[5]`, then `kernel_gs_base` when `size` allows.
//!   So `cr[0]` is at byte 392, `cr[3]` at 416 and `cr[4]` at 424. EFER is not
//!   in the dump.
//! - arm64: name `CORE`, type `NT_PRSTATUS` (1), desc `struct elf_prstatus`
//!   with `pr_reg` (`x0..x30, sp, pc, pstate`) at byte 112
//!   (`target/arm/arch_dump.c`). QEMU writes no system registers (no TTBRn,
//!   TCR or MAIR), so the tables' roots must come from the command line.
//!
//! The parsing itself is the `object` crate's (bounds-checked, no panics on
//! hostile input); this module adds the checks a walk needs and reads the notes.

use std::fs::File;

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::read::ReadCache;
use object::Endianness;

use crate::memory::Segment;

/// What the core says about one CPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuNotes {
    pub x86: Option<QemuX86State>,
    pub arm64: Option<Arm64Prstatus>,
}

/// The fields of QEMU's x86 `QEMUCPUState` this tool uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QemuX86State {
    pub version: u32,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
}

/// The fields of an arm64 `NT_PRSTATUS` this tool uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arm64Prstatus {
    pub pc: u64,
    pub pstate: u64,
}

impl Arm64Prstatus {
    /// PSTATE.M[3:2]: the exception level the CPU was running at.
    pub fn exception_level(&self) -> u64 {
        (self.pstate >> 2) & 3
    }
}

pub struct ElfCore {
    pub machine: elf::Machine,
    pub segments: Vec<Segment>,
    /// One per CPU, in the order the notes list them.
    pub cpus: Vec<CpuNotes>,
    /// Problems met that do not stop a walk (printed as warnings).
    pub warnings: Vec<String>,
}

pub fn machine_name(machine: elf::Machine) -> String {
    match machine {
        elf::EM_X86_64 => "x86_64".into(),
        elf::EM_386 => "i386".into(),
        elf::EM_AARCH64 => "aarch64".into(),
        other => format!("e_machine {}", other.0),
    }
}

const QEMU_STATE_CR0: usize = 392;
const QEMU_STATE_CR3: usize = QEMU_STATE_CR0 + 3 * 8;
const QEMU_STATE_CR4: usize = QEMU_STATE_CR0 + 4 * 8;
const QEMU_STATE_VERSION: u32 = 1;
const PRSTATUS_REGS: usize = 112;
const ARM64_PRSTATUS_PC: usize = PRSTATUS_REGS + 32 * 8;
const ARM64_PRSTATUS_PSTATE: usize = PRSTATUS_REGS + 33 * 8;

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn qemu_x86_state(desc: &[u8]) -> Result<QemuX86State, String> {
    let version = u32_at(desc, 0).ok_or("QEMU note shorter than its header")?;
    let size = u32_at(desc, 4).ok_or("QEMU note shorter than its header")?;
    if version != QEMU_STATE_VERSION {
        return Err(format!(
            "QEMUCPUState version {version} (only {QEMU_STATE_VERSION} is known)"
        ));
    }
    let end = QEMU_STATE_CR4 + 8;
    if (size as usize) < end || desc.len() < end {
        return Err(format!(
            "QEMUCPUState of {size} bytes (note {} bytes) ends before cr[4]",
            desc.len()
        ));
    }
    let reg = |at| u64_at(desc, at).ok_or("QEMU note too short");
    Ok(QemuX86State {
        version,
        cr0: reg(QEMU_STATE_CR0)?,
        cr3: reg(QEMU_STATE_CR3)?,
        cr4: reg(QEMU_STATE_CR4)?,
    })
}

fn arm64_prstatus(desc: &[u8]) -> Option<Arm64Prstatus> {
    Some(Arm64Prstatus {
        pc: u64_at(desc, ARM64_PRSTATUS_PC)?,
        pstate: u64_at(desc, ARM64_PRSTATUS_PSTATE)?,
    })
}

/// `kdump-compressed` (`dump-guest-memory -z/-l/-s`) starts with this.
const KDUMP_SIGNATURE: &[u8] = b"KDUMP   ";

/// Reads the headers and notes of the ELF core at `path` (not its memory).
pub fn parse(path: &str, file: &File) -> Result<ElfCore, String> {
    let file_len = file.metadata().map_err(|e| format!("cannot stat '{path}': {e}"))?.len();
    let data = ReadCache::new(file);
    let bad = |what: &str| format!("'{path}' is not a usable ELF core: {what}");

    let ident = object::ReadRef::read_bytes_at(&data, 0, 16.min(file_len)).map_err(|_| bad("cannot read it"))?;
    if ident.starts_with(KDUMP_SIGNATURE) {
        return Err(bad(
            "it is in kdump-compressed format; dump it as ELF (dump-guest-memory without -z/-l/-s)",
        ));
    }
    if !ident.starts_with(&elf::ELFMAG) {
        return Err(bad("no ELF magic (\\x7fELF) at its start"));
    }
    if ident.len() < 16 {
        return Err(bad("truncated inside the ELF identification"));
    }
    // e_ident[EI_CLASS], e_ident[EI_DATA].
    match elf::FileClass(ident[4]) {
        elf::ELFCLASS64 => {}
        elf::ELFCLASS32 => {
            return Err(bad(
                "ELF32 (QEMU writes ELF32 when CPU 0 was not in long mode and memory ends below 4G)",
            ))
        }
        other => return Err(bad(&format!("unknown ELF class {}", other.0))),
    }
    if elf::DataEncoding(ident[5]) != elf::ELFDATA2LSB {
        return Err(bad("not little-endian (page tables are read as little-endian)"));
    }

    let header = elf::FileHeader64::<Endianness>::parse(&data).map_err(|e| bad(&e.to_string()))?;
    let endian = header.endian().map_err(|e| bad(&e.to_string()))?;
    let e_type = header.e_type(endian);
    if e_type != elf::ET_CORE {
        return Err(bad(&format!("e_type is {}, not ET_CORE (4)", e_type.0)));
    }
    let machine = header.e_machine(endian);
    let phdrs = header.program_headers(endian, &data).map_err(|e| bad(&e.to_string()))?;
    if phdrs.is_empty() {
        return Err(bad("no program headers"));
    }

    let mut core = ElfCore {
        machine,
        segments: Vec::new(),
        cpus: Vec::new(),
        warnings: Vec::new(),
    };
    let mut x86_states = Vec::new();
    for (index, phdr) in phdrs.iter().enumerate() {
        let offset = phdr.p_offset(endian);
        let file_size = phdr.p_filesz(endian);
        match phdr.p_type(endian) {
            elf::PT_LOAD => {
                let paddr = phdr.p_paddr(endian);
                let mem_size = phdr.p_memsz(endian);
                if file_size > mem_size {
                    return Err(bad(&format!(
                        "PT_LOAD {index} holds more file bytes ({file_size:#x}) than memory ({mem_size:#x})"
                    )));
                }
                if paddr.checked_add(mem_size).is_none() {
                    return Err(bad(&format!(
                        "PT_LOAD {index} at {paddr:#x} of {mem_size:#x} bytes runs past 2^64"
                    )));
                }
                let present = file_len.saturating_sub(offset).min(file_size);
                if present < file_size {
                    core.warnings.push(format!(
                        "'{path}' is truncated: PT_LOAD {index} (physical {paddr:#x}) has {present:#x} of its \
                         {file_size:#x} bytes; the rest reads as unreadable"
                    ));
                }
                core.segments.push(Segment {
                    paddr,
                    offset,
                    file_size,
                    mem_size,
                    present,
                });
            }
            elf::PT_NOTE => {
                if offset.checked_add(file_size).is_none_or(|end| end > file_len) {
                    core.warnings.push(format!(
                        "PT_NOTE {index} lies past the end of the file: its CPU registers are ignored"
                    ));
                    continue;
                }
                let notes = phdr.notes(endian, &data);
                let mut notes = match notes {
                    Ok(Some(notes)) => notes,
                    Ok(None) => continue,
                    Err(e) => {
                        core.warnings
                            .push(format!("PT_NOTE {index}: {e}: its CPU registers are ignored"));
                        continue;
                    }
                };
                loop {
                    let note = match notes.next() {
                        Ok(Some(note)) => note,
                        Ok(None) => break,
                        Err(e) => {
                            core.warnings
                                .push(format!("PT_NOTE {index}: {e}: the notes after it are ignored"));
                            break;
                        }
                    };
                    match (note.name(), note.n_type(endian)) {
                        (elf::ELF_NOTE_CORE, elf::NT_PRSTATUS) => core.cpus.push(CpuNotes {
                            arm64: (machine == elf::EM_AARCH64)
                                .then(|| arm64_prstatus(note.desc()))
                                .flatten(),
                            x86: None,
                        }),
                        (b"QEMU", elf::NoteType(0)) => x86_states.push(qemu_x86_state(note.desc())),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if core.segments.is_empty() {
        return Err(bad("no PT_LOAD segment (no memory in it)"));
    }
    // QEMU writes the QEMU notes in the same CPU order as the NT_PRSTATUS ones.
    if core.cpus.len() < x86_states.len() {
        core.cpus.resize(x86_states.len(), CpuNotes::default());
    }
    for (cpu, state) in x86_states.into_iter().enumerate() {
        match state {
            Ok(state) => core.cpus[cpu].x86 = Some(state),
            Err(e) => core.warnings.push(format!("CPU {cpu}: ignoring its QEMU note: {e}")),
        }
    }
    Ok(core)
}
