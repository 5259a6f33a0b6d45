//! Guest memory as a hypercall may touch it: every guest-physical address is
//! translated through the guest's stage-2 (or NPT / EPT) with `pagewalk`,
//! page by page, checked for the right permission and refused when it lands
//! in memory hv owns, before a single byte is copied.

use core::fmt;

use pagewalk::{translate, Access, Format, TableMemory, PAGE_SIZE};

use crate::guest::{MemRange, Named};

/// Why a guest buffer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestMemError {
    /// `gpa + len` passes 2^64.
    Wraps,
    /// Longer than the caller allows (see the hypercall's limits).
    TooLong,
    /// No stage-2 mapping (or a malformed entry) for this guest page.
    Unmapped { gpa: u64 },
    /// Mapped, but stage-2 does not grant the access (read for input, write for output).
    NoPermission { gpa: u64 },
    /// Stage-2 maps this guest page onto memory hv owns: a broken stage-2, refused anyway.
    HvOwned { gpa: u64, pa: u64 },
    /// The physical accessor could not reach the page.
    PhysFault { pa: u64 },
}

impl fmt::Display for GuestMemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestMemError::Wraps => f.write_str("guest buffer wraps past 2^64"),
            GuestMemError::TooLong => f.write_str("guest buffer too long"),
            GuestMemError::Unmapped { gpa } => write!(f, "guest address {gpa:#x} is not mapped by stage-2"),
            GuestMemError::NoPermission { gpa } => {
                write!(f, "stage-2 does not grant this access at guest address {gpa:#x}")
            }
            GuestMemError::HvOwned { gpa, pa } => {
                write!(f, "guest address {gpa:#x} reaches {pa:#x}, which hv owns")
            }
            GuestMemError::PhysFault { pa } => write!(f, "physical address {pa:#x} not reachable"),
        }
    }
}

/// What a hypercall handler reads guest buffers through and writes results into.
pub trait GuestMemory {
    /// Fills `buf` from guest-physical `gpa`; all or nothing.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemError>;
    /// Checks that `[gpa, gpa + len)` may be written, without writing.
    fn check_writable(&self, gpa: u64, len: u64) -> Result<(), GuestMemError>;
    /// Writes `data` at guest-physical `gpa`; checks every page first, so a
    /// refused buffer is left untouched.
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), GuestMemError>;
}

/// Host-physical memory for the final copy (hv's direct map on hardware, a
/// byte array in tests).
pub trait PhysMemory {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), GuestMemError>;
    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), GuestMemError>;
}

/// Lets a caller keep its accessor and lend it to a [`Stage2Memory`] per call.
impl<P: PhysMemory + ?Sized> PhysMemory for &mut P {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), GuestMemError> {
        (**self).read(pa, buf)
    }
    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), GuestMemError> {
        (**self).write(pa, data)
    }
}

/// Physical memory hv reaches at VA == PA, limited to one window (guest RAM).
#[derive(Clone, Copy, Debug)]
pub struct IdentityPhys {
    window: MemRange,
}

impl IdentityPhys {
    /// # Safety
    /// `window` must be memory hv may read and write at VA == PA while this
    /// value is used, and no Rust reference may alias it (guest RAM is only
    /// ever touched through volatile-free byte copies here and by the guest).
    pub const unsafe fn new(window: MemRange) -> IdentityPhys {
        IdentityPhys { window }
    }

    fn check(&self, pa: u64, len: usize) -> Result<usize, GuestMemError> {
        let range = MemRange::from_len(pa, len as u64).ok_or(GuestMemError::PhysFault { pa })?;
        if !self.window.covers(&range) {
            return Err(GuestMemError::PhysFault { pa });
        }
        Ok(pa as usize)
    }
}

impl PhysMemory for IdentityPhys {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), GuestMemError> {
        if buf.is_empty() {
            return Ok(());
        }
        let src = self.check(pa, buf.len())?;
        // SAFETY: `check` keeps [pa, pa + len) inside the window `new`'s caller
        // promised is mapped at VA == PA and not aliased by a Rust reference.
        unsafe { core::ptr::copy_nonoverlapping(src as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }
    fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), GuestMemError> {
        if data.is_empty() {
            return Ok(());
        }
        let dst = self.check(pa, data.len())?;
        // SAFETY: as in `read`; the window is writable by the same promise.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst as *mut u8, data.len()) };
        Ok(())
    }
}

