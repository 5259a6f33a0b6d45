//! The guest's device tree, from QEMU's own virt DTB.
//!
//! tests/data/qemu-virt-gicv3-1G.dtb is QEMU 10.0.2's
//! `qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max -m 1G -machine dumpdtb=FILE`
//! with the trailing zero padding cut off (totalsize patched from 1 MiB to 7664).
//! When qemu-system-aarch64 is installed, the test also dumps a fresh one.

use std::path::PathBuf;
use std::process::Command;

use fdt::node::FdtNode;
use fdt::Fdt;
use hv::guest::dtb::{check, guest_dtb, DtbError, GuestDtbConfig};
use hv::guest::MemRange;
use proptest::prelude::*;

type Props = Vec<(String, Vec<u8>)>;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn qemu_dtb() -> Vec<u8> {
    std::fs::read(data("qemu-virt-gicv3-1G.dtb")).unwrap()
}

/// Every node as (path, properties in order), depth first.
fn nodes(dtb: &[u8]) -> Vec<(String, Props)> {
    fn visit(node: FdtNode<'_, '_>, path: String, out: &mut Vec<(String, Props)>) {
        let props = node
            .properties()
            .map(|p| (p.name.to_string(), p.value.to_vec()))
            .collect();
        out.push((path.clone(), props));
        for child in node.children() {
            let child_path = if path == "/" {
                format!("/{}", child.name)
            } else {
                format!("{path}/{}", child.name)
            };
            visit(child, child_path, out);
        }
    }
    let fdt = Fdt::new(dtb).unwrap();
    let mut out = Vec::new();
    visit(fdt.find_node("/").unwrap(), "/".to_string(), &mut out);
    out
}

fn prop<'a>(nodes: &'a [(String, Props)], path: &str, name: &str) -> Option<&'a [u8]> {
    let (_, props) = nodes.iter().find(|(p, _)| p == path)?;
    props.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
}

fn be64(v: &[u8]) -> u64 {
    u64::from_be_bytes(v.try_into().unwrap())
}

fn is_memory(path: &str) -> bool {
    path == "/memory" || path.starts_with("/memory@")
}

const GUEST_RAM: [MemRange; 2] = [
    MemRange {
        start: 0x4000_0000,
        end: 0x5000_0000,
    },
    MemRange {
        start: 0x5100_0000,
        end: 0x8000_0000,
    },
];
const INITRD: MemRange = MemRange {
    start: 0x4820_0000,
    end: 0x4832_1000,
};
const BOOTARGS: &str = "console=ttyAMA0 panic=-1 hv.cmd=dW5hbWUgLWE=";

fn config() -> GuestDtbConfig<'static> {
    GuestDtbConfig {
        ram: &GUEST_RAM,
        bootargs: BOOTARGS,
        initrd: Some(INITRD),
        disable: &[],
    }
}

