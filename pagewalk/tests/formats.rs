//! Decoding of hand-written raw entries, per format: geometry, rights
//! folding, reserved bits and configuration errors.

mod common;

use common::{assert_ordered_disjoint, Record, Tables};
use pagewalk::arm64::{self, Half, Regime, Stage1, Stage2};
use pagewalk::ept::{self, Ept};
use pagewalk::x86::{self, Npt, X86_64};
use pagewalk::{
    translate, walk, Access, AddrRange, BadReason, ConfigError, Decoded, Format, Level, MapAttrs, MemType,
    TranslateError,
};

const GIB: u64 = 1 << 30;
const MIB2: u64 = 1 << 21;

fn walk_all<F: Format>(f: &F, mem: &Tables, root: u64) -> Record {
    walk_range(f, mem, root, AddrRange::ALL)
}

fn walk_range<F: Format>(f: &F, mem: &Tables, root: u64, range: AddrRange) -> Record {
    let mut rec = Record::default();
    walk(f, mem, root, range, &mut rec);
    assert_ordered_disjoint(&rec.spans(), range.start, range.last);
    rec
}

/// (addr, size, out, level, access) of every leaf.
fn leaf_list(rec: &Record) -> Vec<(u64, u64, u64, i8, Access)> {
    rec.leaves()
        .iter()
        .map(|l| (l.addr, l.size, l.out, l.level.0, l.access))
        .collect()
}

fn bad_list(rec: &Record) -> Vec<(u64, i8, BadReason)> {
    rec.bad().iter().map(|b| (b.addr, b.level.0, b.reason)).collect()
}

// ---------------------------------------------------------------- arm64 stage-1

const S1_PAGE: u64 = arm64::DESC_TABLE | arm64::AF;
const S1_BLOCK: u64 = arm64::DESC_BLOCK | arm64::AF;
const R: Access = Access::READ;
const RW: Access = Access::from_bits_truncate(0b11);

#[test]
fn stage1_48bit_lower_four_levels() {
    let f = Stage1::new(48, Half::Lower, Regime::El1And0).unwrap();
    assert_eq!((f.root_level(), f.root_entries(), f.input_bits()), (Level(0), 512, 48));
    let (root, l1, l2, l3) = (0x1000, 0x2000, 0x3000, 0x4000);
    let mut m = Tables::new();
    m.set(root, 1, l1 | arm64::DESC_TABLE)
        .set(l1, 2, 0x8000_0000 | S1_BLOCK | arm64::AP_RDONLY | arm64::UXN)
        .set(l1, 3, l2 | arm64::DESC_TABLE)
        .set(l2, 0, l3 | arm64::DESC_TABLE)
        .set(l2, 1, 0x4020_0000 | S1_BLOCK | arm64::AP_USER | arm64::PXN)
        .set(l3, 5, 0x1234_5000 | S1_PAGE | arm64::AP_USER | arm64::AP_RDONLY);
    let base = 1u64 << 39;
    let rec = walk_all(&f, &m, root);
    assert_eq!(
        leaf_list(&rec),
        vec![
            (base + 2 * GIB, GIB, 0x8000_0000, 1, R | Access::EXEC_PRIV),
            (
                base + 3 * GIB + 0x5000,
                0x1000,
                0x1234_5000,
                3,
                R | Access::USER | Access::EXEC
            ),
            // EL0-writable memory is never privileged-executable (implicit PXN).
            (
                base + 3 * GIB + MIB2,
                MIB2,
                0x4020_0000,
                2,
                RW | Access::USER | Access::EXEC_USER
            ),
        ]
    );
    let t = translate(&f, &m, root, base + 2 * GIB + 0x1234_5678).unwrap();
    assert_eq!((t.out, t.level), (0x9234_5678, Level(1)));
    assert_eq!(
        translate(&f, &m, root, base + 3 * GIB + 0x6000),
        Err(TranslateError::NotMapped { level: Level(3) })
    );
    assert_eq!(
        translate(&f, &m, root, 0),
        Err(TranslateError::NotMapped { level: Level(0) })
    );
    // Above the 48-bit TTBR0 space.
    assert_eq!(translate(&f, &m, root, 1 << 48), Err(TranslateError::OutOfRange));
}

#[test]
fn stage1_39bit_three_levels_lower_and_upper() {
    let lower = Stage1::new(39, Half::Lower, Regime::El1And0).unwrap();
    let upper = Stage1::new(39, Half::Upper, Regime::El1And0).unwrap();
    for f in [lower, upper] {
        assert_eq!((f.root_level(), f.root_entries(), f.input_bits()), (Level(1), 512, 39));
    }
    let (root, l2) = (0x10_0000, 0x10_1000);
    let mut m = Tables::new();
    m.set(root, 0, 0x4000_0000 | S1_BLOCK)
        .set(root, 511, l2 | arm64::DESC_TABLE)
        .set(l2, 511, 0x20_0000 | S1_BLOCK | arm64::UXN | arm64::PXN);
    let lo = walk_all(&lower, &m, root);
    assert_eq!(
        leaf_list(&lo),
        vec![
            (0, GIB, 0x4000_0000, 1, RW | Access::EXEC),
            ((1 << 39) - MIB2, MIB2, 0x20_0000, 2, RW),
        ]
    );
    let hi = walk_all(&upper, &m, root);
    let top = 0xffff_ff80_0000_0000u64;
    assert_eq!(
        leaf_list(&hi),
        vec![
            (top, GIB, 0x4000_0000, 1, RW | Access::EXEC),
            (u64::MAX - MIB2 + 1, MIB2, 0x20_0000, 2, RW),
        ]
    );
    assert_eq!(translate(&upper, &m, root, u64::MAX).unwrap().out, 0x3f_ffff);
    // A TTBR1 table does not translate TTBR0 addresses, and vice versa.
    assert_eq!(translate(&upper, &m, root, 0x1000), Err(TranslateError::OutOfRange));
    assert_eq!(translate(&lower, &m, root, top), Err(TranslateError::OutOfRange));
    // Hole sizes are the entry sizes, clipped to nothing beyond the space.
    let holes = hi.holes();
    assert_eq!(holes.len(), 510 + 511);
    assert_eq!(
        (holes[0].addr, holes[0].size, holes[0].level),
        (top + GIB, GIB, Level(1))
    );
}

#[test]
fn stage1_48bit_upper_half() {
    let f = Stage1::new(48, Half::Upper, Regime::El1And0).unwrap();
    let (root, l1) = (0x1000, 0x2000);
    let mut m = Tables::new();
    m.set(root, 256, l1 | arm64::DESC_TABLE)
        .set(l1, 0, 0xc000_0000 | S1_BLOCK | arm64::NG);
    let rec = walk_all(&f, &m, root);
    assert_eq!(
        leaf_list(&rec),
        vec![(0xffff_8000_0000_0000, GIB, 0xc000_0000, 1, RW | Access::EXEC)]
    );
    assert_eq!(rec.leaves()[0].entry_addr, l1);
    assert_eq!(rec.holes().len(), 511 + 511);
    assert_eq!(rec.holes()[0].addr, 0xffff_0000_0000_0000);
}

