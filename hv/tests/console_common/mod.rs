//! Fixtures shared by the console tests: hv-like EL2 tables, a guest stage-2
//! over scattered physical pages, a console target built from views, and a
//! physical memory for the hypercall copies.
#![allow(dead_code)]

use std::cell::Cell;
use std::fmt::{self, Write};

use hv::console::{ConsoleTarget, NotAvailable, TableFormat, TableView, Views};
use hv::guest::{MemRange, Named};
use hv::hypercall::guest_mem::{GuestMemError, PhysMemory};
use mm::{Arena, TableBuilder};
use pagewalk::arm64::{Half, Regime, Stage1, Stage2};
use pagewalk::x86::X86_64;
use pagewalk::{Access, AddrRange, MapAttrs, MemType, ReadFault, TableMemory};
use ptdump::Marker;

pub const RX: Access = Access::READ.union(Access::EXEC_PRIV);
pub const RO: Access = Access::READ;
pub const RW: Access = Access::READ.union(Access::WRITE);
pub const RWX: Access = RW.union(Access::EXEC_PRIV);

pub fn normal(a: Access) -> MapAttrs {
    MapAttrs::new(a, MemType::Normal)
}

/// hv's memory in the fixtures.
pub const HV_IMAGE: MemRange = MemRange {
    start: 0x4000_0000,
    end: 0x4100_0000,
};
pub const HV_HEAP: MemRange = MemRange {
    start: 0x4100_0000,
    end: 0x4200_0000,
};

pub fn hv_owned() -> Vec<Named<'static>> {
    vec![Named::new("hv image", HV_IMAGE), Named::new("hv heap", HV_HEAP)]
}

/// Pages of guest RAM the hypercall tests use: guest page i at
/// GUEST_RAM_GPA + i * 4K lands at GUEST_PA + (GUEST_PAGES - 1 - i) * 4K
/// (reversed, so a buffer straddling two guest pages is two separate copies).
pub const GUEST_RAM_GPA: u64 = 0x8000_0000;
pub const GUEST_PAGES: u64 = 32;
pub const GUEST_PA: u64 = 0x9000_0000;
/// A read-only guest page (stage-2 grants read only).
pub const RO_GPA: u64 = 0x8010_0000;
pub const RO_PA: u64 = 0x9010_0000;
/// A guest page nothing maps.
pub const UNMAPPED_GPA: u64 = 0x8020_0000;
/// A guest page a deliberately broken stage-2 maps onto hv's heap (right
/// after guest RAM, so a buffer can run from RAM into it).
pub const EVIL_GPA: u64 = GUEST_RAM_GPA + GUEST_PAGES * 4096;
pub const EVIL_PA: u64 = 0x4180_0000;

pub fn guest_pa(gpa: u64) -> Option<u64> {
    let page = gpa.checked_sub(GUEST_RAM_GPA)? / 4096;
    (page < GUEST_PAGES).then(|| GUEST_PA + (GUEST_PAGES - 1 - page) * 4096 + gpa % 4096)
}

/// EL2 stage-1 tables shaped like hv's, with enough tables to force many
/// dump slices and a block run that crosses a table boundary.
pub struct HvTables {
    pub format: Stage1,
    pub arena: Arena,
    pub root: u64,
    pub markers: Vec<Marker<'static>>,
}

pub fn hv_tables(wx_page: bool) -> HvTables {
    let format = Stage1::new(48, Half::Lower, Regime::El2).unwrap();
    let mut arena = Arena::new(0x4100_0000, 512 * 4096);
    let b = TableBuilder::new(&format, &mut arena).unwrap();
    b.map(&mut arena, 0x4020_0000, 0x4020_0000, 0x3000, &normal(RX))
        .unwrap();
    b.map(&mut arena, 0x4020_3000, 0x4020_3000, 0x1000, &normal(RO))
        .unwrap();
    b.map(&mut arena, 0x4020_4000, 0x4020_4000, 0x4000, &normal(RW))
        .unwrap();
    b.map(
        &mut arena,
        0x0900_0000,
        0x0900_0000,
        0x1000,
        &MapAttrs::new(RW, MemType::Device),
    )
    .unwrap();
    // 40 pages in 40 page tables, alternating rights.
    for i in 0..40u64 {
        let va = 0x5000_0000 + i * 0x20_0000;
        let rights = if i % 3 == 0 { RO } else { RW };
        b.map(&mut arena, va, va, 0x1000, &normal(rights)).unwrap();
    }
    // 2 MiB blocks from 0x6020_0000 to 0x8020_0000: one ptdump line across two
    // level-2 tables (the boundary at 0x8000_0000).
    b.map(&mut arena, 0x6020_0000, 0x6020_0000, 0x2000_0000, &normal(RW))
        .unwrap();
    // 8 MiB of 4 KiB pages (the output is not 2 MiB aligned) in four page
    // tables: one ptdump line that small slice budgets cut three times.
    b.map(&mut arena, 0x9000_0000, 0x1_0000_1000, 0x80_0000, &normal(RW))
        .unwrap();
    if wx_page {
        b.map(&mut arena, 0x4030_0000, 0x4030_0000, 0x1000, &normal(RWX))
            .unwrap();
    }
    let root = b.root().0;
    let markers = vec![
        Marker::new(0, "EL2 stage-1"),
        Marker::new(0x0900_0000, "PL011"),
        Marker::new(0x4020_0000, "hv text"),
        Marker::new(0x4020_3000, "hv rodata"),
        Marker::new(0x4020_4000, "hv data"),
        Marker::new(0x5000_0000, "heap pages"),
        Marker::new(0x6020_0000, "blocks"),
        Marker::new(1 << 48, "end of hv page tables"),
    ];
    HvTables {
        format,
        arena,
        root,
        markers,
    }
}

