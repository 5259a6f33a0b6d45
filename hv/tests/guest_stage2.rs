//! The guest's identity stage-2 / NPT / EPT and its isolation audit.

use hv::guest::layout::guest_ram;
use hv::guest::stage2::{audit, audit_and_print, build_identity, Stage2Error, Violation, RAM_ATTRS, TABLES_OWNER};
use hv::guest::{MemRange, Named};
use mm::{Arena, TableBuilder};
use pagewalk::arm64::Stage2;
use pagewalk::ept::Ept;
use pagewalk::x86::Npt;
use pagewalk::{translate, Access, BadReason, Format, TableMemoryMut};

const RAM: MemRange = MemRange {
    start: 0x4000_0000,
    end: 0x8000_0000,
};
const HV_IMAGE: MemRange = MemRange {
    start: 0x4000_0000,
    end: 0x4020_0000,
};
const HV_HEAP: MemRange = MemRange {
    start: 0x4020_0000,
    end: 0x4100_0000,
};
/// hv's frame pool for the guest's tables, inside its heap.
const POOL_BASE: u64 = 0x40f0_0000;
const POOL_SIZE: usize = 1 << 20;

fn hv_owned() -> [Named<'static>; 2] {
    [Named::new("hv image", HV_IMAGE), Named::new("hv heap", HV_HEAP)]
}

fn devices() -> [Named<'static>; 3] {
    [
        Named::new("gicv3", MemRange::new(0x0800_0000, 0x0801_0000).unwrap()),
        Named::new("pl011", MemRange::new(0x0900_0000, 0x0900_1000).unwrap()),
        Named::new("virtio-mmio", MemRange::new(0x0a00_0000, 0x0a00_4000).unwrap()),
    ]
}

struct Built {
    arena: Arena,
    root: u64,
}

fn build<F: Format>(format: &F) -> Built {
    let mut arena = Arena::new(POOL_BASE, POOL_SIZE);
    let ram = guest_ram(&[RAM], &hv_owned());
    assert_eq!(ram, [MemRange::new(0x4100_0000, 0x8000_0000).unwrap()]);
    let builder = build_identity(format, &mut arena, &ram, &devices(), &hv_owned()).unwrap();
    let root = builder.root().0;
    Built { arena, root }
}

fn good_stage2_passes<F: Format>(format: &F) {
    let b = build(format);
    let mut out = String::new();
    let report = audit_and_print(&mut out, format, &b.arena, b.root, &hv_owned()).unwrap();
    assert!(report.passed(), "{out}");
    let ram_bytes = 0x8000_0000 - 0x4100_0000;
    let device_bytes = 0x1_0000 + 0x1000 + 0x4000;
    assert_eq!(report.mapped_bytes, ram_bytes + device_bytes);
    // 0x4100_0000..0x8000_0000 is part of one 1 GiB slot: 504 2 MiB blocks,
    // then 16 + 1 + 4 device pages.
    assert_eq!(report.leaves, 504 + 16 + 1 + 4);
    // 1008 MiB of RAM plus 84 KiB of devices: not a whole number of MiB.
    assert_eq!(
        out,
        format!(
            "hv: stage-2 isolation audit: passed, no stage-2 entry maps memory hv owns ({} leaves, {} KiB mapped)\n",
            report.leaves,
            report.mapped_bytes >> 10
        )
    );

    // Identity, with the right rights.
    let ram = translate(format, &b.arena, b.root, 0x4123_4567).unwrap();
    assert_eq!(ram.out, 0x4123_4567);
    assert!(ram
        .access
        .contains(Access::READ | Access::WRITE | Access::EXEC_PRIV | Access::EXEC_USER));
    let uart = translate(format, &b.arena, b.root, 0x0900_0ff8).unwrap();
    assert_eq!(uart.out, 0x0900_0ff8);
    assert!(uart.access.contains(Access::READ | Access::WRITE));
    assert!(
        !uart.access.intersects(Access::EXEC),
        "device memory must not be executable"
    );
    // hv is not reachable at all.
    for hv_addr in [0x4000_0000, 0x401f_f000, 0x40f0_0000, 0x40ff_ffff] {
        assert!(translate(format, &b.arena, b.root, hv_addr).is_err(), "{hv_addr:#x}");
    }
}