#[test]
fn stage1_42bit_has_an_eight_entry_root() {
    let f = Stage1::new(42, Half::Lower, Regime::El1And0).unwrap();
    assert_eq!((f.root_level(), f.root_entries(), f.input_bits()), (Level(0), 8, 42));
    // The root is the last 64 bytes of its frame, 64-byte aligned as the
    // architecture allows for an 8-entry table: reading a ninth entry would
    // leave table memory.
    let root = 0x1fc0;
    let l1 = 0x3000;
    let mut m = Tables::new();
    m.set(root, 7, l1 | arm64::DESC_TABLE)
        .set(l1, 511, 0x1_0000_0000 | S1_BLOCK);
    let rec = walk_all(&f, &m, root);
    assert!(rec.bad().is_empty(), "{:?}", rec.bad());
    assert_eq!(
        leaf_list(&rec),
        vec![((1 << 42) - GIB, GIB, 0x1_0000_0000, 1, RW | Access::EXEC)]
    );
    assert_eq!(rec.holes().len(), 7 + 511);
    assert_eq!(rec.entered()[0].size, 1 << 42);
    // Misaligned for its size: refused without a read.
    let rec = walk_all(&f, &m, root + 8);
    assert_eq!(
        bad_list(&rec),
        vec![(0, 0, BadReason::UnreadableTable { table: root + 8 })]
    );
}

#[test]
fn stage1_el2_regime() {
    let f = Stage1::new(48, Half::Lower, Regime::El2).unwrap();
    assert_eq!(
        Stage1::new(48, Half::Upper, Regime::El2),
        Err(ConfigError::AddressBitsOutOfRange { bits: 48 })
    );
    let (root, l1, l2) = (0x1000, 0x2000, 0x3000);
    let mut m = Tables::new();
    m.set(root, 0, l1 | arm64::DESC_TABLE)
        .set(l1, 0, 0x4000_0000 | S1_BLOCK | arm64::AP_USER)
        .set(
            l1,
            1,
            0x8000_0000 | S1_BLOCK | arm64::AP_USER | arm64::XN | arm64::AP_RDONLY,
        )
        // PXN does not exist at EL2: RES0.
        .set(l1, 2, 0xc000_0000 | S1_BLOCK | arm64::PXN)
        // XNTable (bit 60) and APTable[1] exist; PXNTable and APTable[0] are RES0.
        .set(
            l1,
            3,
            l2 | arm64::DESC_TABLE | arm64::UXN_TABLE | arm64::AP_TABLE_RDONLY,
        )
        .set(l1, 4, l2 | arm64::DESC_TABLE | arm64::PXN_TABLE)
        .set(l1, 5, l2 | arm64::DESC_TABLE | arm64::AP_TABLE_NO_EL0)
        .set(l2, 0, 0x20_0000 | S1_BLOCK);
    let rec = walk_range(&f, &m, root, AddrRange::new(0, Some(6 * GIB)).unwrap());
    // One privilege level: never USER or EXEC_USER.
    assert_eq!(
        leaf_list(&rec),
        vec![
            (0, GIB, 0x4000_0000, 1, RW | Access::EXEC_PRIV),
            (GIB, GIB, 0x8000_0000, 1, R),
            (3 * GIB, MIB2, 0x20_0000, 2, R),
        ]
    );
    assert_eq!(
        bad_list(&rec),
        vec![
            (2 * GIB, 1, BadReason::ReservedBits(arm64::PXN)),
            (4 * GIB, 1, BadReason::ReservedBits(arm64::PXN_TABLE)),
            (5 * GIB, 1, BadReason::ReservedBits(arm64::AP_TABLE_NO_EL0)),
        ]
    );
    // TCR_EL2: T0SZ = 16, TG0 = 4K.
    assert_eq!(Stage1::from_tcr_el2(16).unwrap(), f);
    assert_eq!(
        Stage1::from_tcr_el2(16 | 0b10 << 14),
        Err(ConfigError::UnsupportedGranule { kib: 16 })
    );
}

#[test]
fn stage1_table_attributes_fold_into_leaves() {
    let f = Stage1::new(39, Half::Lower, Regime::El1And0).unwrap();
    let (root, l2, l3) = (0x1000, 0x2000, 0x3000);
    let all_leaf = 0x5000 | S1_PAGE | arm64::AP_USER; // RW, EL0 too, UXN/PXN clear (PXN implied by EL0-write)
    let exec_leaf = 0x6000 | S1_PAGE | arm64::AP_USER | arm64::AP_RDONLY; // R, EL0, both exec
    let cases = [
        (0, Access::ALL),
        (arm64::AP_TABLE_RDONLY, Access::ALL.without(Access::WRITE)),
        (arm64::AP_TABLE_NO_EL0, Access::ALL.without(Access::USER)),
        (arm64::UXN_TABLE, Access::ALL.without(Access::EXEC_USER)),
        (arm64::PXN_TABLE, Access::ALL.without(Access::EXEC_PRIV)),
        // NSTable is not a right.
        (arm64::NS_TABLE, Access::ALL),
    ];
    for (bits, allows) in cases {
        let mut m = Tables::new();
        m.set(root, 0, l2 | arm64::DESC_TABLE | bits)
            .set(l2, 0, l3 | arm64::DESC_TABLE)
            .set(l3, 0, all_leaf)
            .set(l3, 1, exec_leaf);
        let rec = walk_range(&f, &m, root, AddrRange::new(0, Some(0x2000)).unwrap());
        let entered = rec.entered();
        assert_eq!(entered.len(), 3);
        assert_eq!(entered[1].allows, allows, "table bits {bits:#x}");
        assert_eq!(entered[2].allows, allows);
        let leaves = rec.leaves();
        assert_eq!(leaves[0].access, (RW | Access::USER | Access::EXEC_USER) & allows);
        assert_eq!(leaves[1].access, (R | Access::USER | Access::EXEC) & allows);
    }
    // Restrictions at two levels combine.
    let mut m = Tables::new();
    m.set(root, 0, l2 | arm64::DESC_TABLE | arm64::AP_TABLE_RDONLY)
        .set(
            l2,
            0,
            l3 | arm64::DESC_TABLE | arm64::UXN_TABLE | arm64::AP_TABLE_NO_EL0,
        )
        .set(l3, 1, exec_leaf);
    assert_eq!(translate(&f, &m, root, 0x1000).unwrap().access, R | Access::EXEC_PRIV);
}