impl HvTables {
    pub fn view(&self) -> TableView<'_> {
        TableView {
            format: TableFormat::Arm64Stage1(self.format),
            mem: &self.arena,
            root: self.root,
            range: AddrRange::new(0, Some(1 << 48)).unwrap(),
            markers: &self.markers,
        }
    }
}

/// The guest's stage-2 for the hypercall tests; `evil` adds a mapping of hv's heap.
pub struct GuestStage2 {
    pub format: Stage2,
    pub arena: Arena,
    pub root: u64,
}

pub const S2_MARKERS: [Marker<'static>; 1] = ptdump::stage2::GUEST_IPA;

pub fn guest_stage2(evil: bool) -> GuestStage2 {
    let format = Stage2::for_ipa_bits(40).unwrap();
    // The stage-2 tables live in hv's heap, as on hardware.
    let mut arena = Arena::new(0x41c0_0000, 64 * 4096);
    let b = TableBuilder::new(&format, &mut arena).unwrap();
    for page in 0..GUEST_PAGES {
        let gpa = GUEST_RAM_GPA + page * 4096;
        b.map(&mut arena, gpa, guest_pa(gpa).unwrap(), 0x1000, &normal(RW))
            .unwrap();
    }
    b.map(&mut arena, RO_GPA, RO_PA, 0x1000, &normal(RO)).unwrap();
    // Some 2 MiB blocks for the dump.
    b.map(&mut arena, 0x1_0000_0000, 0x1_0000_0000, 0x80_0000, &normal(RW))
        .unwrap();
    if evil {
        b.map(&mut arena, EVIL_GPA, EVIL_PA, 0x1000, &normal(RW)).unwrap();
    }
    let root = b.root().0;
    GuestStage2 { format, arena, root }
}

impl GuestStage2 {
    pub fn view(&self) -> TableView<'_> {
        TableView {
            format: TableFormat::Arm64Stage2(self.format),
            mem: &self.arena,
            root: self.root,
            range: AddrRange::new(0, Some(1 << 40)).unwrap(),
            markers: &S2_MARKERS,
        }
    }
}

/// x86-64 tables with both halves used (the walk skips the non-canonical hole).
pub struct X86Tables {
    pub format: X86_64,
    pub arena: Arena,
    pub root: u64,
    pub markers: Vec<Marker<'static>>,
}

pub fn x86_tables() -> X86Tables {
    let format = X86_64::four_level();
    let mut arena = Arena::new(0x20_0000, 128 * 4096);
    let b = TableBuilder::new(&format, &mut arena).unwrap();
    b.map(&mut arena, 0x10_0000, 0x10_0000, 0x2000, &normal(RX)).unwrap();
    for i in 0..20u64 {
        let va = 0xffff_8880_0000_0000 + i * 0x20_0000;
        b.map(&mut arena, va, 0x100_0000 + i * 0x1000, 0x1000, &normal(RW))
            .unwrap();
    }
    b.map(&mut arena, 0xffff_ffff_8000_0000, 0x100_0000, 0x60_0000, &normal(RX))
        .unwrap();
    let root = b.root().0;
    let markers = vec![
        Marker::new(0, "Low Kernel Mapping"),
        Marker::new(0x8000_0000_0000, "Kernel Space"),
        Marker::new(0xffff_8880_0000_0000, "Low Kernel Mapping"),
        Marker::new(0xffff_ffff_8000_0000, "High Kernel Mapping"),
    ];
    X86Tables {
        format,
        arena,
        root,
        markers,
    }
}

impl X86Tables {
    pub fn view(&self) -> TableView<'_> {
        TableView {
            format: TableFormat::X86_64(self.format),
            mem: &self.arena,
            root: self.root,
            range: AddrRange::ALL,
            markers: &self.markers,
        }
    }
}

/// A console target made of views.
pub struct ViewTarget<'a> {
    pub arch: &'static str,
    pub hv: TableView<'a>,
    pub s2: Result<TableView<'a>, NotAvailable>,
    pub guest: Result<Views<'a>, NotAvailable>,
    pub owned: Vec<Named<'static>>,
}

pub const NO_GUEST_TABLES: NotAvailable = NotAvailable {
    reason: "no guest has been created",
};

