//! The table formats hv runs on, tied to their Linux-format dump and W+X check.

use core::fmt::{self, Write};

use pagewalk::arm64::Stage1;
use pagewalk::x86::X86_64;
use pagewalk::WalkLimits;
use ptdump::{Marker, WxOptions, WxReport};

use crate::selfcheck::{DumpFormat, TableSpan};

/// hv lists every offending range, not only the first as Linux's WARN_ONCE
/// does; hv's own tables are a few dozen, so a generous table budget keeps a
/// corrupted (cyclic or shared) tree finite.
const LIST_ALL: WxOptions = WxOptions {
    list_all: true,
    limits: WalkLimits { max_tables: 1 << 16 },
};

/// Implements [`DumpFormat`] for `$format` with ptdump's module `$module`
/// (its `dump` and its `check_wx_with`, listing every offending range).
macro_rules! dump_format_via_ptdump {
    ($(#[$attr:meta])* $format:ty => $module:ident) => {
        $(#[$attr])*
        impl DumpFormat for $format {
            fn dump(&self, out: &mut dyn Write, span: TableSpan<'_>, markers: &[Marker<'_>]) -> fmt::Result {
                ptdump::$module::dump(out, self, span.mem, span.root, span.range, markers).map(|_| ())
            }
            fn check_wx(&self, out: &mut dyn Write, span: TableSpan<'_>) -> Result<WxReport, fmt::Error> {
                ptdump::$module::check_wx_with(out, self, span.mem, span.root, span.range, &LIST_ALL)
            }
        }
    };
}

dump_format_via_ptdump! {
    /// arm64 stage-1 (hv's EL2 tables): `arch/arm64/mm/ptdump.c` lines.
    Stage1 => arm64
}

dump_format_via_ptdump! {
    /// x86-64 4/5-level (hv's own tables on x86): `arch/x86/mm/dump_pagetables.c` lines.
    X86_64 => x86
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::String;

    use mm::{Arena, TableBuilder};
    use pagewalk::arm64::{Half, Regime};
    use pagewalk::{Access, AddrRange, MapAttrs, MemType};

    use super::*;
    use crate::selfcheck::{run, Expect, Region, Tables};

    const RX: Access = Access::READ.union(Access::EXEC_PRIV);
    const RW: Access = Access::READ.union(Access::WRITE);

    fn el2_tables(wx: bool) -> (Stage1, Arena, u64) {
        let format = Stage1::new(48, Half::Lower, Regime::El2).unwrap();
        let mut arena = Arena::new(0x4100_0000, 32 * 4096);
        let b = TableBuilder::new(&format, &mut arena).unwrap();
        let normal = |a| MapAttrs::new(a, MemType::Normal);
        b.map(&mut arena, 0x4020_0000, 0x4020_0000, 0x3000, &normal(RX))
            .unwrap();
        b.map(&mut arena, 0x4020_3000, 0x4020_3000, 0x1000, &normal(Access::READ))
            .unwrap();
        b.map(
            &mut arena,
            0x0900_0000,
            0x0900_0000,
            0x1000,
            &MapAttrs::new(RW, MemType::Device),
        )
        .unwrap();
        if wx {
            b.map(
                &mut arena,
                0x4020_5000,
                0x4020_5000,
                0x1000,
                &normal(RW.union(Access::EXEC_PRIV)),
            )
            .unwrap();
        }
        let root = b.root().0;
        (format, arena, root)
    }

    fn check(wx: bool) -> (bool, String) {
        let (format, arena, root) = el2_tables(wx);
        let mut regions = std::vec![
            Region::new("hv text", 0x4020_0000, 0x4020_3000, Expect::ReadExec),
            Region::new("hv rodata", 0x4020_3000, 0x4020_4000, Expect::ReadOnly),
            Region::new("PL011", 0x0900_0000, 0x0900_1000, Expect::ReadWrite),
        ];
        if wx {
            regions.push(Region::new(
                "selftest W+X page",
                0x4020_5000,
                0x4020_6000,
                Expect::ReadWrite,
            ));
        }
        let tables = Tables {
            title: "EL2 stage-1",
            format: &format,
            mem: &arena,
            root,
            range: AddrRange::new(0, Some(1 << 48)).unwrap(),
        };
        let mut out = String::new();
        let report = run(&mut out, &tables, &regions).unwrap();
        (report.boot_may_proceed(), out)
    }

    #[test]
    fn el2_dump_in_linux_arm64_format() {
        let (ok, out) = check(false);
        assert!(ok, "{out}");
        let lines: std::vec::Vec<&str> = out.lines().collect();
        let at = |needle: &str| {
            lines
                .iter()
                .position(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("no line starting {needle:?} in\n{out}"))
        };
        let pl011 = at("---[ PL011 ]---");
        let text = at("---[ hv text ]---");
        let rodata = at("---[ hv rodata ]---");
        assert!(pl011 < text && text < rodata);
        assert_eq!(lines[1], "---[ EL2 stage-1 ]---");
        assert!(lines[2].starts_with("0x0000000000000000-0x0000000009000000         144M PMD"));
        let device = lines[pl011 + 1];
        assert!(device.starts_with("0x0000000009000000-0x0000000009001000"), "{device}");
        assert!(
            device.contains(" RW NX ") && device.ends_with("DEVICE/nGnRE"),
            "{device}"
        );
        let code = lines[text + 1];
        assert!(
            code.starts_with("0x0000000040200000-0x0000000040203000          12K PTE"),
            "{code}"
        );
        assert!(code.contains(" ro x ") && code.ends_with("MEM/NORMAL"), "{code}");
        assert!(lines[rodata + 1].contains(" ro NX "), "{}", lines[rodata + 1]);
        assert!(
            out.contains("\nChecked W+X mappings: passed, no W+X pages found\n"),
            "{out}"
        );
    }

    #[test]
    fn el2_wx_page_fails_with_linux_messages() {
        let (ok, out) = check(true);
        assert!(!ok);
        assert!(
            out.contains("Checked W+X mappings: FAILED, 1 W+X pages found, 0 non-UXN pages found"),
            "{out}"
        );
        assert!(out.contains("arm64/mm: Found insecure W+X mapping at address"), "{out}");
        assert!(out.contains("hv: W+X range 0x0000000040205000-0x0000000040206000 4K (selftest W+X page)"));
    }

    #[test]
    fn x86_dump_and_verdict() {
        use pagewalk::x86::X86_64;
        let format = X86_64::four_level();
        let mut arena = Arena::new(0x20_0000, 32 * 4096);
        let b = TableBuilder::new(&format, &mut arena).unwrap();
        b.map(
            &mut arena,
            0x10_0000,
            0x10_0000,
            0x2000,
            &MapAttrs::new(RX, MemType::Normal),
        )
        .unwrap();
        let root = b.root().0;
        let regions = [Region::new("hv text", 0x10_0000, 0x10_2000, Expect::ReadExec)];
        let tables = Tables {
            title: "x86-64",
            format: &format,
            mem: &arena,
            root,
            range: AddrRange::ALL,
        };
        let mut out = String::new();
        let report = run(&mut out, &tables, &regions).unwrap();
        assert!(report.boot_may_proceed(), "{out}");
        assert!(
            out.contains("---[ hv text ]---\n0x0000000000100000-0x0000000000102000           8K     ro"),
            "{out}"
        );
        assert!(
            out.contains("x86/mm: Checked W+X mappings: passed, no W+X pages found."),
            "{out}"
        );
    }
}
