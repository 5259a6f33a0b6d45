//! x86_64: the 64-bit boot protocol entry (startup_64 at +0x200, RSI =
//! boot_params, long mode with identity-mapped low memory), self-relocation,
//! a GDT and IDT of its own, COM1, VMMCALL, ACPI S5 power-off through the
//! FADT's PM1a control port, and CR3 for the guest's own tables. The
//! real-mode setup code mkbzimage.py puts in front of the image (`.setup16`)
//! is here too: it lets QEMU's own `-kernel` boot the bzImage without hv.

use core::arch::{asm, global_asm};
use core::ptr::{addr_of, addr_of_mut};

use pagewalk::x86::{PSE, X86_64};
use pagewalk::{Format, Level};

use super::TRAPPED;
use crate::platform::{self, Platform, Range, Ranges, PAGE};

pub const NAME: &str = "x86_64";
pub const HYPERCALL_INSN: &str = "VMMCALL";
/// RAX is the function id; more than 32 bits is an unknown id.
pub const ID_IS_W0: bool = false;
pub const ID_WIDTH_CASE: &str = "id-above-32-bits-unknown";
pub const WX_PASSED: &str = "x86/mm: Checked W+X mappings: passed, no W+X pages found.";
pub const UPPER_HALF_START: u64 = 0xffff_8000_0000_0000;
/// PS in a PML4 entry is reserved.
pub const ROOT_BLOCK_REASON: &str = "reserved bits set (0x80)";
/// Bit 51 is above MAXPHYADDR on every CPU with fewer than 52 physical address bits.
pub const RESERVED_TABLE_BIT: u64 = 1 << 51;
/// A 1 GiB page's address bits 29:13 must be zero.
pub const MISALIGNED_LEAF_BIT: u64 = 1 << 14;
/// The guest's devices are I/O ports: no MMIO page to map.
pub const DEVICE_PAGES: &[(u64, u64)] = &[];

const COM1: u16 = 0x3f8;
/// The HPET's MMIO page (q35): a device page the guest owns.
const HPET: u64 = 0xfed0_0000;
const GIB: u64 = 1 << 30;

pub type S1 = X86_64;

static mut PHYS_BITS: u32 = 36;

pub fn lower_format() -> S1 {
    // SAFETY: written once at boot.
    let bits = unsafe { core::ptr::read_volatile(addr_of!(PHYS_BITS)) };
    X86_64::new(4, true, bits).expect("4-level x86-64 paging")
}

pub fn upper_format() -> Option<(S1, u64)> {
    None
}

/// A PML4 entry with PS set (reserved at that level).
pub fn root_block_entry(format: &S1, out: u64) -> u64 {
    format.encode_table(Level(0), out) | PSE
}