impl<'a> ViewTarget<'a> {
    pub fn new(hv: TableView<'a>, s2: Option<TableView<'a>>) -> ViewTarget<'a> {
        ViewTarget {
            arch: "aarch64",
            hv,
            s2: s2.ok_or(NotAvailable {
                reason: "no guest has been created",
            }),
            guest: Err(NO_GUEST_TABLES),
            owned: hv_owned(),
        }
    }
}

impl ConsoleTarget for ViewTarget<'_> {
    fn arch(&self) -> &str {
        self.arch
    }
    fn hv_tables(&self) -> TableView<'_> {
        self.hv
    }
    fn stage2(&self) -> Result<TableView<'_>, NotAvailable> {
        self.s2
    }
    fn guest_tables(&self) -> Result<Views<'_>, NotAvailable> {
        self.guest
    }
    fn hv_owned(&self) -> &[Named<'_>] {
        &self.owned
    }
    fn info(&self, out: &mut dyn Write) -> fmt::Result {
        for owned in &self.owned {
            writeln!(out, "  {:<12} {}", owned.name, owned.range)?;
        }
        writeln!(out, "  guest: {}", if self.s2.is_ok() { "running" } else { "none" })
    }
}

/// Table memory that counts the entries read (the cost of a walk).
pub struct Counting<'a> {
    pub inner: &'a dyn TableMemory,
    pub reads: Cell<u64>,
}

impl<'a> Counting<'a> {
    pub fn new(inner: &'a dyn TableMemory) -> Counting<'a> {
        Counting {
            inner,
            reads: Cell::new(0),
        }
    }
}

impl TableMemory for Counting<'_> {
    fn read_u64(&self, addr: u64) -> Result<u64, ReadFault> {
        self.reads.set(self.reads.get() + 1);
        self.inner.read_u64(addr)
    }
}

/// Host-physical memory of the hypercall tests: the guest's pages, the
/// read-only page, and one page of hv's heap (so only the ownership check
/// can stop a copy there).
pub struct TestPhys {
    pub regions: Vec<(u64, Vec<u8>)>,
}

impl TestPhys {
    pub fn new() -> TestPhys {
        let mut guest = vec![0u8; (GUEST_PAGES * 4096) as usize];
        for (i, b) in guest.iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        TestPhys {
            regions: vec![
                (GUEST_PA, guest),
                (RO_PA, vec![0x5a; 4096]),
                (EVIL_PA, vec![0xee; 4096]),
            ],
        }
    }

    fn locate(&mut self, pa: u64, len: usize) -> Result<&mut [u8], GuestMemError> {
        for (base, bytes) in &mut self.regions {
            if pa >= *base && pa - *base + len as u64 <= bytes.len() as u64 {
                let off = (pa - *base) as usize;
                return Ok(&mut bytes[off..off + len]);
            }
        }
        Err(GuestMemError::PhysFault { pa })
    }

    /// The guest's view of `len` bytes at `gpa` (through the fixed layout).
    pub fn guest_bytes(&mut self, gpa: u64, len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| {
                let pa = guest_pa(gpa + i).expect("inside guest RAM");
                self.locate(pa, 1).unwrap()[0]
            })
            .collect()
    }

    pub fn put_guest_bytes(&mut self, gpa: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let pa = guest_pa(gpa + i as u64).expect("inside guest RAM");
            self.locate(pa, 1).unwrap()[0] = b;
        }
    }

    pub fn region(&self, base: u64) -> &[u8] {
        &self.regions.iter().find(|(b, _)| *b == base).unwrap().1
    }
}

impl PhysMemory for TestPhys {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), GuestMemError> {
        for (base, bytes) in &self.regions {
            if pa >= *base && pa - *base + buf.len() as u64 <= bytes.len() as u64 {
                let off = (pa - *base) as usize;
                buf.copy_from_slice(&bytes[off..off + buf.len()]);
                return Ok(());
            }
        }
        Err(GuestMemError::PhysFault { pa })
    }
    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), GuestMemError> {
        self.locate(pa, data.len())?.copy_from_slice(data);
        Ok(())
    }
}

/// A seeded xorshift64* generator (no dependency, reproducible).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// One whole dump straight from ptdump (the reference the sliced dumps must equal).
pub fn reference_dump(view: &TableView<'_>, range: AddrRange, markers: &[Marker<'_>]) -> String {
    let mut out = String::new();
    let (mem, root) = (view.mem, view.root);
    match &view.format {
        TableFormat::Arm64Stage1(f) => ptdump::arm64::dump(&mut out, f, mem, root, range, markers).map(|_| ()),
        TableFormat::Arm64Stage2(f) => ptdump::stage2::dump(&mut out, f, mem, root, range, markers).map(|_| ()),
        TableFormat::X86_64(f) => ptdump::x86::dump(&mut out, f, mem, root, range, markers).map(|_| ()),
        TableFormat::Npt(f) => ptdump::npt::dump(&mut out, f, mem, root, range, markers).map(|_| ()),
        TableFormat::Ept(f) => ptdump::ept::dump(&mut out, f, mem, root, range, markers).map(|_| ()),
    }
    .unwrap();
    out
}
