//! hv's GDT, TSS and IDT. Every CPU exception is unexpected in hv: the
//! handler prints the vector, error code, CR2, RIP and all registers, then
//! stops the machine with a failure status. A double fault (a stack overflow
//! into a guard page, for one) runs on its own stack (IST1).

use core::arch::global_asm;
use core::fmt::Write;

use spin::Once;
use x86::bits64::task::TaskStateSegment;
use x86::dtables::{lgdt, lidt, DescriptorTablePointer};
use x86::segmentation::SegmentSelector;
use x86::task::load_tr;

use super::boot::{ImageLayout, KERNEL_CS};
use super::power::{self, Exit};
use super::serial::Com1;

const TSS_SELECTOR: u16 = 0x18;
const DOUBLE_FAULT: u64 = 8;
/// IST slot (1-based, as the gate encodes it) for the double-fault stack.
const FAULT_IST: u8 = 1;
/// Present, DPL 0, 64-bit interrupt gate (interrupts stay off in the handler).
const INTERRUPT_GATE: u8 = 0x8e;
/// Present, DPL 0, available 64-bit TSS.
const TSS_AVAILABLE: u64 = 0x89;
const CODE64: u64 = 0x00af_9b00_0000_ffff;
const DATA: u64 = 0x00cf_9300_0000_ffff;

// Entry stubs, one per vector (all 256: hv expects no interrupt either), each
// STUB_SIZE bytes apart (no address table: a static PIE would need run-time
// relocations for one). Vectors without a CPU error code push a zero so every
// frame has the same shape; then the vector, the general registers, and a
// call to `hv_x86_64_exception(&frame)`, which does not return.
global_asm!(
    r#"
    .section .text.hv_exceptions, "ax"
    .balign {stub_size}
    .global hv_isr_stubs
hv_isr_stubs:
    .set hv_vector, 0
    .rept {vectors}
    .balign {stub_size}
    .if !(hv_vector == 8 || hv_vector == 10 || hv_vector == 11 || hv_vector == 12 || hv_vector == 13 || hv_vector == 14 || hv_vector == 17 || hv_vector == 21 || hv_vector == 29 || hv_vector == 30)
    pushq $0
    .endif
    pushq $hv_vector
    jmp hv_isr_common
    .set hv_vector, hv_vector + 1
    .endr

hv_isr_common:
    push %r15
    push %r14
    push %r13
    push %r12
    push %r11
    push %r10
    push %r9
    push %r8
    push %rbp
    push %rdi
    push %rsi
    push %rdx
    push %rcx
    push %rbx
    push %rax
    cld
    mov %rsp, %rdi
    call hv_x86_64_exception
    ud2

    "#,
    stub_size = const STUB_SIZE,
    vectors = const VECTORS,
    options(att_syntax)
);

/// Each vector's entry stub is `STUB_SIZE` bytes from the previous one.
const STUB_SIZE: u64 = 16;
const VECTORS: u64 = 256;

extern "C" {
    /// The entry stub of vector 0; vector n's is `n * STUB_SIZE` further.
    fn hv_isr_stubs();
}

/// What the entry stub saved, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct ExceptionFrame {
    rax: u64,
    rbx: u64,
    rcx: u64,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    rbp: u64,
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

const VECTOR_NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved",
    "#MF x87 floating point",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD floating point",
    "#VE virtualization",
    "#CP control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved",
];

#[unsafe(no_mangle)]
extern "C" fn hv_x86_64_exception(frame: &ExceptionFrame) -> ! {
    // SAFETY: reading CR2 has no side effects; it holds the last page-fault address.
    let cr2 = unsafe { x86::controlregs::cr2() };
    let name = VECTOR_NAMES.get(frame.vector as usize).copied().unwrap_or("interrupt");
    // A fresh writer, not the console lock: the fault may have hit while it was held.
    let mut out = Com1;
    let f = frame;
    let _ = writeln!(
        out,
        "\nhv: FATAL: unexpected exception: vector {} ({name}), error code {:#x}, CR2 {cr2:#018x}",
        f.vector, f.error
    );
    let _ = writeln!(
        out,
        "RIP: {:#06x}:{:#018x} RFLAGS: {:#010x} RSP: {:#06x}:{:#018x}",
        f.cs, f.rip, f.rflags, f.ss, f.rsp
    );
    let _ = writeln!(out, "RAX: {:#018x} RBX: {:#018x} RCX: {:#018x}", f.rax, f.rbx, f.rcx);
    let _ = writeln!(out, "RDX: {:#018x} RSI: {:#018x} RDI: {:#018x}", f.rdx, f.rsi, f.rdi);
    let _ = writeln!(out, "RBP: {:#018x} R08: {:#018x} R09: {:#018x}", f.rbp, f.r8, f.r9);
    let _ = writeln!(out, "R10: {:#018x} R11: {:#018x} R12: {:#018x}", f.r10, f.r11, f.r12);
    let _ = writeln!(out, "R13: {:#018x} R14: {:#018x} R15: {:#018x}", f.r13, f.r14, f.r15);
    power::exit(Exit::Failure)
}

/// One 16-byte 64-bit IDT gate.
#[derive(Clone, Copy, Default)]
#[repr(C, align(16))]
struct Gate([u64; 2]);

impl Gate {
    fn interrupt(handler: u64, ist: u8) -> Gate {
        let low = (handler & 0xffff)
            | (u64::from(KERNEL_CS) << 16)
            | (u64::from(ist) << 32)
            | (u64::from(INTERRUPT_GATE) << 40)
            | ((handler >> 16) & 0xffff) << 48;
        Gate([low, handler >> 32])
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

#[repr(C, align(16))]
struct Gdt([u64; 5]);

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<Gdt> = Once::new();
static IDT: Once<Idt> = Once::new();

/// Loads hv's GDT (with a TSS for the double-fault stack) and IDT.
pub fn init(layout: &ImageLayout) {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        tss.set_ist(usize::from(FAULT_IST - 1), layout.fault_stack.1);
        // No I/O bitmap: the offset points past the segment limit.
        tss.iomap_base = size_of::<TaskStateSegment>() as u16;
        tss
    });
    let gdt = GDT.call_once(|| {
        let base = tss as *const TaskStateSegment as u64;
        let limit = size_of::<TaskStateSegment>() as u64 - 1;
        let tss_low = (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (TSS_AVAILABLE << 40)
            | ((limit >> 16) & 0xf) << 48
            | ((base >> 24) & 0xff) << 56;
        Gdt([0, CODE64, DATA, tss_low, base >> 32])
    });
    let idt = IDT.call_once(|| {
        let mut idt = Idt([Gate::default(); 256]);
        let first_stub = hv_isr_stubs as *const () as u64;
        for vector in 0..VECTORS {
            let ist = if vector == DOUBLE_FAULT { FAULT_IST } else { 0 };
            idt.0[vector as usize] = Gate::interrupt(first_stub + vector * STUB_SIZE, ist);
        }
        idt
    });
    // SAFETY: the tables are 'static and well formed; the code and data
    // selectors keep the values the trampoline loaded, so CS/DS/SS stay valid;
    // the TSS selector names the available TSS descriptor just built.
    unsafe {
        lgdt(&DescriptorTablePointer::new(&gdt.0));
        load_tr(SegmentSelector::from_raw(TSS_SELECTOR));
        lidt(&DescriptorTablePointer::new(&idt.0));
    }
}