/// Maps hv's image into the guest by hand: the audit must fail and name it.
fn bad_stage2_fails<F: Format>(format: &F) {
    let mut b = build(format);
    let builder = TableBuilder::with_root(format, mm::PhysAddr(b.root));
    builder
        .map(&mut b.arena, HV_IMAGE.start, HV_IMAGE.start, HV_IMAGE.len(), &RAM_ATTRS)
        .unwrap();
    let mut out = String::new();
    let report = audit_and_print(&mut out, format, &b.arena, b.root, &hv_owned()).unwrap();
    assert!(!report.passed());
    assert_eq!(
        report.violations,
        [Violation::MapsOwned {
            ipa: HV_IMAGE,
            pa: HV_IMAGE,
            owner: "hv image"
        }]
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("hv: stage-2 isolation audit: FAILED, 1 violation(s) ("),
        "{out}"
    );
    assert_eq!(
        lines[1],
        "hv: stage-2 isolation audit:   IPA 0x000040000000-0x0000401fffff -> PA 0x000040000000-0x0000401fffff maps hv image"
    );

    // A guest page aliasing the pool's second page at a high IPA, and hv's
    // owned list forgetting the heap: the audit still finds its own tables.
    let alias = 0x10_0000_0000;
    builder
        .map(&mut b.arena, alias, POOL_BASE + 0x1000, 0x1000, &RAM_ATTRS)
        .unwrap();
    let report = audit(format, &b.arena, b.root, &[Named::new("hv image", HV_IMAGE)]);
    assert_eq!(
        report.violations[1],
        Violation::MapsOwned {
            ipa: MemRange::from_len(alias, 0x1000).unwrap(),
            pa: MemRange::from_len(POOL_BASE + 0x1000, 0x1000).unwrap(),
            owner: TABLES_OWNER
        },
        "{report}"
    );
}

/// A malformed entry is a violation too.
fn bad_entry_fails<F: Format>(format: &F, raw: u64, reason: BadReason) {
    let mut b = build(format);
    let last_root_entry = b.root + (format.root_entries() as u64 - 1) * 8;
    b.arena.write_u64(last_root_entry, raw).unwrap();
    let report = audit(format, &b.arena, b.root, &hv_owned());
    assert_eq!(report.violations.len(), 1, "{report}");
    assert!(
        matches!(report.violations[0], Violation::BadEntry { reason: r, .. } if r == reason),
        "{report}"
    );
}

#[test]
fn stage2_identity_map_passes_the_audit() {
    good_stage2_passes(&Stage2::for_ipa_bits(40).unwrap());
    good_stage2_passes(&Stage2::for_ipa_bits(48).unwrap());
}

#[test]
fn npt_identity_map_passes_the_audit() {
    good_stage2_passes(&Npt::four_level());
}

#[test]
fn ept_identity_map_passes_the_audit() {
    good_stage2_passes(&Ept::four_level());
}

#[test]
fn stage2_mapping_hv_fails_the_audit() {
    bad_stage2_fails(&Stage2::for_ipa_bits(40).unwrap());
}

#[test]
fn npt_mapping_hv_fails_the_audit() {
    bad_stage2_fails(&Npt::four_level());
}

#[test]
fn ept_mapping_hv_fails_the_audit() {
    bad_stage2_fails(&Ept::four_level());
}

#[test]
fn malformed_entries_fail_the_audit() {
    // Stage-2, 40-bit IPA: the root is level 1; a 1 GiB block whose output
    // is only 2 MiB aligned (the low output bits are reserved in a 1 GiB block).
    let s2 = Stage2::for_ipa_bits(40).unwrap();
    bad_entry_fails(&s2, 0x20_0000 | 0b01 | (1 << 10), BadReason::ReservedBits(0x20_0000));
    // NPT PML4 entry with PS set.
    bad_entry_fails(
        &Npt::four_level(),
        0x1000 | 0x1 | 0x4 | (1 << 7),
        BadReason::ReservedBits(1 << 7),
    );
    // EPT write without read.
    bad_entry_fails(&Ept::four_level(), 0x1000 | 0x2, BadReason::WriteWithoutRead);
}

#[test]
fn building_refuses_ranges_that_touch_hv() {
    let format = Npt::four_level();
    let mut arena = Arena::new(POOL_BASE, POOL_SIZE);
    let err = build_identity(&format, &mut arena, &[RAM], &devices(), &hv_owned()).unwrap_err();
    assert_eq!(
        err,
        Stage2Error::WouldMapHv {
            what: "guest RAM",
            range: RAM,
            owner: "hv image",
            owned: HV_IMAGE
        }
    );
    assert_eq!(arena.used(), 0, "nothing built before the check");
    let evil = [Named::new(
        "evil-device",
        MemRange::new(0x40ff_f000, 0x4100_1000).unwrap(),
    )];
    let err = build_identity(&format, &mut arena, &[], &evil, &hv_owned()).unwrap_err();
    assert!(err.to_string().starts_with("refusing to map evil-device"), "{err}");
}
