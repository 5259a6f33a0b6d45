//! Thousands of seeded random hypercalls: ids in, near and far from hv's,
//! addresses from every class (this guest's scratch area, hv's region,
//! unmapped, beyond RAM, wrapping, random) and lengths around every limit.
//! Each result must be one the ABI documents for those arguments, and hv
//! must answer HV_VERSION afterwards. Only the scratch area is ever offered
//! as a writable guest buffer, and this image's code must be unchanged.

use crate::abi::{self, id, ret, Reply};
use crate::arch;
use crate::cases::UNKNOWN_IDS;
use crate::console::{check, Msg, Outcome};
use crate::output::{self, area, Checksum, AREA_LEN};
use crate::platform::{Platform, PAGE};
use crate::{bail, ensure, say};

/// xorshift64* (Vigna): small, seeded, good enough to spread the calls.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
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

/// Where an address came from, hence what hv may answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    /// Inside this guest's scratch area: readable and writable guest RAM.
    Scratch,
    /// hv's region, unmapped, beyond RAM, wrapping: always refused.
    Refused,
    /// Anything (a random 64-bit value).
    Unknown,
}

fn random_id(rng: &mut Rng) -> u64 {
    match rng.below(20) {
        0..=7 => u64::from(rng.pick(&id::ALL)),
        8..=10 => 0xC600_0000 + rng.below(0x20),
        11 => 0x8000_0000 + rng.below(4),
        12 => 0x8600_FF00 + rng.below(8),
        13..=15 => u64::from(rng.pick(&UNKNOWN_IDS)),
        16..=17 => rng.next() & 0xffff_ffff,
        // Upper half set: arm64 ignores it (W0), x86 calls the id unknown.
        _ => rng.next() | (1 << 32) | u64::from(rng.pick(&id::ALL)),
    }
}

fn random_addr(rng: &mut Rng, p: &Platform) -> (u64, Class) {
    let hv = p.hv.expect("random calls run only with hv");
    match rng.below(12) {
        // Anywhere in the first page of the area: even 64 KiB from there stays in scratch.
        0..=4 => (area() + rng.below(PAGE), Class::Scratch),
        // Straddling a page boundary inside the area.
        5 => (area() + PAGE - 1 - rng.below(64), Class::Scratch),
        6..=7 => (hv.start + (rng.below(hv.len()) & !7), Class::Refused),
        8 => (p.unmapped + rng.below(PAGE), Class::Refused),
        9 => (p.beyond_ram + (rng.below(1 << 30) & !7), Class::Refused),
        10 => (u64::MAX - rng.below(64), Class::Refused),
        _ => (rng.next(), Class::Unknown),
    }
}

fn random_len(rng: &mut Rng) -> u64 {
    match rng.below(12) {
        0 => 0,
        1 => 1,
        2..=5 => 1 + rng.below(4096),
        6 => 4096,
        7 => 4097,
        8 => abi::MAX_OUTPUT_BUFFER - rng.below(2),
        9 => abi::MAX_OUTPUT_BUFFER + 1 + rng.below(1 << 20),
        10 => 1 << (32 + rng.below(31)),
        _ => rng.next(),
    }
}

/// One random call: its arguments, their classes, and the reply.
struct Trial {
    id: u64,
    args: [u64; 4],
    class: [Class; 4],
}

fn make_trial(rng: &mut Rng, p: &Platform) -> Trial {
    let id = random_id(rng);
    let mut args = [0u64; 4];
    let mut class = [Class::Unknown; 4];
    for i in 0..4 {
        // Arguments are addresses or lengths or raw values, in any slot.
        match rng.below(3) {
            0 => (args[i], class[i]) = random_addr(rng, p),
            1 => args[i] = random_len(rng),
            _ => args[i] = rng.next() >> rng.below(64),
        }
    }
    // CONSOLE_WRITE goes to hv's log: keep accepted texts short.
    if arch::decode_id(id) == Some(id::HV_CONSOLE_WRITE) && args[1] <= abi::MAX_CONSOLE_WRITE {
        args[1] %= 33;
    }
    Trial { id, args, class }
}

/// Whether an output buffer `[gpa, gpa + len)` of the given class may be accepted.
fn out_may_succeed(class: Class) -> bool {
    class != Class::Refused
}

