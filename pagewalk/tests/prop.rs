//! Property tests: random mappings built with `mm::TableBuilder` walk back as
//! exactly the mapped set, in every format; `translate` agrees with a model;
//! unmapping random sub-ranges (which splits blocks) keeps both true.

mod common;

use common::{assert_ordered_disjoint, Record};
use mm::{Arena, TableBuilder};
use pagewalk::arm64::{Half, Regime, Stage1, Stage2};
use pagewalk::ept::Ept;
use pagewalk::x86::{Npt, X86_64};
use pagewalk::{
    translate, walk, Access, AddrRange, AddressSpace, Decoded, Format, Level, MapAttrs, MemType, TranslateError,
};
use proptest::prelude::*;

const PAGE: u64 = 0x1000;
const MIB2: u64 = 1 << 21;
const GIB: u64 = 1 << 30;
const WINDOW: u64 = 8 * GIB;
const MEM_TYPES: [MemType; 4] = [
    MemType::Normal,
    MemType::NormalNonCacheable,
    MemType::Device,
    MemType::DeviceStrict,
];

/// What a format reports for a leaf the builder encoded with `requested`:
/// the rights each format adds by construction (stage-2, NPT and EPT
/// mappings are guest accesses: USER), and x86's single NX bit, which
/// gives both execute rights or neither.
fn expected_access(f: &dyn Format, requested: Access) -> Access {
    let probe = f.encode_leaf(Level::PAGE, PAGE, &MapAttrs::new(requested, MemType::Normal));
    let Ok(raw) = probe else {
        return Access::NONE;
    };
    match f.decode(Level::PAGE, raw) {
        Decoded::Leaf { access, .. } => access,
        other => panic!("builder leaf {raw:#x} decodes as {other:?}"),
    }
}

/// Per-format knowledge the decoders must agree with, stated independently of
/// the decoder: the bits each format adds to an encodable request.
fn implied(kind: Kind, requested: Access) -> Access {
    let exec_both = |a: Access| {
        if a.intersects(Access::EXEC) {
            a | Access::EXEC
        } else {
            a
        }
    };
    match kind {
        Kind::S1Lower48 | Kind::S1Upper48 | Kind::S1Upper39 => requested,
        // One privilege level: an EL0 execute right means nothing and is dropped.
        Kind::S1El2 => requested.without(Access::EXEC_USER),
        Kind::S2L0 | Kind::S2L1 | Kind::S2L2 | Kind::Ept4 | Kind::Ept5 | Kind::Ept4Mbec => requested | Access::USER,
        Kind::X86Four | Kind::X86Five => exec_both(requested),
        Kind::Npt => exec_both(requested) | Access::USER,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    S1Lower48,
    S1Upper48,
    S1Upper39,
    S1El2,
    S2L0,
    S2L1,
    S2L2,
    X86Four,
    X86Five,
    Npt,
    Ept4,
    Ept5,
    Ept4Mbec,
}

fn format(kind: Kind) -> Box<dyn Format> {
    match kind {
        Kind::S1Lower48 => Box::new(Stage1::new(48, Half::Lower, Regime::El1And0).unwrap()),
        Kind::S1Upper48 => Box::new(Stage1::new(48, Half::Upper, Regime::El1And0).unwrap()),
        Kind::S1Upper39 => Box::new(Stage1::new(39, Half::Upper, Regime::El1And0).unwrap()),
        Kind::S1El2 => Box::new(Stage1::new(39, Half::Lower, Regime::El2).unwrap()),
        Kind::S2L0 => Box::new(Stage2::new(44, 0).unwrap()),
        // Two concatenated root tables.
        Kind::S2L1 => Box::new(Stage2::new(40, 1).unwrap()),
        // Sixteen concatenated root tables of 2 MiB entries.
        Kind::S2L2 => Box::new(Stage2::new(34, 2).unwrap()),
        Kind::X86Four => Box::new(X86_64::four_level()),
        Kind::X86Five => Box::new(X86_64::five_level()),
        Kind::Npt => Box::new(Npt::four_level()),
        Kind::Ept4 => Box::new(Ept::four_level()),
        Kind::Ept5 => Box::new(Ept::five_level()),
        Kind::Ept4Mbec => Box::new(Ept::new(4, true, 52).unwrap()),
    }
}

/// One mapping of the model, in the addresses the walk reports.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    va: u64,
    len: u64,
    pa: u64,
    attrs: MapAttrs,
    access: Access,
}

