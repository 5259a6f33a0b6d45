//! `cargo bench -p pagewalk`: walking 1 GiB mapped with 4 KiB pages
//! (262,144 leaves) in x86-64 and arm64 48-bit stage-1 tables.
//!
//! For each format: (a) a walk counting leaves, (b) a walk plus a ptdump
//! dump into a sink, (c) one sequential read of the same table frames (the
//! memory-bandwidth limit), and for x86 (d) page_table_multiarch's walk of an
//! equal table built with its own API. Best of several runs.

use std::alloc::{alloc_zeroed, Layout};
use std::cell::Cell;
use std::fmt;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use memory_addr::{PhysAddr, VirtAddr};
use mm::{Arena, TableBuilder};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::{GenericPTE, MappingFlags, PageTable64, PagingHandler, PagingMetaData};
use pagewalk::arm64::{Half, Regime, Stage1};
use pagewalk::x86::X86_64;
use pagewalk::{translate, walk, Access, AddrRange, Flow, Format, Leaf, MapAttrs, MemType, Visitor};

const GIB: u64 = 1 << 30;
const VA: u64 = 0x4000_0000;
/// 4 KiB off 2 MiB alignment, so that the builder uses 4 KiB pages only.
const PA: u64 = 0x1_0000_1000;
const LEAVES: u64 = GIB / 0x1000;
const RUNS: usize = 15;

fn best<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..RUNS {
        let t = Instant::now();
        let r = black_box(f());
        best = best.min(t.elapsed());
        out = Some(r);
    }
    (best, out.unwrap())
}

struct CountLeaves {
    leaves: u64,
    out_sum: u64,
}

impl Visitor for CountLeaves {
    fn leaf(&mut self, l: &Leaf) -> Flow {
        self.leaves += 1;
        self.out_sum = self.out_sum.wrapping_add(l.out);
        Flow::Continue
    }
}

/// A `fmt::Write` that keeps only a byte count.
struct Sink(usize);

