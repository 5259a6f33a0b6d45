//! `ptdump guest` / `wx guest` on an x86-64 guest: CR3 with CR0, CR4 and
//! EFER, tables read through the NPT.

mod introspect_common;

use hv::console::job::SLICE_TABLES;
use hv::console::session::{OUTPUT_CAP, TRUNCATED_LINE};
use hv::console::{ConsoleTarget, Job, StepOutcome, TableFormat, Verdict};
use hv::introspect::{GuestStage1, X86GuestRegs};
use introspect_common::*;
use mm::TableBuilder;
use pagewalk::x86::{Npt, X86_64};
use pagewalk::{Access, AddrRange, MapAttrs, MemType, TableMemory};
use ptdump::Marker;

const PHYS_BITS: u32 = 40;
const CR0_PE_WP_PG: u64 = 1 | (1 << 16) | (1 << 31);
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const CR4_PCIDE: u64 = 1 << 17;
const EFER_SCE_LME_LMA_NXE: u64 = 1 | (1 << 8) | (1 << 10) | (1 << 11);
/// Linux's PAT: WB WC UC- UC WB WP UC- WT.
const LINUX_PAT: u64 = 0x0407_0506_0007_0106;

const UX: Access = Access::READ.union(Access::USER).union(Access::EXEC);
const URW: Access = USER_RW;
const URWX: Access = URW.union(Access::EXEC);
const KX: Access = Access::READ.union(Access::EXEC);
const KRWX: Access = RW.union(Access::EXEC);

const USER_TEXT: u64 = 0x40_0000;
const USER_JIT: u64 = 0x7f00_0000_0000;
const USER_STACK: u64 = 0x7fff_ffff_e000;
const DIRECT_MAP: u64 = 0xffff_8880_0000_0000;
const KTEXT: u64 = 0xffff_ffff_8100_0000;
const KRODATA: u64 = KTEXT + 0x10_000;
const KDATA: u64 = KTEXT + 0x18_000;
const MODULES: u64 = 0xffff_ffff_c000_0000;

struct Guest {
    machine: Machine<Npt>,
    regs: X86GuestRegs,
}

fn format(levels: u32, nxe: bool) -> X86_64 {
    X86_64::new(levels, nxe, PHYS_BITS).unwrap()
}

/// User mappings are per process (not global), as Linux maps them.
fn user(a: Access) -> MapAttrs {
    MapAttrs {
        global: false,
        ..normal(a)
    }
}

fn linux_like(plant: &[(u64, Access)], nxe: bool) -> Guest {
    let mut machine = Machine::new(Npt::four_level(), false);
    let f = format(4, nxe);
    let ram = &mut machine.ram;
    let b = TableBuilder::new(&f, ram).unwrap();
    let ex = |a: Access| if nxe { a } else { a.union(Access::EXEC) };
    b.map(ram, USER_TEXT, 0x8060_0000, 0x2000, &user(UX)).unwrap();
    b.map(ram, USER_JIT, 0x8060_2000, 0x1000, &user(URWX)).unwrap();
    b.map(ram, USER_STACK, 0x8060_3000, 0x2000, &user(ex(URW))).unwrap();
    b.map(ram, DIRECT_MAP, 0x8000_0000, 0x40_0000, &normal(ex(RW))).unwrap();
    b.map(ram, KTEXT, 0x8020_0000, 0x10_000, &normal(KX)).unwrap();
    b.map(ram, KRODATA, 0x8021_0000, 0x8_000, &normal(ex(R))).unwrap();
    b.map(ram, KDATA, 0x8021_8000, 0x8_000, &normal(ex(RW))).unwrap();
    b.map(
        ram,
        0xffff_ffff_ff5f_c000,
        0xfed0_0000,
        0x1000,
        &MapAttrs::new(ex(RW), MemType::Device),
    )
    .unwrap();
    for &(va, access) in plant {
        b.map(ram, va, 0x8040_0000, 0x1000, &normal(access)).unwrap();
    }
    let regs = X86GuestRegs {
        cr0: CR0_PE_WP_PG,
        // PCID 5 in bits 11:0 must not move the root.
        cr3: b.root().0 | 5,
        cr4: CR4_PAE | CR4_PCIDE,
        efer: if nxe {
            EFER_SCE_LME_LMA_NXE
        } else {
            EFER_SCE_LME_LMA_NXE & !(1 << 11)
        },
        pat: LINUX_PAT,
    };
    Guest { machine, regs }
}