#[test]
fn stage1_reserved_and_malformed_entries() {
    let f = Stage1::new(48, Half::Lower, Regime::El1And0).unwrap();
    let d = |level: i8, raw: u64| f.decode(Level(level), raw);
    // Without LPA2, OA[51:48] are RES0 in a table descriptor; in a leaf only
    // 49:48 are (50 is GP, 51 is DBM: Linux's PTE_WRITE).
    assert_eq!(
        d(0, 1 << 48 | 0x1000 | arm64::DESC_TABLE),
        Decoded::Bad(BadReason::ReservedBits(1 << 48))
    );
    assert_eq!(
        d(3, 1 << 49 | 0x1000 | S1_PAGE),
        Decoded::Bad(BadReason::ReservedBits(1 << 49))
    );
    assert_eq!(
        d(1, 1 << 51 | 0x1000 | arm64::DESC_TABLE),
        Decoded::Bad(BadReason::ReservedBits(1 << 51))
    );
    assert_eq!(
        d(2, arm64::DBM | arm64::GP | 0x20_0000 | S1_BLOCK),
        Decoded::Leaf {
            out: 0x20_0000,
            access: RW | Access::EXEC
        }
    );
    assert_eq!(d(0, (GIB * 512) | S1_BLOCK), Decoded::Bad(BadReason::BlockNotAllowed));
    assert_eq!(d(3, 0x1000 | S1_BLOCK), Decoded::Bad(BadReason::ReservedDescriptor));
    // Block output below its alignment is reserved; the 1 GiB block's nT bit (16) is not.
    assert_eq!(
        d(2, 0x20_1000 | S1_BLOCK),
        Decoded::Bad(BadReason::ReservedBits(0x1000))
    );
    assert_eq!(
        d(1, 0x4000_0000 | 1 << 16 | S1_BLOCK),
        Decoded::Leaf {
            out: 0x4000_0000,
            access: RW | Access::EXEC
        }
    );
    assert_eq!(
        d(1, 0x4000_0000 | 1 << 20 | S1_BLOCK),
        Decoded::Bad(BadReason::ReservedBits(1 << 20))
    );
    // Invalid entries are absent whatever else they hold.
    assert_eq!(d(2, !1), Decoded::Absent);
    // Software bits 58:55, contiguous, DBM and GP do not make a leaf bad.
    let sw = 0xf << 55 | arm64::CONT | arm64::DBM | arm64::GP;
    assert!(matches!(d(3, 0x1000 | S1_PAGE | sw), Decoded::Leaf { out: 0x1000, .. }));
    // A bad entry is reported, not followed.
    let mut m = Tables::new();
    m.set(0x1000, 0, 0x2000 | arm64::DESC_TABLE | 1 << 49)
        .set(0x1000, 1, 0x2000 | S1_BLOCK)
        .frame(0x2000);
    let rec = walk_range(&f, &m, 0x1000, AddrRange::new(0, Some(1 << 40)).unwrap());
    assert_eq!(
        bad_list(&rec),
        vec![
            (0, 0, BadReason::ReservedBits(1 << 49)),
            (1 << 39, 0, BadReason::BlockNotAllowed)
        ]
    );
    assert_eq!(rec.entered().len(), 1);
}

#[test]
fn stage1_mair_attributes() {
    let f = Stage1::new(48, Half::Lower, Regime::El1And0).unwrap();
    assert_eq!(f.mair_attr(4 << arm64::ATTR_INDX_SHIFT), arm64::MAIR_DEVICE_NGNRE);
    assert_eq!(f.mair_attr(2 << arm64::ATTR_INDX_SHIFT), arm64::MAIR_NORMAL_NC);
    let raw = f
        .encode_leaf(Level(3), 0x1000, &MapAttrs::new(R, MemType::DeviceStrict))
        .unwrap();
    assert_eq!(f.mair_attr(raw), arm64::MAIR_DEVICE_NGNRNE);
    // A MAIR without a Device-nGnRE slot cannot encode it.
    let g = f.with_mair(0xff);
    assert_eq!(
        g.encode_leaf(Level(3), 0x1000, &MapAttrs::new(R, MemType::Device)),
        Err(pagewalk::EncodeError::UnsupportedMemType(MemType::Device))
    );
}

#[test]
fn stage1_from_tcr_el1() {
    // T0SZ = 16 (48 bits), TG0 = 4K; T1SZ = 25 (39 bits), TG1 = 4K (0b10).
    let tcr = 16 | 25 << 16 | 0b10 << 30;
    let lower = Stage1::from_tcr_el1(tcr, Half::Lower).unwrap();
    let upper = Stage1::from_tcr_el1(tcr, Half::Upper).unwrap();
    assert_eq!((lower.va_bits(), lower.half()), (48, Half::Lower));
    assert_eq!((upper.va_bits(), upper.half()), (39, Half::Upper));
    assert_eq!(lower.regime(), Regime::El1And0);
    // TG0: 01 = 64K, 10 = 16K.
    for (tg0, kib) in [(0b01u64, 64), (0b10, 16)] {
        assert_eq!(
            Stage1::from_tcr_el1(tcr | tg0 << 14, Half::Lower),
            Err(ConfigError::UnsupportedGranule { kib })
        );
    }
    // TG1: 01 = 16K, 11 = 64K (and 00 is reserved).
    for (tg1, kib) in [(0b01u64, 16), (0b11, 64), (0b00, 0)] {
        let t = (tcr & !(0b11 << 30)) | tg1 << 30;
        assert_eq!(
            Stage1::from_tcr_el1(t, Half::Upper),
            Err(ConfigError::UnsupportedGranule { kib })
        );
        // The other half's granule does not matter.
        assert!(Stage1::from_tcr_el1(t, Half::Lower).is_ok());
    }
    // DS = 1 (LPA2) is refused for both halves.
    for half in [Half::Lower, Half::Upper] {
        let err = Stage1::from_tcr_el1(tcr | 1 << 59, half).unwrap_err();
        assert_eq!(err, ConfigError::Lpa2Unsupported);
        assert_eq!(err.to_string(), "52-bit LPA2 tables are not supported");
    }
    assert_eq!(
        ConfigError::UnsupportedGranule { kib: 16 }.to_string(),
        "16K translation granule is not supported (only 4K)"
    );
    // 52-bit VA needs LPA2; T0SZ = 40 (24 bits) is too small.
    assert_eq!(Stage1::from_tcr_el1(12, Half::Lower), Err(ConfigError::Lpa2Unsupported));
    assert_eq!(
        Stage1::from_tcr_el1(40, Half::Lower),
        Err(ConfigError::AddressBitsOutOfRange { bits: 24 })
    );
}

// ---------------------------------------------------------------- arm64 stage-2

