//! AMD SVM: feature detection, turning SVM on (EFER.SVME, the host save
//! area), the VMCB with its permission maps, and the world switch.
//!
//! QEMU TCG offers SVM with nested paging but no NRIP save, no decode
//! assists, no VMCB clean bits and no flush-by-ASID: hv computes every next
//! RIP itself and rewrites the whole VMCB state it owns before each VMRUN.

use core::arch::global_asm;
use core::fmt;

use x86::cpuid::CpuId;
use x86::msr::{rdmsr, wrmsr, IA32_EFER};

pub const EFER_SVME: u64 = 1 << 12;
pub const MSR_EFER: u32 = IA32_EFER;
pub const MSR_VM_CR: u32 = 0xc001_0114;
pub const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
/// VM_CR.SVMDIS: firmware turned SVM off (and VM_CR.LOCK keeps it off).
pub const VM_CR_SVMDIS: u64 = 1 << 4;
pub const VM_CR_LOCK: u64 = 1 << 3;

/// What CPUID 0x8000_000A says (hv needs SVM and NPT; the rest is reported).
#[derive(Clone, Copy, Debug)]
pub struct SvmCaps {
    pub asids: u32,
    pub nrip_save: bool,
    pub decode_assists: bool,
    pub clean_bits: bool,
    pub flush_by_asid: bool,
    /// 1 GiB pages (CPUID 0x8000_0001 EDX[26]): usable as NPT and guest-table leaves.
    pub gib_pages: bool,
}

/// Why hv cannot run a guest on this CPU.
#[derive(Clone, Copy, Debug)]
pub enum SvmError {
    /// CPUID 0x8000_0001 ECX[2] is clear: no AMD-V (an Intel CPU, or SVM not exposed).
    NoSvm,
    /// CPUID 0x8000_000A EDX[0] is clear: no nested paging.
    NoNpt,
    /// VM_CR.SVMDIS is set: the firmware disabled SVM.
    DisabledByFirmware { locked: bool },
}

impl fmt::Display for SvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SvmError::NoSvm => f.write_str(
                "this CPU has no AMD SVM (CPUID 0x80000001 ECX[2] clear): hv needs SVM to run a guest \
                 (QEMU: use an AMD model such as -cpu max or -cpu EPYC)",
            ),
            SvmError::NoNpt => f.write_str(
                "this CPU has SVM but no nested paging (CPUID 0x8000000A EDX[0] clear): hv isolates guests with NPT only",
            ),
            SvmError::DisabledByFirmware { locked } => write!(
                f,
                "SVM is disabled by firmware (VM_CR.SVMDIS set{})",
                if *locked { ", VM_CR locked" } else { "" }
            ),
        }
    }
}

/// Checks that the CPU can run hv's guests: SVM, enabled, with nested paging.
pub fn detect() -> Result<SvmCaps, SvmError> {
    let cpuid = CpuId::new();
    let ext = cpuid.get_extended_processor_and_feature_identifiers();
    if !ext.as_ref().is_some_and(|e| e.has_svm()) {
        return Err(SvmError::NoSvm);
    }
    let svm = cpuid.get_svm_info().ok_or(SvmError::NoSvm)?;
    if !svm.has_nested_paging() {
        return Err(SvmError::NoNpt);
    }
    // SAFETY: VM_CR exists on every CPU that reports SVM; reading it has no side effects.
    let vm_cr = unsafe { rdmsr(MSR_VM_CR) };
    if vm_cr & VM_CR_SVMDIS != 0 {
        return Err(SvmError::DisabledByFirmware {
            locked: vm_cr & VM_CR_LOCK != 0,
        });
    }
    Ok(SvmCaps {
        asids: svm.supported_asids(),
        nrip_save: svm.has_nrip(),
        decode_assists: svm.has_decode_assists(),
        clean_bits: svm.has_vmcb_clean_bits(),
        flush_by_asid: svm.has_flush_by_asid(),
        gib_pages: ext.is_some_and(|e| e.has_1gib_pages()),
    })
}