impl Guest {
    fn with<T>(&self, regs: X86GuestRegs, f: impl FnOnce(&GuestTarget<'_, Npt>, &Recording<'_>) -> T) -> T {
        let host = Recording::from(&self.machine);
        let target = GuestTarget::new(
            &self.machine,
            TableFormat::Npt(self.machine.s2_format),
            &host,
            GuestStage1::x86(&regs, PHYS_BITS),
        );
        f(&target, &host)
    }

    fn run(&self, line: &str) -> (Verdict, String) {
        self.run_with(self.regs, line)
    }

    fn run_with(&self, regs: X86GuestRegs, line: &str) -> (Verdict, String) {
        self.with(regs, |t, host| {
            let result = run(t, line);
            assert_eq!(host.hv_reads.get(), 0, "hv read its own memory for the guest");
            result
        })
    }
}

#[test]
fn ptdump_guest_dumps_both_halves_with_linux_markers() {
    let guest = linux_like(&[], true);
    let (verdict, out) = guest.run("ptdump guest");
    assert_eq!(verdict, Verdict::Ok, "{out}");

    // ptdump's own x86 dump of the whole CR3 tree, straight from guest RAM,
    // with the titles and Linux's fixed kernel-half markers.
    let mut reference = String::new();
    let mut markers = vec![
        Marker::new(0, "User Space"),
        Marker::new(0xffff_8000_0000_0000, "Kernel Space"),
    ];
    markers.extend_from_slice(&ptdump::x86::LINUX_KERNEL_MARKERS_4_LEVEL);
    let root = guest.regs.cr3 & !0xfff;
    ptdump::x86::dump(
        &mut reference,
        &format(4, true),
        &guest.machine.ram,
        root,
        AddrRange::ALL,
        &markers,
    )
    .unwrap();
    assert_eq!(out, reference);

    // Linux 6.1's fixed addresses (pgtable_64_types.h), checked against the
    // numbers rather than ptdump's table: LDT remap at PGD entry -240, the
    // CPU entry area at P4D entry -4, ESPfix at -2, EFI at -68 GiB, then
    // __START_KERNEL_map, MODULES_VADDR and MODULES_END.
    let sections = [
        "\n---[ Kernel Space ]---\n0xffff800000000000-0xffff880000000000 ",
        "\n---[ LDT remap ]---\n0xffff880000000000-0xffff888000000000 ",
        "\n---[ Low Kernel Mapping, vmalloc() Area, Vmemmap (KASLR bases) ]---\n0xffff888000000000-",
        "-0xfffffe0000000000 ",
        "\n---[ CPU entry Area ]---\n0xfffffe0000000000-0xffffff0000000000 ",
        "\n---[ ESPfix Area ]---\n0xffffff0000000000-0xffffff8000000000 ",
        "-0xffffffef00000000 ",
        "\n---[ EFI Runtime Services ]---\n0xffffffef00000000-",
        "-0xffffffff80000000 ",
        "\n---[ High Kernel Mapping ]---\n0xffffffff80000000-",
        "-0xffffffffc0000000 ",
        "\n---[ Modules ]---\n0xffffffffc0000000-",
        "-0xffffffffff000000 ",
        "\n---[ End Modules ]---\n0xffffffffff000000-",
    ];
    let mut at = 0;
    for section in sections {
        let found = out[at..].find(section);
        assert!(found.is_some(), "missing (or out of order) {section:?} in\n{out}");
        at += found.unwrap();
    }

    assert!(out.starts_with("---[ User Space ]---\n"), "{out}");
    let expect = [
        "0x0000000000400000-0x0000000000402000           8K USR ro                     x  pte",
        "0x00007f0000000000-0x00007f0000001000           4K USR RW                     x  pte",
        "0x00007fffffffe000-0x0000800000000000           8K USR RW                     NX pte",
        "---[ Kernel Space ]---",
        "0xffff888000000000-0xffff888000400000           4M     RW         PSE     GLB NX pmd",
        "0xffffffff81000000-0xffffffff81010000          64K     ro                 GLB x  pte",
        "0xffffffff81010000-0xffffffff81018000          32K     ro                 GLB NX pte",
        "0xffffffff81018000-0xffffffff81020000          32K     RW                 GLB NX pte",
    ];
    let mut at = 0;
    for line in expect {
        let found = out[at..].find(&format!("{line}\n"));
        assert!(found.is_some(), "missing (or out of order) {line:?} in\n{out}");
        at += found.unwrap();
    }
}

