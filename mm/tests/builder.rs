use mm::{Arena, MapError, TableBuilder};
use pagewalk::arm64::{Half, Regime, Stage1, Stage2};
use pagewalk::ept::Ept;
use pagewalk::x86::{Npt, X86_64};
use pagewalk::{translate, walk, Access, AddrRange, Flow, Format, Leaf, Level, MapAttrs, MemType, Visitor};

struct Leaves(Vec<(u64, u64, u64, Level)>);
impl Visitor for Leaves {
    fn leaf(&mut self, l: &Leaf) -> Flow {
        self.0.push((l.addr, l.size, l.out, l.level));
        Flow::Continue
    }
}

fn leaves<F: Format>(f: &F, a: &Arena, root: u64) -> Vec<(u64, u64, u64, Level)> {
    let mut v = Leaves(Vec::new());
    walk(f, a, root, AddrRange::ALL, &mut v);
    v.0
}

const RW: MapAttrs = MapAttrs::new(Access::from_bits_truncate(0b10011), MemType::Normal);

#[test]
fn x86_upper_half_uses_huge_pages_and_translates() {
    let f = X86_64::four_level();
    let mut a = Arena::new(0x10_0000, 1 << 20);
    let b = TableBuilder::new(&f, &mut a).unwrap();
    let va = 0xffff_ffff_8000_0000;
    b.map(&mut a, va, 0x4000_0000, 0x40_0000 + 0x1000, &RW).unwrap();
    let got = leaves(&f, &a, b.root().0);
    assert_eq!(
        got,
        vec![
            (va, 0x20_0000, 0x4000_0000, Level(2)),
            (va + 0x20_0000, 0x20_0000, 0x4020_0000, Level(2)),
            (va + 0x40_0000, 0x1000, 0x4040_0000, Level(3))
        ]
    );
    let t = translate(&f, &a, b.root().0, va + 0x12345).unwrap();
    assert_eq!(t.out, 0x4001_2345);
    assert_eq!(
        b.map(&mut a, va + 0x1000, 0, 0x1000, &RW),
        Err(MapError::AlreadyMapped(va + 0x1000))
    );
}

#[test]
fn unmap_splits_a_block() {
    let f = Stage1::new(48, Half::Upper, Regime::El1And0).unwrap();
    let mut a = Arena::new(0, 1 << 20);
    let b = TableBuilder::new(&f, &mut a).unwrap();
    let va = 0xffff_8000_0000_0000;
    b.map(&mut a, va, 0x4000_0000, 0x4000_0000, &RW).unwrap();
    assert_eq!(
        leaves(&f, &a, b.root().0),
        vec![(va, 0x4000_0000, 0x4000_0000, Level(1))]
    );
    b.unmap(&mut a, va + 0x1000, 0x1000).unwrap();
    let got = leaves(&f, &a, b.root().0);
    assert_eq!(got.len(), 1 + 510 + 511);
    assert!(translate(&f, &a, b.root().0, va + 0x1000).is_err());
    assert_eq!(translate(&f, &a, b.root().0, va + 0x2000).unwrap().out, 0x4000_2000);
    assert_eq!(
        translate(&f, &a, b.root().0, va + 0x3fff_f000).unwrap().out,
        0x7fff_f000
    );
}

#[test]
fn every_format_round_trips() {
    fn check<F: Format>(f: &F, va: u64) {
        let attrs = if f.root_entries() == 512 && f.input_bits() == 39 {
            MapAttrs::new(Access::READ, MemType::Normal)
        } else {
            RW
        };
        let mut a = Arena::new(0x8000_0000, 1 << 20);
        let b = TableBuilder::new(f, &mut a).unwrap();
        b.map(&mut a, va, 0x1_0000_0000, 0x20_3000, &attrs).unwrap();
        let got: u64 = leaves(f, &a, b.root().0).iter().map(|l| l.1).sum();
        assert_eq!(got, 0x20_3000);
    }
    check(&X86_64::five_level(), 0xff00_0000_0000_0000);
    check(&Npt::four_level(), 0x8000_0000);
    check(&Ept::four_level(), 0x8000_0000);
    check(&Ept::five_level(), 0x100_0000_0000_0000);
    check(&Stage2::new(40, 1).unwrap(), 0xff_0000_0000);
    check(&Stage2::new(44, 0).unwrap(), 0xfff_0000_0000);
    check(&Stage1::new(39, Half::Lower, Regime::El2).unwrap(), 0x40_0000_0000);
}
