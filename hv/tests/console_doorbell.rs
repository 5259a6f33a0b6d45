//! The doorbell state machine, driven register by register as hvctl drives it
//! (8-byte MMIO accesses on arm64, 4-byte port accesses on x86).

mod console_common;

use console_common::*;
use hv::console::run_to_end;
use hv::console::session::TRUNCATED_LINE;
use hv::console::Session;
use hv::hypercall::doorbell::*;

/// One transport: register offsets and access width.
#[derive(Clone, Copy)]
enum Bus {
    Mmio,
    Port,
}

impl Bus {
    fn width(self) -> u8 {
        match self {
            Bus::Mmio => 8,
            Bus::Port => 4,
        }
    }
    fn read(self, db: &mut Doorbell, t: &ViewTarget<'_>, index: u64) -> u64 {
        match self {
            Bus::Mmio => db.mmio_read(t, index * MMIO_STRIDE, 8),
            Bus::Port => u64::from(db.port_read(t, index as u16 * PORT_STRIDE, 4)),
        }
    }
    fn write(self, db: &mut Doorbell, t: &ViewTarget<'_>, index: u64, value: u64) {
        match self {
            Bus::Mmio => db.mmio_write(t, index * MMIO_STRIDE, 8, value),
            Bus::Port => db.port_write(t, index as u16 * PORT_STRIDE, 4, value as u32),
        }
    }
}

const CONTROL: u64 = 0;
const OFFSET: u64 = 1;
const DATA: u64 = 2;
const ID: u64 = 3;

/// hvctl's loop: reset, command, run, then AVAIL / DATA until done.
fn hvctl(bus: Bus, db: &mut Doorbell, t: &ViewTarget<'_>, line: &str) -> (u32, Vec<u8>) {
    bus.write(db, t, CONTROL, CONTROL_RESET);
    let w = usize::from(bus.width());
    for chunk in line.as_bytes().chunks(w) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        bus.write(db, t, DATA, u64::from_le_bytes(word));
    }
    bus.write(db, t, CONTROL, CONTROL_RUN);
    let mut out = Vec::new();
    let mut traps = 0;
    loop {
        traps += 1;
        assert!(traps < 1_000_000);
        let avail = bus.read(db, t, OFFSET) as usize;
        if avail == 0 {
            let status = bus.read(db, t, CONTROL) as u32;
            if status & 0xff != STATE_RUNNING {
                return (status, out);
            }
            continue;
        }
        let mut left = avail;
        while left > 0 {
            let word = bus.read(db, t, DATA).to_le_bytes();
            let n = left.min(w);
            out.extend_from_slice(&word[..n]);
            left -= n;
        }
    }
}

#[test]
fn both_transports_deliver_the_whole_output() {
    let hv = hv_tables(false);
    let s2 = guest_stage2(false);
    let target = ViewTarget::new(hv.view(), Some(s2.view()));
    for line in ["ptdump hv", "ptdump s2", "help", "audit s2", "info"] {
        let mut reference = String::new();
        run_to_end(&target, line, &mut reference).unwrap();
        for bus in [Bus::Mmio, Bus::Port] {
            let mut db = Doorbell::new();
            let (status, out) = hvctl(bus, &mut db, &target, line);
            assert_eq!(status, STATE_DONE, "{line}");
            assert_eq!(String::from_utf8(out).unwrap(), reference, "{line}");
        }
    }
}

#[test]
fn failures_and_truncation_show_in_status() {
    let hv = hv_tables(false);
    let target = ViewTarget::new(hv.view(), None);
    let mut db = Doorbell::new();
    let (status, out) = hvctl(Bus::Port, &mut db, &target, "wx guest");
    assert_eq!(status, STATE_DONE | STATUS_FAILED);
    assert!(String::from_utf8(out)
        .unwrap()
        .starts_with("hv: 'guest' tables not available"));

    let mut db = Doorbell::with_session(Session::with_cap(1000));
    let (status, out) = hvctl(Bus::Mmio, &mut db, &target, "ptdump hv");
    assert_eq!(status, STATE_DONE | STATUS_FAILED | STATUS_TRUNCATED);
    assert!(String::from_utf8(out).unwrap().ends_with(TRUNCATED_LINE));
}

#[test]
fn offset_rewinds_for_retries() {
    let hv = hv_tables(false);
    let target = ViewTarget::new(hv.view(), None);
    let mut db = Doorbell::new();
    let (_, first) = hvctl(Bus::Mmio, &mut db, &target, "help");
    db.mmio_write(&target, OFFSET * MMIO_STRIDE, 8, 5);
    assert_eq!(db.mmio_read(&target, OFFSET * MMIO_STRIDE, 8), first.len() as u64 - 5);
    let word = db.mmio_read(&target, DATA * MMIO_STRIDE, 8).to_le_bytes();
    assert_eq!(word, first[5..13]);
    // 1- and 2-byte reads advance by 1 and 2.
    assert_eq!(db.mmio_read(&target, DATA * MMIO_STRIDE, 1), u64::from(first[13]));
    assert_eq!(
        db.mmio_read(&target, DATA * MMIO_STRIDE, 2),
        u64::from(u16::from_le_bytes([first[14], first[15]]))
    );
    // Past the end DATA reads zeros and AVAIL is 0.
    db.mmio_write(&target, OFFSET * MMIO_STRIDE, 8, u64::MAX);
    assert_eq!(db.mmio_read(&target, OFFSET * MMIO_STRIDE, 8), 0);
    assert_eq!(db.mmio_read(&target, DATA * MMIO_STRIDE, 8), 0);
    assert_eq!(db.status() & 0xff, STATE_DONE);
}

