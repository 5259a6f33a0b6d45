//! Running the Linux guest under SVM: the VMCB (intercepts, nested paging,
//! the 64-bit boot protocol's entry state) and the VM-exit loop.
//!
//! The guest owns the platform: its RAM, the devices and the I/O ports are
//! passed through, physical interrupts go straight to it (no INTR
//! intercept, V_INTR_MASKING off). hv intercepts only what it must own:
//! - CPUID: SVM hidden, the hypervisor bit and leaf 0x4000_0000 ("hvhypervisor");
//! - MSRs: EFER (SVME stays on and hidden), VM_CR, VM_HSAVE_PA;
//! - the SVM instructions (#UD for the guest), VMMCALL (hv's hypercalls,
//!   `hv::hypercall`, docs/hypercalls.md);
//! - I/O: the doorbell ports 0x540..0x54F (hvctl's way to the console),
//!   isa-debug-exit (hv's exit status device), the ACPI PM1a control
//!   register (power-off ends the machine cleanly through hv) and the reset register;
//! - shutdown (a triple fault) and nested page faults (hv's memory or
//!   unmapped space: logged, and the guest gets a #GP).
//!
//! No NRIP save on QEMU TCG: hv computes each next RIP (CPUID, RDMSR,
//! WRMSR: 2 bytes; VMMCALL: 3; IOIO: EXITINFO2).

use core::fmt::{self, Write};

use hv::hypercall::doorbell::{Doorbell, PORT_BASE, PORT_COUNT};
use hv::hypercall::guest_mem::Stage2Memory;
use hv::hypercall::{Call, CallContext, Conduit, Hypercalls, Privilege};
use hv::introspect::X86GuestRegs;
use x86::io::{inb, inl, inw, outb, outl, outw};

use super::acpi::PowerPorts;
use super::console::{Console, ExitCounts, GuestSnapshot, Target};
use super::linux::{LinuxBoot, BOOT_CS, BOOT_DS};
use super::power::{self, Exit};
use super::serial::{self, Com1};
use super::svm::{self, ctl, exit, misc1, misc2, save, GuestRegs, Segment, Vmcb};

/// hv's hypervisor CPUID signature (leaf 0x4000_0000 EBX, ECX, EDX).
pub const SIGNATURE: &[u8; 12] = b"hvhypervisor";
const HV_LEAF_BASE: u32 = 0x4000_0000;
const HV_LEAF_MAX: u32 = 0x4000_0001;
/// Leaf 0x4000_0001 EAX: hv's hypercall ABI major version (docs/hypercalls.md).
const HV_INTERFACE_VERSION: u32 = (hv::hypercall::ABI_VERSION >> 16) as u32;
/// VMMCALL is 0F 01 D9 (no NRIP save on TCG: hv steps over it itself).
const VMMCALL_LEN: u64 = 3;

const DEBUG_EXIT_PORT: u16 = 0xf4;
const DEBUG_EXIT_PORTS: u16 = 4;
/// PM1_CNT: SLP_EN and SLP_TYP.
const SLP_EN: u64 = 1 << 13;
const SLP_TYP_SHIFT: u64 = 10;
/// SLP_TYP of S5 in QEMU's DSDT (`_S5` = 0 on q35 and pc).
const SLP_TYP_S5: u64 = 0;

const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const CR0_PG: u64 = 1 << 31;
const EFER_NXE: u64 = 1 << 11;
/// EFER bits a guest may set: SCE, LME, LMA, NXE, LMSLE, FFXSR, TCE (SVME is hv's).
const EFER_GUEST_BITS: u64 = 1 | EFER_LME | EFER_LMA | EFER_NXE | 1 << 13 | 1 << 14 | 1 << 15;

const VECTOR_UD: u8 = 6;
const VECTOR_DF: u8 = 8;
const VECTOR_GP: u8 = 13;

/// How many refused accesses are logged one by one.
const MAX_LOGGED_REFUSALS: u64 = 32;

/// The memory hv keeps for running a guest (all inside hv's region).
#[derive(Clone, Copy, Debug)]
pub struct SvmPages {
    pub iopm: u64,
    pub msrpm: u64,
    pub guest_vmcb: u64,
    pub host_save: u64,
    pub host_vmcb: u64,
}

