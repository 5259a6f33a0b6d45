//! Guest memory layout: RAM minus hv, and kernel/initrd/DTB placement.

use hv::guest::arm64_image::Arm64Image;
use hv::guest::layout::{guest_ram, plan, GuestLayout, KernelPlacement, LayoutError, LayoutRequest, DTB_SLOT};
use hv::guest::{MemRange, Named};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const RAM_BASE: u64 = 0x4000_0000;

fn r(start: u64, end: u64) -> MemRange {
    MemRange::new(start, end).unwrap()
}

/// Debian 6.1's arm64 Image header: text_offset 0, image_size 0x201_0000, flags 0xa.
fn debian_kernel() -> KernelPlacement {
    let mut h = vec![0u8; 64];
    h[16..24].copy_from_slice(&0x201_0000u64.to_le_bytes());
    h[24..32].copy_from_slice(&0xau64.to_le_bytes());
    h[56..60].copy_from_slice(b"ARM\x64");
    Arm64Image::parse(&h).unwrap().placement()
}

fn request(initrd: u64) -> LayoutRequest<'static> {
    LayoutRequest {
        kernel: debian_kernel(),
        initrd_size: initrd,
        dtb_size: 0x2000,
        avoid: &[],
    }
}

/// Everything placed lies in guest RAM, apart from hv and from each other,
/// and follows the arm64 booting rules.
fn assert_sound(l: &GuestLayout, hv: &[Named<'_>]) {
    let placed: Vec<MemRange> = [Some(l.kernel), l.initrd, l.dtb].into_iter().flatten().collect();
    for (i, a) in placed.iter().enumerate() {
        assert!(l.ram.iter().any(|p| p.covers(a)), "{a:?} outside guest RAM {:?}", l.ram);
        for h in hv {
            assert!(!a.overlaps(&h.range), "{a:?} overlaps {}", h.name);
        }
        for b in &placed[i + 1..] {
            assert!(!a.overlaps(b), "{a:?} overlaps {b:?}");
        }
    }
    for p in &l.ram {
        assert_eq!((p.start % 4096, p.end % 4096), (0, 0));
        for h in hv {
            assert!(!p.overlaps(&h.range), "guest RAM {p:?} overlaps {}", h.name);
        }
    }
    assert_eq!(l.kernel_base % (2 * MIB), 0);
    assert_eq!(l.kernel.start, l.kernel_base, "text_offset 0");
    assert_eq!(l.kernel.len(), 0x201_0000);
    let dtb = l.dtb.unwrap();
    assert_eq!(dtb.start % DTB_SLOT, 0);
}

#[test]
fn hv_at_the_start_of_512_mib() {
    let ram = [r(RAM_BASE, RAM_BASE + 512 * MIB)];
    let hv = [Named::new("hv", r(RAM_BASE, RAM_BASE + 32 * MIB))];
    let l = plan(&ram, &hv, &request(40 * MIB)).unwrap();
    assert_eq!(l.ram, [r(RAM_BASE + 32 * MIB, RAM_BASE + 512 * MIB)]);
    assert_eq!(l.ram_bytes(), 480 * MIB);
    // The kernel goes as low as it can: right after hv.
    assert_eq!(l.kernel_base, RAM_BASE + 32 * MIB);
    assert_eq!(l.initrd.unwrap().start, RAM_BASE + 32 * MIB + 0x201_0000);
    assert_sound(&l, &hv);
}

#[test]
fn hv_in_the_middle_of_1_gib_splits_guest_ram() {
    let ram = [r(RAM_BASE, RAM_BASE + GIB)];
    let hv = [
        Named::new("hv image", r(0x5000_0000, 0x5020_0000)),
        Named::new("hv heap", r(0x5020_0000, 0x5100_0000)),
    ];
    let l = plan(&ram, &hv, &request(100 * MIB)).unwrap();
    assert_eq!(l.ram, [r(RAM_BASE, 0x5000_0000), r(0x5100_0000, RAM_BASE + GIB)]);
    assert_eq!(l.kernel_base, RAM_BASE);
    assert_sound(&l, &hv);
    // 256 MiB below hv hold the kernel and then the initrd.
    let initrd = l.initrd.unwrap();
    assert_eq!(initrd.start, RAM_BASE + 0x201_0000);
}

#[test]
fn pieces_too_small_before_hv_are_skipped() {
    // Only 16 MiB below hv: the 32 MiB kernel must go above it.
    let ram = [r(RAM_BASE, RAM_BASE + GIB)];
    let hv = [Named::new("hv", r(RAM_BASE + 16 * MIB, RAM_BASE + 48 * MIB))];
    let l = plan(&ram, &hv, &request(8 * MIB)).unwrap();
    assert_eq!(l.ram[0], r(RAM_BASE, RAM_BASE + 16 * MIB));
    assert_eq!(l.kernel_base, RAM_BASE + 48 * MIB);
    // The small initrd still uses the piece below hv.
    assert_eq!(l.initrd.unwrap().start, RAM_BASE);
    assert_sound(&l, &hv);
}

#[test]
fn four_gib_in_two_banks_with_an_unaligned_hv() {
    let ram = [
        r(RAM_BASE, RAM_BASE + 2 * GIB),
        r(0x1_0000_0000 + GIB, 0x1_0000_0000 + 3 * GIB),
    ];
    // hv's region not page aligned: guest RAM is trimmed inward.
    let hv = [Named::new(
        "hv",
        r(RAM_BASE + GIB + 0x123, RAM_BASE + GIB + 64 * MIB + 0x10),
    )];
    let l = plan(&ram, &hv, &request(200 * MIB)).unwrap();
    assert_eq!(
        l.ram,
        [
            r(RAM_BASE, RAM_BASE + GIB),
            r(RAM_BASE + GIB + 64 * MIB + 0x1000, RAM_BASE + 2 * GIB),
            r(0x1_0000_0000 + GIB, 0x1_0000_0000 + 3 * GIB)
        ]
    );
    // The pages hv touches at all are lost to the guest: [1 GiB, 1 GiB + 64 MiB + 4 KiB).
    assert_eq!(l.ram_bytes(), 4 * GIB - 64 * MIB - 0x1000);
    assert_sound(&l, &hv);
}

#[test]
fn hv_at_the_end_and_overlapping_banks_are_merged() {
    let ram = [
        r(RAM_BASE, RAM_BASE + 512 * MIB),
        r(RAM_BASE + 256 * MIB, RAM_BASE + GIB),
    ];
    let hv = [Named::new("hv", r(RAM_BASE + GIB - 16 * MIB, RAM_BASE + GIB + 4096))];
    let g = guest_ram(&ram, &hv);
    assert_eq!(g, [r(RAM_BASE, RAM_BASE + GIB - 16 * MIB)]);
}

#[test]
fn ranges_to_avoid_stay_guest_ram_but_hold_nothing() {
    let ram = [r(RAM_BASE, RAM_BASE + GIB)];
    let hv = [Named::new("hv", r(RAM_BASE + GIB - 32 * MIB, RAM_BASE + GIB))];
    // QEMU's -initrd (the bundle) sits at RAM + 128 MiB; the kernel is copied out of it.
    let bundle = [Named::new("bundle", r(0x4800_0000, 0x4800_0000 + 40 * MIB))];
    let req = LayoutRequest {
        avoid: &bundle,
        ..request(100 * MIB)
    };
    let l = plan(&ram, &hv, &req).unwrap();
    assert_eq!(l.ram, [r(RAM_BASE, RAM_BASE + GIB - 32 * MIB)]);
    let initrd = l.initrd.unwrap();
    // 100 MiB does not fit between kernel end and the bundle: it goes above the bundle.
    assert_eq!(initrd.start, 0x4800_0000 + 40 * MIB);
    assert!(!l.dtb.unwrap().overlaps(&bundle[0].range));
    assert_sound(&l, &hv);
}

#[test]
fn too_small_ram_is_a_clear_error() {
    let ram = [r(RAM_BASE, RAM_BASE + 64 * MIB)];
    let hv = [Named::new("hv", r(RAM_BASE, RAM_BASE + 48 * MIB))];
    let err = plan(&ram, &hv, &request(0)).unwrap_err();
    assert_eq!(
        err,
        LayoutError::NoRoom {
            what: "kernel",
            size: 0x201_0000,
            guest_ram: 16 * MIB,
            largest_free: 16 * MIB
        }
    );
    assert!(
        err.to_string()
            .starts_with("guest RAM too small: no room for the kernel"),
        "{err}"
    );

    // The kernel fits, the initrd does not.
    let ram = [r(RAM_BASE, RAM_BASE + 512 * MIB)];
    let err = plan(&ram, &hv, &request(600 * MIB)).unwrap_err();
    assert!(matches!(err, LayoutError::NoRoom { what: "initrd", .. }), "{err}");

    let all = [Named::new("hv", r(0, u64::MAX))];
    assert_eq!(plan(&ram, &all, &request(0)), Err(LayoutError::NoGuestRam));
    assert_eq!(
        plan(
            &ram,
            &[],
            &LayoutRequest {
                dtb_size: DTB_SLOT + 1,
                ..request(0)
            }
        ),
        Err(LayoutError::DtbTooLarge { size: DTB_SLOT + 1 })
    );
}

#[test]
fn fixed_kernel_placement_for_x86() {
    // x86: e820 usable 0-0x9fc00 and 1 MiB-0x3ffe0000, hv at 0x3000_0000, vmlinux at 16 MiB.
    let ram = [r(0, 0x9_fc00), r(0x10_0000, 0x3ffe_0000)];
    let hv = [Named::new("hv", r(0x3000_0000, 0x3200_0000))];
    let req = LayoutRequest {
        kernel: KernelPlacement::Fixed {
            start: 0x100_0000,
            size: 0x300_0000,
        },
        initrd_size: 5 * MIB,
        dtb_size: 0,
        avoid: &[],
    };
    let l = plan(&ram, &hv, &req).unwrap();
    assert_eq!(l.kernel, r(0x100_0000, 0x400_0000));
    assert_eq!(l.dtb, None);
    // The lowest room for the initrd: 1 MiB..16 MiB, below the fixed kernel.
    assert_eq!(l.initrd, Some(r(0x10_0000, 0x10_0000 + 5 * MIB)));
    assert_eq!(
        l.ram,
        [r(0, 0x9_f000), r(0x10_0000, 0x3000_0000), r(0x3200_0000, 0x3ffe_0000)]
    );

    let inside_hv = LayoutRequest {
        kernel: KernelPlacement::Fixed {
            start: 0x3100_0000,
            size: 0x1000,
        },
        ..req
    };
    assert!(matches!(
        plan(&ram, &hv, &inside_hv),
        Err(LayoutError::FixedOutsideGuestRam { what: "kernel", .. })
    ));
}