/// The result `r` is one the ABI allows for this call.
fn judge(t: &Trial, r: &Reply) -> Outcome {
    let code = r.code();
    // The discovery calls answer with values in r0 (a version, UUID words, a
    // major revision), not status codes: their exact replies are checked below.
    let discovery = matches!(
        arch::decode_id(t.id),
        Some(id::SMCCC_VERSION | id::VENDOR_HYP_CALL_UID | id::VENDOR_HYP_REVISION)
    );
    if !discovery {
        ensure!(abi::is_documented(code), "undocumented return code {code:#x}");
        ensure!(code != ret::DENIED, "DENIED for a kernel-mode call");
        ensure!(code != ret::NOT_REQUIRED, "NOT_REQUIRED, which hv never returns");
    }
    let [a1, a2, a3, a4] = t.args;
    let Some(f) = arch::decode_id(t.id) else {
        return abi::expect_status(r, ret::NOT_SUPPORTED);
    };
    match f {
        id::SMCCC_VERSION => ensure!(r.r == [abi::SMCCC_VERSION_1_1, 0, 0, 0], "SMCCC_VERSION"),
        id::SMCCC_ARCH_FEATURES => {
            let known = matches!(a1 as u32, id::SMCCC_VERSION | id::SMCCC_ARCH_FEATURES);
            abi::expect_status(r, if known { ret::SUCCESS } else { ret::NOT_SUPPORTED })?
        }
        id::VENDOR_HYP_CALL_UID => ensure!(r.r == abi::UID, "UID"),
        id::VENDOR_HYP_REVISION => ensure!(r.r == [1, 0, 0, 0], "REVISION"),
        id::HV_VERSION => abi::expect_version(r)?,
        id::HV_FEATURES => {
            let known = u32::try_from(a1).is_ok_and(|f| id::ALL.contains(&f));
            abi::expect_status(r, if known { ret::SUCCESS } else { ret::NOT_SUPPORTED })?
        }
        id::HV_CONSOLE_WRITE => {
            if a2 > abi::MAX_CONSOLE_WRITE {
                abi::expect_status(r, ret::INVALID_PARAMETER)?
            } else if a2 == 0 {
                ensure!(r.r == [0, 0, 0, 0], "zero-length write")
            } else if code == ret::SUCCESS {
                ensure!(
                    t.class[0] != Class::Refused,
                    "a write from a refused address was accepted"
                );
                ensure!(r.r == [0, a2, 0, 0], "written length")
            } else {
                ensure!(
                    t.class[0] != Class::Scratch || a1.checked_add(a2).is_none(),
                    "scratch text refused"
                );
                abi::expect_status(r, ret::BAD_ADDRESS)?
            }
        }
        id::HV_RUN_COMMAND => {
            let lengths_ok = (1..=abi::MAX_COMMAND).contains(&a2) && (1..=abi::MAX_OUTPUT_BUFFER).contains(&a4);
            if !lengths_ok {
                abi::expect_status(r, ret::INVALID_PARAMETER)?
            } else if code == ret::SUCCESS {
                ensure!(
                    t.class[0] != Class::Refused && out_may_succeed(t.class[2]),
                    "accepted a refused command or output address"
                );
                abi::expect_output_reply(r, a4)?
            } else {
                ensure!(
                    code == ret::BAD_ADDRESS || code == ret::INVALID_PARAMETER,
                    "RUN_COMMAND with valid lengths"
                );
                abi::expect_status(r, code)?
            }
        }
        id::HV_FETCH_OUTPUT => {
            if !(1..=abi::MAX_OUTPUT_BUFFER).contains(&a3) {
                abi::expect_status(r, ret::INVALID_PARAMETER)?
            } else if code == ret::SUCCESS {
                ensure!(out_may_succeed(t.class[1]), "accepted a refused output address");
                abi::expect_output_reply(r, a3)?
            } else {
                ensure!(
                    code == ret::BAD_ADDRESS || code == ret::INVALID_PARAMETER,
                    "FETCH_OUTPUT with a valid length"
                );
                abi::expect_status(r, code)?
            }
        }
        _ => abi::expect_status(r, ret::NOT_SUPPORTED)?,
    }
    Ok(())
}

/// A checksum of this image's code and read-only data: hv must never write there.
fn image_sum(p: &Platform) -> Checksum {
    let mut sum = Checksum::new();
    // SAFETY: the image's text and rodata are mapped and never written after relocation.
    let bytes =
        unsafe { core::slice::from_raw_parts(p.image.start as *const u8, (p.rodata_end - p.image.start) as usize) };
    sum.feed(bytes);
    sum
}

pub fn run(p: &Platform) {
    check("random-calls", random_calls(p));
}

fn random_calls(p: &Platform) -> Outcome {
    if p.hv.is_none() {
        bail!("the boot information shows no hv region");
    }
    let before = image_sum(p);
    // Printable scratch contents, so accepted console writes stay readable.
    for i in 0..AREA_LEN / 16 {
        output::put(area() + i * 16, b"tg-random-text. ");
    }
    let mut rng = Rng::new(p.seed);
    let mut counts = [0u32; 6];
    for n in 0..p.random_calls {
        let t = make_trial(&mut rng, p);
        let r = abi::call_raw(t.id, t.args);
        if let Err(m) = judge(&t, &r) {
            bail!(
                "seed {:#x} call {n}: id {:#x} args [{:#x}, {:#x}, {:#x}, {:#x}] ({:?}) -> {r}: {m}",
                p.seed,
                t.id,
                t.args[0],
                t.args[1],
                t.args[2],
                t.args[3],
                t.class
            );
        }
        counts[(-r.code()).clamp(0, 5) as usize] += 1;
        // Every 512 calls: hv still answers sensibly.
        if n % 512 == 511 {
            abi::expect_version(&abi::call(id::HV_VERSION, [0; 4]))
                .map_err(|m| Msg::new(format_args!("after {n} random calls: {m}")))?;
        }
    }
    say!(
        "testguest: random: seed {:#x}, {} calls: SUCCESS {}, NOT_SUPPORTED {}, INVALID_PARAMETER {}, BAD_ADDRESS {}",
        p.seed,
        p.random_calls,
        counts[0],
        counts[1],
        counts[3],
        counts[5]
    );
    abi::expect_version(&abi::call(id::HV_VERSION, [0; 4])).map_err(|m| Msg::new(format_args!("at the end: {m}")))?;
    ensure!(
        image_sum(p) == before,
        "this guest's code or read-only data changed during the random calls"
    );
    ensure!(p.random_calls == 0 || counts[0] > 0, "no random call succeeded");
    Ok(())
}