#[test]
fn pcid_bits_do_not_move_the_root_and_sessions_equal_the_whole_dump() {
    let guest = linux_like(&[], true);
    let (_, with_pcid) = guest.run("ptdump guest");
    let plain = X86GuestRegs {
        cr3: guest.regs.cr3 & !0xfff,
        cr4: CR4_PAE,
        ..guest.regs
    };
    let (_, without) = guest.run_with(plain, "ptdump guest");
    assert_eq!(with_pcid, without);
    guest.with(guest.regs, |t, host| {
        let (verdict, text, worst, _) = run_in_calls(t, host, "ptdump guest");
        assert_eq!(verdict, Verdict::Ok);
        assert_eq!(text, with_pcid);
        assert!(worst <= MAX_READS_PER_CALL);
    });
}

#[test]
fn wx_guest_checks_the_kernel_half_with_linux_messages() {
    // The user JIT page is RWX; Linux's boot-time check (on init_mm, whose
    // user half is empty) never sees user mappings, and neither does hv's.
    let guest = linux_like(&[], true);
    let (verdict, out) = guest.run("wx guest");
    assert_eq!(verdict, Verdict::Ok, "{out}");
    assert_eq!(
        out,
        "hv: wx guest: Linux's check covers the kernel's mappings: CR3 kernel half 0xffff800000000000-0xffffffffffffffff\n\
         x86/mm: Checked W+X mappings: passed, no W+X pages found.\n"
    );

    let guest = linux_like(&[(MODULES, KRWX)], true);
    let (verdict, out) = guest.run("wx guest");
    assert_eq!(verdict, Verdict::Failed, "{out}");
    assert!(
        out.contains("x86/mm: Found insecure W+X mapping at address ffffffffc0000000/0xffffffffc0000000\n"),
        "{out}"
    );
    assert!(
        out.ends_with("x86/mm: Checked W+X mappings: FAILED, 1 W+X pages found.\n"),
        "{out}"
    );
}

#[test]
fn cr0_wp_off_fails_wx_and_nxe_off_is_noted() {
    let guest = linux_like(&[], true);
    let no_wp = X86GuestRegs {
        cr0: guest.regs.cr0 & !(1 << 16),
        ..guest.regs
    };
    let (verdict, out) = guest.run_with(no_wp, "wx guest");
    assert_eq!(verdict, Verdict::Failed, "{out}");
    assert!(
        out.contains("hv: CR0.WP is 0: the guest kernel may write read-only pages"),
        "{out}"
    );
    assert!(
        out.ends_with("x86/mm: Checked W+X mappings: passed, no W+X pages found.\n"),
        "{out}"
    );

    // Without EFER.NXE nothing is non-executable: every writable kernel page is W+X.
    let guest = linux_like(&[], false);
    let (verdict, out) = guest.run("wx guest");
    assert_eq!(verdict, Verdict::Failed, "{out}");
    assert!(out.contains("hv: EFER.NXE is 0: no page is non-executable"), "{out}");
    assert!(
        out.contains("x86/mm: Found insecure W+X mapping at address ffff888000000000/"),
        "{out}"
    );
}