/// Turns SVM on: EFER.SVME and the host save area, with GIF cleared so
/// nothing interrupts hv between world switches (VMRUN sets GIF for the guest).
///
/// # Safety
/// `hsave_pa` must be a 4 KiB page hv owns and never hands to a guest.
pub unsafe fn enable(hsave_pa: u64) {
    // SAFETY: `detect` found SVM enabled; SVME only makes the SVM
    // instructions legal. The host save area is hv's own page (caller).
    unsafe {
        wrmsr(IA32_EFER, rdmsr(IA32_EFER) | EFER_SVME);
        wrmsr(MSR_VM_HSAVE_PA, hsave_pa);
        core::arch::asm!("clgi", options(nomem, nostack));
    }
}

// ---- VMCB layout (AMD APM vol. 2, appendix B) --------------------------------

/// Control area offsets.
pub mod ctl {
    pub const INTERCEPT_MISC1: usize = 0x00c;
    pub const INTERCEPT_MISC2: usize = 0x010;
    pub const IOPM_BASE_PA: usize = 0x040;
    pub const MSRPM_BASE_PA: usize = 0x048;
    pub const TSC_OFFSET: usize = 0x050;
    pub const GUEST_ASID: usize = 0x058;
    pub const TLB_CONTROL: usize = 0x05c;
    pub const VINTR: usize = 0x060;
    pub const EXIT_CODE: usize = 0x070;
    pub const EXIT_INFO1: usize = 0x078;
    pub const EXIT_INFO2: usize = 0x080;
    pub const EXIT_INT_INFO: usize = 0x088;
    pub const NP_ENABLE: usize = 0x090;
    pub const EVENT_INJ: usize = 0x0a8;
    pub const N_CR3: usize = 0x0b0;
    pub const CLEAN_BITS: usize = 0x0c0;
}

/// State save area offsets.
pub mod save {
    pub const ES: usize = 0x400;
    pub const CS: usize = 0x410;
    pub const SS: usize = 0x420;
    pub const DS: usize = 0x430;
    pub const FS: usize = 0x440;
    pub const GS: usize = 0x450;
    pub const GDTR: usize = 0x460;
    pub const LDTR: usize = 0x470;
    pub const IDTR: usize = 0x480;
    pub const TR: usize = 0x490;
    pub const CPL: usize = 0x4cb;
    pub const EFER: usize = 0x4d0;
    pub const CR4: usize = 0x548;
    pub const CR3: usize = 0x550;
    pub const CR0: usize = 0x558;
    pub const DR7: usize = 0x560;
    pub const DR6: usize = 0x568;
    pub const RFLAGS: usize = 0x570;
    pub const RIP: usize = 0x578;
    pub const RSP: usize = 0x5d8;
    pub const RAX: usize = 0x5f8;
    pub const CR2: usize = 0x640;
    pub const G_PAT: usize = 0x668;
}

/// MISC1 intercept bits.
pub mod misc1 {
    pub const CPUID: u32 = 1 << 18;
    pub const INVLPGA: u32 = 1 << 26;
    pub const IOIO_PROT: u32 = 1 << 27;
    pub const MSR_PROT: u32 = 1 << 28;
    pub const SHUTDOWN: u32 = 1 << 31;
}

/// MISC2 intercept bits.
pub mod misc2 {
    pub const VMRUN: u32 = 1 << 0;
    pub const VMMCALL: u32 = 1 << 1;
    pub const VMLOAD: u32 = 1 << 2;
    pub const VMSAVE: u32 = 1 << 3;
    pub const STGI: u32 = 1 << 4;
    pub const CLGI: u32 = 1 << 5;
    pub const SKINIT: u32 = 1 << 6;
}

/// Exit codes hv handles.
pub mod exit {
    pub const CPUID: u64 = 0x72;
    pub const INVLPGA: u64 = 0x7a;
    pub const IOIO: u64 = 0x7b;
    pub const MSR: u64 = 0x7c;
    pub const SHUTDOWN: u64 = 0x7f;
    pub const VMRUN: u64 = 0x80;
    pub const VMMCALL: u64 = 0x81;
    pub const VMLOAD: u64 = 0x82;
    pub const VMSAVE: u64 = 0x83;
    pub const STGI: u64 = 0x84;
    pub const CLGI: u64 = 0x85;
    pub const SKINIT: u64 = 0x86;
    pub const NPF: u64 = 0x400;
    /// VMRUN refused the VMCB (a consistency check failed).
    pub const INVALID: u64 = u64::MAX;
}