impl SvmPages {
    /// Bytes of the SVM region: IOPM (12 KiB), MSRPM (8 KiB), three pages.
    pub const SIZE: u64 = 0x8000;

    pub fn at(base: u64) -> SvmPages {
        SvmPages {
            iopm: base,
            msrpm: base + 0x3000,
            guest_vmcb: base + 0x5000,
            host_save: base + 0x6000,
            host_vmcb: base + 0x7000,
        }
    }
}

/// One guest: its VMCB, registers and what hv needs to judge its exits.
pub struct Guest<'a> {
    vmcb: Vmcb,
    regs: GuestRegs,
    pages: SvmPages,
    power: PowerPorts,
    console: &'a Console,
    hypercalls: Hypercalls,
    doorbell: Doorbell,
    refusals: u64,
    /// VM exits by reason, for `info` and the power-off line (each costs ~50 µs under TCG).
    stats: ExitCounts,
}

/// hv's log for CONSOLE_WRITE text: the console lock per piece, so a guest's
/// long write cannot hold it across the whole call.
struct HvLog;

impl Write for HvLog {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        serial::with_console(|out| out.write_str(s))
    }
}

fn segment(selector: u16, attrib: u16) -> Segment {
    Segment {
        selector,
        attrib,
        limit: 0xffff_ffff,
        base: 0,
    }
}

impl<'a> Guest<'a> {
    /// Fills the VMCB: intercepts, permission maps, nested paging, the entry state.
    ///
    /// # Safety
    /// `pages` must be hv's SVM region (zeroed or not), mapped RW at VA == PA;
    /// `npt_root` must be nested tables that keep hv's memory out of the guest's reach.
    pub unsafe fn new(
        pages: SvmPages,
        npt_root: u64,
        boot: &LinuxBoot,
        power: PowerPorts,
        console: &'a Console,
    ) -> Guest<'a> {
        // SAFETY: the caller hands hv's SVM region; each map lies inside it.
        unsafe {
            // The IOPM (3 pages) and the MSRPM (2 pages) right after it: nothing intercepted yet.
            for page in 0..5 {
                core::ptr::write_bytes((pages.iopm + page * 4096) as *mut u8, 0, 4096);
            }
            for port in DEBUG_EXIT_PORT..DEBUG_EXIT_PORT + DEBUG_EXIT_PORTS {
                svm::iopm_intercept(pages.iopm, port);
            }
            // PM1a_CNT is 16 bits wide: both bytes.
            svm::iopm_intercept(pages.iopm, power.pm1a_control);
            svm::iopm_intercept(pages.iopm, power.pm1a_control + 1);
            if let Some((port, _)) = power.reset {
                svm::iopm_intercept(pages.iopm, port);
            }
            // The doorbell: these ports exist only as hv's (nothing on q35 decodes them).
            for port in PORT_BASE..PORT_BASE + PORT_COUNT {
                svm::iopm_intercept(pages.iopm, port);
            }
            for msr in [svm::MSR_EFER, svm::MSR_VM_CR, svm::MSR_VM_HSAVE_PA] {
                svm::msrpm_intercept(pages.msrpm, msr);
            }
        }
        // SAFETY: the guest VMCB page is hv's (caller).
        let mut vmcb = unsafe { Vmcb::new(pages.guest_vmcb) };
        vmcb.clear();
        vmcb.write32(
            ctl::INTERCEPT_MISC1,
            misc1::CPUID | misc1::INVLPGA | misc1::IOIO_PROT | misc1::MSR_PROT | misc1::SHUTDOWN,
        );
        vmcb.write32(
            ctl::INTERCEPT_MISC2,
            misc2::VMRUN | misc2::VMMCALL | misc2::VMLOAD | misc2::VMSAVE | misc2::STGI | misc2::CLGI | misc2::SKINIT,
        );
        vmcb.write64(ctl::IOPM_BASE_PA, pages.iopm);
        vmcb.write64(ctl::MSRPM_BASE_PA, pages.msrpm);
        vmcb.write64(ctl::TSC_OFFSET, 0);
        vmcb.write32(ctl::GUEST_ASID, 1);
        // Flush this ASID's TLB entries on the first run (no flush-by-ASID: all).
        vmcb.write8(ctl::TLB_CONTROL, 1);
        // V_INTR_MASKING off: the guest's RFLAGS.IF masks physical interrupts.
        vmcb.write64(ctl::VINTR, 0);
        vmcb.write64(ctl::NP_ENABLE, 1);
        vmcb.write64(ctl::N_CR3, npt_root);
        vmcb.write64(ctl::CLEAN_BITS, 0);