global_asm!(
    r#"
    .section .text.head, "ax"
    .code32
    /* 32-bit entry (startup_32): not supported, this kernel has only the 64-bit entry. */
tg_startup_32:
    cli
1:  hlt
    jmp     1b

    /* Read by mkbzimage.py: the memory the image needs from its load address. */
    .balign 16
    .ascii  "TGINFO64"
    .quad   __image_size
    .quad   __file_size

    .org    0x200, 0xcc
    .code64
    .global tg_entry64
tg_entry64:
    cli
    cld
    mov     %rsi, %r15                  /* boot_params */
    lea     __stack_top(%rip), %rsp
    lea     __bss_start(%rip), %rdi
    lea     __bss_end(%rip), %rcx
    sub     %rdi, %rcx
    xor     %eax, %eax
    rep stosb

    /* Apply R_X86_64_RELATIVE relocations: linked at 0, so delta = the load address. */
    lea     __image_start(%rip), %r8
    lea     __rela_start(%rip), %rsi
    lea     __rela_end(%rip), %rdi
2:  cmp     %rdi, %rsi
    jae     4f
    cmpl    $8, 8(%rsi)
    jne     3f
    mov     (%rsi), %rcx
    mov     16(%rsi), %rax
    add     %r8, %rax
    mov     %rax, (%r8, %rcx)
    add     $24, %rsi
    jmp     2b
3:  cli                                 /* another kind: not the image this was linked as */
    hlt
    jmp     3b

4:  /* Our own GDT (the loader's may live anywhere): 0x10 code, 0x18 data, as Linux's boot GDT. */
    lea     tg_gdt(%rip), %rcx
    lea     tg_gdt_ptr(%rip), %rax
    mov     %rcx, 2(%rax)
    lgdt    (%rax)
    mov     $0x18, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    xor     %eax, %eax
    mov     %eax, %fs
    mov     %eax, %gs
    lea     5f(%rip), %rax
    pushq   $0x10
    push    %rax
    lretq
5:  mov     %r15, %rdi
    xor     %ebp, %ebp
    call    tg_main_x86_64
    ud2

    /* tg_wrmsr(msr, value): WRMSR; a #GP is caught and skipped (see tg_interrupt). */
    .text
    .global tg_wrmsr
tg_wrmsr:
    mov     %edi, %ecx
    mov     %rsi, %rax
    mov     %rsi, %rdx
    shr     $32, %rdx
    .global tg_wrmsr_insn
tg_wrmsr_insn:
    wrmsr
    ret

    /* tg_vmmcall(id, a1, a2, a3, a4, out): RAX, RBX, RCX, RDX, RSI in; RAX..RDX out. */
    .global tg_vmmcall
tg_vmmcall:
    push    %rbx
    mov     %rdi, %rax
    mov     %rsi, %rbx
    mov     %rdx, %r10
    mov     %rcx, %rdx
    mov     %r10, %rcx
    mov     %r8, %rsi
    .global tg_vmmcall_insn
tg_vmmcall_insn:
    vmmcall
    mov     %rax, (%r9)
    mov     %rbx, 8(%r9)
    mov     %rcx, 16(%r9)
    mov     %rdx, 24(%r9)
    pop     %rbx
    ret

    /* Exception stubs, 16 bytes apart: vector and (for vectors without one) a zero error code. */
    .macro  tg_isr vector, has_error
    .balign 16
    .if \has_error == 0
    pushq   $0
    .endif
    pushq   $\vector
    jmp     tg_isr_common
    .endm

    .balign 16
    .global tg_isr_stubs
tg_isr_stubs:
    tg_isr 0, 0
    tg_isr 1, 0
    tg_isr 2, 0
    tg_isr 3, 0
    tg_isr 4, 0
    tg_isr 5, 0
    tg_isr 6, 0
    tg_isr 7, 0
    tg_isr 8, 1
    tg_isr 9, 0
    tg_isr 10, 1
    tg_isr 11, 1
    tg_isr 12, 1
    tg_isr 13, 1
    tg_isr 14, 1
    tg_isr 15, 0
    tg_isr 16, 0
    tg_isr 17, 1
    tg_isr 18, 0
    tg_isr 19, 0
    tg_isr 20, 0
    tg_isr 21, 1
    tg_isr 22, 0
    tg_isr 23, 0
    tg_isr 24, 0
    tg_isr 25, 0
    tg_isr 26, 0
    tg_isr 27, 0
    tg_isr 28, 0
    tg_isr 29, 1
    tg_isr 30, 1
    tg_isr 31, 0

tg_isr_common:
    push    %r15
    push    %r14
    push    %r13
    push    %r12
    push    %r11
    push    %r10
    push    %r9
    push    %r8
    push    %rbp
    push    %rdi
    push    %rsi
    push    %rdx
    push    %rcx
    push    %rbx
    push    %rax
    mov     %rsp, %rdi
    call    tg_interrupt
    pop     %rax
    pop     %rbx
    pop     %rcx
    pop     %rdx
    pop     %rsi
    pop     %rdi
    pop     %rbp
    pop     %r8
    pop     %r9
    pop     %r10
    pop     %r11
    pop     %r12
    pop     %r13
    pop     %r14
    pop     %r15
    add     $16, %rsp
    iretq

    .data
    .balign 16
tg_gdt:
    .quad   0, 0, 0x00af9b000000ffff, 0x00cf93000000ffff
tg_gdt_ptr:
    .word   31
    .quad   0

    /*
     * Real-mode setup code, for boot loaders that enter a bzImage in real
     * mode (QEMU's -kernel without hv). mkbzimage.py places it after the
     * setup header and points the header's jump at it. Position independent
     * (call/pop finds where it runs), so it needs no relocation: it fills a
     * zero page at 0x7f000 (header copy, BIOS e820), identity-maps 0..4 GiB
     * with 2 MiB pages at 0x80000, enters long mode and jumps to
     * code32_start + 0x200 with RSI = the zero page.
     */
    .section .setup16, "ax"
    .code16
    .global tg_setup16
tg_setup16:
    cli
    cld
    /* The zero page: ES = 0x7f00, cleared, then the loader-patched header (DS:0x1f1..0x290). */
    mov     $0x7f00, %ax
    mov     %ax, %es
    xor     %di, %di
    xor     %ax, %ax
    mov     $2048, %cx
    rep stosw
    mov     $0x1f1, %si
    mov     $0x1f1, %di
    mov     $(0x290 - 0x1f1), %cx
    rep movsb
    /* BIOS e820 into boot_params.e820_table (0x2d0), count at 0x1e8. */
    xor     %ebx, %ebx
    mov     $0x2d0, %di
    xor     %si, %si
6:  mov     $0xe820, %eax
    mov     $20, %ecx
    mov     $0x534d4150, %edx
    int     $0x15
    jc      7f
    cmp     $0x534d4150, %eax
    jne     7f
    add     $20, %di
    inc     %si
    cmp     $128, %si
    jae     7f
    test    %ebx, %ebx
    jnz     6b
7:  mov     %si, %ax
    mov     %al, %es:0x1e8
    /* A20 through the fast gate. */
    in      $0x92, %al
    or      $2, %al
    and     $0xfe, %al
    out     %al, $0x92
    /* Where this code runs: bx = offset in CS, ebp = linear address of tg_setup16. */
    call    8f
8:  pop     %bx
    sub     $(8b - tg_setup16), %bx
    xor     %ebp, %ebp
    mov     %cs, %bp
    shl     $4, %ebp
    movzwl  %bx, %eax
    add     %eax, %ebp
    lea     (tg_setup_gdt - tg_setup16)(%ebp), %eax
    mov     %eax, %cs:(tg_setup_gdt_ptr + 2 - tg_setup16)(%bx)
    lea     (tg_setup_pm32 - tg_setup16)(%ebp), %eax
    mov     %eax, %cs:(tg_setup_pm32_ptr - tg_setup16)(%bx)
    lea     (tg_setup_lm64 - tg_setup16)(%ebp), %eax
    mov     %eax, %cs:(tg_setup_lm64_ptr - tg_setup16)(%bx)
    lgdtl   %cs:(tg_setup_gdt_ptr - tg_setup16)(%bx)
    mov     %cr0, %eax
    or      $1, %eax
    mov     %eax, %cr0
    ljmpl   *%cs:(tg_setup_pm32_ptr - tg_setup16)(%bx)

    .code32
tg_setup_pm32:
    mov     $0x10, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    mov     %eax, %fs
    mov     %eax, %gs
    mov     $0x7f000, %esp
    /* PML4 0x80000, PDPT 0x81000, four PDs 0x82000..0x85fff. */
    mov     $0x80000, %edi
    xor     %eax, %eax
    mov     $(6 * 4096 / 4), %ecx
    rep stosl
    movl    $0x81003, 0x80000
    mov     $0x81000, %edi
    mov     $0x82003, %eax
    mov     $4, %ecx
9:  mov     %eax, (%edi)
    add     $0x1000, %eax
    add     $8, %edi
    loop    9b
    mov     $0x82000, %edi
    mov     $0x83, %eax                 /* present, writable, 2 MiB */
    mov     $2048, %ecx
10: mov     %eax, (%edi)
    add     $0x200000, %eax
    add     $8, %edi
    loop    10b
    mov     %cr4, %eax
    or      $0x20, %eax                 /* PAE */
    mov     %eax, %cr4
    mov     $0x80000, %eax
    mov     %eax, %cr3
    /* EFER: LME, and NXE where the CPU has NX. */
    mov     $0x80000001, %eax
    cpuid
    xor     %esi, %esi
    bt      $20, %edx
    jnc     11f
    mov     $0x800, %esi
11: mov     $0xc0000080, %ecx
    rdmsr
    or      $0x100, %eax
    or      %esi, %eax
    wrmsr
    mov     %cr0, %eax
    or      $0x80010000, %eax           /* PG, WP */
    mov     %eax, %cr0
    ljmp    *(tg_setup_lm64_ptr - tg_setup16)(%ebp)

    .code64
tg_setup_lm64:
    mov     $0x7f000, %esi
    mov     0x214(%rsi), %eax           /* code32_start: where the kernel was loaded */
    add     $0x200, %rax
    jmp     *%rax

    .balign 8
tg_setup_gdt:
    .quad   0
    .quad   0x00cf9a000000ffff          /* 0x08: 32-bit code */
    .quad   0x00cf92000000ffff          /* 0x10: data */
    .quad   0x00af9a000000ffff          /* 0x18: 64-bit code */
tg_setup_gdt_ptr:
    .word   31
    .long   0
tg_setup_pm32_ptr:
    .long   0
    .word   0x08
tg_setup_lm64_ptr:
    .long   0
    .word   0x18
    .code64
"#,
    options(att_syntax)
);