impl fmt::Write for Sink {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

fn build<F: Format>(format: &F) -> (Arena, u64) {
    let mut arena = Arena::new(0x10_0000, 4 << 20);
    let builder = TableBuilder::new(format, &mut arena).unwrap();
    let attrs = MapAttrs::new(Access::READ | Access::WRITE, MemType::Normal);
    builder.map(&mut arena, VA, PA, GIB, &attrs).unwrap();
    let root = builder.root().0;
    (arena, root)
}

fn rate(count: u64, d: Duration) -> String {
    format!("{:>7.1} M/s", count as f64 / d.as_secs_f64() / 1e6)
}

/// Sum of every u64 of the table frames the builder used.
fn sequential_read(arena: &Arena) -> u64 {
    arena.bytes()[..arena.used() as usize]
        .chunks_exact(8)
        .fold(0u64, |acc, w| {
            acc.wrapping_add(u64::from_le_bytes(w.try_into().unwrap()))
        })
}

struct Figures {
    walk: Duration,
    dump: Duration,
    read: Duration,
    entries: u64,
}

fn bench_ours<F: Format>(
    name: &str,
    format: &F,
    dump: impl Fn(&mut Sink, &Arena, u64) -> Result<u64, fmt::Error>,
) -> Figures {
    let (arena, root) = build(format);
    let range = AddrRange::ALL;
    let (walk_time, (leaves, tables)) = best(|| {
        let mut v = CountLeaves { leaves: 0, out_sum: 0 };
        let s = walk(format, &arena, root, range, &mut v);
        black_box(v.out_sum);
        (v.leaves, s.tables)
    });
    assert_eq!(leaves, LEAVES, "{name}: the table must hold 262,144 4K leaves");
    // Every entry of every table walked is read once.
    let entries = tables * 512;
    let (dump_time, bytes) = best(|| {
        let mut sink = Sink(0);
        let lines = dump(&mut sink, &arena, root).unwrap();
        (sink.0, lines)
    });
    let (read_time, _) = best(|| sequential_read(&arena));
    let words = arena.used() / 8;
    println!(
        "{name:<28} tables {tables:>4}  entries {entries:>7}  table bytes {:>8}  dump output {} bytes",
        arena.used(),
        bytes.0
    );
    println!(
        "  (a) walk, count leaves        {:>9.3} ms  {} entries  {} leaves",
        walk_time.as_secs_f64() * 1e3,
        rate(entries, walk_time),
        rate(leaves, walk_time)
    );
    println!(
        "  (b) walk + ptdump dump        {:>9.3} ms  {} entries",
        dump_time.as_secs_f64() * 1e3,
        rate(entries, dump_time)
    );
    println!(
        "  (c) sequential read (limit)   {:>9.3} ms  {} entries",
        read_time.as_secs_f64() * 1e3,
        rate(words, read_time)
    );
    Figures {
        walk: walk_time,
        dump: dump_time,
        read: read_time,
        entries,
    }
}

// ---------------------------------------------------------------- page_table_multiarch

/// x86-64 metadata without the TLB flush (`invlpg` faults in user mode).
struct HostX64;

impl PagingMetaData for HostX64 {
    const LEVELS: usize = 4;
    const PA_MAX_BITS: usize = 52;
    const VA_MAX_BITS: usize = 48;
    type VirtAddr = VirtAddr;
    fn flush_tlb(_vaddr: Option<VirtAddr>) {}
}

/// Frames from one leaked, zeroed host allocation; "physical" addresses are
/// host addresses, so `phys_to_virt` is the identity.
struct HostFrames;

const POOL_BYTES: usize = 8 << 20;

fn pool() -> (usize, &'static AtomicUsize) {
    static POOL: OnceLock<(usize, AtomicUsize)> = OnceLock::new();
    let p = POOL.get_or_init(|| {
        let layout = Layout::from_size_align(POOL_BYTES, 4096).unwrap();
        // SAFETY: the layout has a non-zero size; the memory is leaked on purpose.
        let base = unsafe { alloc_zeroed(layout) } as usize;
        assert_ne!(base, 0);
        (base, AtomicUsize::new(0))
    });
    (p.0, &p.1)
}

impl PagingHandler for HostFrames {
    fn alloc_frames(num: usize, align: usize) -> Option<PhysAddr> {
        let (base, next) = pool();
        let mut start = 0;
        next.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            start = (base + used).next_multiple_of(align.max(4096));
            let end = start + num * 4096;
            (end <= base + POOL_BYTES).then_some(end - base)
        })
        .ok()?;
        Some(PhysAddr::from(start))
    }
    fn dealloc_frames(_paddr: PhysAddr, _num: usize) {}
    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        VirtAddr::from(paddr.as_usize())
    }
}

type TheirTable = PageTable64<HostX64, X64PTE, HostFrames>;

fn bench_page_table_multiarch() -> Duration {
    let mut table = TheirTable::try_new().unwrap();
    table
        .cursor()
        .map_region(
            VirtAddr::from(VA as usize),
            |va| PhysAddr::from(va.as_usize() - VA as usize + PA as usize),
            GIB as usize,
            MappingFlags::READ | MappingFlags::WRITE,
            false,
        )
        .unwrap();
    let (time, leaves) = best(|| {
        let leaves = Cell::new(0u64);
        let out_sum = Cell::new(0u64);
        let visit = |level: usize, _index: usize, _va: VirtAddr, pte: &X64PTE| {
            if level == HostX64::LEVELS - 1 || pte.is_huge() {
                leaves.set(leaves.get() + 1);
                out_sum.set(out_sum.get().wrapping_add(pte.paddr().as_usize() as u64));
            }
        };
        table.walk(usize::MAX, Some(&visit), None);
        black_box(out_sum.get());
        leaves.get()
    });
    assert_eq!(leaves, LEAVES, "page_table_multiarch: 262,144 4K leaves");
    println!(
        "  (d) page_table_multiarch walk {:>9.3} ms  {} leaves",
        time.as_secs_f64() * 1e3,
        rate(leaves, time)
    );
    time
}