#[test]
fn id_register() {
    let hv = hv_tables(false);
    let target = ViewTarget::new(hv.view(), None);
    let mut db = Doorbell::new();
    assert_eq!(
        Bus::Port.read(&mut db, &target, ID) as u32,
        u32::from_le_bytes(*b"HVDB")
    );
    assert_eq!(db.mmio_read(&target, 0x18, 8), u64::from(ID_MAGIC) | 1 << 32);
    assert_eq!(db.status(), STATE_IDLE);
}

#[test]
fn protocol_errors_are_sticky_until_reset() {
    let hv = hv_tables(false);
    let target = ViewTarget::new(hv.view(), None);
    let err = |db: &Doorbell| db.status() >> ERROR_SHIFT;

    let mut db = Doorbell::new();
    // No register there, misaligned, a width the bus does not have.
    assert_eq!(db.mmio_read(&target, 0x20, 8), 0);
    assert_eq!(err(&db), DoorbellError::BadAccess as u32);
    for (offset, width) in [(0x20, 8), (0x4, 4), (0x8, 3), (0x8, 16), (0xff8, 8)] {
        let mut db = Doorbell::new();
        db.mmio_write(&target, offset, width, 1);
        assert_eq!(err(&db), DoorbellError::BadAccess as u32, "{offset:#x}/{width}");
    }
    for (offset, width) in [(16, 4), (2, 2), (4, 8), (0, 3)] {
        let mut db = Doorbell::new();
        db.port_read(&target, offset, width);
        assert_eq!(err(&db), DoorbellError::BadAccess as u32, "{offset}/{width}");
    }
    // Writing ID.
    let mut db = Doorbell::new();
    db.port_write(&target, 12, 4, 0);
    assert_eq!(err(&db), DoorbellError::BadAccess as u32);

    // Unknown CONTROL value.
    let mut db = Doorbell::new();
    db.port_write(&target, 0, 4, 7);
    assert_eq!(err(&db), DoorbellError::BadControl as u32);
    // The first error sticks; RESET clears it.
    db.port_write(&target, 12, 4, 0);
    assert_eq!(err(&db), DoorbellError::BadControl as u32);
    db.port_write(&target, 0, 4, CONTROL_RESET as u32);
    assert_eq!(db.status(), STATE_IDLE);

    // RUN with nothing, or with bytes that are not UTF-8.
    db.port_write(&target, 0, 4, CONTROL_RUN as u32);
    assert_eq!(err(&db), DoorbellError::BadCommand as u32);
    assert_eq!(db.status() & 0xff, STATE_IDLE);
    let mut db = Doorbell::new();
    db.port_write(&target, 8, 4, 0x00ff_feff);
    db.port_write(&target, 0, 4, CONTROL_RUN as u32);
    assert_eq!(err(&db), DoorbellError::BadCommand as u32);

    // A command longer than 256 bytes is refused, not cut.
    let mut db = Doorbell::new();
    for _ in 0..33 {
        db.mmio_write(&target, 0x10, 8, u64::from_le_bytes(*b"help    "));
    }
    assert_eq!(err(&db), DoorbellError::CommandTooLong as u32);
    db.mmio_write(&target, 0, 8, CONTROL_RUN);
    assert_eq!(db.status() & 0xff, STATE_IDLE);
    assert_eq!(db.mmio_read(&target, 0x8, 8), 0);
}

#[test]
fn random_accesses_never_panic() {
    let hv = hv_tables(false);
    let target = ViewTarget::new(hv.view(), None);
    let mut db = Doorbell::with_session(Session::with_cap(4096));
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let width = rng.pick(&[0u8, 1, 2, 3, 4, 8, 9]);
        let value = match rng.below(3) {
            0 => rng.below(4),
            1 => u64::from_le_bytes(*b"ptdump h"),
            _ => rng.next(),
        };
        if rng.below(2) == 0 {
            let offset = rng.pick(&[0u64, 8, 16, 24, 32, 4, 0xfff, u64::MAX]);
            if rng.below(2) == 0 {
                db.mmio_read(&target, offset, width);
            } else {
                db.mmio_write(&target, offset, width, value);
            }
        } else {
            let offset = rng.pick(&[0u16, 4, 8, 12, 16, 1, 0xffff]);
            if rng.below(2) == 0 {
                db.port_read(&target, offset, width);
            } else {
                db.port_write(&target, offset, width, value as u32);
            }
        }
        let status = db.status();
        assert!(status & 0xff <= STATE_DONE);
        assert!(status >> ERROR_SHIFT <= 4);
    }
}