const S2_LEAF: u64 = arm64::AF | arm64::S2AP_R | arm64::S2AP_W | arm64::S2_MEMATTR_NORMAL_WB << arm64::S2_MEMATTR_SHIFT;

#[test]
fn stage2_geometry_and_concatenated_roots() {
    // (ipa bits, start level) -> root entries; more than 16 tables or a
    // level that covers the whole space alone is refused.
    let legal = [
        (48, 0, 512),
        (44, 0, 32),
        (40, 0, 2),
        (39, 1, 512),
        (40, 1, 1024),
        (43, 1, 8192),
        (32, 1, 4),
        (32, 2, 2048),
        (34, 2, 8192),
        (33, 2, 4096),
    ];
    for (bits, level, entries) in legal {
        let f = Stage2::new(bits, level).unwrap();
        assert_eq!(
            (f.root_entries(), f.input_bits()),
            (entries, bits),
            "{bits} bits from {level}"
        );
        // vtcr_geometry and from_vtcr round-trip.
        assert_eq!(Stage2::from_vtcr(f.vtcr_geometry()).unwrap(), f);
    }
    for (bits, level) in [(44, 1), (48, 1), (35, 2), (40, 2), (40, 3), (40, -1)] {
        assert_eq!(
            Stage2::new(bits, level),
            Err(ConfigError::BadStartLevel { level, ipa_bits: bits })
        );
    }
    assert_eq!(Stage2::new(52, 0), Err(ConfigError::Lpa2Unsupported));
    assert_eq!(Stage2::new(31, 2), Err(ConfigError::AddressBitsOutOfRange { bits: 31 }));
    // KVM's choice: fewest levels with at most 16 concatenated tables.
    for (bits, level) in [(32, 2), (34, 2), (35, 1), (40, 1), (43, 1), (44, 0), (48, 0)] {
        assert_eq!(
            Stage2::for_ipa_bits(bits).unwrap().start_level(),
            Level(level),
            "{bits}"
        );
    }
}

#[test]
fn stage2_walks_concatenated_root_tables() {
    // 40-bit IPA from level 1: two 4 KiB tables, 8 KiB aligned.
    let f = Stage2::new(40, 1).unwrap();
    let root = 0x10_0000;
    let l2 = 0x20_0000;
    let mut m = Tables::new();
    m.set(root, 0, 0x4000_0000 | arm64::DESC_BLOCK | S2_LEAF)
        .set(root, 512, l2 | arm64::DESC_TABLE) // first entry of the second table
        .set(root, 1023, 0x8000_0000 | arm64::DESC_BLOCK | S2_LEAF)
        .set(l2, 3, 0x60_0000 | arm64::DESC_BLOCK | arm64::S2AP_R | arm64::AF);
    let rec = walk_all(&f, &m, root);
    let e = RW | Access::USER | Access::EXEC;
    assert_eq!(
        leaf_list(&rec),
        vec![
            (0, GIB, 0x4000_0000, 1, e),
            (
                512 * GIB + 3 * MIB2,
                MIB2,
                0x60_0000,
                2,
                R | Access::USER | Access::EXEC
            ),
            (1023 * GIB, GIB, 0x8000_0000, 1, e),
        ]
    );
    assert_eq!(rec.holes().len(), 1021 + 511);
    assert_eq!(translate(&f, &m, root, (1 << 40) - 1).unwrap().out, 0xbfff_ffff);
    assert_eq!(translate(&f, &m, root, 1 << 40), Err(TranslateError::OutOfRange));

    // 43 bits from level 1: sixteen tables; the last entry is at 8191.
    let f = Stage2::new(43, 1).unwrap();
    let mut m = Tables::new();
    for i in 0..16 {
        m.frame(root + i * 0x1000);
    }
    m.set(root, 8191, 0xc000_0000 | arm64::DESC_BLOCK | S2_LEAF);
    let rec = walk_range(&f, &m, root, AddrRange::new(1 << 42, None).unwrap());
    assert_eq!(leaf_list(&rec), vec![((1 << 43) - GIB, GIB, 0xc000_0000, 1, e)]);
    assert_eq!(rec.holes().len(), 4095);

    // 34 bits from level 2: sixteen tables of 2 MiB entries.
    let f = Stage2::new(34, 2).unwrap();
    let mut m = Tables::new();
    for i in 0..16 {
        m.frame(root + i * 0x1000);
    }
    m.set(root, 4096 + 7, 0x1_0000_0000 | arm64::DESC_BLOCK | S2_LEAF);
    assert_eq!(
        translate(&f, &m, root, 4096 * MIB2 + 7 * MIB2 + 5).unwrap().out,
        0x1_0000_0005
    );
}

#[test]
fn stage2_permissions_and_attributes() {
    let f = Stage2::new(40, 1).unwrap();
    let d = |raw: u64| f.decode(Level(3), raw | arm64::DESC_TABLE | arm64::AF | 0x7000);
    let leaf = |access| Decoded::Leaf { out: 0x7000, access };
    let u = Access::USER;
    // S2AP: R and W independent (write-only is legal at stage 2).
    assert_eq!(d(0), leaf(u | Access::EXEC));
    assert_eq!(d(arm64::S2AP_R), leaf(u | R | Access::EXEC));
    assert_eq!(d(arm64::S2AP_W), leaf(u | Access::WRITE | Access::EXEC));
    // XN[1:0]: 00 both, 01 EL0 only, 10 none, 11 EL1 only.
    let ap = arm64::S2AP_R | arm64::S2AP_W;
    for (xn, exec) in [
        (0b00u64, Access::EXEC),
        (0b01, Access::EXEC_USER),
        (0b10, Access::NONE),
        (0b11, Access::EXEC_PRIV),
    ] {
        assert_eq!(d(ap | xn << arm64::S2_XN_SHIFT), leaf(u | RW | exec), "XN {xn:#b}");
    }
    // MemAttr does not change the rights; every MemAttr decodes.
    for memattr in 0..16u64 {
        assert_eq!(d(ap | memattr << arm64::S2_MEMATTR_SHIFT), leaf(u | RW | Access::EXEC));
    }
    // Encoding chooses the MemAttr per memory type and XN per exec rights.
    for (mem, memattr) in [
        (MemType::Normal, arm64::S2_MEMATTR_NORMAL_WB),
        (MemType::NormalNonCacheable, arm64::S2_MEMATTR_NORMAL_NC),
        (MemType::Device, arm64::S2_MEMATTR_DEVICE_NGNRE),
        (MemType::DeviceStrict, arm64::S2_MEMATTR_DEVICE_NGNRNE),
    ] {
        let raw = f
            .encode_leaf(Level(2), 0x20_0000, &MapAttrs::new(RW | Access::EXEC_PRIV, mem))
            .unwrap();
        assert_eq!((raw & arm64::S2_MEMATTR_MASK) >> arm64::S2_MEMATTR_SHIFT, memattr);
        assert_eq!((raw & arm64::S2_XN_MASK) >> arm64::S2_XN_SHIFT, 0b11);
        assert_eq!(
            f.decode(Level(2), raw),
            Decoded::Leaf {
                out: 0x20_0000,
                access: u | RW | Access::EXEC_PRIV
            }
        );
    }
    // Stage-2 table descriptors have no attribute bits: 63:59 are RES0.
    assert_eq!(
        f.decode(Level(1), 0x3000 | arm64::DESC_TABLE | arm64::UXN_TABLE),
        Decoded::Bad(BadReason::ReservedBits(arm64::UXN_TABLE))
    );
    assert_eq!(
        f.decode(Level(1), 0x3000 | arm64::DESC_TABLE),
        Decoded::Table {
            next: 0x3000,
            allows: Access::ALL
        }
    );
    // Level 0 has no blocks at stage 2 either.
    let g = Stage2::new(48, 0).unwrap();
    assert_eq!(
        g.decode(Level(0), arm64::DESC_BLOCK | S2_LEAF),
        Decoded::Bad(BadReason::BlockNotAllowed)
    );
}