#[test]
fn paging_off_and_legacy_paging_are_refused_clearly() {
    let guest = linux_like(&[], true);
    let cases = [
        (
            X86GuestRegs {
                cr0: 0x11,
                ..guest.regs
            },
            "guest paging is off (CR0.PG = 0)",
        ),
        (
            X86GuestRegs {
                cr4: 0,
                efer: 0,
                ..guest.regs
            },
            "the guest uses 32-bit paging without PAE (CR4.PAE = 0)",
        ),
        (
            X86GuestRegs {
                efer: 1 << 11,
                ..guest.regs
            },
            "the guest uses 32-bit PAE paging outside long mode (EFER.LMA = 0)",
        ),
    ];
    for (regs, reason) in cases {
        for line in ["ptdump guest", "wx guest"] {
            let (verdict, out) = guest.run_with(regs, line);
            assert_eq!(verdict, Verdict::Failed);
            assert!(
                out.starts_with(&format!("hv: 'guest' tables not available: {reason}")),
                "{out}"
            );
        }
    }
}

#[test]
fn five_level_paging_moves_the_kernel_half() {
    let mut machine = Machine::new(Npt::four_level(), false);
    let f = format(5, true);
    let ram = &mut machine.ram;
    let b = TableBuilder::new(&f, ram).unwrap();
    // Only 5-level paging reaches these.
    b.map(ram, 0x00ff_ffff_ffff_f000, 0x8060_0000, 0x1000, &normal(URW))
        .unwrap();
    b.map(ram, 0xff11_0000_0000_0000, 0x8000_0000, 0x1000, &normal(RW))
        .unwrap();
    let regs = X86GuestRegs {
        cr0: CR0_PE_WP_PG,
        cr3: b.root().0,
        cr4: CR4_PAE | CR4_LA57,
        efer: EFER_SCE_LME_LMA_NXE,
        pat: LINUX_PAT,
    };
    let guest = Guest { machine, regs };
    let (verdict, out) = guest.run("ptdump guest");
    assert_eq!(verdict, Verdict::Ok, "{out}");
    let user = out
        .find("0x00fffffffffff000-0x0100000000000000           4K USR RW")
        .unwrap();
    let marker = out.find("---[ Kernel Space ]---\n0xff00000000000000-").unwrap();
    let kernel = out
        .find("0xff11000000000000-0xff11000000001000           4K     RW")
        .unwrap();
    assert!(user < marker && marker < kernel, "{out}");
    // 5-level: the LDT remap is PGD entry -240 of the 5-level root, so it and
    // the lowest possible PAGE_OFFSET (__PAGE_OFFSET_BASE_L5) move; the areas
    // from the CPU entry area up are P4D entries and stay where they are.
    let sections = [
        "\n---[ LDT remap ]---\n0xff10000000000000-0xff11000000000000 ",
        "\n---[ Low Kernel Mapping, vmalloc() Area, Vmemmap (KASLR bases) ]---\n\
         0xff11000000000000-0xff11000000001000           4K     RW",
        "\n---[ CPU entry Area ]---\n0xfffffe0000000000-",
        "\n---[ ESPfix Area ]---\n0xffffff0000000000-",
        "\n---[ End Modules ]---\n0xffffffffff000000-0x0000000000000000 ",
    ];
    let mut at = 0;
    for section in sections {
        let found = out[at..].find(section);
        assert!(found.is_some(), "missing (or out of order) {section:?} in\n{out}");
        at += found.unwrap();
    }
    let (verdict, out) = guest.run("wx guest");
    assert_eq!(verdict, Verdict::Ok, "{out}");
    assert!(out.starts_with(
        "hv: wx guest: Linux's check covers the kernel's mappings: CR3 kernel half 0xff00000000000000-0xffffffffffffffff\n"
    ));
}

#[test]
fn info_shows_the_root_and_the_guest_pat() {
    let guest = linux_like(&[], true);
    let (_, out) = guest.run("info");
    let root = guest.regs.cr3 & !0xfff;
    assert!(
        out.contains(&format!(
            "  guest CR3 kernel half  root {root:#x}, 48-bit VA, 4 levels, 0xffff800000000000-0xffffffffffffffff\n"
        )),
        "{out}"
    );
    assert!(
        out.contains("  guest PAT        0x0407050600070106: WB WC UC- UC WB WP UC- WT\n"),
        "{out}"
    );
}