/// The walks alone, for an instruction count:
/// `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*profiled_walks*' <bench binary> --profile`.
#[inline(never)]
fn profiled_walks<F: Format>(format: &F, arena: &Arena, root: u64) -> u64 {
    let mut v = CountLeaves { leaves: 0, out_sum: 0 };
    walk(format, arena, root, AddrRange::ALL, &mut v);
    assert_eq!(v.leaves, LEAVES);
    v.out_sum
}

/// Translates every 4 KiB page of the mapping once: one-entry walks.
#[inline(never)]
fn profiled_translates<F: Format>(format: &F, arena: &Arena, root: u64) -> u64 {
    let mut sum = 0u64;
    for va in (VA..VA + GIB).step_by(0x1000) {
        sum = sum.wrapping_add(translate(format, arena, root, va).unwrap().out);
    }
    sum
}

/// `--profile [x86|arm64|translate]`: one walk of each (or the named)
/// format's table, or a translate of every page of the x86 table.
fn profile(which: Option<&str>) {
    if which == Some("translate") {
        let x86 = X86_64::four_level();
        let (arena, root) = build(&x86);
        black_box(profiled_translates(&x86, &arena, root));
        return;
    }
    if which != Some("arm64") {
        let x86 = X86_64::four_level();
        let (arena, root) = build(&x86);
        black_box(profiled_walks(&x86, &arena, root));
    }
    if which != Some("x86") {
        let s1 = Stage1::new(48, Half::Lower, Regime::El1And0).unwrap();
        let (arena, root) = build(&s1);
        black_box(profiled_walks(&s1, &arena, root));
    }
}

/// `translate` of every page of the x86 table: one-entry walks, the
/// per-walk overhead.
fn bench_translate(format: &X86_64) {
    let (arena, root) = build(format);
    let (time, _) = best(|| profiled_translates(format, &arena, root));
    println!(
        "  (e) translate every page      {:>9.3} ms  {:>7.1} ns per translate",
        time.as_secs_f64() * 1e3,
        time.as_secs_f64() * 1e9 / LEAVES as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--profile") {
        profile(args.get(at + 1).map(String::as_str));
        return;
    }
    // `cargo test --benches` runs this with --bench absent: keep it quick then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("pagewalk bench: run with `cargo bench -p pagewalk`");
        return;
    }
    println!("1 GiB of 4 KiB pages ({LEAVES} leaves), best of {RUNS} runs\n");
    let x86 = X86_64::four_level();
    let ours_x86 = bench_ours("x86-64 4-level", &x86, |out, mem, root| {
        ptdump::x86::dump(out, &x86, mem, root, AddrRange::ALL, &[]).map(|s| s.lines)
    });
    let theirs = bench_page_table_multiarch();
    bench_translate(&x86);
    let s1 = Stage1::new(48, Half::Lower, Regime::El1And0).unwrap();
    println!();
    let ours_arm = bench_ours("arm64 stage-1 48-bit TTBR0", &s1, |out, mem, root| {
        ptdump::arm64::dump(out, &s1, mem, root, AddrRange::ALL, &[]).map(|s| s.lines)
    });

    println!("\nratios (time; < 1 is faster)");
    for (name, f) in [("x86-64", &ours_x86), ("arm64", &ours_arm)] {
        println!(
            "  {name:<7} walk / sequential read {:>6.1}x   walk+dump / walk {:>6.1}x",
            f.walk.as_secs_f64() / f.read.as_secs_f64(),
            f.dump.as_secs_f64() / f.walk.as_secs_f64()
        );
        let _ = f.entries;
    }
    println!(
        "  x86-64  pagewalk walk / page_table_multiarch walk {:>6.2}x",
        ours_x86.walk.as_secs_f64() / theirs.as_secs_f64()
    );
}
