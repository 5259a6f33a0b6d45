//! Every hypercall of docs/hypercalls.md with valid and invalid arguments.

use crate::abi::{self, call, call_raw, expect_status, flags, id, ret, Reply};
use crate::arch;
use crate::console::{check, Msg, Outcome};
use crate::output::{self, area, arm, check_untouched, expect_code, stream, Checksum, Lines, AREA_LEN};
use crate::platform::{Platform, Range, PAGE};
use crate::{bail, ensure};

pub fn run_all(p: &Platform) {
    // Must come first: no RUN_COMMAND has happened yet.
    check("fetch-before-run", fetch_before_run());
    check("smccc-version", smccc_version());
    check("smccc-arch-features", smccc_arch_features());
    check("vendor-hyp-revision", vendor_revision());
    check("hv-version", abi::expect_version(&call(id::HV_VERSION, [0; 4])));
    check("hv-features", hv_features());
    check("unknown-ids", unknown_ids());
    check(arch::ID_WIDTH_CASE, id_width());
    check("console-write", console_write());
    check("console-write-zero-length", console_write_zero());
    check("console-write-max-straddling-pages", console_write_max());
    check("console-write-too-long", console_write_too_long());
    check("console-write-hv-memory", with_hv(p, console_write_hv));
    check("console-write-unmapped", console_write_unmapped(p));
    check("console-write-device-page", console_write_device(p));
    check("run-help", run_help());
    check("run-info", run_info());
    check(
        "run-unknown-command",
        run_refused("frobnicate", "hv: unknown command 'frobnicate' (try 'help')\n"),
    );
    check("run-bad-usage", run_refused("wx", "hv: usage: wx hv|guest\n"));
    check(
        "run-empty-range",
        run_refused(
            "ptdump s2 0x2000 0x1000",
            "hv: empty range: START 0x2000 must be below END 0x1000\n",
        ),
    );
    check("run-command-lengths", run_command_lengths());
    check("run-buffer-lengths", run_buffer_lengths());
    check("run-not-utf8", run_not_utf8());
    check("run-command-bad-address", run_command_bad_address(p));
    check(
        "run-output-bad-address-keeps-previous",
        with_hv(p, run_output_bad_address),
    );
    check(
        "run-output-straddling-guest-and-hv",
        with_hv(p, run_output_straddling_hv),
    );
    check("run-output-straddling-pages", run_output_straddling_pages());
    check("output-larger-than-buffer", output_larger_than_buffer());
    check("fetch-retry-same-offset", fetch_retry());
    check("fetch-offsets-at-and-past-end", fetch_offsets());
    check("fetch-bad-buffers", fetch_bad_buffers(p));
    check("ptdump-s2-chunked", ptdump_s2(p));
    check("ptdump-hv", ptdump_hv());
    check("wx-hv", wx_hv());
    check("audit-s2", audit_s2());
    #[cfg(target_arch = "x86_64")]
    check("efer-lme-toggle-faults", crate::arch::efer_lme_toggle_faults());
}

fn with_hv(p: &Platform, f: fn(&Platform, Range) -> Outcome) -> Outcome {
    match p.hv {
        Some(hv) => f(p, hv),
        None => bail!("the boot information shows no hv region (RAM {})", p.ram),
    }
}

fn fetch_before_run() -> Outcome {
    let buf = area() + 64;
    arm(buf, 64);
    let r = call(id::HV_FETCH_OUTPUT, [0, buf, 64, 0]);
    expect_code(&r, ret::INVALID_PARAMETER)?;
    check_untouched(buf, 64, 0)
}

fn smccc_version() -> Outcome {
    let r = call(id::SMCCC_VERSION, [0; 4]);
    ensure!(
        r.r == [abi::SMCCC_VERSION_1_1, 0, 0, 0],
        "got {r}, want [0x10001, 0, 0, 0]"
    );
    Ok(())
}