extern "C" {
    fn tg_vmmcall(id: u64, a1: u64, a2: u64, a3: u64, a4: u64, out: *mut [u64; 4]);
    static tg_vmmcall_insn: u8;
    fn tg_wrmsr(msr: u32, value: u64);
    static tg_wrmsr_insn: u8;
    static tg_isr_stubs: u8;
}

/// What tg_isr_common saved.
#[repr(C)]
struct Frame {
    rax: u64,
    rbx: u64,
    rcx: u64,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    rbp: u64,
    r: [u64; 8],
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

const VECTOR_UD: u64 = 6;
const VECTOR_GP: u64 = 13;
const VECTOR_PF: u64 = 14;

#[no_mangle]
extern "C" fn tg_interrupt(frame: &mut Frame) {
    // VMMCALL without a hypervisor (SVM off): #UD, the probe's answer.
    if frame.vector == VECTOR_UD && frame.rip == addr_of!(tg_vmmcall_insn) as u64 {
        TRAPPED.set(true);
        frame.rip += 3;
        return;
    }
    // A refused WRMSR (tg_wrmsr): #GP, skipped.
    if frame.vector == VECTOR_GP && frame.rip == addr_of!(tg_wrmsr_insn) as u64 {
        TRAPPED.set(true);
        frame.rip += 2;
        return;
    }
    let cr2 = if frame.vector == VECTOR_PF {
        let v: u64;
        // SAFETY: reading CR2 at CPL0.
        unsafe { asm!("mov {}, cr2", out(reg) v) };
        v
    } else {
        0
    };
    crate::console::fail(
        "exception",
        format_args!(
            "vector {} error {:#x} at RIP {:#x} (CS {:#x}, RSP {:#x}, CR2 {cr2:#x})",
            frame.vector, frame.error, frame.rip, frame.cs, frame.rsp
        ),
    );
    crate::console::finish_and_power_off(false)
}

/// 64-bit interrupt gates for the 32 exceptions.
#[repr(C, align(16))]
struct Idt([[u64; 2]; 32]);
static mut IDT: Idt = Idt([[0; 2]; 32]);

fn load_idt() {
    let stubs = addr_of!(tg_isr_stubs) as u64;
    // SAFETY: single-threaded boot; the IDT is this image's static, loaded once filled.
    unsafe {
        let idt = &mut *addr_of_mut!(IDT);
        for (v, gate) in idt.0.iter_mut().enumerate() {
            let handler = stubs + 16 * v as u64;
            gate[0] = (handler & 0xffff) | (0x10 << 16) | (0x8e << 40) | ((handler >> 16) & 0xffff) << 48;
            gate[1] = handler >> 32;
        }
        let ptr: [u16; 5] = {
            let base = idt as *const Idt as u64;
            [
                (32 * 16 - 1) as u16,
                base as u16,
                (base >> 16) as u16,
                (base >> 32) as u16,
                (base >> 48) as u16,
            ]
        };
        asm!("lidt [{}]", in(reg) ptr.as_ptr(), options(readonly, nostack));
    }
}

fn outb(port: u16, v: u8) {
    // SAFETY: the guest owns COM1 and the ACPI ports it writes.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack)) };
}
fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as in outb.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack)) };
    v
}
fn outw(port: u16, v: u16) {
    // SAFETY: as in outb.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack)) };
}

