//! The guest's own (stage-1) page tables, as the console shows them:
//! `ptdump guest` and `wx guest`.
//!
//! At trap time the arch code copies the guest's translation registers into
//! an [`Arm64GuestRegs`] or [`X86GuestRegs`]; [`GuestStage1::arm64`] /
//! [`GuestStage1::x86`] decode them into up to two parts (arm64: TTBR0_EL1
//! and TTBR1_EL1; x86: CR3's user and kernel halves), each with the format
//! the guest configured, its root, its address range and its markers: the
//! title (`User Space`, `Kernel Space`), then for the kernel half the markers
//! of Linux's ptdump whose addresses are fixed for the guest's paging mode
//! (ptdump's Linux layouts; x86's ESPfix area capped at 16 lines as Linux
//! caps it). Configurations hv cannot walk are refused with a message that
//! says why (MMU off, 16K/64K granule, LPA2, 32-bit paging).
//!
//! Every table address is guest-physical: [`GuestPhysMemory`] translates it
//! through the guest's stage-2 / NPT with [`ThroughStage2`] and reads the
//! entry through [`RefuseHvOwned`], which refuses any physical address hv
//! owns. The only hv memory read on the way is hv's own stage-2 tables, by the
//! stage-2 walk; whatever a guest table points at, hv never reads its own
//! memory on the guest's behalf, even if a broken stage-2 mapped it.
//!
//! The walks are bounded by the console's job (dump and `wx` slices of
//! `console::job::SLICE_TABLES` tables), so a
//! hostile guest (cycles, shared subtrees, garbage) costs bounded work per
//! trap; its bad entries are reported as `BAD` lines and the dump goes on.

pub mod arm64;
pub mod x86;

use core::fmt::{self, Write};

use pagewalk::{AddrRange, Format, ReadFault, TableMemory, ThroughStage2};
use ptdump::Marker;

use crate::console::{NotAvailable, TableFormat, TableView, ViewPart, Views, WxNote, MAX_PARTS};
use crate::guest::Named;

pub use arm64::Arm64GuestRegs;
pub use x86::X86GuestRegs;

/// Marker of the lower half (arm64 TTBR0, x86 user half), as Linux's x86 ptdump names it.
pub const USER_SPACE: &str = "User Space";
/// Marker of the upper half (arm64 TTBR1, x86 kernel half).
pub const KERNEL_SPACE: &str = "Kernel Space";

/// Most markers one part carries: its title and the layout markers of the
/// guest's kernel (ptdump's Linux layouts: 8 for x86-64, 11 for arm64).
pub const MAX_PART_MARKERS: usize = 12;

/// Host-physical memory that refuses every address hv owns, whatever asks:
/// belt and braces under stage-2, which already leaves hv's memory unmapped.
pub struct RefuseHvOwned<'a, M> {
    owned: &'a [Named<'a>],
    inner: M,
}

impl<'a, M: TableMemory> RefuseHvOwned<'a, M> {
    /// `owned`: every range hv owns (image, heap, stacks, page tables).
    pub fn new(owned: &'a [Named<'a>], inner: M) -> Self {
        RefuseHvOwned { owned, inner }
    }

    /// Whether the 8 bytes at `pa` touch memory hv owns (or wrap).
    pub fn is_refused(&self, pa: u64) -> bool {
        let Some(last) = pa.checked_add(7) else {
            return true;
        };
        self.owned
            .iter()
            .any(|o| o.range.contains(pa) || o.range.contains(last))
    }
}

impl<M: TableMemory> TableMemory for RefuseHvOwned<'_, M> {
    fn read_u64(&self, pa: u64) -> Result<u64, ReadFault> {
        if self.is_refused(pa) {
            return Err(ReadFault { addr: pa });
        }
        self.inner.read_u64(pa)
    }
}

/// Guest-physical table memory: the MMU's view of the guest's tables.
///
/// `S` is the guest's second-stage format (arm64 `Stage2`, x86 `Npt`), whose
/// tables hv reads from `hv_tables` (hv's own memory: those are hv's tables).
/// The entries themselves are read from `ram` through [`RefuseHvOwned`].
pub struct GuestPhysMemory<'a, S: Format, H: TableMemory, G: TableMemory> {
    stage2: ThroughStage2<'a, S, H>,
    ram: RefuseHvOwned<'a, G>,
}

impl<'a, S: Format, H: TableMemory, G: TableMemory> GuestPhysMemory<'a, S, H, G> {
    /// `stage2` / `stage2_root`: the guest's stage-2 (VTTBR_EL2) or NPT
    /// (N_CR3); `hv_tables`: where hv keeps them; `ram`: host-physical memory
    /// holding guest RAM; `hv_owned`: what `ram` must never be asked for.
    pub fn new(stage2: &'a S, stage2_root: u64, hv_tables: H, ram: G, hv_owned: &'a [Named<'a>]) -> Self {
        GuestPhysMemory {
            stage2: ThroughStage2::new(stage2, stage2_root, hv_tables),
            ram: RefuseHvOwned::new(hv_owned, ram),
        }
    }
}

impl<S: Format, H: TableMemory, G: TableMemory> TableMemory for GuestPhysMemory<'_, S, H, G> {
    fn read_u64(&self, gpa: u64) -> Result<u64, ReadFault> {
        // Stage-2 must map the page readable; the host read must avoid hv.
        let pa = self.stage2.translate(gpa)?;
        self.ram.read_u64(pa).map_err(|_| ReadFault { addr: gpa })
    }
}

