//! Fixtures for the guest-introspection tests: a machine with hv's memory,
//! an identity stage-2 / NPT of guest RAM built by hv's own builder, guest
//! stage-1 tables inside guest RAM, and a console target that answers
//! `guest_tables()` the way the arch code does at trap time.
#![allow(dead_code)]

use std::cell::Cell;
use std::fmt::{self, Write};

use hv::console::session::{Session, SessionState, CALL_TABLES};
use hv::console::{run_to_end, ConsoleTarget, NotAvailable, TableFormat, TableView, Verdict, Views};
use hv::guest::stage2::build_identity;
use hv::guest::{MemRange, Named};
use hv::introspect::{GuestIntrospection, GuestPhysMemory, GuestStage1};
use mm::{Arena, PhysAddr, TableBuilder};
use pagewalk::{Access, AddrRange, Format, MapAttrs, MemType, ReadFault, TableMemory, TableMemoryMut};

pub const R: Access = Access::READ;
pub const RW: Access = Access::READ.union(Access::WRITE);
pub const RX: Access = Access::READ.union(Access::EXEC_PRIV);
pub const RWX: Access = RW.union(Access::EXEC_PRIV);
pub const USER_RX: Access = R.union(Access::USER).union(Access::EXEC_USER);
pub const USER_RW: Access = RW.union(Access::USER);
pub const USER_RWX: Access = USER_RW.union(Access::EXEC_USER);

pub fn normal(a: Access) -> MapAttrs {
    MapAttrs::new(a, MemType::Normal)
}

/// hv's image: a page here holds words that look like valid table entries,
/// so a read of it on the guest's behalf would show up as mappings.
pub const HV_IMAGE: MemRange = MemRange {
    start: 0x4000_0000,
    end: 0x4001_0000,
};
/// hv's page tables (the guest's stage-2 lives here, as on hardware).
pub const HV_TABLES: MemRange = MemRange {
    start: 0x4100_0000,
    end: 0x4104_0000,
};
/// Guest RAM, identity-mapped by stage-2 (1 MiB).
pub const RAM: MemRange = MemRange {
    start: 0x8000_0000,
    end: 0x8010_0000,
};
/// A guest-physical page a deliberately broken stage-2 maps onto hv's image.
pub const EVIL_GPA: u64 = 0xa000_0000;
pub const EVIL_PA: u64 = 0x4000_1000;
/// Guest-physical, past guest RAM, not mapped by stage-2.
pub const BEYOND_RAM_GPA: u64 = 0x1_0000_0000;

pub fn hv_owned() -> Vec<Named<'static>> {
    vec![
        Named::new("hv image", HV_IMAGE),
        Named::new("hv page tables", HV_TABLES),
    ]
}

/// The physical machine: hv's image, hv's tables (with the stage-2) and guest RAM.
pub struct Machine<S: Format> {
    pub s2_format: S,
    pub s2: Arena,
    pub s2_root: u64,
    pub image: Arena,
    pub ram: Arena,
    pub owned: Vec<Named<'static>>,
}

impl<S: Format> Machine<S> {
    /// `evil`: the stage-2 also maps [`EVIL_GPA`] onto hv's image (a broken
    /// stage-2, which only [`hv::introspect::RefuseHvOwned`] then stops).
    pub fn new(s2_format: S, evil: bool) -> Machine<S> {
        let owned = hv_owned();
        let mut s2 = Arena::new(HV_TABLES.start, HV_TABLES.len() as usize);
        let root = build_identity(&s2_format, &mut s2, &[RAM], &[], &owned)
            .expect("identity stage-2")
            .root();
        if evil {
            TableBuilder::with_root(&s2_format, root)
                .map(&mut s2, EVIL_GPA, EVIL_PA, 0x1000, &hv::guest::stage2::RAM_ATTRS)
                .expect("evil mapping");
        }
        let mut image = Arena::new(HV_IMAGE.start, HV_IMAGE.len() as usize);
        // Valid-looking entries everywhere (arm64 and x86 both read bit 0 as
        // valid/present, bit 1 as table/RW).
        for off in (0..HV_IMAGE.len()).step_by(8) {
            image.write_u64(HV_IMAGE.start + off, 0x8000_0000 | 0x63).unwrap();
        }
        Machine {
            s2_format,
            s2,
            s2_root: root.0,
            image,
            ram: Arena::new(RAM.start, RAM.len() as usize),
            owned,
        }
    }

    /// A guest page for a hand-made table.
    pub fn guest_page(&mut self) -> u64 {
        use mm::FrameAllocator;
        self.ram.alloc_frames(1, 0x1000).expect("guest RAM full").0
    }

    pub fn poke(&mut self, gpa: u64, raw: u64) {
        self.ram.write_u64(gpa, raw).expect("inside guest RAM");
    }
}