#[test]
fn stage2_from_vtcr() {
    // T0SZ = 24 (40 bits), SL0 = 1 (level 1), TG0 = 4K.
    let f = Stage2::from_vtcr(24 | 1 << 6).unwrap();
    assert_eq!((f.ipa_bits(), f.start_level(), f.root_entries()), (40, Level(1), 1024));
    assert_eq!(Stage2::from_vtcr(16 | 2 << 6).unwrap().start_level(), Level(0));
    assert_eq!(Stage2::from_vtcr(32).unwrap().start_level(), Level(2));
    assert_eq!(
        Stage2::from_vtcr(24 | 3 << 6),
        Err(ConfigError::BadStartLevel { level: 3, ipa_bits: 40 })
    );
    assert_eq!(
        Stage2::from_vtcr(24 | 1 << 6 | 0b01 << 14),
        Err(ConfigError::UnsupportedGranule { kib: 64 })
    );
    assert_eq!(
        Stage2::from_vtcr(24 | 1 << 6 | 0b10 << 14),
        Err(ConfigError::UnsupportedGranule { kib: 16 })
    );
    // DS (bit 32) and SL2 (bit 33).
    assert_eq!(
        Stage2::from_vtcr(24 | 1 << 6 | 1 << 32),
        Err(ConfigError::Lpa2Unsupported)
    );
    assert_eq!(
        Stage2::from_vtcr(24 | 1 << 6 | 1 << 33),
        Err(ConfigError::Lpa2Unsupported)
    );
    // SL0 = 1 with a 44-bit IPA would need 32 concatenated tables.
    assert_eq!(
        Stage2::from_vtcr(20 | 1 << 6),
        Err(ConfigError::BadStartLevel { level: 1, ipa_bits: 44 })
    );
}

// ---------------------------------------------------------------- x86-64

const P: u64 = x86::PRESENT | x86::RW | x86::USER;
const X_ALL: Access = Access::ALL;

#[test]
fn x86_four_level_pages_of_every_size() {
    let f = X86_64::four_level();
    assert_eq!((f.root_level(), f.input_bits()), (Level(0), 48));
    let (pml4, pdpt, pd, pt, pdpt_hi) = (0x1000, 0x2000, 0x3000, 0x4000, 0x5000);
    let mut m = Tables::new();
    m.set(pml4, 0, pdpt | P)
        .set(pdpt, 1, pd | P)
        .set(pd, 2, pt | P)
        .set(pd, 3, 0x60_0000 | P | x86::PSE)
        .set(pt, 4, 0x9000 | P)
        .set(pdpt, 2, 0x8000_0000 | x86::PRESENT | x86::PSE | x86::NX)
        .set(pml4, 511, pdpt_hi | x86::PRESENT | x86::RW)
        .set(pdpt_hi, 510, x86::PRESENT | x86::PSE | x86::GLOBAL);
    let rec = walk_all(&f, &m, pml4);
    assert_eq!(
        leaf_list(&rec),
        vec![
            (GIB + 2 * MIB2 + 0x4000, 0x1000, 0x9000, 3, X_ALL),
            (GIB + 3 * MIB2, MIB2, 0x60_0000, 2, X_ALL),
            // No U/S or R/W in the leaf; NX.
            (2 * GIB, GIB, 0x8000_0000, 1, R),
            // The PML4 entry has no U/S; the leaf no R/W.
            (0xffff_ffff_8000_0000, GIB, 0, 1, R | Access::EXEC),
        ]
    );
    assert_eq!(translate(&f, &m, pml4, 0xffff_ffff_8123_4567).unwrap().out, 0x123_4567);
    // Non-canonical addresses are outside the table's space.
    assert_eq!(
        translate(&f, &m, pml4, 0x0000_8000_0000_0000),
        Err(TranslateError::OutOfRange)
    );
    assert_eq!(
        translate(&f, &m, pml4, 0xffff_7fff_ffff_ffff),
        Err(TranslateError::OutOfRange)
    );
    // A range inside the non-canonical hole reports nothing.
    let rec = walk_range(
        &f,
        &m,
        pml4,
        AddrRange::new(1 << 47, Some(0xffff_8000_0000_0000)).unwrap(),
    );
    assert!(rec.0.is_empty());
    // A range spanning the hole reports the end of the low half and the start of the high half.
    let rec = walk_range(
        &f,
        &m,
        pml4,
        AddrRange::new((1 << 47) - 0x1000, Some(0xffff_8000_0000_1000)).unwrap(),
    );
    let spans = rec.spans();
    assert_eq!(
        spans,
        vec![((1 << 47) - 0x1000, 0x1000), (0xffff_8000_0000_0000, 0x1000)]
    );
}