impl Mapping {
    fn last(&self) -> u64 {
        self.va + (self.len - 1)
    }
}

#[derive(Clone, Debug)]
struct Spec {
    class: u8,
    count: u64,
    gap: u64,
    pa_seed: u64,
    pa_coarse: bool,
    access: u8,
    mem: usize,
    global: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u8..3,
        1u64..25,
        0u64..3,
        any::<u64>(),
        any::<bool>(),
        any::<u8>(),
        0usize..4,
        any::<bool>(),
    )
        .prop_map(|(class, count, gap, pa_seed, pa_coarse, access, mem, global)| Spec {
            class,
            count,
            gap,
            pa_seed,
            pa_coarse,
            access,
            mem,
            global,
        })
}

#[derive(Clone, Debug)]
struct Unmap {
    mapping: usize,
    offset_frac: u16,
    class: u8,
    pages: u64,
}

fn unmap() -> impl Strategy<Value = Unmap> {
    (any::<usize>(), any::<u16>(), 0u8..3, 1u64..9).prop_map(|(mapping, offset_frac, class, pages)| Unmap {
        mapping,
        offset_frac,
        class,
        pages,
    })
}

/// The windows of index space a case places its mappings in: the bottom
/// and the top of the space, and for x86 the edges of both canonical halves.
fn window_start(f: &dyn Format, choice: u8) -> (u64, u64) {
    let span = 1u64 << f.input_bits();
    let w = WINDOW.min(span);
    let offsets = match f.address_space() {
        AddressSpace::SignExtended => vec![0, span / 2 - w, span / 2, span - w],
        _ => vec![0, span - w],
    };
    let offset = offsets[choice as usize % offsets.len()];
    (f.offset_to_addr(offset), w)
}

/// Every access combination the format encodes at every leaf level.
fn encodable_accesses(kind: Kind, f: &dyn Format) -> Vec<Access> {
    let mut out = Vec::new();
    for bits in 0..32u8 {
        let a = Access::from_bits_truncate(bits);
        let ok = (1..=3).all(|l| {
            let level = Level(l);
            !f.leaf_allowed(level)
                || f.encode_leaf(level, level.entry_size(), &MapAttrs::new(a, MemType::Normal))
                    .is_ok()
        });
        if ok {
            // The decoder reports what the format's rules say it should.
            assert_eq!(expected_access(f, a), implied(kind, a), "{kind:?} {a:?}");
            out.push(a);
        }
    }
    assert!(out.len() >= 4, "{kind:?} encodes only {out:?}");
    out
}

fn place(f: &dyn Format, kind: Kind, window: (u64, u64), specs: &[Spec]) -> Vec<Mapping> {
    let accesses = encodable_accesses(kind, f);
    let (base, w) = window;
    let mut cursor = 0u64;
    let mut out = Vec::new();
    for s in specs {
        let (align, len, pa_align) = match s.class {
            0 => (PAGE, s.count * PAGE, PAGE),
            1 => (
                MIB2,
                (s.count % 3 + 1) * MIB2 + (s.gap % 2) * PAGE,
                if s.pa_coarse { MIB2 } else { PAGE },
            ),
            _ => (GIB, GIB + (s.count % 2) * MIB2, if s.pa_coarse { GIB } else { MIB2 }),
        };
        let start = cursor.div_ceil(align) * align + s.gap * align;
        if start + len > w {
            break;
        }
        cursor = start + len;
        let pa = (s.pa_seed % ((1u64 << 40) / pa_align)) * pa_align;
        let access = accesses[s.access as usize % accesses.len()];
        let mut attrs = MapAttrs::new(access, MEM_TYPES[s.mem]);
        attrs.global = s.global;
        out.push(Mapping {
            va: base + start,
            len,
            pa,
            attrs,
            access: implied(kind, access),
        });
    }
    out
}

