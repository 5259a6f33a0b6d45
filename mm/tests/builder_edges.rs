//! TableBuilder edge cases: the very top of the address space, refusals,
//! running out of frames, and unmapping across holes.

use mm::{Arena, MapError, TableBuilder};
use pagewalk::arm64::{Half, Regime, Stage1};
use pagewalk::x86::X86_64;
use pagewalk::{translate, Access, EncodeError, Level, MapAttrs, MemType, TranslateError};

const R: MapAttrs = MapAttrs::new(Access::READ, MemType::Normal);

#[test]
fn maps_the_last_page_of_the_64_bit_space() {
    for f in [
        Box::new(X86_64::four_level()) as Box<dyn pagewalk::Format>,
        Box::new(Stage1::new(48, Half::Upper, Regime::El1And0).unwrap()),
    ] {
        let f = f.as_ref();
        let mut a = Arena::new(0x10_0000, 1 << 20);
        let b = TableBuilder::new(f, &mut a).unwrap();
        // va + len == 2^64 exactly.
        b.map(&mut a, u64::MAX - 0x1fff, 0x5000, 0x2000, &R).unwrap();
        let root = b.root().0;
        assert_eq!(translate(f, &a, root, u64::MAX).unwrap().out, 0x6fff);
        b.unmap(&mut a, u64::MAX - 0xfff, 0x1000).unwrap();
        assert_eq!(
            translate(f, &a, root, u64::MAX),
            Err(TranslateError::NotMapped { level: Level(3) })
        );
        assert_eq!(translate(f, &a, root, u64::MAX - 0x1000).unwrap().out, 0x5fff);
    }
}

#[test]
fn refusals() {
    let f = X86_64::four_level();
    let mut a = Arena::new(0x10_0000, 8 * 4096);
    let b = TableBuilder::new(&f, &mut a).unwrap();
    assert_eq!(b.map(&mut a, 0x1001, 0, 0x1000, &R), Err(MapError::Misaligned));
    assert_eq!(b.map(&mut a, 0x1000, 0x10, 0x1000, &R), Err(MapError::Misaligned));
    assert_eq!(b.map(&mut a, 0x1000, 0, 0x800, &R), Err(MapError::Misaligned));
    // The range would wrap past 2^64.
    assert_eq!(
        b.map(&mut a, u64::MAX - 0xfff, 0, 0x2000, &R),
        Err(MapError::Misaligned)
    );
    // Non-canonical.
    assert_eq!(
        b.map(&mut a, 0x8000_0000_0000, 0, 0x1000, &R),
        Err(MapError::OutOfRange(0x8000_0000_0000))
    );
    // x86 cannot express a mapping without read.
    assert_eq!(
        b.map(
            &mut a,
            0x1000,
            0,
            0x1000,
            &MapAttrs::new(Access::WRITE, MemType::Normal)
        ),
        Err(MapError::Encode(EncodeError::UnsupportedAccess(Access::WRITE)))
    );
    // A 1 GiB block, then an overlapping page inside it.
    b.map(&mut a, 0x4000_0000, 0x4000_0000, 0x4000_0000, &R).unwrap();
    assert_eq!(
        b.map(&mut a, 0x4020_0000, 0, 0x1000, &R),
        Err(MapError::AlreadyMapped(0x4020_0000))
    );
    // 8 frames: root + PDPT used; pages far apart each need PDPT/PD/PT.
    let mut err = None;
    for i in 1..8u64 {
        if let Err(e) = b.map(&mut a, i << 39, 0, 0x1000, &R) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, Some(MapError::OutOfFrames));
}

#[test]
fn unmap_across_holes_and_blocks() {
    let f = X86_64::four_level();
    let mut a = Arena::new(0x10_0000, 1 << 20);
    let b = TableBuilder::new(&f, &mut a).unwrap();
    b.map(&mut a, 0x20_0000, 0x20_0000, 0x20_0000, &R).unwrap(); // one 2 MiB block
    b.map(&mut a, 0x80_0000, 0x80_0000, 0x3000, &R).unwrap();
    let root = b.root().0;
    // From inside the block, over the hole between, into the pages.
    b.unmap(&mut a, 0x3f_f000, 0x80_2000 - 0x3f_f000).unwrap();
    assert!(translate(&f, &a, root, 0x3f_e000).is_ok());
    assert!(translate(&f, &a, root, 0x3f_f000).is_err());
    assert!(translate(&f, &a, root, 0x80_1000).is_err());
    assert_eq!(translate(&f, &a, root, 0x80_2000).unwrap().out, 0x80_2000);
    // Unmapping nothing succeeds.
    b.unmap(&mut a, 0x1_0000_0000, 0x4000).unwrap();
}