fn uart_init() {
    outb(COM1 + 1, 0); // no interrupts
    outb(COM1 + 3, 0x80); // DLAB
    outb(COM1, 1); // 115200 baud
    outb(COM1 + 1, 0);
    outb(COM1 + 3, 3); // 8N1
    outb(COM1 + 2, 0xc7); // FIFOs on and cleared
    outb(COM1 + 4, 0x03); // DTR, RTS
}

pub fn uart_put(b: u8) {
    while inb(COM1 + 5) & 0x20 == 0 {}
    outb(COM1, b);
}

/// One VMMCALL. `None`: it trapped into this guest (#UD: no hypervisor).
pub fn hypercall(id: u64, args: [u64; 4]) -> Option<[u64; 4]> {
    let mut out = [0u64; 4];
    TRAPPED.set(false);
    // SAFETY: tg_vmmcall issues VMMCALL and stores RAX..RDX into `out`; a #UD is caught and skipped.
    unsafe { tg_vmmcall(id, args[0], args[1], args[2], args[3], &mut out) };
    (!TRAPPED.get()).then_some(out)
}

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDMSR at CPL0 of an MSR every x86-64 CPU has.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    u64::from(hi) << 32 | u64::from(lo)
}

/// WRMSR; `false` when it raised #GP (caught and skipped).
fn wrmsr(msr: u32, value: u64) -> bool {
    TRAPPED.set(false);
    // SAFETY: tg_wrmsr writes the MSR; a #GP is caught and skipped by tg_interrupt.
    unsafe { tg_wrmsr(msr, value) };
    !TRAPPED.get()
}