#[test]
fn x86_pat_bit_at_each_level() {
    let f = X86_64::four_level();
    // 4 KiB: PAT is bit 7 and the output keeps all of 51:12.
    assert_eq!(
        f.decode(Level(3), 0xabc_d000 | P | x86::PAT_4K),
        Decoded::Leaf {
            out: 0xabc_d000,
            access: X_ALL
        }
    );
    // 2 MiB and 1 GiB: PAT is bit 12, not part of the output address.
    assert_eq!(
        f.decode(Level(2), 0x60_0000 | P | x86::PSE | x86::PAT_LARGE),
        Decoded::Leaf {
            out: 0x60_0000,
            access: X_ALL
        }
    );
    assert_eq!(
        f.decode(Level(1), 0xc000_0000 | P | x86::PSE | x86::PAT_LARGE),
        Decoded::Leaf {
            out: 0xc000_0000,
            access: X_ALL
        }
    );
    // Bits between PAT and the page alignment are reserved.
    assert_eq!(
        f.decode(Level(2), 0x60_2000 | P | x86::PSE),
        Decoded::Bad(BadReason::ReservedBits(0x2000))
    );
    assert_eq!(
        f.decode(Level(1), 0xc010_0000 | P | x86::PSE),
        Decoded::Bad(BadReason::ReservedBits(0x10_0000))
    );
    // Splitting a 2 MiB PAT page moves PAT to bit 7 of each 4 KiB piece.
    let big = 0x60_0000 | P | x86::PSE | x86::PAT_LARGE;
    let piece = f.split_leaf(Level(2), big, 3);
    assert_eq!(piece, 0x60_3000 | P | x86::PAT_4K);
    let piece = f.split_leaf(Level(1), 0x4000_0000 | P | x86::PSE | x86::PAT_LARGE, 1);
    assert_eq!(piece, 0x4020_0000 | P | x86::PSE | x86::PAT_LARGE);
}

#[test]
fn x86_rights_fold_and_reserved_bits() {
    let f = X86_64::four_level();
    let (pml4, pdpt, pd) = (0x1000, 0x2000, 0x3000);
    for (table_bits, allows) in [
        (P, X_ALL),
        (P & !x86::RW, X_ALL.without(Access::WRITE)),
        (P & !x86::USER, X_ALL.without(Access::USER)),
        (P | x86::NX, X_ALL.without(Access::EXEC)),
    ] {
        let mut m = Tables::new();
        m.set(pml4, 0, pdpt | table_bits)
            .set(pdpt, 0, pd | P)
            .set(pd, 0, P | x86::PSE);
        let t = translate(&f, &m, pml4, 0x1234).unwrap();
        assert_eq!((t.out, t.access), (0x1234, allows), "{table_bits:#x}");
    }
    // PS is reserved at PML4 (and PML5).
    assert_eq!(
        f.decode(Level(0), P | x86::PSE),
        Decoded::Bad(BadReason::ReservedBits(x86::PSE))
    );
    assert_eq!(
        X86_64::five_level().decode(Level(-1), 0x1000 | P | x86::PSE),
        Decoded::Bad(BadReason::ReservedBits(x86::PSE))
    );
    // NX is reserved when EFER.NXE is clear; everything is executable then.
    let no_nx = X86_64::new(4, false, 52).unwrap();
    assert_eq!(
        no_nx.decode(Level(3), 0x1000 | P | x86::NX),
        Decoded::Bad(BadReason::ReservedBits(x86::NX))
    );
    assert_eq!(
        no_nx.decode(Level(3), 0x1000 | x86::PRESENT),
        Decoded::Leaf {
            out: 0x1000,
            access: R | Access::EXEC
        }
    );
    // Physical address bits at and above MAXPHYADDR are reserved, at every level.
    let narrow = X86_64::new(4, true, 46).unwrap();
    for level in 0..=3 {
        assert_eq!(
            narrow.decode(Level(level), 1 << 46 | 0x20_0000 | P),
            Decoded::Bad(BadReason::ReservedBits(1 << 46)),
            "level {level}"
        );
        assert!(!matches!(narrow.decode(Level(level), 1 << 45 | P), Decoded::Bad(_)));
    }
    // Software-available bits 62:52 and 11:9 are ignored.
    assert_eq!(
        f.decode(Level(3), 0x7ff << 52 | 0b111 << 9 | 0x5000 | P),
        Decoded::Leaf {
            out: 0x5000,
            access: X_ALL
        }
    );
    // A not-present entry is a hole whatever its other bits hold (swap entries).
    assert_eq!(f.decode(Level(2), !x86::PRESENT), Decoded::Absent);
    // Bad configurations.
    assert_eq!(X86_64::new(3, true, 52), Err(ConfigError::BadLevels { levels: 3 }));
    assert_eq!(X86_64::new(4, true, 53), Err(ConfigError::BadPhysBits { bits: 53 }));
    assert_eq!(X86_64::new(4, true, 31), Err(ConfigError::BadPhysBits { bits: 31 }));
}

#[test]
fn x86_five_level() {
    let f = X86_64::five_level();
    assert_eq!((f.root_level(), f.input_bits()), (Level(-1), 57));
    let (pml5, pml4, pdpt) = (0x1000, 0x2000, 0x3000);
    let mut m = Tables::new();
    m.set(pml5, 511, pml4 | P)
        .set(pml4, 511, pdpt | P)
        .set(pdpt, 511, 0x4000_0000 | P | x86::PSE)
        .set(pml5, 1, pml4 | P);
    let rec = walk_all(&f, &m, pml5);
    assert_eq!(
        leaf_list(&rec),
        vec![
            ((1 << 48) + 511 * (1 << 39) + 511 * GIB, GIB, 0x4000_0000, 1, X_ALL),
            (u64::MAX - GIB + 1, GIB, 0x4000_0000, 1, X_ALL),
        ]
    );
    assert_eq!(translate(&f, &m, pml5, 1 << 56), Err(TranslateError::OutOfRange));
    assert_eq!(
        translate(&f, &m, pml5, 0xff00_0000_0000_0000),
        Err(TranslateError::NotMapped { level: Level(-1) })
    );
}

#[test]
fn npt_grants_nothing_without_user() {
    let f = Npt::four_level();
    assert_eq!(f.address_space(), pagewalk::AddressSpace::Direct);
    let (pml4, pdpt) = (0x1000, 0x2000);
    let mut m = Tables::new();
    // Guest-physical space is not sign-extended: index 256 is 2^47.
    m.set(pml4, 256, pdpt | P)
        .set(pdpt, 0, 0x4000_0000 | P | x86::PSE)
        .set(pdpt, 1, 0x8000_0000 | (P & !x86::USER) | x86::PSE)
        .set(pml4, 257, pdpt | (P & !x86::USER));
    let rec = walk_all(&f, &m, pml4);
    let leaves = leaf_list(&rec);
    assert_eq!(leaves.len(), 4);
    assert_eq!(leaves[0], (1 << 47, GIB, 0x4000_0000, 1, X_ALL));
    assert_eq!(leaves[1], ((1 << 47) + GIB, GIB, 0x8000_0000, 1, Access::NONE));
    // A U=0 table takes every right from what is below it.
    assert_eq!(leaves[2].4, Access::NONE);
    assert_eq!(leaves[2].0, (1 << 47) + (1 << 39));
    assert_eq!(translate(&f, &m, pml4, 1 << 48), Err(TranslateError::OutOfRange));
    // The builder's NPT leaves always carry U.
    let raw = f
        .encode_leaf(Level(3), 0x1000, &MapAttrs::new(R, MemType::Normal))
        .unwrap();
    assert_ne!(raw & x86::USER, 0);
}