/// (va, len, pa, access) runs: adjacent pieces contiguous in both spaces
/// with the same rights merge, so block and page layouts compare equal.
fn merge(pieces: impl IntoIterator<Item = (u64, u64, u64, Access)>) -> Vec<(u64, u64, u64, Access)> {
    let mut out: Vec<(u64, u64, u64, Access)> = Vec::new();
    for (va, len, pa, access) in pieces {
        if let Some(last) = out.last_mut() {
            if last.0.checked_add(last.1) == Some(va) && last.2 + last.1 == pa && last.3 == access {
                last.1 += len;
                continue;
            }
        }
        out.push((va, len, pa, access));
    }
    out
}

fn in_space(f: &dyn Format, addr: u64) -> bool {
    let span = 1u64 << f.input_bits();
    match f.address_space() {
        AddressSpace::Direct => addr < span,
        AddressSpace::UpperHalf => addr >= span.wrapping_neg(),
        AddressSpace::SignExtended => addr < span / 2 || addr >= (span / 2).wrapping_neg(),
    }
}

fn check(f: &dyn Format, arena: &Arena, root: u64, model: &[Mapping], window: (u64, u64), probes: &[u64]) {
    let range = AddrRange::from_len(window.0, window.1).unwrap();
    let mut rec = Record::default();
    let summary = walk(f, arena, root, range, &mut rec);
    assert_eq!(summary.bad, 0, "{:?}", rec.bad());
    let spans = rec.spans();
    assert_ordered_disjoint(&spans, range.start, range.last);
    // Leaves and holes tile the window exactly.
    let covered: u64 = spans.iter().map(|s| s.1).sum();
    assert_eq!(covered, window.1);

    let leaves = rec.leaves();
    for l in &leaves {
        let m = model
            .iter()
            .find(|m| l.addr >= m.va && l.addr <= m.last())
            .unwrap_or_else(|| panic!("leaf {l:?} maps nothing in the model"));
        // The entry is exactly what the format encodes for these attributes
        // at this level: splitting a block keeps every attribute bit.
        let entry_start = l.addr & !(l.level.entry_size() - 1);
        let entry_out = l.out - (l.addr - entry_start);
        assert_eq!(
            Ok(l.raw),
            f.encode_leaf(l.level, entry_out, &m.attrs),
            "leaf {l:?} of {m:?}"
        );
    }
    let walked = merge(leaves.iter().map(|l| (l.addr, l.size, l.out, l.access)));
    let mut sorted = model.to_vec();
    sorted.sort_by_key(|m| m.va);
    let expected = merge(sorted.iter().map(|m| (m.va, m.len, m.pa, m.access)));
    assert_eq!(walked, expected);

    for &addr in probes {
        let got = translate(f, arena, root, addr);
        match model.iter().find(|m| addr >= m.va && addr <= m.last()) {
            Some(m) => {
                let t = got.unwrap_or_else(|e| panic!("{addr:#x} in {m:?}: {e}"));
                assert_eq!((t.out, t.access), (m.pa + (addr - m.va), m.access), "{addr:#x}");
            }
            None if in_space(f, addr) => {
                assert!(
                    matches!(got, Err(TranslateError::NotMapped { .. })),
                    "{addr:#x}: {got:?}"
                )
            }
            None => assert_eq!(got, Err(TranslateError::OutOfRange), "{addr:#x}"),
        }
    }
}

fn probes(model: &[Mapping], window: (u64, u64), random: &[u64]) -> Vec<u64> {
    let mut p = random.to_vec();
    p.push(window.0);
    p.push(window.0 + (window.1 - 1));
    for m in model {
        p.extend([m.va, m.last(), m.va + m.len / 2 + 0x123]);
        p.push(m.va.wrapping_sub(1));
        p.push(m.last().wrapping_add(1));
    }
    p
}