fn smccc_arch_features() -> Outcome {
    for f in [id::SMCCC_VERSION, id::SMCCC_ARCH_FEATURES] {
        expect_status(&call(id::SMCCC_ARCH_FEATURES, [u64::from(f), 0, 0, 0]), ret::SUCCESS)
            .map_err(|m| Msg::new(format_args!("ARCH_FEATURES({f:#x}): {m}")))?;
    }
    // SMCCC_ARCH_WORKAROUND_1, hv's own calls, nonsense: not SMCCC arch features.
    for f in [0x8000_8000u64, u64::from(id::HV_VERSION), 0xffff_ffff] {
        expect_status(&call(id::SMCCC_ARCH_FEATURES, [f, 0, 0, 0]), ret::NOT_SUPPORTED)
            .map_err(|m| Msg::new(format_args!("ARCH_FEATURES({f:#x}): {m}")))?;
    }
    Ok(())
}

fn vendor_revision() -> Outcome {
    let r = call(id::VENDOR_HYP_REVISION, [0; 4]);
    ensure!(r.r == [1, 0, 0, 0], "got {r}, want [1, 0, 0, 0]");
    let uid = call(id::VENDOR_HYP_CALL_UID, [u64::MAX; 4]);
    ensure!(
        uid.r == abi::UID,
        "VENDOR_HYP_CALL_UID with garbage arguments got {uid}"
    );
    Ok(())
}

fn hv_features() -> Outcome {
    for f in id::ALL {
        expect_status(&call(id::HV_FEATURES, [u64::from(f), 0, 0, 0]), ret::SUCCESS)
            .map_err(|m| Msg::new(format_args!("FEATURES({f:#x}): {m}")))?;
    }
    let absent = [
        0xC600_0005u64,
        0xC600_00FF,
        0x8000_0002,
        0,
        // A known id with bits above 32: not a function id.
        (1 << 32) | u64::from(id::HV_VERSION),
    ];
    for f in absent {
        expect_status(&call(id::HV_FEATURES, [f, 0, 0, 0]), ret::NOT_SUPPORTED)
            .map_err(|m| Msg::new(format_args!("FEATURES({f:#x}): {m}")))?;
    }
    Ok(())
}

/// Ids hv does not implement, with garbage in every argument register:
/// NOT_SUPPORTED and every other result register zero.
pub const UNKNOWN_IDS: [u32; 16] = [
    0xC600_0005,
    0xC600_0006,
    0xC600_00FF,
    0xC600_FFFF,
    0xC700_0000,
    0x8600_0000,
    0x8600_FF00,
    0x8600_FF02,
    0x8600_FF04,
    0x8000_0002,
    0x8000_8000,
    0x8400_0000,
    0x0000_0000,
    0x0000_0001,
    0x4000_0000,
    0xFFFF_FFFF,
];

fn unknown_ids() -> Outcome {
    for f in UNKNOWN_IDS {
        expect_status(&call(f, [u64::MAX, 0x4141_4141_4141_4141, 1, 2]), ret::NOT_SUPPORTED)
            .map_err(|m| Msg::new(format_args!("id {f:#x}: {m}")))?;
    }
    Ok(())
}

/// arm64: the function id is W0 (SMCCC); x86: RAX, and more than 32 bits is unknown.
fn id_width() -> Outcome {
    let wide = 0xFFFF_FFFF_0000_0000 | u64::from(id::HV_VERSION);
    let r = call_raw(wide, [0; 4]);
    if arch::ID_IS_W0 {
        abi::expect_version(&r).map_err(|m| Msg::new(format_args!("id {wide:#x} (W0 = HV_VERSION): {m}")))
    } else {
        expect_status(&r, ret::NOT_SUPPORTED).map_err(|m| Msg::new(format_args!("id {wide:#x}: {m}")))?;
        expect_status(&call_raw(1 << 32, [0; 4]), ret::NOT_SUPPORTED)
    }
}

fn console_write_text(text: &[u8]) -> Reply {
    let at = area() + 64;
    output::put(at, text);
    call(id::HV_CONSOLE_WRITE, [at, text.len() as u64, 0, 0])
}