// ---------------------------------------------------------------- EPT

const EPT_WB: u64 = ept::MEMTYPE_WB << ept::MEMTYPE_SHIFT;
const EPT_RWX: u64 = ept::READ | ept::WRITE | ept::EXEC;

#[test]
fn ept_presence_and_rights() {
    let f = Ept::four_level();
    let d = |raw: u64| f.decode(Level(3), raw | 0x5000);
    let leaf = |access| Decoded::Leaf { out: 0x5000, access };
    let u = Access::USER;
    // Present iff any of R/W/X.
    assert_eq!(d(EPT_WB | ept::IGNORE_PAT | ept::USER_EXEC), Decoded::Absent);
    assert_eq!(d(ept::READ | EPT_WB), leaf(u | R));
    assert_eq!(d(ept::EXEC | EPT_WB), leaf(u | Access::EXEC));
    assert_eq!(d(EPT_RWX | EPT_WB | ept::IGNORE_PAT), leaf(Access::ALL));
    // Write without read is a misconfiguration, with or without X.
    assert_eq!(d(ept::WRITE | EPT_WB), Decoded::Bad(BadReason::WriteWithoutRead));
    assert_eq!(
        d(ept::WRITE | ept::EXEC | EPT_WB),
        Decoded::Bad(BadReason::WriteWithoutRead)
    );
    // Memory types 2, 3 and 7 are reserved in leaves.
    for t in [2u64, 3, 7] {
        assert_eq!(
            d(ept::READ | t << ept::MEMTYPE_SHIFT),
            Decoded::Bad(BadReason::ReservedMemoryType(t as u8))
        );
    }
    for t in [
        ept::MEMTYPE_UC,
        ept::MEMTYPE_WC,
        ept::MEMTYPE_WT,
        ept::MEMTYPE_WP,
        ept::MEMTYPE_WB,
    ] {
        assert_eq!(d(ept::READ | t << ept::MEMTYPE_SHIFT), leaf(u | R));
        assert!(ept::memtype_name(t).is_some());
    }
    // Accessed, dirty, suppress-#VE and software bits do not matter.
    assert_eq!(
        d(ept::READ | EPT_WB | ept::ACCESSED | ept::DIRTY | ept::SUPPRESS_VE | 0xf << 52),
        leaf(u | R)
    );
    // Without MBEC bit 10 is ignored and X means both; with MBEC it is user execute.
    assert_eq!(d(ept::READ | EPT_WB | ept::USER_EXEC), leaf(u | R));
    let mbec = Ept::new(4, true, 52).unwrap();
    let dm = |raw: u64| mbec.decode(Level(3), raw | 0x5000);
    assert_eq!(dm(EPT_WB | ept::USER_EXEC), leaf(u | Access::EXEC_USER));
    assert_eq!(dm(EPT_WB | ept::EXEC), leaf(u | Access::EXEC_PRIV));
    assert_eq!(
        dm(EPT_WB | ept::READ | ept::EXEC | ept::USER_EXEC),
        leaf(u | R | Access::EXEC)
    );
    // Reserved physical-address bits.
    let narrow = Ept::new(4, false, 39).unwrap();
    assert_eq!(
        narrow.decode(Level(3), 1 << 40 | ept::READ | EPT_WB),
        Decoded::Bad(BadReason::ReservedBits(1 << 40))
    );
    assert_eq!(Ept::new(6, false, 52), Err(ConfigError::BadLevels { levels: 6 }));
    assert_eq!(Ept::from_eptp(3 << 3 | 6, false, 52).unwrap(), Ept::four_level());
    assert_eq!(Ept::from_eptp(4 << 3 | 6, false, 52).unwrap(), Ept::five_level());
}

#[test]
fn ept_large_pages_and_tables() {
    let f = Ept::four_level();
    let (pml4, pdpt, pd) = (0x1000, 0x2000, 0x3000);
    let mut m = Tables::new();
    m.set(pml4, 0, pdpt | EPT_RWX)
        .set(pdpt, 0, pd | ept::READ | ept::EXEC) // read-only below
        .set(pdpt, 1, 0x4000_0000 | EPT_RWX | EPT_WB | ept::LARGE)
        .set(pdpt, 2, 0x8000_0000 | EPT_RWX | 2 << ept::MEMTYPE_SHIFT | ept::LARGE)
        .set(pd, 1, 0x20_0000 | EPT_RWX | EPT_WB | ept::LARGE)
        .set(pd, 2, 0x20_0000 | EPT_RWX | EPT_WB | ept::LARGE | 0x1000);
    let rec = walk_range(&f, &m, pml4, AddrRange::new(0, Some(4 * GIB)).unwrap());
    assert_eq!(
        leaf_list(&rec),
        vec![
            (MIB2, MIB2, 0x20_0000, 2, Access::ALL.without(Access::WRITE)),
            (GIB, GIB, 0x4000_0000, 1, Access::ALL),
        ]
    );
    assert_eq!(
        bad_list(&rec),
        vec![
            (2 * MIB2, 2, BadReason::ReservedBits(0x1000)),
            (2 * GIB, 1, BadReason::ReservedMemoryType(2)),
        ]
    );
    // Large at the top level is reserved; a table entry's bits 6:3 too.
    assert_eq!(
        f.decode(Level(0), EPT_RWX | EPT_WB | ept::LARGE),
        Decoded::Bad(BadReason::ReservedBits(ept::LARGE))
    );
    assert_eq!(
        f.decode(Level(1), 0x3000 | EPT_RWX | EPT_WB),
        Decoded::Bad(BadReason::ReservedBits(EPT_WB))
    );
    // 5-level EPT: guest-physical space of 57 bits from level -1.
    let f5 = Ept::five_level();
    assert_eq!((f5.root_level(), f5.input_bits()), (Level(-1), 57));
    let mut m = Tables::new();
    m.set(0x1000, 2, 0x2000 | EPT_RWX).set(0x2000, 0, 0x3000 | EPT_RWX).set(
        0x3000,
        0,
        0xc000_0000 | ept::READ | EPT_WB | ept::LARGE,
    );
    let t = translate(&f5, &m, 0x1000, (2 << 48) + 0x42).unwrap();
    assert_eq!((t.out, t.level, t.access), (0xc000_0042, Level(1), Access::USER | R));
}

// ---------------------------------------------------------------- ranges

/// A 4 KiB leaf in the last page of a format's space, reached through one
/// table per level.
fn last_page_tables<F: Format>(f: &F, leaf: u64) -> (Tables, u64) {
    let mut m = Tables::new();
    let root = 0x10_0000;
    for i in 0..f.root_entries().div_ceil(512) as u64 {
        m.frame(root + i * 0x1000);
    }
    let mut table = root;
    let mut level = f.root_level();
    let mut index = f.root_entries() as u64 - 1;
    while !level.is_page() {
        let next = table + 0x10_0000;
        m.set(table, index, f.encode_table(level, next));
        table = next;
        level = level.next();
        index = 511;
    }
    m.set(table, 511, leaf);
    (m, root)
}

