//! The two ACPI facts hv needs about the machine it hands to the guest: where
//! the PM1a control register is (the guest powers off by writing SLP_EN
//! there) and the reset register. Read from the FADT once, at boot, through
//! the boot identity map (the tables are firmware memory below 4 GiB).

use core::fmt;

/// Power-management and reset ports from the FADT.
#[derive(Clone, Copy, Debug)]
pub struct PowerPorts {
    /// PM1a_CNT_BLK (q35 with SeaBIOS: 0x604).
    pub pm1a_control: u16,
    /// The reset register when it is an I/O port (q35: 0xcf9), and the value that resets.
    pub reset: Option<(u16, u8)>,
}

#[derive(Clone, Copy, Debug)]
pub enum AcpiError {
    NoRsdp,
    BadRsdp(u64),
    NoFadt,
    NoMadt,
    BadTable(u64),
    NoPm1aControl,
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::NoRsdp => f.write_str("the loader passed no ACPI RSDP"),
            AcpiError::BadRsdp(a) => write!(f, "no valid RSDP at {a:#x}"),
            AcpiError::NoFadt => f.write_str("no FADT (FACP) in the RSDT/XSDT"),
            AcpiError::NoMadt => f.write_str("no MADT (APIC) in the RSDT/XSDT"),
            AcpiError::BadTable(a) => write!(f, "ACPI table at {a:#x} is outside the low 4 GiB or malformed"),
            AcpiError::NoPm1aControl => f.write_str("the FADT names no PM1a control block"),
        }
    }
}

/// Highest address hv reads ACPI tables from (the boot identity map's end).
const READABLE_END: u64 = 4 << 30;
const HEADER_LEN: u64 = 36;

fn bytes(addr: u64, len: u64) -> Result<&'static [u8], AcpiError> {
    if addr == 0 || addr.checked_add(len).is_none_or(|end| end > READABLE_END) {
        return Err(AcpiError::BadTable(addr));
    }
    // SAFETY: called only while the boot identity map (0..4 GiB) is live;
    // ACPI tables are firmware memory nobody writes while hv boots.
    Ok(unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) })
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from(u32_at(b, off)) | u64::from(u32_at(b, off + 4)) << 32
}

fn checksum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |sum, &x| sum.wrapping_add(x)) == 0
}

/// A whole table (header checked, checksum verified).
fn table(addr: u64) -> Result<&'static [u8], AcpiError> {
    let header = bytes(addr, HEADER_LEN)?;
    let len = u64::from(u32_at(header, 4));
    if !(HEADER_LEN..=1 << 20).contains(&len) {
        return Err(AcpiError::BadTable(addr));
    }
    let all = bytes(addr, len)?;
    if !checksum_ok(all) {
        return Err(AcpiError::BadTable(addr));
    }
    Ok(all)
}

/// The tables the RSDT/XSDT lists.
fn root_tables(rsdp: u64) -> Result<impl Iterator<Item = &'static [u8]>, AcpiError> {
    if rsdp == 0 {
        return Err(AcpiError::NoRsdp);
    }
    let head = bytes(rsdp, 20).map_err(|_| AcpiError::BadRsdp(rsdp))?;
    if &head[..8] != b"RSD PTR " || !checksum_ok(head) {
        return Err(AcpiError::BadRsdp(rsdp));
    }
    let revision = head[15];
    // ACPI 2+: prefer the XSDT (64-bit entries).
    let (root, entry_len) = if revision >= 2 {
        let full = bytes(rsdp, 36).map_err(|_| AcpiError::BadRsdp(rsdp))?;
        match u64_at(full, 24) {
            0 => (u64::from(u32_at(head, 16)), 4),
            xsdt => (xsdt, 8),
        }
    } else {
        (u64::from(u32_at(head, 16)), 4)
    };
    let root_table = table(root)?;
    Ok(root_table[HEADER_LEN as usize..]
        .chunks_exact(entry_len)
        .map(move |e| {
            if entry_len == 8 {
                u64_at(e, 0)
            } else {
                u64::from(u32_at(e, 0))
            }
        })
        .filter_map(|addr| table(addr).ok()))
}

/// CPUs the MADT lists as enabled or online-capable (local APIC and x2APIC entries).
///
/// # Safety
/// Call only while the boot identity map covers the low 4 GiB.
pub unsafe fn cpu_count(rsdp: u64) -> Result<u32, AcpiError> {
    let madt = root_tables(rsdp)?
        .find(|t| &t[..4] == b"APIC")
        .ok_or(AcpiError::NoMadt)?;
    const LOCAL_APIC: u8 = 0;
    const LOCAL_X2APIC: u8 = 9;
    const ENABLED_OR_ONLINE_CAPABLE: u32 = 0b11;
    let mut count = 0;
    let mut at = HEADER_LEN as usize + 8;
    while at + 2 <= madt.len() {
        let (kind, len) = (madt[at], usize::from(madt[at + 1]));
        if len < 2 || at + len > madt.len() {
            break;
        }
        let flags = match (kind, len) {
            (LOCAL_APIC, 8..) => u32_at(madt, at + 4),
            (LOCAL_X2APIC, 16..) => u32_at(madt, at + 8),
            _ => 0,
        };
        if flags & ENABLED_OR_ONLINE_CAPABLE != 0 {
            count += 1;
        }
        at += len;
    }
    Ok(count)
}

/// Finds the FADT from the RSDP and reads the power ports.
///
/// # Safety
/// Call only while the boot identity map covers the low 4 GiB.
pub unsafe fn power_ports(rsdp: u64) -> Result<PowerPorts, AcpiError> {
    let fadt = root_tables(rsdp)?
        .find(|t| &t[..4] == b"FACP")
        .ok_or(AcpiError::NoFadt)?;
    // FADT: PM1a_CNT_BLK (u32) at 64; RESET_REG (a GAS) at 116, RESET_VALUE at 128.
    let pm1a = if fadt.len() >= 68 { u32_at(fadt, 64) } else { 0 };
    let pm1a_control = u16::try_from(pm1a)
        .ok()
        .filter(|&p| p != 0)
        .ok_or(AcpiError::NoPm1aControl)?;
    const GAS_SYSTEM_IO: u8 = 1;
    let reset = (fadt.len() >= 129 && fadt[116] == GAS_SYSTEM_IO)
        .then(|| (u16::try_from(u64_at(fadt, 120)).ok(), fadt[128]))
        .and_then(|(port, value)| Some((port.filter(|&p| p != 0)?, value)));
    Ok(PowerPorts { pm1a_control, reset })
}