fn console_write() -> Outcome {
    for text in [
        &b"tg-console: hello from the test guest\n"[..],
        // hv's log shows control characters as '?': tg-console: sanitized[a?b?c]
        &b"tg-console: sanitized[a\x1bb\x07c]\n"[..],
    ] {
        let r = console_write_text(text);
        ensure!(
            r.r == [0, text.len() as u64, 0, 0],
            "got {r}, want [SUCCESS, {:#x}, 0, 0]",
            text.len()
        );
    }
    Ok(())
}

fn console_write_zero() -> Outcome {
    let r = call(id::HV_CONSOLE_WRITE, [area(), 0, 0, 0]);
    ensure!(r.r == [0, 0, 0, 0], "got {r}, want [SUCCESS, 0, 0, 0]");
    Ok(())
}

/// 4096 bytes starting 1000 bytes before a page boundary: both pages are
/// guest RAM, so the whole text must be taken.
fn console_write_max() -> Outcome {
    let at = area() + PAGE - 1000;
    let mut line = [b'.'; 64];
    line[..32].copy_from_slice(b"tg-console: 4096 bytes, line    ");
    line[63] = b'\n';
    for i in 0..64u64 {
        line[30] = b'0' + (i / 10) as u8;
        line[31] = b'0' + (i % 10) as u8;
        output::put(at + i * 64, &line);
    }
    let r = call(id::HV_CONSOLE_WRITE, [at, 4096, 0, 0]);
    ensure!(r.r == [0, 4096, 0, 0], "got {r}, want [SUCCESS, 0x1000, 0, 0]");
    Ok(())
}

fn console_write_too_long() -> Outcome {
    for len in [abi::MAX_CONSOLE_WRITE + 1, 1 << 32, u64::MAX] {
        expect_status(&call(id::HV_CONSOLE_WRITE, [area(), len, 0, 0]), ret::INVALID_PARAMETER)
            .map_err(|m| Msg::new(format_args!("len {len:#x}: {m}")))?;
    }
    Ok(())
}

fn console_write_hv(p: &Platform, hv: Range) -> Outcome {
    let mut cases = [
        (hv.start, 16u64),
        (hv.end - 8, 8),
        (hv.start + hv.len() / 2, 4096),
        (0, 0),
    ];
    // Starting in guest RAM and running into hv: refused whole.
    if p.in_ram(hv.start - 8, 8) {
        cases[3] = (hv.start - 8, 16);
    }
    for (gpa, len) in cases.into_iter().filter(|c| c.1 != 0) {
        expect_status(&call(id::HV_CONSOLE_WRITE, [gpa, len, 0, 0]), ret::BAD_ADDRESS)
            .map_err(|m| Msg::new(format_args!("gpa {gpa:#x} len {len:#x}: {m}")))?;
    }
    Ok(())
}

fn console_write_unmapped(p: &Platform) -> Outcome {
    for (gpa, len) in [
        (p.unmapped, 16u64),
        (p.beyond_ram, 16),
        (u64::MAX - 7, 16), // wraps past 2^64
        (u64::MAX, 1),
        (0xffff_ffff_ffff_f000, 8),
    ] {
        expect_status(&call(id::HV_CONSOLE_WRITE, [gpa, len, 0, 0]), ret::BAD_ADDRESS)
            .map_err(|m| Msg::new(format_args!("gpa {gpa:#x} len {len:#x}: {m}")))?;
    }
    Ok(())
}

/// hv must not read device registers on the guest's behalf (a PL011 read pops its FIFO).
fn console_write_device(p: &Platform) -> Outcome {
    expect_status(&call(id::HV_CONSOLE_WRITE, [p.device_page, 8, 0, 0]), ret::BAD_ADDRESS)
        .map_err(|m| Msg::new(format_args!("device page {:#x}: {m}", p.device_page)))
}

pub const HELP_FIRST_LINE: &str = "hv console commands:";