#[test]
fn walk_to_the_top_of_the_address_space_terminates() {
    fn check<F: Format + std::fmt::Debug>(f: &F, attrs_leaf: u64, expect_last: u64) {
        let (m, root) = last_page_tables(f, attrs_leaf);
        for start in [0, expect_last - 0xfff, expect_last - 0x7ff, u64::MAX - 0xfff, u64::MAX] {
            let range = AddrRange::new(start, None).unwrap();
            let mut rec = Record::default();
            walk(f, &m, root, range, &mut rec);
            assert_ordered_disjoint(&rec.spans(), range.start, range.last);
            let leaves = rec.leaves();
            if start <= expect_last {
                assert_eq!(leaves.len(), 1, "{f:?} from {start:#x}");
                let l = leaves[0];
                assert_eq!(l.addr + (l.size - 1), expect_last, "{f:?}");
                assert_eq!(l.out, 0x7000 + (l.addr & 0xfff));
            } else {
                assert!(rec.0.is_empty());
            }
        }
        assert_eq!(translate(f, &m, root, expect_last).unwrap().out, 0x7fff);
    }
    let s1 = |bits, half| Stage1::new(bits, half, Regime::El1And0).unwrap();
    let s1_page = 0x7000 | S1_PAGE;
    check(&s1(48, Half::Upper), s1_page, u64::MAX);
    check(&s1(39, Half::Upper), s1_page, u64::MAX);
    check(&s1(48, Half::Lower), s1_page, (1 << 48) - 1);
    check(&s1(42, Half::Lower), s1_page, (1 << 42) - 1);
    let s2_page = 0x7000 | arm64::DESC_TABLE | S2_LEAF;
    check(&Stage2::new(40, 1).unwrap(), s2_page, (1 << 40) - 1);
    check(&Stage2::new(34, 2).unwrap(), s2_page, (1 << 34) - 1);
    check(&X86_64::four_level(), 0x7000 | P, u64::MAX);
    check(&X86_64::five_level(), 0x7000 | P, u64::MAX);
    check(&Npt::four_level(), 0x7000 | P, (1 << 48) - 1);
    check(&Ept::four_level(), 0x7000 | ept::READ | EPT_WB, (1 << 48) - 1);
    check(&Ept::five_level(), 0x7000 | ept::READ | EPT_WB, (1 << 57) - 1);
}

#[test]
fn clipped_leaves_report_the_output_of_their_first_byte() {
    let f = X86_64::four_level();
    let (pml4, pdpt, pd) = (0x1000, 0x2000, 0x3000);
    let mut m = Tables::new();
    m.set(pml4, 511, pdpt | P)
        .set(pdpt, 511, 0x4000_0000 | P | x86::PSE)
        .set(pdpt, 510, pd | P)
        .set(pd, 511, 0x60_0000 | P | x86::PSE);
    let gib_start = 0xffff_ffff_c000_0000u64;
    let mib_start = gib_start - MIB2;
    // A range starting inside the 2 MiB page and ending inside the 1 GiB one.
    let range = AddrRange::new(mib_start + 0x1234, Some(gib_start + 0x5000)).unwrap();
    let rec = walk_range(&f, &m, pml4, range);
    assert_eq!(
        leaf_list(&rec),
        vec![
            (mib_start + 0x1234, MIB2 - 0x1234, 0x60_1234, 2, X_ALL),
            (gib_start, 0x5000, 0x4000_0000, 1, X_ALL),
        ]
    );
    // A one-byte range in the middle of a 1 GiB page.
    let rec = walk_range(&f, &m, pml4, AddrRange::from_len(gib_start + 0x1234_5678, 1).unwrap());
    assert_eq!(
        leaf_list(&rec),
        vec![(gib_start + 0x1234_5678, 1, 0x5234_5678, 1, X_ALL)]
    );
    // Holes are clipped too, and the tables entered cover only the range.
    let range = AddrRange::new(gib_start - 2 * MIB2 + 0x800, Some(gib_start - MIB2 + 0x10)).unwrap();
    let rec = walk_range(&f, &m, pml4, range);
    let holes = rec.holes();
    assert_eq!(holes.len(), 1);
    assert_eq!((holes[0].addr, holes[0].size), (range.start, MIB2 - 0x800));
    let entered = rec.entered();
    assert_eq!(entered.last().unwrap().addr, range.start);
    assert_eq!(entered.last().unwrap().size, range.len().unwrap());
    assert_eq!(leaf_list(&rec), vec![(mib_start, 0x10, 0x60_0000, 2, X_ALL)]);
}

#[test]
fn the_visitor_can_skip_and_stop() {
    use pagewalk::{Flow, Leaf, TableVisit, Visitor};
    struct SkipSecondTable {
        entered: u32,
        leaves: Vec<u64>,
        stop_after: usize,
    }
    impl Visitor for SkipSecondTable {
        fn leaf(&mut self, l: &Leaf) -> Flow {
            self.leaves.push(l.addr);
            if self.leaves.len() == self.stop_after {
                Flow::Stop
            } else {
                Flow::Continue
            }
        }
        fn table_enter(&mut self, _t: &TableVisit) -> Flow {
            self.entered += 1;
            if self.entered == 4 {
                Flow::SkipSubtree
            } else {
                Flow::Continue
            }
        }
    }
    let f = X86_64::four_level();
    let (pml4, pdpt, pd1, pd2, pd3) = (0x1000, 0x2000, 0x3000, 0x4000, 0x5000);
    let mut m = Tables::new();
    m.set(pml4, 0, pdpt | P);
    for (i, pd) in [pd1, pd2, pd3].into_iter().enumerate() {
        m.set(pdpt, i as u64, pd | P)
            .set(pd, 0, P | x86::PSE)
            .set(pd, 1, MIB2 | P | x86::PSE);
    }
    let mut v = SkipSecondTable {
        entered: 0,
        leaves: vec![],
        stop_after: 100,
    };
    let s = walk(&f, &m, pml4, AddrRange::ALL, &mut v);
    assert_eq!(v.leaves, vec![0, MIB2, 2 * GIB, 2 * GIB + MIB2]);
    assert!(!s.stopped);
    assert_eq!(s.leaves, 4);
    let mut v = SkipSecondTable {
        entered: 0,
        leaves: vec![],
        stop_after: 3,
    };
    let s = walk(&f, &m, pml4, AddrRange::ALL, &mut v);
    assert_eq!(v.leaves, vec![0, MIB2, 2 * GIB]);
    assert!(s.stopped);
}
