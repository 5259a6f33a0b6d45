//! The CLI on ELF cores (`--elf`): synthetic cores built here in QEMU's
//! `dump-guest-memory` layout must dump exactly as the equivalent raw image,
//! malformed cores must fail cleanly, and (when a kernel and QEMU are there)
//! a real dump of a booted Linux guest.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cli::*;
use common::*;
use pagewalk::arm64::{Half, Regime, Stage1};
use pagewalk::x86::X86_64;
use pagewalk::{Access, Level, MapAttrs, MemType};

// ---- writing ELF cores ----

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;

/// One `PT_LOAD`: `bytes` in the file, `mem_size` of physical memory at `paddr`.
struct Load<'a> {
    paddr: u64,
    bytes: &'a [u8],
    mem_size: u64,
}

impl<'a> Load<'a> {
    fn new(paddr: u64, bytes: &'a [u8]) -> Load<'a> {
        Load {
            paddr,
            bytes,
            mem_size: bytes.len() as u64,
        }
    }
}

struct Note {
    name: &'static str,
    kind: u32,
    desc: Vec<u8>,
}

fn pad4(bytes: &mut Vec<u8>) {
    while !bytes.len().is_multiple_of(4) {
        bytes.push(0);
    }
}

/// An ELF64 little-endian `ET_CORE` laid out as QEMU lays it out: header,
/// program headers (the `PT_NOTE` first), notes, then the segments' bytes,
/// which are written in REVERSE order so file offsets and physical
/// addresses do not line up by accident.
fn elf_core(machine: u16, loads: &[Load], notes: &[Note]) -> Vec<u8> {
    let mut note_bytes = Vec::new();
    for note in notes {
        note_bytes.extend((note.name.len() as u32 + 1).to_le_bytes());
        note_bytes.extend((note.desc.len() as u32).to_le_bytes());
        note_bytes.extend(note.kind.to_le_bytes());
        note_bytes.extend(note.name.as_bytes());
        note_bytes.push(0);
        pad4(&mut note_bytes);
        note_bytes.extend(&note.desc);
        pad4(&mut note_bytes);
    }
    let phnum = 1 + loads.len();
    let notes_at = EHDR_SIZE + phnum * PHDR_SIZE;
    let mut data_at = notes_at + note_bytes.len();
    let mut offsets = vec![0; loads.len()];
    for (i, load) in loads.iter().enumerate().rev() {
        offsets[i] = data_at;
        data_at += load.bytes.len();
    }

    let mut out = Vec::new();
    out.extend(b"\x7fELF");
    out.extend([2, 1, 1, 0]); // ELFCLASS64, ELFDATA2LSB, EV_CURRENT, SYSV
    out.extend([0; 8]);
    out.extend(4u16.to_le_bytes()); // ET_CORE
    out.extend(machine.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    out.extend(0u64.to_le_bytes()); // e_entry
    out.extend((EHDR_SIZE as u64).to_le_bytes()); // e_phoff
    out.extend(0u64.to_le_bytes()); // e_shoff
    out.extend(0u32.to_le_bytes()); // e_flags
    out.extend((EHDR_SIZE as u16).to_le_bytes());
    out.extend((PHDR_SIZE as u16).to_le_bytes());
    out.extend((phnum as u16).to_le_bytes());
    out.extend(64u16.to_le_bytes()); // e_shentsize
    out.extend(0u16.to_le_bytes()); // e_shnum
    out.extend(0u16.to_le_bytes()); // e_shstrndx
    assert_eq!(out.len(), EHDR_SIZE);

    let mut phdr = |kind: u32, offset: usize, paddr: u64, file_size: usize, mem_size: u64| {
        out.extend(kind.to_le_bytes());
        out.extend(0u32.to_le_bytes()); // p_flags
        out.extend((offset as u64).to_le_bytes());
        out.extend(0u64.to_le_bytes()); // p_vaddr: QEMU writes 0 without paging
        out.extend(paddr.to_le_bytes());
        out.extend((file_size as u64).to_le_bytes());
        out.extend(mem_size.to_le_bytes());
        out.extend(0u64.to_le_bytes()); // p_align: QEMU writes 0
    };
    phdr(PT_NOTE, notes_at, 0, note_bytes.len(), note_bytes.len() as u64);
    for (load, offset) in loads.iter().zip(&offsets) {
        phdr(PT_LOAD, *offset, load.paddr, load.bytes.len(), load.mem_size);
    }
    out.extend(&note_bytes);
    for load in loads.iter().rev() {
        out.extend(load.bytes);
    }
    out
}

/// QEMU's x86 `QEMUCPUState` (version 1, 440 bytes): cr[0] at 392.
fn qemu_note(cr0: u64, cr3: u64, cr4: u64) -> Note {
    let mut desc = vec![0u8; 440];
    desc[0..4].copy_from_slice(&1u32.to_le_bytes());
    desc[4..8].copy_from_slice(&440u32.to_le_bytes());
    // rip, to show the unused fields are not read as registers.
    desc[136..144].copy_from_slice(&0xffff_ffff_8100_0000u64.to_le_bytes());
    for (i, cr) in [cr0, 0, 0x1234, cr3, cr4].into_iter().enumerate() {
        desc[392 + 8 * i..400 + 8 * i].copy_from_slice(&cr.to_le_bytes());
    }
    Note {
        name: "QEMU",
        kind: 0,
        desc,
    }
}

/// An `NT_PRSTATUS`: 336 bytes on x86_64, 392 on arm64 (pc and pstate at
/// 368 and 376).
fn prstatus(size: usize, pc_pstate: Option<(u64, u64)>) -> Note {
    let mut desc = vec![0u8; size];
    if let Some((pc, pstate)) = pc_pstate {
        desc[368..376].copy_from_slice(&pc.to_le_bytes());
        desc[376..384].copy_from_slice(&pstate.to_le_bytes());
    }
    Note {
        name: "CORE",
        kind: 1,
        desc,
    }
}

const CR0_PG_PE: u64 = 0x8005_0033;
const CR4_PAE: u64 = 0x20;
const CR4_LA57: u64 = 1 << 12;

// ---- running the CLI ----

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

/// Runs the same dump from `--elf` and from `--raw --base`, checks stdout
/// and exit status are identical, and returns the ELF run.
fn same_as_raw(arch: &str, elf: &TempFile, elf_args: &[&str], raw: &TempFile, base: u64, raw_args: &[&str]) -> Output {
    let from_elf = ptdump(&[&["--arch", arch, "--elf", elf.path()], elf_args].concat());
    let base = hex(base);
    let from_raw = ptdump(&[&["--arch", arch, "--raw", raw.path(), "--base", &base], raw_args].concat());
    assert_eq!(
        stdout(&from_elf),
        stdout(&from_raw),
        "ELF stderr: {}\nraw stderr: {}",
        stderr(&from_elf),
        stderr(&from_raw)
    );
    assert_eq!(from_elf.status.code(), from_raw.status.code(), "{}", stderr(&from_elf));
    assert!(!stdout(&from_elf).is_empty());
    from_elf
}

// ---- synthetic cores ----

/// Two address spaces in one memory: `wx_root` maps an RWX page, `clean_root`
/// does not. Returns (arena, wx_root, clean_root).
fn x86_tables(format: &X86_64) -> (mm::Arena, u64, u64) {
    let mut arena = arena();
    let wx_root = mm::TableBuilder::new(format, &mut arena).unwrap().root().0;
    let clean_root = mm::TableBuilder::new(format, &mut arena).unwrap().root().0;
    let rx = MapAttrs::new(Access::READ | Access::EXEC, MemType::Normal);
    let rw = MapAttrs::new(Access::READ | Access::WRITE, MemType::Normal);
    let rwx = MapAttrs::new(Access::READ | Access::WRITE | Access::EXEC, MemType::Normal);
    let user_rw = MapAttrs::new(Access::READ | Access::WRITE | Access::USER, MemType::Normal);
    for root in [wx_root, clean_root] {
        map(
            format,
            &mut arena,
            root,
            0xffff_ffff_8000_0000,
            0x100_0000,
            0x20_0000,
            &rx,
        );
        map_pages(
            format,
            &mut arena,
            root,
            0xffff_8880_0000_0000,
            0x4000_0000,
            0x3000,
            &rw,
        );
        map(format, &mut arena, root, 0x40_0000, 0x200_0000, 0x1000, &user_rw);
    }
    map(
        format,
        &mut arena,
        wx_root,
        0xffff_ffff_c000_0000,
        0x300_0000,
        0x2000,
        &rwx,
    );
    (arena, wx_root, clean_root)
}

#[test]
fn x86_core_dumps_as_the_raw_image_with_cr3_from_the_qemu_note() {
    let format = X86_64::four_level();
    let (arena, wx_root, clean_root) = x86_tables(&format);
    let raw = TempFile::new("x86.raw", arena.bytes());
    let (low, high) = arena.bytes().split_at(0x10_0000);
    // Two CPUs, CR3 with PCID bits set: CPU 0 runs the W+X tables.
    let core = elf_core(
        EM_X86_64,
        &[Load::new(ARENA_BASE, low), Load::new(ARENA_BASE + 0x10_0000, high)],
        &[
            prstatus(336, None),
            prstatus(336, None),
            qemu_note(CR0_PG_PE, wx_root | 0x7, CR4_PAE),
            qemu_note(CR0_PG_PE, clean_root | 0x3, CR4_PAE),
        ],
    );
    let elf = TempFile::new("x86.elf", &core);

    let o = same_as_raw("x86_64", &elf, &[], &raw, ARENA_BASE, &["--cr3", &hex(wx_root)]);
    assert_eq!(o.status.code(), Some(1));
    let (out, err) = (stdout(&o), stderr(&o));
    assert_lines_in_order(
        &out,
        "\
---[ User Space ]---
0x0000000000400000-0x0000000000401000           4K USR RW                 GLB NX pte
---[ Kernel Space ]---
0xffff888000000000-0xffff888000003000          12K     RW                 GLB NX pte
0xffffffff80000000-0xffffffff80200000           2M     ro         PSE     GLB x  pmd
0xffffffffc0000000-0xffffffffc0002000           8K     RW                 GLB x  pte
x86/mm: Found insecure W+X mapping at address ffffffffc0000000/0xffffffffc0000000
x86/mm: Checked W+X mappings: FAILED, 2 W+X pages found.",
    );
    assert!(
        err.contains("2 PT_LOAD segments (2048 KiB of physical memory), 2 CPUs"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "using CPU 0's QEMU note (QEMUCPUState v1): CR0=0x80050033 CR3={:#x} CR4=0x20: root {wx_root:#x}, \
             4-level paging (CR4.LA57=0)",
            wx_root | 7
        )),
        "{err}"
    );

    // CPU 1's note: the clean tables, exit status 0.
    let o = same_as_raw(
        "x86_64",
        &elf,
        &["--cpu", "1"],
        &raw,
        ARENA_BASE,
        &["--cr3", &hex(clean_root)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).ends_with("x86/mm: Checked W+X mappings: passed, no W+X pages found.\n"));
    assert!(
        stderr(&o).contains(&format!("CR3={:#x}", clean_root | 3)),
        "{}",
        stderr(&o)
    );

    // An explicit --cr3 wins over the note, and the note is not reported as used.
    let o = same_as_raw(
        "x86_64",
        &elf,
        &["--cr3", &hex(clean_root)],
        &raw,
        ARENA_BASE,
        &["--cr3", &hex(clean_root)],
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(!stderr(&o).contains("QEMU note"), "{}", stderr(&o));

    let o = ptdump(&["--arch", "x86_64", "--elf", elf.path(), "--cpu", "2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--cpu 2: "), "{}", stderr(&o));
    assert!(stderr(&o).contains("has notes for 2 CPUs"), "{}", stderr(&o));
}

#[test]
fn x86_core_with_la57_in_cr4_walks_five_levels() {
    let format = X86_64::five_level();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let rw = MapAttrs::new(Access::READ | Access::WRITE, MemType::Normal);
    map(
        &format,
        &mut arena,
        root,
        0xff11_0000_0000_0000,
        0x4000_0000,
        0x20_0000,
        &rw,
    );
    let raw = TempFile::new("la57.raw", arena.bytes());
    let core = elf_core(
        EM_X86_64,
        &[Load::new(ARENA_BASE, arena.bytes())],
        &[prstatus(336, None), qemu_note(CR0_PG_PE, root, CR4_PAE | CR4_LA57)],
    );
    let elf = TempFile::new("la57.elf", &core);
    let o = same_as_raw("x86_64", &elf, &[], &raw, ARENA_BASE, &["--cr3", &hex(root), "--la57"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("0xff11000000000000-0xff11000000200000           2M     RW         PSE     GLB NX pmd"),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("5-level paging (CR4.LA57=1)"), "{}", stderr(&o));

    // With --cr3 and no --la57 the 4-level walk is what was asked for, with a warning.
    let o = ptdump(&["--arch", "x86_64", "--elf", elf.path(), "--cr3", &hex(root), "--no-wx"]);
    assert!(stderr(&o).contains("ran with CR4.LA57 set"), "{}", stderr(&o));
}

#[test]
fn a_missing_segment_is_unreadable_and_a_zero_tail_reads_as_zeros() {
    let format = X86_64::four_level();
    let (mut arena, wx_root, _) = x86_tables(&format);
    // Move the page table of the direct-map pages to the top page of the
    // arena, so a segment can leave it out.
    let pmd_entry = entry_addr(&format, &arena, wx_root, 0xffff_8880_0000_0000, Level(2));
    let pte_table = pagewalk::TableMemory::read_u64(&arena, pmd_entry).unwrap() & 0x000f_ffff_ffff_f000;
    let top_page = ARENA_BASE + (2 << 20) - 0x1000;
    let at = |addr: u64| (addr - ARENA_BASE) as usize;
    let table: Vec<u8> = arena.bytes()[at(pte_table)..at(pte_table) + 0x1000].to_vec();
    arena.bytes_mut()[at(top_page)..at(top_page) + 0x1000].copy_from_slice(&table);
    patch(&mut arena, pmd_entry, |raw| (raw & !0x000f_ffff_ffff_f000) | top_page);
    arena.bytes_mut()[at(pte_table)..at(pte_table) + 0x1000].fill(0);
    let bytes = arena.bytes();
    let no_top = &bytes[..bytes.len() - 0x1000];
    let notes = || vec![prstatus(336, None), qemu_note(CR0_PG_PE, wx_root, CR4_PAE)];

    // The last page left out of the file: a hole in physical memory.
    let core = elf_core(EM_X86_64, &[Load::new(ARENA_BASE, no_top)], &notes());
    let elf = TempFile::new("hole.elf", &core);
    let o = ptdump(&["--arch", "x86_64", "--elf", elf.path(), "--no-wx"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!(
            "0xffff888000000000-0xffff888000200000           2M pmd BAD next table at {top_page:#x} is not readable"
        )),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("0xffffffff80000000-0xffffffff80200000"),
        "{}",
        stdout(&o)
    );

    // Left out of the file but inside p_memsz: zeros, as in a raw image
    // where that page is zero.
    let mut zero_tail = Load::new(ARENA_BASE, no_top);
    zero_tail.mem_size = bytes.len() as u64;
    let core = elf_core(EM_X86_64, &[zero_tail], &notes());
    let elf = TempFile::new("zero-tail.elf", &core);
    let mut zeroed = bytes.to_vec();
    let len = zeroed.len();
    zeroed[len - 0x1000..].fill(0);
    let raw = TempFile::new("zero-tail.raw", &zeroed);
    let o = same_as_raw("x86_64", &elf, &[], &raw, ARENA_BASE, &["--cr3", &hex(wx_root)]);
    assert!(
        stdout(&o).contains("0xffff888000000000-0xffff888000200000           2M                               pte"),
        "{}",
        stdout(&o)
    );

    // A truncated file: the segment's missing bytes are unreadable, with a warning.
    let core = elf_core(EM_X86_64, &[Load::new(ARENA_BASE, bytes)], &notes());
    let elf = TempFile::new("truncated.elf", &core[..core.len() - 0x1000]);
    let o = ptdump(&["--arch", "x86_64", "--elf", elf.path(), "--no-wx"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("is truncated: PT_LOAD 1 (physical 0x40000000) has 0x1ff000 of its 0x200000 bytes"));
    assert!(stdout(&o).contains("is not readable"), "{}", stdout(&o));
}

#[test]
fn arm64_core_needs_its_system_registers_on_the_command_line() {
    let format = Stage1::new(48, Half::Upper, Regime::El1And0).unwrap();
    let mut arena = arena();
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let rw = MapAttrs::new(Access::READ | Access::WRITE, MemType::Normal);
    map(
        &format,
        &mut arena,
        root,
        0xffff_0000_0000_0000,
        0x4000_0000,
        0x20_0000,
        &rw,
    );
    let rwx = MapAttrs::new(Access::READ | Access::WRITE | Access::EXEC_PRIV, MemType::Normal);
    map(
        &format,
        &mut arena,
        root,
        0xffff_0000_0020_0000,
        0x4020_0000,
        0x1000,
        &rwx,
    );
    let raw = TempFile::new("arm64.raw", arena.bytes());
    // EL1h (PSTATE.M = 0b0101), DAIF masked.
    let core = elf_core(
        EM_AARCH64,
        &[Load::new(ARENA_BASE, arena.bytes())],
        &[prstatus(392, Some((0xffff_8000_0801_0000, 0x3c5)))],
    );
    let elf = TempFile::new("arm64.elf", &core);

    let o = ptdump(&["--arch", "aarch64", "--elf", elf.path()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("CPU 0 (NT_PRSTATUS): pc=0xffff800008010000 pstate=0x3c5 (EL1)"),
        "{err}"
    );
    assert!(
        err.contains(
            "--arch aarch64 needs --tcr and --ttbr0 and/or --ttbr1: QEMU's arm64 cores hold no system registers"
        ),
        "{err}"
    );
    assert!(stdout(&o).is_empty());

    let roots = ["--tcr", &hex(TCR_48), "--ttbr1", &hex(root)];
    let o = same_as_raw("aarch64", &elf, &roots, &raw, ARENA_BASE, &roots);
    assert_eq!(o.status.code(), Some(1));
    assert_lines_in_order(
        &stdout(&o),
        "\
0xffff000000200000-0xffff000000201000           4K PTE       RW x  SHD AF            UXN    MEM/NORMAL
Checked W+X mappings: FAILED, 1 W+X pages found, 0 non-UXN pages found",
    );
}

// ---- malformed cores ----

fn small_x86_core() -> (Vec<u8>, u64, usize) {
    let format = X86_64::four_level();
    let mut arena = mm::Arena::new(ARENA_BASE, 0x10000);
    let root = mm::TableBuilder::new(&format, &mut arena).unwrap().root().0;
    let rx = MapAttrs::new(Access::READ | Access::EXEC, MemType::Normal);
    map(
        &format,
        &mut arena,
        root,
        0xffff_ffff_8000_0000,
        0x100_0000,
        0x1000,
        &rx,
    );
    let used = arena.used() as usize;
    let notes = [prstatus(336, None), qemu_note(CR0_PG_PE, root, CR4_PAE)];
    let core = elf_core(EM_X86_64, &[Load::new(ARENA_BASE, &arena.bytes()[..used])], &notes);
    let headers = core.len() - used;
    (core, root, headers)
}

fn assert_clean_exit(o: &Output, what: &str) {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(matches!(o.status.code(), Some(0..=2)), "{what}: {:?} {err}", o.status);
}

#[test]
fn truncated_cores_fail_cleanly() {
    let (core, _, headers) = small_x86_core();
    let o = ptdump(&["--arch", "x86_64", "--elf", TempFile::new("whole.elf", &core).path()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let file = TempFile::new("cut.elf", &[]);
    // Every cut inside the headers and notes, then a few in the memory.
    let cuts = (0..=headers).chain((headers..core.len()).step_by(1000));
    for len in cuts {
        file.rewrite(&core[..len]);
        let o = ptdump(&["--arch", "x86_64", "--elf", file.path()]);
        let what = format!("cut at {len} of {}", core.len());
        assert_clean_exit(&o, &what);
        if len < EHDR_SIZE + 2 * PHDR_SIZE {
            assert_eq!(o.status.code(), Some(2), "{what}");
            assert!(
                stderr(&o).contains("is not a usable ELF core"),
                "{what}: {}",
                stderr(&o)
            );
        } else if len < headers {
            // The notes are cut: no CR3 to use.
            assert_eq!(o.status.code(), Some(2), "{what}");
            assert!(
                stderr(&o).contains("--arch x86_64 needs --cr3"),
                "{what}: {}",
                stderr(&o)
            );
        } else {
            assert!(stderr(&o).contains("using CPU 0's QEMU note"), "{what}: {}", stderr(&o));
        }
    }
}

#[test]
fn corrupted_header_bytes_never_panic() {
    let (core, _, headers) = small_x86_core();
    let file = TempFile::new("corrupt.elf", &[]);
    for at in 0..headers {
        for value in [0x00, 0xff, 0x80] {
            let mut bad = core.clone();
            if bad[at] == value {
                continue;
            }
            bad[at] = value;
            file.rewrite(&bad);
            let o = ptdump(&["--arch", "x86_64", "--elf", file.path()]);
            assert_clean_exit(&o, &format!("byte {at} = {value:#x}"));
        }
    }
}

/// Writes `value` as little-endian at `at`.
fn put(core: &mut [u8], at: usize, value: &[u8]) {
    core[at..at + value.len()].copy_from_slice(value);
}

#[test]
fn malformed_cores_are_reported_clearly() {
    let (core, root, _) = small_x86_core();
    let phdr = |index: usize, field: usize| EHDR_SIZE + index * PHDR_SIZE + field;
    let (p_offset, p_paddr, p_memsz) = (8, 24, 40);
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut bad = core.clone();
        f(&mut bad);
        bad
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "no ELF magic"),
        ("text", b"not a core at all".to_vec(), "no ELF magic"),
        ("kdump", edit(&|c| put(c, 0, b"KDUMP   ")), "kdump-compressed format"),
        ("ELF32", edit(&|c| c[4] = 1), "ELF32"),
        ("big-endian", edit(&|c| c[5] = 2), "not little-endian"),
        ("class 9", edit(&|c| c[4] = 9), "unknown ELF class 9"),
        (
            "ET_EXEC",
            edit(&|c| put(c, 16, &2u16.to_le_bytes())),
            "e_type is 2, not ET_CORE",
        ),
        (
            "no phdrs",
            edit(&|c| put(c, 56, &0u16.to_le_bytes())),
            "no program headers",
        ),
        (
            "phoff past the end",
            edit(&|c| put(c, 32, &u64::MAX.to_le_bytes())),
            "is not a usable ELF core",
        ),
        (
            "phentsize",
            edit(&|c| put(c, 54, &32u16.to_le_bytes())),
            "is not a usable ELF core",
        ),
        (
            "PN_XNUM without section 0",
            edit(&|c| put(c, 56, &0xffffu16.to_le_bytes())),
            "is not a usable ELF core",
        ),
        (
            "no PT_LOAD",
            edit(&|c| put(c, phdr(1, 0), &PT_NOTE.to_le_bytes())),
            "no PT_LOAD segment",
        ),
        (
            "segment past 2^64",
            edit(&|c| put(c, phdr(1, p_paddr), &(u64::MAX - 0x100).to_le_bytes())),
            "runs past 2^64",
        ),
        (
            "filesz > memsz",
            edit(&|c| put(c, phdr(1, p_memsz), &8u64.to_le_bytes())),
            "holds more file bytes (0x",
        ),
        (
            "overlapping segments",
            edit(&|c| {
                // The PT_NOTE becomes a PT_LOAD over the same physical memory.
                put(c, phdr(0, 0), &PT_LOAD.to_le_bytes());
                put(c, phdr(0, p_paddr), &ARENA_BASE.to_le_bytes());
            }),
            "overlap",
        ),
        (
            "notes past the end",
            edit(&|c| put(c, phdr(0, p_offset), &(1u64 << 40).to_le_bytes())),
            "--arch x86_64 needs --cr3",
        ),
        (
            "huge note name",
            edit(&|c| put(c, EHDR_SIZE + 2 * PHDR_SIZE, &u32::MAX.to_le_bytes())),
            "--arch x86_64 needs --cr3",
        ),
        (
            "QEMUCPUState version 2",
            edit(&|c| {
                let at = find(c, b"QEMU\0\0\0\0").unwrap() + 8;
                put(c, at, &2u32.to_le_bytes());
            }),
            "ignoring its QEMU note: QEMUCPUState version 2 (only 1 is known)",
        ),
        (
            "QEMUCPUState too small",
            edit(&|c| {
                let at = find(c, b"QEMU\0\0\0\0").unwrap() + 12;
                put(c, at, &400u32.to_le_bytes());
            }),
            "QEMUCPUState of 400 bytes (note 440 bytes) ends before cr[4]",
        ),
        (
            "paging off",
            edit(&|c| {
                let at = find(c, b"QEMU\0\0\0\0").unwrap() + 8 + 392;
                put(c, at, &0x11u64.to_le_bytes());
            }),
            "CPU 0 ran with paging off (CR0=0x11)",
        ),
        (
            "i386 core",
            edit(&|c| put(c, 18, &3u16.to_le_bytes())),
            "is a core of i386 (QEMU writes x86_64 only when CPU 0 was in long mode)",
        ),
    ];
    let file = TempFile::new("malformed.elf", &[]);
    for (what, bytes, message) in &cases {
        file.rewrite(bytes);
        let o = ptdump(&["--arch", "x86_64", "--elf", file.path()]);
        assert_eq!(o.status.code(), Some(2), "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{what}: {}", stderr(&o));
        assert_clean_exit(&o, what);
    }

    // Notes that cannot be read do not stop a walk with an explicit --cr3.
    let bad = edit(&|c| put(c, EHDR_SIZE + 2 * PHDR_SIZE, &u32::MAX.to_le_bytes()));
    file.rewrite(&bad);
    let o = ptdump(&["--arch", "x86_64", "--elf", file.path(), "--cr3", &hex(root)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning: PT_NOTE 0: "), "{}", stderr(&o));

    // Command-line mistakes around --elf.
    file.rewrite(&core);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--arch", "x86_64", "--elf", file.path(), "--base", "0"],
            "--base is for raw images",
        ),
        (&["--arch", "x86_64", "--cr3", "0", file.path()], "did you mean --elf?"),
        (
            &[
                "--arch",
                "x86_64",
                "--elf",
                file.path(),
                "--raw",
                file.path(),
                "--base",
                "0",
            ],
            "not both",
        ),
        (&["--arch", "x86_64", "--elf"], "--elf needs a file"),
        (&["--arch", "x86_64", "--elf", "/nonexistent/core.elf"], "cannot open"),
        (
            &["--arch", "x86_64", "--raw", file.path(), "--base", "0", "--cpu", "1"],
            "--cpu selects a CPU of an ELF core",
        ),
    ];
    for (args, message) in cases {
        let o = ptdump(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
    }

    // A core of the other architecture is walked, with a warning.
    let o = ptdump(&[
        "--arch",
        "aarch64",
        "--elf",
        file.path(),
        "--tcr",
        &hex(TCR_48),
        "--ttbr1",
        &hex(ARENA_BASE),
        "--no-wx",
    ]);
    assert!(stderr(&o).contains("warning: '"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is a core of x86_64, not aarch64"),
        "{}",
        stderr(&o)
    );
    assert_clean_exit(&o, "x86 core as arm64");
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---- a real QEMU dump of a booted Linux ----

struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends HMP commands and reads the monitor until `until` shows up.
fn hmp(monitor: &mut UnixStream, command: &str, until: &str, timeout: Duration) -> String {
    monitor.write_all(format!("{command}\n").as_bytes()).unwrap();
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    monitor.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    while Instant::now() < deadline {
        match monitor.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("monitor: {e}"),
        }
        if String::from_utf8_lossy(&seen).contains(until) {
            break;
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Copies every PT_LOAD of `core` to its physical address in a sparse raw
/// image (base 0), read with a few lines of header parsing of its own.
fn core_to_raw(core: &Path, raw: &Path) {
    let file = std::fs::File::open(core).unwrap();
    let mut header = [0u8; EHDR_SIZE];
    file.read_exact_at(&mut header, 0).unwrap();
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes(b[at..at + 2].try_into().unwrap());
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let (phoff, phnum) = (u64_at(&header, 32), u16_at(&header, 56));
    let out = std::fs::File::create(raw).unwrap();
    for index in 0..u64::from(phnum) {
        let mut phdr = [0u8; PHDR_SIZE];
        file.read_exact_at(&mut phdr, phoff + index * PHDR_SIZE as u64).unwrap();
        if u32::from_le_bytes(phdr[0..4].try_into().unwrap()) != PT_LOAD {
            continue;
        }
        let (offset, paddr, size) = (u64_at(&phdr, 8), u64_at(&phdr, 24), u64_at(&phdr, 32));
        let mut bytes = vec![0u8; size as usize];
        file.read_exact_at(&mut bytes, offset).unwrap();
        out.write_all_at(&bytes, paddr).unwrap();
    }
}

/// Boots Debian's x86_64 kernel (guests/linux, cached) under QEMU until its
/// shell runs, dumps its memory with HMP `dump-guest-memory`, and checks the
/// CLI finds Linux's kernel mappings with CR3 from the core and reaches the
/// W+X verdict Linux itself printed at boot (CONFIG_DEBUG_WX). Skipped, with
/// the reason, when the kernel or QEMU is missing.
#[test]
fn real_qemu_dump_of_a_linux_guest() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guest = root.join(".cache/guests/x86_64-6.1");
    let (kernel, initrd) = (guest.join("vmlinux"), guest.join("initrd.cpio.gz"));
    if !kernel.exists() || !initrd.exists() {
        eprintln!(
            "SKIPPED: no cached x86_64 Linux guest at {} (guests/linux/build.sh --arch x86_64 makes it)",
            guest.display()
        );
        return;
    }
    if Command::new("qemu-system-x86_64").arg("--version").output().is_err() {
        eprintln!("SKIPPED: qemu-system-x86_64 is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ptdump-elf-qemu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = RemoveDir(dir.clone());
    let (socket, console, dump, raw) = (
        dir.join("monitor.sock"),
        dir.join("console.log"),
        dir.join("vmcore.elf"),
        dir.join("vmcore.raw"),
    );

    // guests/linux's /init runs the base64 `hv.cmd` with sh: say when the
    // shell runs (boot is over, rodata is read-only), then idle.
    let cmd = "echo ptdump-dump-now; sleep 600";
    let encoded = base64(cmd.as_bytes());
    let qemu = Command::new("qemu-system-x86_64")
        .args([
            "-cpu",
            "max",
            "-m",
            "128M",
            "-display",
            "none",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-monitor")
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", &format!("console=ttyS0 panic=-1 hv.cmd={encoded}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut qemu = Qemu(qemu);

    let deadline = Instant::now() + Duration::from_secs(240);
    let console_text = loop {
        let text = std::fs::read(&console)
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default();
        if text.lines().any(|l| l == "ptdump-dump-now") {
            break text;
        }
        if let Ok(Some(status)) = qemu.0.try_wait() {
            let mut err = String::new();
            qemu.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("QEMU exited ({status}) before the guest shell ran: {err}\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "the guest shell did not run in time:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let linux_verdict = console_text
        .lines()
        .find_map(|l| l.find("x86/mm: Checked W+X mappings").map(|at| l[at..].to_string()))
        .expect("Linux printed its W+X verdict (CONFIG_DEBUG_WX)");

    let mut monitor = UnixStream::connect(&socket).unwrap();
    hmp(
        &mut monitor,
        &format!("dump-guest-memory {}", dump.display()),
        "(qemu)",
        Duration::from_secs(5),
    );
    // The monitor runs commands in order: the answer to `info status` means
    // the dump is complete.
    let status = hmp(&mut monitor, "info status", "VM status", Duration::from_secs(120));
    assert!(status.contains("VM status"), "{status}");
    let _ = monitor.write_all(b"quit\n");
    drop(qemu);

    let o = Command::new(env!("CARGO_BIN_EXE_ptdump"))
        .args(["--arch", "x86_64", "--elf"])
        .arg(&dump)
        .output()
        .unwrap();
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("ELF64 core of x86_64"), "{err}");
    assert!(err.contains("using CPU 0's QEMU note (QEMUCPUState v1)"), "{err}");
    let kernel_space = out
        .split_once("---[ Kernel Space ]---\n")
        .expect("a Kernel Space part")
        .1;
    // The kernel image (__START_KERNEL_map, 0xffffffff80000000 + 1G): read-only
    // executable text, and non-executable data.
    let image_lines: Vec<&str> = kernel_space.lines().filter(|l| l.starts_with("0xffffffff8")).collect();
    assert!(
        image_lines.iter().any(|l| l.contains(" ro ") && l.contains(" GLB x ")),
        "no kernel text mapping:\n{}",
        image_lines.join("\n")
    );
    assert!(
        image_lines.iter().any(|l| l.contains(" RW ") && l.contains(" GLB NX ")),
        "no kernel data mapping:\n{}",
        image_lines.join("\n")
    );
    // The direct map of the guest's RAM: present, never executable.
    let direct_map: Vec<&str> = kernel_space
        .lines()
        .filter(|l| l.contains(" RW ") && l.contains(" NX ") && l.contains("PSE"))
        .collect();
    assert!(!direct_map.is_empty(), "no large RW NX mappings (direct map)");
    assert_eq!(
        out.lines().last(),
        Some(linux_verdict.as_str()),
        "Linux said: {linux_verdict}"
    );
    assert_eq!(
        linux_verdict,
        "x86/mm: Checked W+X mappings: passed, no W+X pages found."
    );

    // The same memory as a raw image dumps the same.
    core_to_raw(&dump, &raw);
    let cr3 = err
        .split("CR3=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    let from_raw = Command::new(env!("CARGO_BIN_EXE_ptdump"))
        .args(["--arch", "x86_64", "--base", "0", "--cr3", &cr3, "--raw"])
        .arg(&raw)
        .output()
        .unwrap();
    assert_eq!(from_raw.status.code(), Some(0), "{}", stderr(&from_raw));
    assert!(stdout(&from_raw) == out, "raw and ELF dumps differ");
    eprintln!(
        "real dump: {} lines, CR3={cr3}, verdict: {linux_verdict}",
        out.lines().count()
    );
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_the_standard_alphabet() {
    assert_eq!(base64(b"echo hi"), "ZWNobyBoaQ==");
    assert_eq!(base64(b"abc"), "YWJj");
    assert_eq!(base64(b"ab"), "YWI=");
}

/// The cores written here, as binutils' readelf sees them: an independent
/// check of the test's own ELF writer (skipped without readelf).
#[test]
fn readelf_agrees_with_the_test_cores() {
    let (core, _, _) = small_x86_core();
    let file = TempFile::new("readelf.elf", &core);
    let Ok(o) = Command::new("readelf").args(["-h", "-l", "-n", file.path()]).output() else {
        eprintln!("SKIPPED: no readelf");
        return;
    };
    let text = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    for want in [
        "CORE (Core file)",
        "X86-64",
        "NOTE",
        "LOAD",
        "0x0000000040000000",
        "NT_PRSTATUS",
        "QEMU",
    ] {
        assert!(text.contains(want), "{want} not in:\n{text}");
    }
}