fn run_help() -> Outcome {
    let (text, r) = output::run_small("help")?;
    ensure!(r.flags() == 0, "flags {:#x}, want 0: {r}", r.flags());
    let text = core::str::from_utf8(text).map_err(|_| Msg::new(format_args!("help output is not UTF-8")))?;
    ensure!(
        text.starts_with(HELP_FIRST_LINE),
        "help output starts {:?}",
        &text[..text.len().min(40)]
    );
    for needle in ["ptdump hv|s2|guest [START END]", "wx hv|guest", "audit s2"] {
        ensure!(text.contains(needle), "help output lacks {needle:?}");
    }
    Ok(())
}

fn run_info() -> Outcome {
    let (text, r) = output::run_small("info")?;
    ensure!(r.flags() == 0, "flags {:#x}, want 0: {r}", r.flags());
    let text = core::str::from_utf8(text).map_err(|_| Msg::new(format_args!("info output is not UTF-8")))?;
    let first = text.lines().next().unwrap_or("");
    ensure!(
        first.starts_with("hv ") && first.contains(arch::NAME),
        "first info line {first:?} lacks 'hv ' and {:?}",
        arch::NAME
    );
    Ok(())
}

fn run_refused(cmd: &str, want: &str) -> Outcome {
    let (text, r) = output::run_small(cmd)?;
    ensure!(
        r.flags() == flags::FAILED,
        "'{cmd}': flags {:#x}, want FAILED only: {r}",
        r.flags()
    );
    ensure!(
        text == want.as_bytes(),
        "'{cmd}': output {:?}, want {want:?}",
        core::str::from_utf8(text).unwrap_or("<not UTF-8>")
    );
    Ok(())
}

fn run_command_lengths() -> Outcome {
    let buf = area() + 64;
    let cmd = output::command(b"help");
    for len in [0u64, abi::MAX_COMMAND + 1, 1 << 32, u64::MAX] {
        arm(buf, 256);
        expect_status(&call(id::HV_RUN_COMMAND, [cmd, len, buf, 256]), ret::INVALID_PARAMETER)
            .map_err(|m| Msg::new(format_args!("command length {len:#x}: {m}")))?;
        check_untouched(buf, 256, 0)?;
    }
    // Exactly 256 bytes: "help" and 252 blanks.
    let mut long = [b' '; 256];
    long[..4].copy_from_slice(b"help");
    let cmd = output::command(&long);
    arm(buf, 4096);
    let r = call(id::HV_RUN_COMMAND, [cmd, 256, buf, 4096]);
    abi::expect_output_reply(&r, 4096).map_err(|m| Msg::new(format_args!("256-byte command: {m}")))?;
    check_untouched(buf, 4096, r.written())?;
    ensure!(
        output::bytes(buf, r.written()).starts_with(HELP_FIRST_LINE.as_bytes()),
        "256-byte 'help' did not print the help"
    );
    Ok(())
}

fn run_buffer_lengths() -> Outcome {
    let buf = area() + 64;
    let cmd = output::command(b"help");
    for len in [0u64, abi::MAX_OUTPUT_BUFFER + 1, 1 << 32, u64::MAX] {
        arm(buf, 256);
        expect_status(&call(id::HV_RUN_COMMAND, [cmd, 4, buf, len]), ret::INVALID_PARAMETER)
            .map_err(|m| Msg::new(format_args!("buffer length {len:#x}: {m}")))?;
        check_untouched(buf, 256, 0)?;
    }
    Ok(())
}

fn run_not_utf8() -> Outcome {
    let buf = area() + 64;
    let cmd = output::command(b"he\xff\xfelp");
    arm(buf, 256);
    expect_status(&call(id::HV_RUN_COMMAND, [cmd, 6, buf, 256]), ret::INVALID_PARAMETER)?;
    check_untouched(buf, 256, 0)
}

