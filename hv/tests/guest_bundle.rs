//! The guest bundle: scripts/mkbundle.py's output parses in hv, and the
//! parser is total on hostile input (random, mutated, truncated bundles).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use hv::guest::bundle::{self, Bundle, BundleError, EntryKind};
use hv::guest::crc32;
use proptest::prelude::*;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hv-guest-bundle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn mkbundle(args: &[&str]) -> Vec<u8> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let out = scratch(&format!("out-{}.bundle", NEXT.fetch_add(1, Ordering::Relaxed)));
    let status = Command::new("python3")
        .arg(repo_root().join("scripts/mkbundle.py"))
        .args(args)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("python3 runs scripts/mkbundle.py");
    assert!(status.success(), "mkbundle.py failed");
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_file(out).unwrap();
    bytes
}

/// A kernel-ish and an initrd-ish payload of awkward sizes.
fn payloads() -> (Vec<u8>, Vec<u8>) {
    let kernel: Vec<u8> = (0..70_001u32).map(|i| (i * 7 + 3) as u8).collect();
    let initrd: Vec<u8> = (0..12_289u32).map(|i| (i ^ 0x5a) as u8).collect();
    (kernel, initrd)
}

#[test]
fn mkbundle_output_parses_in_hv() {
    let (kernel, initrd) = payloads();
    let (k, i) = (scratch("kernel"), scratch("initrd"));
    std::fs::write(&k, &kernel).unwrap();
    std::fs::write(&i, &initrd).unwrap();
    let cmdline = "console=ttyAMA0 panic=-1 hv.cmd=ZWNobyBoaQ==";
    let bytes = mkbundle(&[
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--cmdline",
        cmdline,
    ]);
    let b = Bundle::parse(&bytes).unwrap();
    assert_eq!(b.kernel, &kernel[..]);
    assert_eq!(b.initrd, Some(&initrd[..]));
    assert_eq!(b.cmdline, cmdline);
    assert_eq!(b.total_len, bytes.len() as u64);
    for e in Bundle::entries(&bytes).unwrap() {
        assert_eq!(e.offset % 4096, 0, "{e:?}");
    }
    // Python and Rust writers agree byte for byte.
    assert_eq!(bytes, bundle::write(&kernel, Some(&initrd), Some(cmdline)));

    // Kernel only.
    let bytes = mkbundle(&["--kernel", k.to_str().unwrap()]);
    let b = Bundle::parse(&bytes).unwrap();
    assert_eq!((b.kernel.len(), b.initrd, b.cmdline), (kernel.len(), None, ""));
}

#[test]
fn mkbundle_carries_the_real_guest_when_cached() {
    // The Debian guest guests/linux/build.sh caches; skipped (with a note) on a fresh machine.
    let dir = repo_root().join(".cache/guests/aarch64-6.1");
    let (k, i) = (dir.join("Image"), dir.join("initrd.cpio.gz"));
    if !k.exists() || !i.exists() {
        eprintln!(
            "note: {} not built; run guests/linux/build.sh --arch aarch64",
            dir.display()
        );
        return;
    }
    let bytes = mkbundle(&[
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--cmdline",
        "x",
    ]);
    let b = Bundle::parse(&bytes).unwrap();
    assert_eq!(b.kernel, &std::fs::read(&k).unwrap()[..]);
    let img = hv::guest::arm64_image::Arm64Image::parse(b.kernel).unwrap();
    assert!(img.image_size >= b.kernel.len() as u64);
}

