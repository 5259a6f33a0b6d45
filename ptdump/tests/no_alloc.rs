//! The dumper and the W+X check never touch the heap: a counting global
//! allocator sees zero allocations while they run (output goes to a
//! fixed-size buffer). The library is also `no_std` without `alloc`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt;

use common::*;
use pagewalk::arm64::{Half, Regime, Stage1};
use pagewalk::x86::X86_64;
use pagewalk::{Access, AddrRange, MapAttrs, MemType};

struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: every call forwards to the system allocator with the caller's own
// arguments; counting touches only const-initialised thread-locals.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Counts allocations made by `f` on this thread.
fn allocations_during(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// A fixed buffer, as hv's console would be.
struct FixedBuffer {
    bytes: [u8; 16384],
    len: usize,
}

impl fmt::Write for FixedBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[test]
fn dumps_and_checks_do_not_allocate() {
    let a64 = Stage1::new(48, Half::Upper, Regime::El1And0).unwrap();
    let mut arena = arena();
    let a64_root = mm::TableBuilder::new(&a64, &mut arena).unwrap().root().0;
    let rwx = MapAttrs::new(Access::READ | Access::WRITE | Access::EXEC_PRIV, MemType::Normal);
    map_pages(
        &a64,
        &mut arena,
        a64_root,
        0xffff_0000_0010_0000,
        0x4010_0000,
        0x40_0000,
        &rwx,
    );
    let x86 = X86_64::four_level();
    let x86_root = mm::TableBuilder::new(&x86, &mut arena).unwrap().root().0;
    let rw = MapAttrs::new(Access::READ | Access::WRITE, MemType::Normal);
    map(
        &x86,
        &mut arena,
        x86_root,
        0xffff_ffff_8000_0000,
        0x100_0000,
        0x40_0000,
        &rw,
    );
    let markers = [
        ptdump::Marker::new(0, "start"),
        ptdump::Marker::new(0xffff_0000_0020_0000, "mid"),
    ];

    let mut out = Box::new(FixedBuffer {
        bytes: [0; 16384],
        len: 0,
    });
    let count = allocations_during(|| {
        let stats = ptdump::arm64::dump(&mut *out, &a64, &arena, a64_root, AddrRange::ALL, &markers).unwrap();
        assert!(stats.leaves >= 1024);
        let report = ptdump::arm64::check_wx(&mut *out, &a64, &arena, a64_root, AddrRange::ALL).unwrap();
        assert_eq!(report.wx_pages, 1024);
        ptdump::x86::dump(&mut *out, &x86, &arena, x86_root, AddrRange::ALL, &markers).unwrap();
        ptdump::x86::check_wx(&mut *out, &x86, &arena, x86_root, AddrRange::ALL).unwrap();
    });
    assert_eq!(count, 0, "the dumper allocated");
    // The counter does see allocations.
    assert_eq!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 64]))), 1);
    let text = std::str::from_utf8(&out.bytes[..out.len]).unwrap();
    assert!(text.contains("---[ mid ]---"), "{text}");
    assert!(
        text.ends_with("x86/mm: Checked W+X mappings: passed, no W+X pages found.\n"),
        "{text}"
    );
}