/// The guest DTB of QEMU's virt DTB has hv's changes and nothing else.
fn assert_guest_of_qemu(platform: &[u8]) {
    let before = nodes(platform);
    let out = guest_dtb(platform, &config()).unwrap();
    let info = check(&out).unwrap();
    let after = nodes(&out);
    assert_eq!(info.nodes, after.len());

    // Memory: one node listing exactly the guest RAM (#address-cells = #size-cells = 2).
    let memory: Vec<_> = after.iter().filter(|(p, _)| is_memory(p)).collect();
    assert_eq!(memory.len(), 1);
    assert_eq!(memory[0].0, "/memory@40000000");
    let reg = prop(&after, "/memory@40000000", "reg").unwrap();
    let cells: Vec<u64> = reg.chunks(8).map(be64).collect();
    assert_eq!(cells, [0x4000_0000, 0x1000_0000, 0x5100_0000, 0x2f00_0000]);
    assert_eq!(prop(&after, "/memory@40000000", "device_type"), Some(&b"memory\0"[..]));
    // fdt's own memory reading agrees.
    let guest = Fdt::new(&out).unwrap();
    let regions: Vec<(usize, Option<usize>)> = guest
        .memory()
        .regions()
        .map(|r| (r.starting_address as usize, r.size))
        .collect();
    assert_eq!(
        regions,
        [(0x4000_0000, Some(0x1000_0000)), (0x5100_0000, Some(0x2f00_0000))]
    );

    // /chosen: hv's bootargs and initrd; QEMU's stdout-path and seeds kept.
    assert_eq!(guest.chosen().bootargs(), Some(BOOTARGS));
    assert_eq!(
        prop(&after, "/chosen", "linux,initrd-start").map(be64),
        Some(INITRD.start)
    );
    assert_eq!(prop(&after, "/chosen", "linux,initrd-end").map(be64), Some(INITRD.end));
    for kept in ["stdout-path", "rng-seed", "kaslr-seed"] {
        let original = prop(&before, "/chosen", kept).unwrap_or_else(|| panic!("QEMU's /chosen has {kept}"));
        assert_eq!(prop(&after, "/chosen", kept), Some(original), "{kept}");
    }

    // Every other node survives, in order, with identical properties (phandles included).
    let others = |list: &[(String, Props)]| -> Vec<(String, Props)> {
        list.iter()
            .filter(|(p, _)| !is_memory(p) && p != "/chosen")
            .cloned()
            .collect()
    };
    let (kept_before, kept_after) = (others(&before), others(&after));
    assert!(kept_before.len() > 50, "QEMU's tree has {} nodes", kept_before.len());
    assert_eq!(kept_before, kept_after);
    assert_eq!(prop(&after, "/psci", "method"), Some(&b"smc\0"[..]));
    assert!(kept_after
        .iter()
        .any(|(_, props)| props.iter().any(|(n, _)| n == "phandle")));
    assert_eq!(check(platform).unwrap().reservations, info.reservations);
}

#[test]
fn guest_dtb_of_the_checked_in_qemu_dtb() {
    assert_guest_of_qemu(&qemu_dtb());
}

#[test]
fn guest_dtb_of_a_fresh_qemu_dump() {
    let dir = std::env::temp_dir().join(format!("hv-guest-dtb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("virt.dtb");
    let run = Command::new("qemu-system-aarch64")
        .args([
            "-M",
            "virt,virtualization=on,gic-version=3",
            "-cpu",
            "max",
            "-m",
            "1G",
            "-nographic",
        ])
        .arg("-machine")
        .arg(format!("dumpdtb={}", file.display()))
        .output();
    match run {
        Ok(out) if out.status.success() => {
            let fresh = std::fs::read(&file).unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            // QEMU pads the blob to 1 MiB: the guest DTB is only as large as it needs to be.
            assert_guest_of_qemu(&fresh);
            assert!(guest_dtb(&fresh, &config()).unwrap().len() < 16 * 1024);
        }
        _ => eprintln!("note: qemu-system-aarch64 not available; only the checked-in DTB was used"),
    }
}

#[test]
fn reservations_memory_nodes_and_missing_chosen() {
    // A platform tree with a reservation block, two memory nodes, a
    // /reserved-memory node, #size-cells = 1 and no /chosen.
    let mut w = vm_fdt::FdtWriter::new_with_mem_reserv(&[
        vm_fdt::FdtReserveEntry::new(0x4000_0000, 0x1_0000).unwrap(),
        vm_fdt::FdtReserveEntry::new(0x7000_0000, 0x2000).unwrap(),
    ])
    .unwrap();
    w.set_boot_cpuid_phys(3);
    let root = w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 1).unwrap();
    for base in [0x4000_0000u64, 0x1_0000_0000] {
        let m = w.begin_node(&format!("memory@{base:x}")).unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property(
            "reg",
            &[base.to_be_bytes().as_slice(), &0x4000_0000u32.to_be_bytes()].concat(),
        )
        .unwrap();
        w.end_node(m).unwrap();
    }
    let rsv = w.begin_node("reserved-memory").unwrap();
    let fw = w.begin_node("firmware@7f000000").unwrap();
    w.property_phandle(0x42).unwrap();
    w.property_null("no-map").unwrap();
    w.end_node(fw).unwrap();
    w.end_node(rsv).unwrap();
    w.end_node(root).unwrap();
    let platform = w.finish().unwrap();

    let ram = [
        MemRange::new(0x4000_0000, 0x4800_0000).unwrap(),
        MemRange::new(0x1_0000_0000, 0x2_4000_0000).unwrap(),
    ];
    let cfg = GuestDtbConfig {
        ram: &ram,
        bootargs: "quiet",
        initrd: None,
        disable: &[],
    };
    let out = guest_dtb(&platform, &cfg).unwrap();
    let info = check(&out).unwrap();
    assert_eq!(info.reservations, [(0x4000_0000, 0x1_0000), (0x7000_0000, 0x2000)]);
    assert_eq!(info.boot_cpuid_phys, 3);
    let after = nodes(&out);
    let paths: Vec<&str> = after.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/",
            "/memory@40000000",
            "/reserved-memory",
            "/reserved-memory/firmware@7f000000",
            "/chosen"
        ]
    );
    // 5 GiB at 4 GiB does not fit one 32-bit size cell: split.
    let reg = prop(&after, "/memory@40000000", "reg").unwrap();
    let entries: Vec<(u64, u32)> = reg
        .chunks(12)
        .map(|c| (be64(&c[..8]), u32::from_be_bytes(c[8..].try_into().unwrap())))
        .collect();
    assert_eq!(
        entries.iter().map(|&(_, s)| s as u64).sum::<u64>(),
        0x800_0000 + 0x1_4000_0000
    );
    assert_eq!(entries[0], (0x4000_0000, 0x800_0000));
    assert_eq!(entries[1], (0x1_0000_0000, 0xffff_f000));
    assert_eq!(
        prop(&after, "/reserved-memory/firmware@7f000000", "phandle"),
        Some(&[0, 0, 0, 0x42][..])
    );
    assert_eq!(prop(&after, "/chosen", "bootargs"), Some(&b"quiet\0"[..]));
    assert_eq!(prop(&after, "/chosen", "linux,initrd-start"), None);
}