/// Rewrites the header checksum after a deliberate edit, so the parser gets
/// past it to the check under test.
fn reseal(bytes: &mut [u8]) {
    let header_len = u16::from_le_bytes([bytes[10], bytes[11]]) as usize;
    bytes[24..28].fill(0);
    let crc = crc32(&bytes[..header_len]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
}

fn set_u64(bytes: &mut [u8], off: usize, v: u64) {
    bytes[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
fn set_u32(bytes: &mut [u8], off: usize, v: u32) {
    bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn each_defect_gets_its_own_error() {
    let good = bundle::write(b"kernel bytes", Some(b"initrd bytes"), Some("quiet"));
    assert!(Bundle::parse(&good).is_ok());
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        reseal(&mut b);
        Bundle::parse(&b).unwrap_err()
    };
    // Entry 0 kernel at 32, entry 1 initrd at 64, entry 2 cmdline at 96.
    assert_eq!(edit(&|b| b[0] = b'X'), BundleError::BadMagic);
    assert_eq!(edit(&|b| b[8] = 2), BundleError::UnsupportedVersion(2));
    assert!(matches!(edit(&|b| b[10] = 33), BundleError::BadHeaderLength { .. }));
    assert!(matches!(
        edit(&|b| set_u32(b, 12, 9)),
        BundleError::BadHeaderLength { .. }
    ));
    assert_eq!(
        edit(&|b| set_u64(b, 64 + 8, 4096)),
        BundleError::OverlappingEntries {
            first: EntryKind::Kernel,
            second: EntryKind::Initrd
        }
    );
    assert_eq!(
        edit(&|b| set_u32(b, 64, 1)),
        BundleError::DuplicateEntry(EntryKind::Kernel)
    );
    assert_eq!(
        edit(&|b| set_u32(b, 32, 3)),
        BundleError::DuplicateEntry(EntryKind::Cmdline)
    );
    assert!(matches!(
        edit(&|b| set_u32(b, 32, 7)),
        BundleError::UnknownKind { index: 0, kind: 7 }
    ));
    assert!(matches!(
        edit(&|b| set_u64(b, 32 + 8, 4097)),
        BundleError::MisalignedEntry {
            kind: EntryKind::Kernel,
            ..
        }
    ));
    assert!(matches!(
        edit(&|b| set_u64(b, 32 + 16, u64::MAX - 100)),
        BundleError::EntryOutOfBounds {
            kind: EntryKind::Kernel,
            ..
        }
    ));
    assert!(matches!(
        edit(&|b| set_u64(b, 96 + 8, 0)),
        BundleError::EntryOutOfBounds {
            kind: EntryKind::Cmdline,
            ..
        }
    ));
    assert!(matches!(
        edit(&|b| set_u32(b, 28, 1)),
        BundleError::ReservedNotZero { offset: 28 }
    ));
    assert!(matches!(
        edit(&|b| b[4096] ^= 1),
        BundleError::ChecksumMismatch {
            kind: EntryKind::Kernel,
            ..
        }
    ));
    // The header checksum catches an edit that was not resealed.
    let mut b = good.clone();
    b[64 + 16] ^= 1;
    assert!(matches!(
        Bundle::parse(&b),
        Err(BundleError::HeaderChecksumMismatch { .. })
    ));
    // Truncated by one byte.
    assert!(matches!(
        Bundle::parse(&good[..good.len() - 1]),
        Err(BundleError::Truncated { .. })
    ));

    // No kernel: a bundle with one initrd entry, relabelled.
    let mut only = bundle::write(b"x", None, None);
    set_u32(&mut only, 32, 2);
    reseal(&mut only);
    assert_eq!(Bundle::parse(&only), Err(BundleError::MissingKernel));
    let mut nul = bundle::write(b"k", None, Some("a\0b"));
    reseal(&mut nul);
    assert_eq!(Bundle::parse(&nul), Err(BundleError::BadCmdline));

    // Every error explains itself.
    for e in [
        BundleError::MissingKernel,
        BundleError::BadMagic,
        BundleError::Truncated {
            declared: 9,
            available: 3,
        },
    ] {
        assert!(
            e.to_string().starts_with("bundle") || e.to_string().starts_with("bad bundle"),
            "{e}"
        );
    }
}

fn sample() -> Vec<u8> {
    bundle::write(&[0xaa; 5000], Some(&[0x55; 3000]), Some("console=ttyS0"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), magic in any::<bool>()) {
        let mut bytes = bytes;
        if magic && bytes.len() >= 8 {
            bytes[..8].copy_from_slice(b"HVBUNDLE");
        }
        let _ = Bundle::parse(&bytes);
    }

    /// Any change to a byte the bundle covers (header or payload) is caught;
    /// changes in alignment padding are harmless.
    #[test]
    fn any_single_byte_corruption_is_detected(index in 0usize..12288, xor in 1u8..=255) {
        let good = sample();
        prop_assume!(index < good.len());
        let mut bad = good.clone();
        bad[index] ^= xor;
        let covered = index < 128 || (4096..4096 + 5000).contains(&index)
            || (12288..12288 + 3000).contains(&index) || index >= 16384;
        let result = Bundle::parse(&bad);
        if covered {
            prop_assert!(result.is_err(), "corruption at {} not detected", index);
        } else {
            prop_assert!(result.is_ok());
        }
    }

    /// Resealed header edits (valid checksum, hostile fields) never panic and
    /// never yield slices outside the buffer.
    #[test]
    fn resealed_hostile_headers_never_panic(
        edits in proptest::collection::vec((0usize..128, any::<u64>()), 1..6),
        cut in 0usize..20000,
    ) {
        let mut b = sample();
        for (off, v) in edits {
            let off = off & !7;
            b[off..off + 8].copy_from_slice(&v.to_le_bytes());
        }
        if b.len() >= 12 {
            b[8..10].copy_from_slice(&1u16.to_le_bytes());
        }
        b[..8].copy_from_slice(b"HVBUNDLE");
        let header_len = (u16::from_le_bytes([b[10], b[11]]) as usize).min(b.len());
        b[24..28].fill(0);
        let crc = crc32(&b[..header_len]);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        b.truncate(cut.min(b.len()));
        if let Ok(parsed) = Bundle::parse(&b) {
            let range = b.as_ptr_range();
            for s in [Some(parsed.kernel), parsed.initrd, Some(parsed.cmdline.as_bytes())].into_iter().flatten() {
                prop_assert!(range.start <= s.as_ptr() && s.as_ptr_range().end <= range.end);
            }
        }
    }
}