/// Removes `[va, last]` from the model.
fn subtract(model: &[Mapping], va: u64, last: u64) -> Vec<Mapping> {
    let mut out = Vec::new();
    for m in model {
        if m.last() < va || m.va > last {
            out.push(*m);
            continue;
        }
        if m.va < va {
            out.push(Mapping { len: va - m.va, ..*m });
        }
        if m.last() > last {
            let cut = last + 1 - m.va;
            out.push(Mapping {
                va: last + 1,
                len: m.len - cut,
                pa: m.pa + cut,
                ..*m
            });
        }
    }
    out
}

fn run(kind: Kind, window_choice: u8, specs: &[Spec], unmaps: &[Unmap], random: &[u64]) {
    let f = format(kind);
    let f = f.as_ref();
    let window = window_start(f, window_choice);
    let model = place(f, kind, window, specs);
    let mut arena = Arena::new(0x1_0000_0000, 16 << 20);
    let builder = TableBuilder::new(f, &mut arena).unwrap();
    for m in &model {
        builder.map(&mut arena, m.va, m.pa, m.len, &m.attrs).unwrap();
    }
    let root = builder.root().0;
    check(f, &arena, root, &model, window, &probes(&model, window, random));

    let mut model = model;
    for u in unmaps {
        if model.is_empty() {
            break;
        }
        let m = model[u.mapping % model.len()];
        let offset = (m.len / PAGE) * u.offset_frac as u64 / 65536 * PAGE;
        let len = match u.class {
            0 => u.pages * PAGE,
            1 => u.pages * MIB2,
            _ => m.len,
        };
        let va = m.va + offset;
        let len = len.min(window.0 + (window.1 - 1) - va + 1);
        builder.unmap(&mut arena, va, len).unwrap();
        model = subtract(&model, va, va + (len - 1));
        check(f, &arena, root, &model, window, &probes(&model, window, random));
    }
}

macro_rules! prop_format {
    ($($name:ident: $kind:expr;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
            $(
                #[test]
                fn $name(
                    window in any::<u8>(),
                    specs in prop::collection::vec(spec(), 1..8),
                    unmaps in prop::collection::vec(unmap(), 0..4),
                    random in prop::collection::vec(any::<u64>(), 4),
                ) {
                    run($kind, window, &specs, &unmaps, &random);
                }
            )*
        }
    };
}

prop_format! {
    stage1_lower_48: Kind::S1Lower48;
    stage1_upper_48: Kind::S1Upper48;
    stage1_upper_39: Kind::S1Upper39;
    stage1_el2_39: Kind::S1El2;
    stage2_level0_44bit: Kind::S2L0;
    stage2_level1_40bit_two_roots: Kind::S2L1;
    stage2_level2_34bit_sixteen_roots: Kind::S2L2;
    x86_four_level: Kind::X86Four;
    x86_five_level: Kind::X86Five;
    npt: Kind::Npt;
    ept_four_level: Kind::Ept4;
    ept_five_level: Kind::Ept5;
    ept_mode_based_exec: Kind::Ept4Mbec;
}

/// Each format's encodable rights are what the architecture can express:
/// a fixed list, so a format that starts refusing (or widening) rights fails here.
#[test]
fn encodable_rights_per_format() {
    let count = |kind| encodable_accesses(kind, format(kind).as_ref()).len();
    // arm64 EL1&0: READ always; W, USER, Xp, Xu free except that EL0-writable is never Xp.
    assert_eq!(count(Kind::S1Lower48), 14);
    // arm64 EL2: READ always, never USER; W, Xp free (Xu accepted and dropped).
    assert_eq!(count(Kind::S1El2), 8);
    // Stage-2: R, W, Xp, Xu all free, USER implied either way.
    assert_eq!(count(Kind::S2L1), 32);
    // x86: READ always, W, USER and any exec (one NX bit).
    assert_eq!(count(Kind::X86Four), 16);
    assert_eq!(count(Kind::Npt), 16);
    // EPT: no W without R, not nothing, exec both or neither without MBEC.
    assert_eq!(count(Kind::Ept4), 10);
    assert_eq!(count(Kind::Ept4Mbec), 22);
}