/// hv withholds fw-cfg (its DMA bypasses stage-2) and the GICv3 ITS (its
/// tables are written by the GIC model straight to physical memory): their
/// nodes, the ITS nested under the GIC, come out `status = "disabled"`, with
/// every other property and node unchanged.
#[test]
fn withheld_devices_are_disabled() {
    const WITHHELD: [&str; 2] = ["qemu,fw-cfg-mmio", "arm,gic-v3-its"];
    let platform = qemu_dtb();
    let cfg = GuestDtbConfig {
        disable: &WITHHELD,
        ..config()
    };
    let before = nodes(&platform);
    let after = nodes(&guest_dtb(&platform, &cfg).unwrap());
    let disabled = ["/fw-cfg@9020000", "/intc@8000000/its@8080000"];
    for path in disabled {
        assert!(before.iter().any(|(p, _)| p == path), "QEMU's tree has {path}");
        assert_eq!(prop(&before, path, "status"), None, "{path} had no status");
        assert_eq!(prop(&after, path, "status"), Some(&b"disabled\0"[..]), "{path}");
    }
    // Nothing else changed: the same nodes in the same order, and each
    // property of a disabled node but the new status kept as it was.
    assert_eq!(
        before.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        after.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for ((path, props_before), (_, props_after)) in before.iter().zip(&after) {
        if is_memory(path) || path == "/chosen" {
            continue;
        }
        let without_status: Props = props_after.iter().filter(|(n, _)| n != "status").cloned().collect();
        assert_eq!(&without_status, props_before, "{path}");
        assert_eq!(
            props_after.len() - without_status.len(),
            usize::from(disabled.contains(&path.as_str())),
            "{path}"
        );
    }
    // The GIC itself stays enabled: only its ITS child is withheld.
    assert_eq!(prop(&after, "/intc@8000000", "status"), None);

    // A node that already says `status = "okay"` gets "disabled" in its place.
    let mut w = vm_fdt::FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    let dev = w.begin_node("dev@1000").unwrap();
    w.property("compatible", b"vendor,other\0qemu,fw-cfg-mmio\0").unwrap();
    w.property_string("status", "okay").unwrap();
    w.property_u32("x", 7).unwrap();
    w.end_node(dev).unwrap();
    w.end_node(root).unwrap();
    let tree = w.finish().unwrap();
    let out = nodes(&guest_dtb(&tree, &cfg).unwrap());
    let (_, props) = out.iter().find(|(p, _)| p == "/dev@1000").unwrap();
    let names: Vec<&str> = props.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["compatible", "status", "x"]);
    assert_eq!(prop(&out, "/dev@1000", "status"), Some(&b"disabled\0"[..]));
}