/// x86 table entry bits, as Linux's espfix code writes them.
const P: u64 = 1;
const TABLE: u64 = 0x63; // _KERNPG_TABLE: present, RW, accessed, dirty
const ACCESSED_DIRTY: u64 = 0x60;
const GLOBAL: u64 = 1 << 8;
const NX: u64 = 1 << 63;
const ESPFIX_PGD_INDEX: u64 = 510;

/// Plants Linux's ESPfix area (arch/x86/kernel/espfix_64.c, a guest with up
/// to 64 CPUs) in PGD entry -2 of a 4-level guest: the first 4 PUD entries
/// (ESPFIX_PUD_CLONES) share one PMD table, whose 512 entries
/// (ESPFIX_PMD_CLONES) share one PTE table, whose entries `first_pte`,
/// `first_pte + stride`, ... map the one read-only espfix stack page
/// (Linux: stride 16, ESPFIX_PTE_CLONES = 32).
fn plant_espfix(guest: &mut Guest, first_pte: u64, stride: u64) {
    let m = &mut guest.machine;
    let (pud, pmd, pte, stack) = (m.guest_page(), m.guest_page(), m.guest_page(), m.guest_page());
    let root = guest.regs.cr3 & !0xfff;
    m.poke(root + 8 * ESPFIX_PGD_INDEX, pud | TABLE);
    for i in 0..4 {
        m.poke(pud + 8 * i, pmd | TABLE);
    }
    for i in 0..512 {
        m.poke(pmd + 8 * i, pte | TABLE);
    }
    for i in (first_pte..512).step_by(stride as usize) {
        m.poke(pte + 8 * i, stack | P | ACCESSED_DIRTY | GLOBAL | NX);
    }
}

/// `ptdump::x86::dump` of the whole CR3 tree straight from guest RAM, with
/// the kernel half's markers as hv builds them (`capped`) or with the ESPfix
/// cap removed.
fn direct_dump(guest: &Guest, capped: bool) -> String {
    let stage1 = GuestStage1::x86(&guest.regs, PHYS_BITS).unwrap();
    let mut markers: Vec<Marker<'static>> = stage1.parts[0].markers().to_vec();
    for m in stage1.parts[1].markers() {
        markers.push(if capped { *m } else { Marker::new(m.addr, m.name) });
    }
    let mut out = String::new();
    let root = guest.regs.cr3 & !0xfff;
    ptdump::x86::dump(
        &mut out,
        &format(4, true),
        &guest.machine.ram,
        root,
        AddrRange::ALL,
        &markers,
    )
    .unwrap();
    out
}

/// The lines of `out` from the ESPfix marker (excluded) to the next marker (excluded).
fn espfix_section(out: &str) -> Vec<&str> {
    out.lines()
        .skip_while(|l| *l != "---[ ESPfix Area ]---")
        .skip(1)
        .take_while(|l| !l.starts_with("---["))
        .collect()
}

/// One command with a given table budget per step (small budgets cut the
/// dump into many slices).
fn run_sliced(target: &dyn ConsoleTarget, line: &str, budget: u64) -> (Verdict, String) {
    let mut job = Job::new(target, line);
    let mut out = String::new();
    loop {
        if let StepOutcome::Done(verdict) = job.step(target, &mut out, budget).unwrap() {
            return (verdict, out);
        }
    }
}