fn run_command_bad_address(p: &Platform) -> Outcome {
    let buf = area() + 64;
    let mut gpas = [p.unmapped, p.beyond_ram, u64::MAX - 1, p.device_page, 0];
    if let Some(hv) = p.hv {
        gpas[4] = hv.start;
    } else {
        bail!("the boot information shows no hv region");
    }
    for gpa in gpas {
        arm(buf, 256);
        expect_status(&call(id::HV_RUN_COMMAND, [gpa, 4, buf, 256]), ret::BAD_ADDRESS)
            .map_err(|m| Msg::new(format_args!("command at {gpa:#x}: {m}")))?;
        check_untouched(buf, 256, 0)?;
    }
    Ok(())
}

/// A refused output buffer must not discard the previous command's output.
fn run_output_bad_address(p: &Platform, hv: Range) -> Outcome {
    let (help, _) = output::run_small("help")?;
    let mut want = Checksum::new();
    want.feed(help);
    let cmd = output::command(b"info");
    for (gpa, len) in [
        (hv.start, 4096u64),
        (hv.end - 16, 16),
        (p.unmapped, 64),
        (p.beyond_ram, 64),
        (u64::MAX - 15, 32),
        (p.device_page, 8),
    ] {
        expect_status(&call(id::HV_RUN_COMMAND, [cmd, 4, gpa, len]), ret::BAD_ADDRESS)
            .map_err(|m| Msg::new(format_args!("output at {gpa:#x} len {len:#x}: {m}")))?;
    }
    let buf = area() + 64;
    arm(buf, 4096);
    let r = call(id::HV_FETCH_OUTPUT, [0, buf, 4096, 0]);
    abi::expect_output_reply(&r, 4096)?;
    let mut got = Checksum::new();
    got.feed(output::bytes(buf, r.written()));
    ensure!(
        got == want && r.flags() & flags::MORE == 0,
        "after the refused calls FETCH(0) returned {} bytes that are not the help output ({} bytes): {r}",
        got.len,
        want.len
    );
    Ok(())
}

/// An output buffer that starts in guest RAM and ends in hv's region is
/// refused whole: not one byte lands in the guest part either.
fn run_output_straddling_hv(p: &Platform, hv: Range) -> Outcome {
    let gpa = hv.start - 64;
    if !p.in_ram(gpa, 64) || p.image.overlaps(&Range::new(gpa, hv.start)) || p.boot_data_overlaps(gpa, 64) {
        bail!("no free guest RAM right below hv's region {hv} to test with");
    }
    arch::raw_fill(gpa, 64, output::GUARD);
    let cmd = output::command(b"help");
    expect_status(&call(id::HV_RUN_COMMAND, [cmd, 4, gpa, 128]), ret::BAD_ADDRESS)?;
    if let Some(i) = arch::raw_first_changed(gpa, 64, output::GUARD) {
        bail!("guest byte at {i:#x} below hv's region was written by a refused call");
    }
    Ok(())
}

fn run_output_straddling_pages() -> Outcome {
    let (help, _) = output::run_small("help")?;
    let mut want = [0u8; 300];
    ensure!(help.len() > 300, "help output has only {} bytes", help.len());
    want.copy_from_slice(&help[..300]);
    let buf = area() + 3 * PAGE - 100;
    arm(buf, 300);
    let cmd = output::command(b"help");
    let r = call(id::HV_RUN_COMMAND, [cmd, 4, buf, 300]);
    abi::expect_output_reply(&r, 300)?;
    ensure!(
        r.written() == 300 && r.flags() & flags::MORE != 0,
        "got {r}, want 300 bytes written and MORE"
    );
    check_untouched(buf, 300, 300)?;
    ensure!(
        output::bytes(buf, 300) == want,
        "the 300 bytes across the page boundary differ from the help text"
    );
    Ok(())
}