/// A segment register as the VMCB holds it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Segment {
    pub selector: u16,
    /// Descriptor bits 40-47 and 52-55 packed into 12 bits (type, S, DPL, P, AVL, L, D/B, G).
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

/// A VMCB page, reached at VA == PA (hv maps its SVM pages RW).
pub struct Vmcb {
    pa: u64,
}

impl Vmcb {
    /// # Safety
    /// `pa` must be a 4 KiB page hv owns, mapped RW at VA == PA, used as a VMCB only.
    pub const unsafe fn new(pa: u64) -> Vmcb {
        Vmcb { pa }
    }

    pub fn pa(&self) -> u64 {
        self.pa
    }

    fn ptr<T>(&self, offset: usize) -> *mut T {
        assert!(offset + size_of::<T>() <= 4096 && offset.is_multiple_of(size_of::<T>()));
        (self.pa as usize + offset) as *mut T
    }

    pub fn clear(&mut self) {
        for offset in (0..4096).step_by(8) {
            self.write64(offset, 0);
        }
    }

    pub fn read64(&self, offset: usize) -> u64 {
        // SAFETY: `new`'s contract: the page is hv's and mapped; `ptr` keeps the access inside it, aligned.
        unsafe { self.ptr::<u64>(offset).read_volatile() }
    }
    pub fn write64(&mut self, offset: usize, value: u64) {
        // SAFETY: as in `read64`.
        unsafe { self.ptr::<u64>(offset).write_volatile(value) }
    }
    pub fn write32(&mut self, offset: usize, value: u32) {
        // SAFETY: as in `read64`.
        unsafe { self.ptr::<u32>(offset).write_volatile(value) }
    }
    pub fn read8(&self, offset: usize) -> u8 {
        // SAFETY: as in `read64`.
        unsafe { self.ptr::<u8>(offset).read_volatile() }
    }
    pub fn write8(&mut self, offset: usize, value: u8) {
        // SAFETY: as in `read64`.
        unsafe { self.ptr::<u8>(offset).write_volatile(value) }
    }

    pub fn segment(&self, offset: usize) -> Segment {
        let low = self.read64(offset);
        Segment {
            selector: low as u16,
            attrib: (low >> 16) as u16,
            limit: (low >> 32) as u32,
            base: self.read64(offset + 8),
        }
    }
    pub fn set_segment(&mut self, offset: usize, s: Segment) {
        let low = u64::from(s.selector) | u64::from(s.attrib) << 16 | u64::from(s.limit) << 32;
        self.write64(offset, low);
        self.write64(offset + 8, s.base);
    }

    pub fn rip(&self) -> u64 {
        self.read64(save::RIP)
    }
    pub fn set_rip(&mut self, rip: u64) {
        self.write64(save::RIP, rip)
    }
    pub fn rax(&self) -> u64 {
        self.read64(save::RAX)
    }
    pub fn set_rax(&mut self, rax: u64) {
        self.write64(save::RAX, rax)
    }
    pub fn cpl(&self) -> u8 {
        self.read8(save::CPL)
    }
    pub fn exit_code(&self) -> u64 {
        self.read64(ctl::EXIT_CODE)
    }
    pub fn exit_info1(&self) -> u64 {
        self.read64(ctl::EXIT_INFO1)
    }
    pub fn exit_info2(&self) -> u64 {
        self.read64(ctl::EXIT_INFO2)
    }

    /// Queues an exception for delivery at the next VMRUN.
    pub fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
        const TYPE_EXCEPTION: u64 = 3 << 8;
        const ERROR_VALID: u64 = 1 << 11;
        const VALID: u64 = 1 << 31;
        let mut event = u64::from(vector) | TYPE_EXCEPTION | VALID;
        if let Some(code) = error_code {
            event |= ERROR_VALID | u64::from(code) << 32;
        }
        self.write64(ctl::EVENT_INJ, event);
    }
}

/// Sets the intercept bit of `port` in an I/O permission map (12 KiB, one bit per port).
///
/// # Safety
/// `iopm_pa` must be hv's 12 KiB IOPM, mapped RW at VA == PA.
pub unsafe fn iopm_intercept(iopm_pa: u64, port: u16) {
    let byte = (iopm_pa + u64::from(port / 8)) as *mut u8;
    // SAFETY: the caller's map is 12 KiB; port / 8 < 8 KiB.
    unsafe { byte.write_volatile(byte.read_volatile() | 1 << (port % 8)) };
}