/// Host-physical memory behind the guest-table reads: every arena, so a read
/// of hv's memory would succeed if anything let it through; it counts the
/// reads and those that touch hv's ranges.
pub struct Recording<'a> {
    pub regions: [&'a Arena; 3],
    pub owned: &'a [Named<'static>],
    pub reads: Cell<u64>,
    pub hv_reads: Cell<u64>,
}

impl<'a, S: Format> From<&'a Machine<S>> for Recording<'a> {
    fn from(m: &'a Machine<S>) -> Recording<'a> {
        Recording {
            regions: [&m.image, &m.s2, &m.ram],
            owned: &m.owned,
            reads: Cell::new(0),
            hv_reads: Cell::new(0),
        }
    }
}

impl TableMemory for Recording<'_> {
    fn read_u64(&self, pa: u64) -> Result<u64, ReadFault> {
        self.reads.set(self.reads.get() + 1);
        if self.owned.iter().any(|o| o.range.contains(pa)) {
            self.hv_reads.set(self.hv_reads.get() + 1);
        }
        self.regions
            .iter()
            .find_map(|r| r.read_u64(pa).ok())
            .ok_or(ReadFault { addr: pa })
    }
}

/// A console target as the arch builds it at trap time.
pub struct GuestTarget<'a, S: Format> {
    pub arch: &'static str,
    pub s2_view: TableView<'a>,
    pub intro: GuestIntrospection<'a, S, &'a Arena, &'a Recording<'a>>,
    pub owned: &'a [Named<'static>],
}

impl<'a, S: Format> GuestTarget<'a, S> {
    pub fn new(
        machine: &'a Machine<S>,
        s2_format: TableFormat,
        host: &'a Recording<'a>,
        stage1: Result<GuestStage1, NotAvailable>,
    ) -> GuestTarget<'a, S> {
        let arch = match s2_format {
            TableFormat::Arm64Stage2(_) => "aarch64",
            _ => "x86_64",
        };
        GuestTarget {
            arch,
            s2_view: TableView {
                format: s2_format,
                mem: &machine.s2,
                root: machine.s2_root,
                range: AddrRange::new(0, Some(1 << 40)).unwrap(),
                markers: &[],
            },
            intro: GuestIntrospection {
                stage1,
                mem: GuestPhysMemory::new(&machine.s2_format, machine.s2_root, &machine.s2, host, &machine.owned),
            },
            owned: &machine.owned,
        }
    }
}

impl<S: Format> ConsoleTarget for GuestTarget<'_, S> {
    fn arch(&self) -> &str {
        self.arch
    }
    /// Not exercised here: the stage-2 stands in for hv's tables.
    fn hv_tables(&self) -> TableView<'_> {
        self.s2_view
    }
    fn stage2(&self) -> Result<TableView<'_>, NotAvailable> {
        Ok(self.s2_view)
    }
    fn guest_tables(&self) -> Result<Views<'_>, NotAvailable> {
        self.intro.views()
    }
    fn hv_owned(&self) -> &[Named<'_>] {
        self.owned
    }
    fn info(&self, out: &mut dyn Write) -> fmt::Result {
        match &self.intro.stage1 {
            Ok(stage1) => stage1.describe(out),
            Err(na) => writeln!(out, "  guest stage-1: {}", na.reason),
        }
    }
}

/// One command run to the end, as the boot log does.
pub fn run(target: &dyn ConsoleTarget, line: &str) -> (Verdict, String) {
    let mut out = String::new();
    let verdict = run_to_end(target, line, &mut out).unwrap();
    (verdict, out)
}

/// One command through a session, as the hypercalls deliver it: returns the
/// verdict, the output and the most table-memory reads one call made.
pub fn run_in_calls(target: &dyn ConsoleTarget, host: &Recording<'_>, line: &str) -> (Verdict, String, u64, usize) {
    let mut session = Session::new();
    session.start(target, line);
    let (mut calls, mut worst) = (0, 0);
    loop {
        let before = host.reads.get();
        let state = session.produce(target, usize::MAX);
        worst = worst.max(host.reads.get() - before);
        calls += 1;
        if let SessionState::Done { verdict, .. } = state {
            let text = String::from_utf8(session.output_from(0).to_vec()).unwrap();
            return (verdict, text, worst, calls);
        }
        assert!(calls < 100_000, "the session never finished");
    }
}

/// The most entries one call may read: two walks of CALL_TABLES tables plus
/// the path down (5 levels), 512 entries each (see console::job).
pub const MAX_READS_PER_CALL: u64 = 2 * (CALL_TABLES + 5) * 512;

/// Lines of `out` that contain `needle`.
pub fn lines_with<'o>(out: &'o str, needle: &str) -> Vec<&'o str> {
    out.lines().filter(|l| l.contains(needle)).collect()
}

pub fn phys(addr: u64) -> PhysAddr {
    PhysAddr(addr)
}