fn output_larger_than_buffer() -> Outcome {
    let (help, _) = output::run_small("help")?;
    let mut want = Checksum::new();
    want.feed(help);
    let total = help.len() as u64;
    let buf = area() + 64;
    let cmd = output::command(b"help");
    arm(buf, 16);
    let r = call(id::HV_RUN_COMMAND, [cmd, 4, buf, 16]);
    abi::expect_output_reply(&r, 16)?;
    check_untouched(buf, 16, r.written())?;
    ensure!(
        r.written() == 16 && r.remaining() == total - 16 && r.flags() == flags::MORE,
        "got {r}, want [SUCCESS, 0x10, {:#x}, MORE]",
        total - 16
    );
    let mut got = Checksum::new();
    got.feed(output::bytes(buf, 16));
    let mut offset = 16;
    // Odd chunks: 7 bytes at a time.
    while offset < total {
        arm(buf, 7);
        let r = call(id::HV_FETCH_OUTPUT, [offset, buf, 7, 0]);
        abi::expect_output_reply(&r, 7)?;
        check_untouched(buf, 7, r.written())?;
        ensure!(
            r.written() > 0,
            "FETCH at {offset:#x} of a finished output wrote nothing: {r}"
        );
        got.feed(output::bytes(buf, r.written()));
        offset += r.written();
        let more = r.flags() & flags::MORE != 0;
        ensure!(
            more == (offset < total),
            "MORE is {more} at offset {offset:#x} of {total:#x}: {r}"
        );
    }
    ensure!(
        got == want,
        "reassembled {} bytes differ from the one-piece output ({} bytes)",
        got.len,
        want.len
    );
    Ok(())
}

fn fetch_retry() -> Outcome {
    output::run_small("help")?;
    let buf = area() + 64;
    let mut first = [0u8; 20];
    for round in 0..2 {
        arm(buf, 20);
        let r = call(id::HV_FETCH_OUTPUT, [10, buf, 20, 0]);
        abi::expect_output_reply(&r, 20)?;
        ensure!(r.written() == 20, "round {round}: {r}");
        if round == 0 {
            first.copy_from_slice(output::bytes(buf, 20));
        } else {
            ensure!(
                output::bytes(buf, 20) == first,
                "the same offset returned different bytes"
            );
        }
    }
    Ok(())
}

fn fetch_offsets() -> Outcome {
    let (help, _) = output::run_small("help")?;
    let total = help.len() as u64;
    let buf = area() + 64;
    arm(buf, 64);
    let r = call(id::HV_FETCH_OUTPUT, [total, buf, 64, 0]);
    ensure!(
        r.r == [0, 0, 0, 0],
        "FETCH at the end ({total:#x}) got {r}, want [SUCCESS, 0, 0, 0]"
    );
    check_untouched(buf, 64, 0)?;
    for offset in [total + 1, 1 << 40, u64::MAX] {
        arm(buf, 64);
        expect_status(&call(id::HV_FETCH_OUTPUT, [offset, buf, 64, 0]), ret::INVALID_PARAMETER)
            .map_err(|m| Msg::new(format_args!("offset {offset:#x}: {m}")))?;
        check_untouched(buf, 64, 0)?;
    }
    Ok(())
}

fn fetch_bad_buffers(p: &Platform) -> Outcome {
    output::run_small("help")?;
    for len in [0u64, abi::MAX_OUTPUT_BUFFER + 1, u64::MAX] {
        expect_status(&call(id::HV_FETCH_OUTPUT, [0, area(), len, 0]), ret::INVALID_PARAMETER)
            .map_err(|m| Msg::new(format_args!("len {len:#x}: {m}")))?;
    }
    let Some(hv) = p.hv else {
        bail!("the boot information shows no hv region");
    };
    for gpa in [
        hv.start,
        hv.end - 8,
        p.unmapped,
        p.beyond_ram,
        u64::MAX - 3,
        p.device_page,
    ] {
        expect_status(&call(id::HV_FETCH_OUTPUT, [0, gpa, 8, 0]), ret::BAD_ADDRESS)
            .map_err(|m| Msg::new(format_args!("buffer at {gpa:#x}: {m}")))?;
    }
    Ok(())
}

/// What the stage-2 dump must show, checked line by line.
struct S2Check {
    lines: u64,
    first: [u8; 64],
    first_len: usize,
    prev_end: u128,
    image_mapped: bool,
    error: Option<Msg>,
}