/// Sets the read and write intercept bits of `msr` in an MSR permission map
/// (8 KiB: two bits per MSR for 0-0x1FFF, 0xC000_0000-0xC000_1FFF, 0xC001_0000-0xC001_1FFF).
/// Returns false for an MSR outside those ranges (its accesses always exit).
///
/// # Safety
/// `msrpm_pa` must be hv's 8 KiB MSRPM, mapped RW at VA == PA.
pub unsafe fn msrpm_intercept(msrpm_pa: u64, msr: u32) -> bool {
    let (base, block) = match msr {
        0..=0x1fff => (0, 0),
        0xc000_0000..=0xc000_1fff => (0xc000_0000, 0x800),
        0xc001_0000..=0xc001_1fff => (0xc001_0000, 0x1000),
        _ => return false,
    };
    let bit = u64::from(msr - base) * 2;
    let byte = (msrpm_pa + block + bit / 8) as *mut u8;
    // SAFETY: the caller's map is 8 KiB; block + bit / 8 < 0x1800.
    unsafe { byte.write_volatile(byte.read_volatile() | 0b11 << (bit % 8)) };
    true
}

/// The guest's general registers VMRUN does not switch (RAX and RSP live in the VMCB).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestRegs {
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

// hv_svm_run(guest_vmcb_pa, regs, host_vmcb_pa): one world switch.
// VMSAVE/VMLOAD move the state VMRUN leaves alone (FS, GS, TR, LDTR and
// their hidden parts, KernelGSBase, STAR/LSTAR/CSTAR/SFMASK, SYSENTER_*):
// hv's into the host VMCB, the guest's from and back to the guest VMCB.
// hv's TR (its double-fault stack) comes back with the final VMLOAD.
global_asm!(
    r#"
    .section .text.hv_svm, "ax"
    .global hv_svm_run
hv_svm_run:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdx
    push %rsi
    push %rdi
    mov %rdx, %rax
    vmsave %rax
    mov %rdi, %rax
    mov 0x00(%rsi), %rbx
    mov 0x08(%rsi), %rcx
    mov 0x10(%rsi), %rdx
    mov 0x20(%rsi), %rdi
    mov 0x28(%rsi), %rbp
    mov 0x30(%rsi), %r8
    mov 0x38(%rsi), %r9
    mov 0x40(%rsi), %r10
    mov 0x48(%rsi), %r11
    mov 0x50(%rsi), %r12
    mov 0x58(%rsi), %r13
    mov 0x60(%rsi), %r14
    mov 0x68(%rsi), %r15
    mov 0x18(%rsi), %rsi
    vmload %rax
    vmrun %rax
    pop %rax
    vmsave %rax
    pop %rax
    mov %rbx, 0x00(%rax)
    mov %rcx, 0x08(%rax)
    mov %rdx, 0x10(%rax)
    mov %rsi, 0x18(%rax)
    mov %rdi, 0x20(%rax)
    mov %rbp, 0x28(%rax)
    mov %r8, 0x30(%rax)
    mov %r9, 0x38(%rax)
    mov %r10, 0x40(%rax)
    mov %r11, 0x48(%rax)
    mov %r12, 0x50(%rax)
    mov %r13, 0x58(%rax)
    mov %r14, 0x60(%rax)
    mov %r15, 0x68(%rax)
    pop %rax
    vmload %rax
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret
    "#,
    options(att_syntax)
);

extern "C" {
    fn hv_svm_run(guest_vmcb_pa: u64, regs: *mut GuestRegs, host_vmcb_pa: u64);
}

/// Runs the guest until its next VM exit.
///
/// # Safety
/// SVM must be on (`enable`); `guest` must hold a consistent guest state
/// whose nested page tables keep hv's memory out of reach; `host_vmcb_pa`
/// must be a 4 KiB page of hv's used for nothing else.
pub unsafe fn run(guest: &mut Vmcb, regs: &mut GuestRegs, host_vmcb_pa: u64) {
    // SAFETY: the caller guarantees SVM is on and both VMCBs are hv's; the
    // routine saves and restores every callee-saved register and hv's
    // hidden segment state, so Rust sees an ordinary call.
    unsafe { hv_svm_run(guest.pa(), regs, host_vmcb_pa) }
}