const MSR_EFER: u32 = 0xc000_0080;
const EFER_LME: u64 = 1 << 8;

/// Flipping EFER.LME while paging is on is a #GP on real CPUs; hv must refuse
/// it the same way instead of running the guest into an illegal state.
pub fn efer_lme_toggle_faults() -> crate::console::Outcome {
    let efer = rdmsr(MSR_EFER);
    crate::ensure!(efer & EFER_LME != 0, "EFER {efer:#x} has no LME in long mode");
    crate::ensure!(wrmsr(MSR_EFER, efer), "rewriting EFER unchanged ({efer:#x}) faulted");
    crate::ensure!(
        !wrmsr(MSR_EFER, efer & !EFER_LME),
        "clearing EFER.LME with paging on did not #GP"
    );
    let after = rdmsr(MSR_EFER);
    crate::ensure!(after == efer, "EFER changed from {efer:#x} to {after:#x}");
    Ok(())
}

/// The function id hv decodes from RAX: ids above 32 bits are unknown.
pub fn decode_id(id: u64) -> Option<u32> {
    u32::try_from(id).ok()
}

static mut PM1A_CONTROL: u16 = 0;

/// ACPI S5: SLP_TYP from QEMU's DSDT `_S5` (0 on q35 and pc) with SLP_EN,
/// written to the FADT's PM1a control port. hv intercepts exactly this
/// write (arch/src/x86_64/guest.rs) and powers the machine off.
pub fn power_off() -> ! {
    const SLP_EN: u16 = 1 << 13;
    const SLP_TYP_S5: u16 = 0;
    // SAFETY: written once at boot.
    let port = unsafe { core::ptr::read_volatile(addr_of!(PM1A_CONTROL)) };
    if port != 0 {
        outw(port, SLP_EN | (SLP_TYP_S5 << 10));
    }
    crate::say!("testguest: ACPI power-off (PM1a_CNT {port:#x}) did not stop the machine; halting");
    loop {
        // SAFETY: halting with interrupts off.
        unsafe { asm!("cli", "hlt") };
    }
}

/// Makes `lower` the live PML4.
pub fn install_tables(lower: u64, _upper: Option<u64>) {
    let cr4: u64;
    // SAFETY: reading CR4 at CPL0.
    unsafe { asm!("mov {}, cr4", out(reg) cr4) };
    assert!(
        cr4 & (1 << 12) == 0,
        "5-level paging is on; the hostile tables are 4-level"
    );
    // SAFETY: the tables identity-map this image, its stack and all guest RAM
    // (hostile::map_identity), so execution continues across the switch.
    unsafe { asm!("mov cr3, {}", in(reg) lower, options(nostack)) };
}

fn read<T: Copy>(addr: u64) -> T {
    // SAFETY: callers read boot data and ACPI tables the loader placed in
    // identity-mapped memory below 4 GiB.
    unsafe { core::ptr::read_unaligned(addr as *const T) }
}

/// The FADT's PM1a control port, from the RSDP (boot_params or the BIOS area).
fn find_pm1a_control(rsdp_hint: u64) -> Option<u16> {
    let rsdp = if rsdp_hint != 0 {
        rsdp_hint
    } else {
        (0xe_0000u64..0x10_0000)
            .step_by(16)
            .find(|&a| read::<[u8; 8]>(a) == *b"RSD PTR ")?
    };
    if read::<[u8; 8]>(rsdp) != *b"RSD PTR " {
        return None;
    }
    let revision: u8 = read(rsdp + 15);
    let (table, entry_size) = if revision >= 2 && read::<u64>(rsdp + 24) != 0 {
        (read::<u64>(rsdp + 24), 8)
    } else {
        (u64::from(read::<u32>(rsdp + 16)), 4)
    };
    let len = u64::from(read::<u32>(table + 4));
    let mut at = table + 36;
    while at + entry_size <= table + len {
        let sdt = if entry_size == 8 {
            read::<u64>(at)
        } else {
            u64::from(read::<u32>(at))
        };
        if read::<[u8; 4]>(sdt) == *b"FACP" {
            return u16::try_from(read::<u32>(sdt + 64)).ok().filter(|&p| p != 0);
        }
        at += entry_size;
    }
    None
}