        // Boot protocol: 64-bit mode, paging on, __BOOT_CS/__BOOT_DS, RSI = boot_params, interrupts off.
        const CODE64: u16 = 0xa9b; // type 0xb, S, P, L, G
        const DATA: u16 = 0xc93; // type 0x3, S, P, D/B, G
        let data = segment(BOOT_DS, DATA);
        vmcb.set_segment(save::CS, segment(BOOT_CS, CODE64));
        for seg in [save::DS, save::ES, save::SS, save::FS, save::GS] {
            vmcb.set_segment(seg, data);
        }
        vmcb.set_segment(
            save::GDTR,
            Segment {
                selector: 0,
                attrib: 0,
                limit: u32::from(boot.gdt_limit),
                base: boot.gdt_base,
            },
        );
        vmcb.set_segment(save::IDTR, Segment::default());
        vmcb.set_segment(save::LDTR, Segment::default());
        // A busy 64-bit TSS descriptor shape; the kernel loads its own TR.
        vmcb.set_segment(
            save::TR,
            Segment {
                selector: 0,
                attrib: 0x8b,
                limit: 0x67,
                base: 0,
            },
        );
        vmcb.write8(save::CPL, 0);
        vmcb.write64(save::EFER, EFER_LME | EFER_LMA | EFER_NXE | svm::EFER_SVME);
        vmcb.write64(save::CR0, 0x8001_0031); // PG, WP, NE, ET, PE
        vmcb.write64(save::CR3, boot.cr3);
        vmcb.write64(save::CR4, 0x20); // PAE
        vmcb.write64(save::DR6, 0xffff_0ff0);
        vmcb.write64(save::DR7, 0x400);
        vmcb.write64(save::RFLAGS, 0x2);
        vmcb.write64(save::RIP, boot.entry);
        vmcb.write64(save::RSP, boot.stack_top);
        vmcb.write64(save::RAX, 0);
        vmcb.write64(save::G_PAT, 0x0007_0406_0007_0406);
        let regs = GuestRegs {
            rsi: boot.boot_params,
            ..GuestRegs::default()
        };
        Guest {
            vmcb,
            regs,
            pages,
            power,
            console,
            hypercalls: Hypercalls::new(),
            doorbell: Doorbell::new(),
            refusals: 0,
            stats: ExitCounts::default(),
        }
    }

    /// Runs the guest until it powers off (or hv must stop it); never returns.
    pub fn run(mut self) -> ! {
        loop {
            // SAFETY: SVM is on (mod.rs enabled it before building the guest),
            // the VMCB was filled by `new` and is only changed by the handlers
            // below; the host VMCB page is hv's.
            unsafe { svm::run(&mut self.vmcb, &mut self.regs, self.pages.host_vmcb) };
            self.stats.total += 1;
            self.vmcb.write8(ctl::TLB_CONTROL, 0);
            self.vmcb.write64(ctl::EVENT_INJ, 0);
            // An event cut short by the exit (e.g. a fault while delivering
            // an interrupt) is delivered again unless a handler injects its own.
            let interrupted = self.vmcb.read64(ctl::EXIT_INT_INFO);
            if interrupted & (1 << 31) != 0 {
                self.vmcb.write64(ctl::EVENT_INJ, interrupted);
            }
            self.handle_exit(interrupted & (1 << 31) != 0);
        }
    }

    fn skip(&mut self, len: u64) {
        let rip = self.vmcb.rip();
        self.vmcb.set_rip(rip.wrapping_add(len));
    }

    fn inject(&mut self, vector: u8, error: Option<u32>, interrupted: bool) {
        // A fault while delivering another event: a double fault.
        if interrupted && vector != VECTOR_UD {
            self.vmcb.inject_exception(VECTOR_DF, Some(0));
        } else {
            self.vmcb.inject_exception(vector, error);
        }
    }

    fn handle_exit(&mut self, interrupted: bool) {
        let code = self.vmcb.exit_code();
        let s = &mut self.stats;
        match code {
            exit::CPUID => s.cpuid += 1,
            exit::MSR => s.msr += 1,
            // Counted by `io`: the doorbell's accesses apart.
            exit::IOIO => {}
            exit::NPF => s.npf += 1,
            exit::VMMCALL => s.vmmcall += 1,
            _ => s.other += 1,
        }
        match code {
            exit::CPUID => self.cpuid(),
            exit::MSR => self.msr(interrupted),
            exit::IOIO => self.io(),
            exit::VMMCALL => self.vmmcall(),
            exit::VMRUN | exit::VMLOAD | exit::VMSAVE | exit::STGI | exit::CLGI | exit::SKINIT | exit::INVLPGA => {
                // SVM is hidden from the guest: these are invalid opcodes to it.
                self.inject(VECTOR_UD, None, interrupted);
            }
            exit::NPF => self.nested_page_fault(interrupted),
            exit::SHUTDOWN => {
                self.report("the guest shut down (triple fault)");
                power::exit(Exit::Failure)
            }
            exit::INVALID => {
                self.report("VMRUN refused the guest state (VMEXIT_INVALID)");
                fatal(format_args!("the guest's VMCB failed VMRUN's consistency checks"))
            }
            code => {
                self.report("unexpected VM exit");
                fatal(format_args!("unexpected VM exit code {code:#x}"))
            }
        }
    }

    fn cpuid(&mut self) {
        let leaf = self.vmcb.rax() as u32;
        let subleaf = self.regs.rcx as u32;
        let (mut a, mut b, mut c, mut d) = match leaf {
            HV_LEAF_BASE => (
                HV_LEAF_MAX,
                u32::from_le_bytes([SIGNATURE[0], SIGNATURE[1], SIGNATURE[2], SIGNATURE[3]]),
                u32::from_le_bytes([SIGNATURE[4], SIGNATURE[5], SIGNATURE[6], SIGNATURE[7]]),
                u32::from_le_bytes([SIGNATURE[8], SIGNATURE[9], SIGNATURE[10], SIGNATURE[11]]),
            ),
            HV_LEAF_MAX => (HV_INTERFACE_VERSION, 0, 0, 0),
            0x4000_0002..=0x4000_00ff => (0, 0, 0, 0),
            _ => {
                let r = x86::cpuid::cpuid!(leaf, subleaf);
                (r.eax, r.ebx, r.ecx, r.edx)
            }
        };
        match leaf {
            // ECX[31]: running under a hypervisor.
            1 => c |= 1 << 31,
            // ECX[2]: SVM; hidden, hv does not offer nested virtualization.
            0x8000_0001 => c &= !(1 << 2),
            // The SVM feature leaf describes nothing the guest has.
            0x8000_000a => (a, b, c, d) = (0, 0, 0, 0),
            _ => {}
        }
        self.vmcb.set_rax(u64::from(a));
        self.regs.rbx = u64::from(b);
        self.regs.rcx = u64::from(c);
        self.regs.rdx = u64::from(d);
        self.skip(2);
    }

    fn msr(&mut self, interrupted: bool) {
        let msr = self.regs.rcx as u32;
        let write = self.vmcb.exit_info1() & 1 != 0;
        let value = (self.vmcb.rax() & 0xffff_ffff) | self.regs.rdx << 32;
        let result = match (msr, write) {
            (svm::MSR_EFER, false) => Some(self.vmcb.read64(save::EFER) & !svm::EFER_SVME),
            (svm::MSR_EFER, true) if value & !EFER_GUEST_BITS == 0 && !self.lme_toggled_while_paging(value) => {
                // LMA follows LME and CR0.PG; a write does not change it.
                let lma = self.vmcb.read64(save::EFER) & EFER_LMA;
                self.vmcb
                    .write64(save::EFER, (value & !EFER_LMA) | lma | svm::EFER_SVME);
                Some(0)
            }
            // What a CPU with SVM disabled by firmware answers.
            (svm::MSR_VM_CR, false) => Some(svm::VM_CR_SVMDIS | svm::VM_CR_LOCK),
            _ => None,
        };
        match result {
            Some(v) => {
                if !write {
                    self.vmcb.set_rax(v & 0xffff_ffff);
                    self.regs.rdx = v >> 32;
                }
                self.skip(2);
            }
            // EFER with reserved or SVME bits or LME flipped under paging, VM_CR writes,
            // VM_HSAVE_PA: #GP as on a CPU without SVM.
            None => self.inject(VECTOR_GP, Some(0), interrupted),
        }
    }

    /// Whether an EFER write flips LME while CR0.PG is set: a #GP on real CPUs,
    /// and passed through it would hand VMRUN an illegal state (e.g. LME and PG
    /// without PAE), ending the machine instead of faulting the guest.
    fn lme_toggled_while_paging(&self, value: u64) -> bool {
        let paging = self.vmcb.read64(save::CR0) & CR0_PG != 0;
        paging && (value ^ self.vmcb.read64(save::EFER)) & EFER_LME != 0
    }

    /// The guest's state for the console, as the VMCB holds it now.
    fn snapshot(&self) -> GuestSnapshot {
        let v = &self.vmcb;
        GuestSnapshot {
            regs: X86GuestRegs {
                cr0: v.read64(save::CR0),
                cr3: v.read64(save::CR3),
                cr4: v.read64(save::CR4),
                // SVME is hv's: the guest never sees it.
                efer: v.read64(save::EFER) & !svm::EFER_SVME,
                pat: v.read64(save::G_PAT),
            },
            rip: v.rip(),
            cpl: v.cpl(),
            exits: self.stats,
        }
    }

    /// A hypercall (docs/hypercalls.md): RAX = id, RBX, RCX, RDX, RSI, RDI,
    /// R8 = arguments; RAX, RBX, RCX, RDX = results, all four written.
    fn vmmcall(&mut self) {
        let call = Call {
            id: self.vmcb.rax(),
            args: [
                self.regs.rbx,
                self.regs.rcx,
                self.regs.rdx,
                self.regs.rsi,
                self.regs.rdi,
                self.regs.r8,
            ],
        };
        // CPL from the VMCB: what the guest ran at when it trapped.
        let privilege = if self.vmcb.cpl() == 0 {
            Privilege::Kernel
        } else {
            Privilege::User
        };
        let snapshot = self.snapshot();
        let console = self.console;
        let target = Target::at_trap(console, snapshot);
        let reply = match &console.npt {
            Some(npt) => {
                // Every buffer is translated through the NPT and checked against hv's ranges.
                let mut mem = Stage2Memory {
                    format: &npt.format,
                    tables: &npt.mem,
                    root: npt.root,
                    hv_owned: console.not_for_buffers,
                    phys: &console.ram,
                };
                let mut cx = CallContext {
                    target: &target,
                    mem: &mut mem,
                    log: &mut HvLog,
                };
                self.hypercalls.handle(Conduit::Vmmcall, privilege, &call, &mut cx)
            }
            None => fatal(format_args!("a guest runs without an NPT")),
        };
        self.vmcb.set_rax(reply.regs[0]);
        self.regs.rbx = reply.regs[1];
        self.regs.rcx = reply.regs[2];
        self.regs.rdx = reply.regs[3];
        self.skip(VMMCALL_LEN);
    }

    /// Whether an access of `size` bytes at `port` touches a doorbell port
    /// (the IOPM intercepts it whenever one of its bytes does).
    fn touches_doorbell(port: u16, size: u64) -> bool {
        let (start, end) = (u64::from(port), u64::from(port) + size);
        start < u64::from(PORT_BASE + PORT_COUNT) && end > u64::from(PORT_BASE)
    }

    /// hvctl's doorbell: one register access, at most one bounded step of output.
    fn doorbell(&mut self, port: u16, size: u64, is_in: bool, value: u64) {
        self.stats.doorbell += 1;
        let snapshot = self.snapshot();
        let target = Target::at_trap(self.console, snapshot);
        // An access that starts below the doorbell wraps to a huge offset: a bad access.
        let offset = port.wrapping_sub(PORT_BASE);
        if is_in {
            let v = self.doorbell.port_read(&target, offset, size as u8);
            self.set_in_value(size, u64::from(v));
        } else {
            self.doorbell.port_write(&target, offset, size as u8, value as u32);
        }
    }

    fn io(&mut self) {
        let info = self.vmcb.exit_info1();
        let next_rip = self.vmcb.exit_info2();
        let port = (info >> 16) as u16;
        let is_in = info & 1 != 0;
        let string = info & (1 << 2) != 0;
        let size = match (info >> 4) & 0b111 {
            0b001 => 1,
            0b010 => 2,
            _ => 4,
        };
        let value = self.vmcb.rax() & mask(size);
        if !string && Self::touches_doorbell(port, size) {
            self.doorbell(port, size, is_in, value);
            self.vmcb.set_rip(next_rip);
            return;
        }
        self.stats.io += 1;
        if string {
            log_line(format_args!(
                "hv: guest string I/O to port {port:#x} (hv-owned) refused at RIP {:#x}",
                self.vmcb.rip()
            ));
        } else if (DEBUG_EXIT_PORT..DEBUG_EXIT_PORT + DEBUG_EXIT_PORTS).contains(&port) {
            // hv's exit-status device: the guest must not end the machine with hv's verdict.
            if !is_in {
                log_line(format_args!(
                    "hv: guest write of {value:#x} to port {port:#x} (hv's exit device) refused at RIP {:#x}",
                    self.vmcb.rip()
                ));
            }
            if is_in {
                self.set_in_value(size, mask(size));
            }
        } else if port == self.power.pm1a_control && !is_in && value & SLP_EN != 0 {
            let typ = (value >> SLP_TYP_SHIFT) & 0b111;
            if typ == SLP_TYP_S5 {
                let s = self.stats;
                log_line(format_args!(
                    "hv: guest powered off (ACPI S5 via PM1a_CNT {port:#x}) after {} VM exits \
                     (CPUID {}, MSR {}, I/O {}, NPF {}, VMMCALL {}, doorbell {}, other {})",
                    s.total, s.cpuid, s.msr, s.io, s.npf, s.vmmcall, s.doorbell, s.other
                ));
                power::exit(Exit::PowerOff);
            }
            log_line(format_args!(
                "hv: guest asked for ACPI sleep state SLP_TYP={typ}: not supported, ignored"
            ));
        } else if self
            .power
            .reset
            .is_some_and(|(p, v)| p == port && !is_in && is_reset(port, value as u8, v))
        {
            self.report("the guest asked for a reset (reset register)");
            power::exit(Exit::Failure)
        } else {
            // The rest of these ports are the guest's: pass the access on.
            // SAFETY: the port belongs to the guest's platform (PM1a or reset
            // control), and the access is the guest's own, of its own width.
            unsafe {
                if is_in {
                    let v = match size {
                        1 => u64::from(inb(port)),
                        2 => u64::from(inw(port)),
                        _ => u64::from(inl(port)),
                    };
                    self.set_in_value(size, v);
                } else {
                    match size {
                        1 => outb(port, value as u8),
                        2 => outw(port, value as u16),
                        _ => outl(port, value as u32),
                    }
                }
            }
        }
        self.vmcb.set_rip(next_rip);
    }

    /// An IN's result goes to AL/AX/EAX (a 32-bit IN clears RAX's upper half).
    fn set_in_value(&mut self, size: u64, value: u64) {
        let rax = self.vmcb.rax();
        let merged = if size == 4 {
            value & 0xffff_ffff
        } else {
            (rax & !mask(size)) | (value & mask(size))
        };
        self.vmcb.set_rax(merged);
    }

    fn nested_page_fault(&mut self, interrupted: bool) {
        let error = self.vmcb.exit_info1();
        let gpa = self.vmcb.exit_info2();
        let owner = self
            .console
            .hv_owned
            .iter()
            .find(|o| o.range.contains(gpa))
            .map_or("not mapped for the guest", |o| o.name);
        let kind = if error & (1 << 4) != 0 {
            "fetch"
        } else if error & (1 << 1) != 0 {
            "write"
        } else {
            "read"
        };
        self.refusals += 1;
        if self.refusals <= MAX_LOGGED_REFUSALS {
            log_line(format_args!(
                "hv: guest access to {gpa:#x} refused ({owner}): {kind} at RIP {:#x}, CPL {}; injecting #GP",
                self.vmcb.rip(),
                self.vmcb.cpl()
            ));
        } else if self.refusals == MAX_LOGGED_REFUSALS + 1 {
            log_line(format_args!("hv: further refused guest accesses are not logged"));
        }
        self.inject(VECTOR_GP, Some(0), interrupted);
    }

    /// Prints why hv stops the guest, and its state.
    fn report(&self, why: &str) {
        let v = &self.vmcb;
        let r = &self.regs;
        let cs = v.segment(save::CS);
        let ss = v.segment(save::SS);
        serial::with_console(|out: &mut Com1| {
            let _ = writeln!(out, "\nhv: {why}: guest state after {} VM exits", self.stats.total);
            let _ = writeln!(
                out,
                "hv: exit code {:#x}, info1 {:#x}, info2 {:#x}, exitintinfo {:#x}",
                v.exit_code(),
                v.exit_info1(),
                v.exit_info2(),
                v.read64(ctl::EXIT_INT_INFO)
            );
            let _ = writeln!(
                out,
                "hv: RIP {:#06x}:{:#018x} RSP {:#06x}:{:#018x} RFLAGS {:#x} CPL {}",
                cs.selector,
                v.rip(),
                ss.selector,
                v.read64(save::RSP),
                v.read64(save::RFLAGS),
                v.cpl()
            );
            let _ = writeln!(
                out,
                "hv: CR0 {:#x} CR2 {:#x} CR3 {:#x} CR4 {:#x} EFER {:#x}",
                v.read64(save::CR0),
                v.read64(save::CR2),
                v.read64(save::CR3),
                v.read64(save::CR4),
                v.read64(save::EFER)
            );
            let _ = writeln!(
                out,
                "hv: RAX {:#018x} RBX {:#018x} RCX {:#018x} RDX {:#018x}",
                v.rax(),
                r.rbx,
                r.rcx,
                r.rdx
            );
            let _ = writeln!(
                out,
                "hv: RSI {:#018x} RDI {:#018x} RBP {:#018x} R8  {:#018x}",
                r.rsi, r.rdi, r.rbp, r.r8
            );
            let _ = writeln!(
                out,
                "hv: R9  {:#018x} R10 {:#018x} R11 {:#018x} R12 {:#018x}",
                r.r9, r.r10, r.r11, r.r12
            );
            let _ = writeln!(out, "hv: R13 {:#018x} R14 {:#018x} R15 {:#018x}", r.r13, r.r14, r.r15);
        });
    }
}

/// A write of the FADT's reset value, or one with RST_CPU set on the PC's
/// reset control register (0xcf9), resets the machine.
fn is_reset(port: u16, value: u8, reset_value: u8) -> bool {
    const RESET_CONTROL: u16 = 0xcf9;
    const RST_CPU: u8 = 1 << 2;
    value == reset_value || (port == RESET_CONTROL && value & RST_CPU != 0)
}

fn mask(size: u64) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

/// One hv line while the guest owns the console: on a line of its own.
fn log_line(args: core::fmt::Arguments<'_>) {
    serial::with_console(|out| {
        let _ = writeln!(out, "\n{args}");
    });
}

fn fatal(why: core::fmt::Arguments<'_>) -> ! {
    let _ = writeln!(Com1, "hv: FATAL: {why}");
    power::exit(Exit::Failure)
}