/// The reference [`GuestMemory`]: the guest's second-stage tables, hv's
/// owned ranges, and a physical accessor.
pub struct Stage2Memory<'a, F: Format + ?Sized, T: TableMemory + ?Sized, P: PhysMemory> {
    pub format: &'a F,
    pub tables: &'a T,
    pub root: u64,
    pub hv_owned: &'a [Named<'a>],
    pub phys: P,
}

/// One guest page piece of a buffer: `len` bytes from buffer `offset`, landing at `pa`.
#[derive(Clone, Copy, Debug)]
struct Piece {
    offset: usize,
    pa: u64,
    len: usize,
}

/// Pages one buffer may span: the longest hypercall buffer (64 KiB) unaligned.
pub const MAX_BUFFER_PAGES: u64 = 17;

/// Translates `[gpa, gpa + len)` page by page, checking `need` rights and that
/// the output avoids `hv_owned`, and calls `each` per piece. Stops at the
/// first refused page.
fn pieces<F: Format + ?Sized, T: TableMemory + ?Sized>(
    format: &F,
    tables: &T,
    root: u64,
    hv_owned: &[Named<'_>],
    (gpa, len): (u64, u64),
    need: Access,
    mut each: impl FnMut(Piece) -> Result<(), GuestMemError>,
) -> Result<(), GuestMemError> {
    if len == 0 {
        return Ok(());
    }
    gpa.checked_add(len - 1).ok_or(GuestMemError::Wraps)?;
    if len > (MAX_BUFFER_PAGES - 1) * PAGE_SIZE {
        return Err(GuestMemError::TooLong);
    }
    let mut done = 0u64;
    while done < len {
        let at = gpa + done;
        let in_page = (PAGE_SIZE - (at & (PAGE_SIZE - 1))).min(len - done);
        let t = translate(format, tables, root, at).map_err(|_| GuestMemError::Unmapped { gpa: at })?;
        if !t.access.contains(need) {
            return Err(GuestMemError::NoPermission { gpa: at });
        }
        let out = MemRange::from_len(t.out, in_page).ok_or(GuestMemError::Unmapped { gpa: at })?;
        if let Some(owned) = hv_owned.iter().find(|o| o.range.overlaps(&out)) {
            let pa = out.start.max(owned.range.start);
            return Err(GuestMemError::HvOwned {
                gpa: at + (pa - out.start),
                pa,
            });
        }
        each(Piece {
            offset: done as usize,
            pa: t.out,
            len: in_page as usize,
        })?;
        done += in_page;
    }
    Ok(())
}

const READ_WRITE: Access = Access::READ.union(Access::WRITE);

impl<F: Format + ?Sized, T: TableMemory + ?Sized, P: PhysMemory> GuestMemory for Stage2Memory<'_, F, T, P> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestMemError> {
        let range = (gpa, buf.len() as u64);
        let (format, tables, root, owned) = (self.format, self.tables, self.root, self.hv_owned);
        pieces(format, tables, root, owned, range, Access::READ, |_| Ok(()))?;
        pieces(format, tables, root, owned, range, Access::READ, |p| {
            self.phys.read(p.pa, &mut buf[p.offset..p.offset + p.len])
        })
    }

    fn check_writable(&self, gpa: u64, len: u64) -> Result<(), GuestMemError> {
        pieces(
            self.format,
            self.tables,
            self.root,
            self.hv_owned,
            (gpa, len),
            READ_WRITE,
            |_| Ok(()),
        )
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), GuestMemError> {
        let range = (gpa, data.len() as u64);
        let (format, tables, root, owned) = (self.format, self.tables, self.root, self.hv_owned);
        // Check every page first: nothing is written unless all of it may be.
        pieces(format, tables, root, owned, range, READ_WRITE, |_| Ok(()))?;
        let phys = &mut self.phys;
        pieces(format, tables, root, owned, range, READ_WRITE, |p| {
            phys.write(p.pa, &data[p.offset..p.offset + p.len])
        })
    }
}