#[no_mangle]
extern "C" fn tg_main_x86_64(boot_params: u64) -> ! {
    load_idt();
    uart_init();
    let (image, text_end, rodata_end) = platform::image_bounds();
    let mut p = Platform {
        ram: Ranges::default(),
        hv: None,
        unmapped: 0,
        beyond_ram: 0,
        device_page: HPET,
        image,
        boot_data: Ranges::default(),
        text_end,
        rodata_end,
        expect_hv: false,
        seed: 0x5eed_1e57_7e57_0001,
        random_calls: 3000,
    };
    p.boot_data.push(Range::new(boot_params, boot_params + PAGE));
    // e820: RAM is type 1; hv's region is a reserved entry between two RAM entries.
    let count = usize::from(read::<u8>(boot_params + 0x1e8)).min(128);
    let mut prev: Option<(u64, u64, u32)> = None;
    let mut sandwiched: Option<Range> = None;
    let mut candidate: Option<Range> = None;
    for i in 0..count as u64 {
        let at = boot_params + 0x2d0 + 20 * i;
        let (start, len, kind) = (read::<u64>(at), read::<u64>(at + 8), read::<u32>(at + 16));
        let end = start.saturating_add(len);
        if kind == 1 {
            p.ram.push(Range::new(start, end));
            if let (Some(c), None) = (candidate.take(), sandwiched) {
                if c.end == start {
                    sandwiched = Some(c);
                }
            }
        } else if kind == 2 && start >= 1 << 20 && prev.is_some_and(|(_, e, k)| k == 1 && e == start) {
            candidate = Some(Range::new(start, end));
        } else {
            candidate = None;
        }
        prev = Some((start, end, kind));
    }
    p.hv = sandwiched;
    let phys_bits = {
        let r = core::arch::x86_64::__cpuid(0x8000_0008);
        (r.eax & 0xff).clamp(32, 52)
    };
    // Beyond RAM: above 4 GiB and every RAM range, in no e820 entry (q35 with
    // an AMD CPU reserves 0xfd_0000_0000..+12 GiB), below MAXPHYADDR.
    let in_e820 = |a: u64| {
        (0..count as u64).any(|i| {
            let at = boot_params + 0x2d0 + 20 * i;
            let (start, len) = (read::<u64>(at), read::<u64>(at + 8));
            start <= a && a - start < len
        })
    };
    let mut beyond = p.ram.end().max(4 * GIB).next_multiple_of(GIB);
    while in_e820(beyond) || in_e820(beyond + GIB) {
        beyond += GIB;
    }
    assert!(
        beyond + GIB < 1 << phys_bits,
        "no unused physical address space below MAXPHYADDR"
    );
    p.beyond_ram = beyond;
    p.unmapped = beyond + GIB;
    // The command line.
    let cmdline = u64::from(read::<u32>(boot_params + 0x228)) | u64::from(read::<u32>(boot_params + 0xc8)) << 32;
    let mut buf = [0u8; 1024];
    if cmdline != 0 {
        let mut n = 0;
        while n < buf.len() {
            let b: u8 = read(cmdline + n as u64);
            if b == 0 {
                break;
            }
            buf[n] = b;
            n += 1;
        }
        p.boot_data.push(Range::new(cmdline, cmdline + n as u64 + 1));
        p.apply_cmdline(core::str::from_utf8(&buf[..n]).unwrap_or(""));
    }
    // SAFETY: single-threaded boot; read later by lower_format.
    unsafe { core::ptr::write_volatile(addr_of_mut!(PHYS_BITS), phys_bits) };
    let port = find_pm1a_control(read::<u64>(boot_params + 0x70)).unwrap_or(0x604);
    // SAFETY: single-threaded boot; read by power_off.
    unsafe { core::ptr::write_volatile(addr_of_mut!(PM1A_CONTROL), port) };
    crate::run(&p)
}