#[test]
fn stale_initrd_properties_are_dropped() {
    // hv's own /chosen points at the bundle; the guest must not inherit that.
    let first = guest_dtb(&qemu_dtb(), &config()).unwrap();
    let no_initrd = GuestDtbConfig {
        initrd: None,
        ..config()
    };
    let second = guest_dtb(&first, &no_initrd).unwrap();
    let after = nodes(&second);
    assert_eq!(prop(&after, "/chosen", "linux,initrd-start"), None);
    assert_eq!(prop(&after, "/chosen", "linux,initrd-end"), None);
    assert_eq!(after.len(), nodes(&first).len());
}

#[test]
fn malformed_dtbs_give_clear_errors() {
    let good = qemu_dtb();
    let err = |bytes: &[u8]| guest_dtb(bytes, &config()).unwrap_err();
    let mut bad = good.clone();
    bad[0] = 0;
    assert_eq!(
        err(&bad).to_string(),
        "malformed DTB at byte 0x0: bad magic (expected 0xd00dfeed)"
    );
    assert!(matches!(err(&good[..20]), DtbError::Malformed { offset: 20, .. }));
    assert!(matches!(err(&good[..4000]), DtbError::Malformed { offset: 4, .. }));
    let mut v16 = good.clone();
    v16[20..24].copy_from_slice(&16u32.to_be_bytes());
    assert!(matches!(err(&v16), DtbError::UnsupportedVersion { version: 16, .. }));
    // An FDT_NOP where the root's first property begins.
    let off_struct = u32::from_be_bytes(good[8..12].try_into().unwrap()) as usize;
    let mut nop = good.clone();
    nop[off_struct + 8..off_struct + 12].copy_from_slice(&4u32.to_be_bytes());
    assert_eq!(
        err(&nop),
        DtbError::Malformed {
            offset: off_struct + 8,
            what: "FDT_NOP tokens are not supported"
        }
    );
    // A property whose length runs past the structure block.
    let mut long = good.clone();
    long[off_struct + 12..off_struct + 16].copy_from_slice(&0x10_0000u32.to_be_bytes());
    assert!(err(&long)
        .to_string()
        .contains("property value runs off the structure block"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    /// fdt 0.1.5 panics on some malformed blobs; guest_dtb must not.
    #[test]
    fn mutated_dtbs_never_panic(
        flips in proptest::collection::vec((0usize..7664, any::<u8>()), 1..8),
        words in proptest::collection::vec((0usize..1916, any::<u32>()), 0..3),
        cut in proptest::option::weighted(0.1, 0usize..7664),
    ) {
        let mut b = qemu_dtb();
        for (i, x) in flips {
            b[i] ^= x;
        }
        for (i, v) in words {
            let small = v % 16;
            b[i * 4..i * 4 + 4].copy_from_slice(&(if v & 1 == 0 { small } else { v }).to_be_bytes());
        }
        if let Some(cut) = cut {
            b.truncate(cut);
        }
        if let Ok(out) = guest_dtb(&b, &config()) {
            prop_assert!(check(&out).is_ok());
        }
    }
}

/// Single-byte corruption at every offset of the blob: no panic, and the
/// corruptions that leave a well-formed tree (inside property values) still
/// produce a valid guest DTB — so the fuzzing above reaches the reader and writer.
#[test]
fn every_single_byte_corruption() {
    let good = qemu_dtb();
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..good.len() {
        let mut b = good.clone();
        b[i] ^= 0xff;
        match guest_dtb(&b, &config()) {
            Ok(out) => {
                check(&out).unwrap();
                accepted += 1;
            }
            Err(_) => refused += 1,
        }
    }
    eprintln!("accepted {accepted}, refused {refused}");
    assert!(
        accepted > 2500 && refused > 2500,
        "accepted {accepted}, refused {refused}"
    );
}