fn ptdump_s2(p: &Platform) -> Outcome {
    let hv = p.hv;
    let image = p.image.start;
    let mut c = S2Check {
        lines: 0,
        first: [0; 64],
        first_len: 0,
        prev_end: 0,
        image_mapped: false,
        error: None,
    };
    let mut sink_a = Lines::new(|line: &str| {
        if c.lines == 0 {
            c.first_len = line.len().min(64);
            c.first[..c.first_len].copy_from_slice(&line.as_bytes()[..c.first_len]);
        }
        c.lines += 1;
        let Some(d) = output::parse_dump_line(line) else {
            return;
        };
        if c.error.is_none() && u128::from(d.start) < c.prev_end {
            c.error = Some(Msg::new(format_args!(
                "line {line:?} overlaps the previous line (lost or repeated bytes?)"
            )));
        }
        c.prev_end = d.end;
        if d.covers(image) && !d.is_hole() && !d.is_bad() {
            c.image_mapped = true;
        }
        if let Some(hv) = hv {
            let overlaps = u128::from(d.start) < u128::from(hv.end) && u128::from(hv.start) < d.end;
            if overlaps && !d.is_hole() && c.error.is_none() {
                c.error = Some(Msg::new(format_args!(
                    "hv's region {hv} is mapped for the guest: {line:?}"
                )));
            }
        }
    });
    let a = stream("ptdump s2", 512, 512, &mut |b| sink_a.feed(b))?;
    sink_a.finish();
    // The same dump again with other chunk sizes: same length, same bytes.
    let b = stream("ptdump s2", 4093, 1000, &mut |_| {})?;
    ensure!(
        a.sum == b.sum,
        "two fetch sequences differ: {} bytes / {:#x} with 512-byte pieces, {} bytes / {:#x} with 4093+1000",
        a.sum.len,
        a.sum.hash,
        b.sum.len,
        b.sum.hash
    );
    ensure!(
        a.flags == 0,
        "'ptdump s2' ended with flags {:#x} (FAILED/TRUNCATED)",
        a.flags
    );
    if let Some(e) = c.error {
        return Err(e);
    }
    let first = core::str::from_utf8(&c.first[..c.first_len]).unwrap_or("");
    ensure!(
        first.starts_with("---[ ") && first.ends_with(" ]---"),
        "first line {first:?} is no ---[ title ]---"
    );
    ensure!(c.image_mapped, "no dump line maps this guest's image at {image:#x}");
    ensure!(
        a.calls > 2,
        "a {}-byte dump came in {} calls with 512-byte buffers",
        a.sum.len,
        a.calls
    );
    Ok(())
}

fn ptdump_hv() -> Outcome {
    let mut lines = 0u64;
    let s = stream("ptdump hv", 4096, 4096, &mut |b| {
        lines += b.iter().filter(|&&c| c == b'\n').count() as u64;
    })?;
    ensure!(s.flags == 0, "'ptdump hv' ended with flags {:#x}", s.flags);
    ensure!(lines > 3, "'ptdump hv' printed {lines} lines");
    Ok(())
}

fn wx_hv() -> Outcome {
    let mut verdict = false;
    let mut lines = Lines::new(|l: &str| verdict |= l.contains(arch::WX_PASSED));
    let s = stream("wx hv", 4096, 4096, &mut |b| lines.feed(b))?;
    lines.finish();
    ensure!(s.flags == 0, "'wx hv' ended with flags {:#x}", s.flags);
    ensure!(verdict, "no {:?} line", arch::WX_PASSED);
    Ok(())
}

fn audit_s2() -> Outcome {
    let s = stream("audit s2", 4096, 4096, &mut |_| {})?;
    ensure!(
        s.flags == 0,
        "'audit s2' ended with flags {:#x} (a violation?)",
        s.flags
    );
    Ok(())
}

/// Used by the length sanity of the output area.
const _: () = assert!(AREA_LEN >= 4 * PAGE);