/// One half of the guest's stage-1, as its registers set it up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartConfig {
    /// `"TTBR0_EL1"`, `"TTBR1_EL1"`, `"CR3 user half"`, `"CR3 kernel half"`.
    pub name: &'static str,
    pub range: AddrRange,
    /// The format and root (guest-physical), or why this half is not walked.
    pub tables: Result<(TableFormat, u64), NotAvailable>,
    /// Linux's W+X check covers this half (the kernel's).
    pub wx: bool,
    pub wx_note: Option<WxNote>,
    /// `User Space` / `Kernel Space` at the start of `range`, then the
    /// guest kernel's layout markers inside `range`; `marker_count` are used.
    markers: [Marker<'static>; MAX_PART_MARKERS],
    marker_count: usize,
}

impl PartConfig {
    fn new(
        name: &'static str,
        range: AddrRange,
        tables: Result<(TableFormat, u64), NotAvailable>,
        kernel: bool,
    ) -> PartConfig {
        let title = Marker::new(range.start, if kernel { KERNEL_SPACE } else { USER_SPACE });
        PartConfig {
            name,
            range,
            tables,
            wx: kernel,
            wx_note: None,
            markers: [title; MAX_PART_MARKERS],
            marker_count: 1,
        }
    }

    /// Adds `layout` (sorted, from ptdump's Linux layouts) after the title:
    /// those inside the part's range, as many as fit.
    fn with_layout(mut self, layout: &[Marker<'static>]) -> PartConfig {
        let inside = layout.iter().filter(|m| self.range.contains(m.addr));
        for (slot, marker) in self.markers[1..].iter_mut().zip(inside) {
            *slot = *marker;
            self.marker_count += 1;
        }
        self
    }

    /// The title, then the layout markers, sorted by address.
    pub fn markers(&self) -> &[Marker<'static>] {
        &self.markers[..self.marker_count]
    }
}

/// The guest's stage-1 configuration at trap time: what `ptdump guest` and
/// `wx guest` walk. Cheap to build (no memory is read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestStage1 {
    /// Lower half first.
    pub parts: [PartConfig; MAX_PARTS],
    /// x86: the guest's IA32_PAT (for `info`; Linux's x86 ptdump prints the
    /// raw PWT/PCD/PAT bits, not the memory types they select).
    pub pat: Option<u64>,
}

impl GuestStage1 {
    /// The console's views of both halves, reading tables through `mem`
    /// (a [`GuestPhysMemory`]).
    pub fn views<'a>(&'a self, mem: &'a dyn TableMemory) -> Views<'a> {
        let part = |p: &'a PartConfig| ViewPart {
            name: p.name,
            range: p.range,
            tables: p.tables.map(|(format, root)| TableView {
                format,
                mem,
                root,
                range: p.range,
                markers: p.markers(),
            }),
            wx: p.wx,
            wx_note: p.wx_note,
        };
        Views::new([Some(part(&self.parts[0])), Some(part(&self.parts[1]))])
    }

    /// Lines for the console's `info`: each half's root and shape.
    pub fn describe(&self, out: &mut dyn Write) -> fmt::Result {
        for p in &self.parts {
            match p.tables {
                Ok((format, root)) => {
                    let f = format.as_format();
                    writeln!(
                        out,
                        "  guest {:<16} root {root:#x}, {}-bit VA, {} levels, {}",
                        p.name,
                        f.input_bits(),
                        4 - f.root_level().0,
                        p.range
                    )?;
                }
                Err(na) => writeln!(out, "  guest {:<16} not walked: {}", p.name, na.reason)?,
            }
        }
        if let Some(pat) = self.pat {
            write!(out, "  guest PAT        {pat:#018x}:")?;
            for i in 0..8 {
                write!(out, " {}", x86::pat_type_name((pat >> (8 * i)) as u8 & 7))?;
            }
            writeln!(out)?;
        }
        Ok(())
    }
}

/// Everything `guest_tables()` needs at trap time: the decoded registers and
/// the memory to read the tables through. The arch's console target keeps one
/// and answers `guest_tables()` with [`GuestIntrospection::views`].
pub struct GuestIntrospection<'a, S: Format, H: TableMemory, G: TableMemory> {
    pub stage1: Result<GuestStage1, NotAvailable>,
    pub mem: GuestPhysMemory<'a, S, H, G>,
}

impl<S: Format, H: TableMemory, G: TableMemory> GuestIntrospection<'_, S, H, G> {
    pub fn views(&self) -> Result<Views<'_>, NotAvailable> {
        match &self.stage1 {
            Ok(stage1) => Ok(stage1.views(&self.mem)),
            Err(na) => Err(*na),
        }
    }
}

#[cfg(test)]
mod tests {
    use pagewalk::MemoryImage;

    use super::*;
    use crate::guest::MemRange;

    #[test]
    fn refuses_every_word_that_touches_hv_memory() {
        let bytes = [0x11u8; 0x3000];
        let owned = [Named::new("hv", MemRange::new(0x1000, 0x2000).unwrap())];
        let mem = RefuseHvOwned::new(&owned, MemoryImage::new(0, &bytes));
        assert_eq!(mem.read_u64(0xff8), Ok(0x1111_1111_1111_1111));
        assert_eq!(mem.read_u64(0x2000), Ok(0x1111_1111_1111_1111));
        for pa in [0x1000, 0x1ff8, 0xffc, 0x1ffc] {
            assert_eq!(mem.read_u64(pa), Err(ReadFault { addr: pa }), "{pa:#x}");
        }
        assert!(mem.is_refused(u64::MAX - 3));
    }
}