#[test]
fn the_espfix_area_is_capped_at_16_lines_as_linux_caps_it() {
    let mut guest = linux_like(&[], true);
    plant_espfix(&mut guest, 5, 16);

    // Uncapped: every PTE table is 32 pages, each followed by a hole (the
    // last one joined to the next table's leading hole): 64 lines per table,
    // 2048 tables (4 PUD x 512 PMD entries), the first table's leading hole,
    // and the PUD-level holes of the rest of the area; ~12 MiB of text.
    let uncapped = direct_dump(&guest, false);
    let section = espfix_section(&uncapped);
    assert_eq!(section.len(), 1 + 2048 * 64 + 1);
    assert!(uncapped.len() > OUTPUT_CAP * 8, "{} bytes", uncapped.len());
    assert_eq!(
        section[..3],
        [
            "0xffffff0000000000-0xffffff0000005000          20K                               pte",
            "0xffffff0000005000-0xffffff0000006000           4K     ro                 GLB NX pte",
            "0xffffff0000006000-0xffffff0000015000          60K                               pte",
        ]
    );

    // Capped: Linux's first 16 lines, then its skip line (trailing blank
    // included) before the next marker; everything else unchanged.
    let skipped = section.len() - 16;
    let mut expect = String::new();
    let mut in_espfix = false;
    let mut kept = 0;
    for line in uncapped.lines() {
        if line.starts_with("---[") {
            if in_espfix {
                expect.push_str(&format!("... {skipped} entries skipped ... \n"));
            }
            in_espfix = line == "---[ ESPfix Area ]---";
        } else if in_espfix {
            kept += 1;
            if kept > 16 {
                continue;
            }
        }
        expect.push_str(line);
        expect.push('\n');
    }
    assert_eq!(skipped, 131_058);
    assert_eq!(direct_dump(&guest, true), expect);

    let (verdict, out) = guest.run("ptdump guest");
    assert_eq!(verdict, Verdict::Ok);
    assert_eq!(out, expect);
    assert!(out.contains("\n... 131058 entries skipped ... \n---[ EFI Runtime Services ]---\n"));
    assert!(out.len() < 8 * 1024, "{} bytes", out.len());

    // Through hypercall sessions (1 MiB output cap): complete, not truncated.
    guest.with(guest.regs, |t, host| {
        let (verdict, text, worst, _) = run_in_calls(t, host, "ptdump guest");
        assert_eq!(verdict, Verdict::Ok);
        assert_eq!(text, expect);
        assert!(!text.contains(TRUNCATED_LINE));
        assert!(worst <= MAX_READS_PER_CALL);
        assert_eq!(host.hv_reads.get(), 0);
    });
}

#[test]
fn the_cap_counts_lines_joined_across_slice_boundaries_once() {
    // One page per PTE table: 2 lines a table, so the smallest slices (a few
    // tables each) cut the first 16 lines of the area, and each cut falls in
    // a hole that the console joins with the next slice's first hole.
    let mut guest = linux_like(&[], true);
    plant_espfix(&mut guest, 5, 512);
    let whole = direct_dump(&guest, true);
    assert!(
        whole.contains("\n... 4082 entries skipped ... \n---[ EFI Runtime Services ]---\n"),
        "{whole}"
    );
    assert_eq!(espfix_section(&whole).len(), 17);
    for budget in [1, 7, SLICE_TABLES] {
        let (verdict, out) = guest.with(guest.regs, |t, _| run_sliced(t, "ptdump guest", budget));
        assert_eq!(verdict, Verdict::Ok);
        assert_eq!(out, whole, "budget {budget}");
    }
}

#[test]
fn a_bad_entry_in_a_capped_area_is_always_printed() {
    let mut guest = linux_like(&[], true);
    plant_espfix(&mut guest, 5, 16);
    // A PUD entry past the clones with reserved bits set (bit 51 with 40-bit
    // physical addresses): the walker reports it bad, far past line 16.
    let root = guest.regs.cr3 & !0xfff;
    let pud = guest.machine.ram.read_u64(root + 8 * ESPFIX_PGD_INDEX).unwrap() & !0xfff;
    guest.machine.poke(pud + 8 * 100, (1 << 51) | TABLE);
    let (verdict, out) = guest.run("ptdump guest");
    assert_eq!(verdict, Verdict::Ok, "{out}");
    let section = espfix_section(&out);
    // 16 lines, the skip line of the stretch before the bad entry, the bad
    // entry, then the skip line of the rest (Linux has no bad lines; hv
    // never hides one, and each skip line counts one contiguous stretch).
    assert_eq!(section.len(), 16 + 3, "{out}");
    // The ESPfix lines and the PUD holes up to the bad entry...
    assert_eq!(section[16], "... 131058 entries skipped ... ");
    assert!(
        section[17].starts_with("0xffffff1900000000-0xffffff1940000000           1G pud BAD "),
        "{}",
        section[17]
    );
    // ...and the PUD holes after it (Linux's singular form).
    assert_eq!(section[18], "... 1 entry skipped ... ");
    assert_eq!(out, direct_dump(&guest, true));
}
