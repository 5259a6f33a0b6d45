//! The arm64 Image header, the entry point and the EL2 exception vectors.
//!
//! QEMU's `-kernel` (like any arm64 boot loader) enters the first byte of the
//! Image with the MMU off, x0 = the device tree's physical address, at the
//! highest EL the guest may use: EL2 with `-M virt,virtualization=on`.

use core::arch::global_asm;

use super::exceptions::{FP_OFFSET, FRAME_SIZE, GUEST_FRAME_SIZE};
use super::smp::{SECONDARY_MMU, SECONDARY_STACKS, SECONDARY_STACK_SIZE};

global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    /* arm64 Image header (Linux Documentation/arch/arm64/booting.rst). */
    b       primary_entry           /* code0 */
    .long   0                       /* code1 */
    .quad   0                       /* text_offset: load at a 2 MiB boundary + 0 */
    .quad   __hv_image_size         /* image_size, bss and stacks included */
    .quad   0x2                     /* flags: little-endian, 4K pages, base near start of RAM */
    .quad   0, 0, 0                 /* res2-res4 */
    .ascii  "ARM\x64"               /* magic */
    .long   0                       /* res5 */

primary_entry:
    mov     x19, x0                 /* the device tree */
    mrs     x20, CurrentEL
    ubfx    x20, x20, #2, #2

    /* Zero .bss. The MMU is off, so memory is Device: aligned stores only. */
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    str     xzr, [x1], #8
    b       1b
2:
    cmp     x20, #2
    b.ne    wrong_el

    /* No FP/SIMD traps at EL2: compiled Rust uses the SIMD registers. */
    mov     x1, #0x33ff
    msr     cptr_el2, x1
    isb
    /* SP_EL2 is the exception stack; hv itself runs on SP_EL0 (SPSel = 0),
       so a stack overflow into the guard page still has a stack to report on. */
    adrp    x1, __exception_stack_top
    add     x1, x1, :lo12:__exception_stack_top
    msr     spsel, #1
    mov     sp, x1
    adrp    x1, __boot_stack_top
    add     x1, x1, :lo12:__boot_stack_top
    msr     spsel, #0
    mov     sp, x1
    adrp    x1, hv_vectors
    add     x1, x1, :lo12:hv_vectors
    msr     vbar_el2, x1
    isb
    mov     x0, x19
    bl      hv_main_el2
    b       hv_halt

wrong_el:
    /* Not at EL2: set up just enough to say so. */
    cmp     x20, #1
    b.ne    3f
    mov     x1, #(3 << 20)          /* CPACR_EL1.FPEN: no FP/SIMD traps */
    msr     cpacr_el1, x1
    isb
3:  adrp    x1, __boot_stack_top
    add     x1, x1, :lo12:__boot_stack_top
    mov     sp, x1
    mov     x0, x19
    mov     x1, x20
    bl      hv_wrong_el

    .global hv_halt
hv_halt:
    wfe
    b       hv_halt

    /* EL2 vectors: 16 entries of 0x80 bytes, the table 2 KiB aligned. Each
       entry saves x0/x1, puts its index in x0 and joins a common path. From
       EL2 itself (0-7): hv_exception(index, frame) reports and stops. From the
       guest (8-15): guest_exit saves the guest's registers (FP/SIMD too: hv's
       Rust code uses them), calls hv_guest_trap(index, frame), restores the
       (possibly changed) frame and returns to the guest. */
    .section .text.vectors, "ax"
    .balign 0x800
    .global hv_vectors
hv_vectors:
    .irp kind, 0,1,2,3,4,5,6,7
    .balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       exception_common
    .endr
    .irp kind, 8,9,10,11,12,13,14,15
    .balign 0x80
    sub     sp, sp, #{guest_frame}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       guest_exit
    .endr

exception_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    /* The interrupted SP: SP_EL0 (kinds 0-3, hv's own code), this stack
       before the frame (4-7). */
    mrs     x1, sp_el0
    add     x2, sp, #{frame}
    cmp     x0, #4
    csel    x1, x1, x2, lo
    stp     x30, x1, [sp, #240]
    mrs     x1, elr_el2
    mrs     x2, spsr_el2
    stp     x1, x2, [sp, #256]
    mrs     x1, esr_el2
    mrs     x2, far_el2
    stp     x1, x2, [sp, #272]
    mov     x1, sp
    bl      hv_exception
    b       hv_halt

guest_exit:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    /* The guest's stack pointer (for reports): SP_EL0 from EL0, SP_EL1 from EL1.
       SP_EL0 itself is never written here: Linux keeps `current` in it. */
    mrs     x1, spsr_el2
    mrs     x2, sp_el0
    mrs     x3, sp_el1
    tst     x1, #0xc
    csel    x1, x2, x3, eq
    stp     x30, x1, [sp, #240]
    mrs     x1, elr_el2
    mrs     x2, spsr_el2
    stp     x1, x2, [sp, #256]
    mrs     x1, esr_el2
    mrs     x2, far_el2
    stp     x1, x2, [sp, #272]
    add     x2, sp, #{fp_offset}
    stp     q0, q1, [x2, #0]
    stp     q2, q3, [x2, #32]
    stp     q4, q5, [x2, #64]
    stp     q6, q7, [x2, #96]
    stp     q8, q9, [x2, #128]
    stp     q10, q11, [x2, #160]
    stp     q12, q13, [x2, #192]
    stp     q14, q15, [x2, #224]
    stp     q16, q17, [x2, #256]
    stp     q18, q19, [x2, #288]
    stp     q20, q21, [x2, #320]
    stp     q22, q23, [x2, #352]
    stp     q24, q25, [x2, #384]
    stp     q26, q27, [x2, #416]
    stp     q28, q29, [x2, #448]
    stp     q30, q31, [x2, #480]
    mrs     x3, fpcr
    mrs     x4, fpsr
    str     x3, [sp, #{fpcr_offset}]
    str     x4, [sp, #{fpcr_offset} + 8]
    mov     x1, sp
    bl      hv_guest_trap

    add     x2, sp, #{fp_offset}
    ldp     q0, q1, [x2, #0]
    ldp     q2, q3, [x2, #32]
    ldp     q4, q5, [x2, #64]
    ldp     q6, q7, [x2, #96]
    ldp     q8, q9, [x2, #128]
    ldp     q10, q11, [x2, #160]
    ldp     q12, q13, [x2, #192]
    ldp     q14, q15, [x2, #224]
    ldp     q16, q17, [x2, #256]
    ldp     q18, q19, [x2, #288]
    ldp     q20, q21, [x2, #320]
    ldp     q22, q23, [x2, #352]
    ldp     q24, q25, [x2, #384]
    ldp     q26, q27, [x2, #416]
    ldp     q28, q29, [x2, #448]
    ldp     q30, q31, [x2, #480]
    ldr     x3, [sp, #{fpcr_offset}]
    ldr     x4, [sp, #{fpcr_offset} + 8]
    msr     fpcr, x3
    msr     fpsr, x4
    ldp     x1, x2, [sp, #256]
    msr     elr_el2, x1
    msr     spsr_el2, x2
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{guest_frame}
    eret

    /* hv_enter_guest(entry, arg0, spsr, exception_stack_top): leaves hv's
       boot stack for good and enters the guest at `entry` with x0 = arg0 and
       every other general register zero. From then on hv runs only in
       exceptions, on SP_EL2 from `exception_stack_top`. */
    .section .text, "ax"
    .global hv_enter_guest
hv_enter_guest:
    msr     elr_el2, x0
    msr     spsr_el2, x2
    msr     spsel, #1
    mov     sp, x3
    msr     sp_el0, xzr
    mov     x0, x1
    .irp reg, 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30
    mov     x\reg, xzr
    .endr
    eret

    /* A secondary CPU, started by hv through PSCI CPU_ON on the guest's
       behalf: EL2, MMU off, x0 = its index in hv's CPU table. It turns on
       the boot CPU's EL2 stage-1 (SECONDARY_MMU, cleaned to the point of
       coherency by the boot CPU), takes its stacks from SECONDARY_STACKS
       and continues in hv_secondary_main. */
    .global hv_secondary_entry
hv_secondary_entry:
    mov     x19, x0
    mov     x1, #0x33ff
    msr     cptr_el2, x1
    isb
    adrp    x1, hv_vectors
    add     x1, x1, :lo12:hv_vectors
    msr     vbar_el2, x1
    adrp    x1, {mmu}
    add     x1, x1, :lo12:{mmu}
    ldp     x2, x3, [x1, #0]
    ldp     x4, x5, [x1, #16]
    msr     mair_el2, x2
    msr     tcr_el2, x3
    msr     ttbr0_el2, x4
    isb
    tlbi    alle2
    ic      iallu
    dsb     nsh
    isb
    msr     sctlr_el2, x5
    isb
    adrp    x1, {stacks}
    add     x1, x1, :lo12:{stacks}
    ldr     x2, [x1, x19, lsl #3]
    /* The top half of the block is the exception stack (SP_EL2), the bottom half hv's stack here. */
    msr     spsel, #1
    mov     sp, x2
    sub     x2, x2, #{half_stack}
    msr     spsel, #0
    mov     sp, x2
    mov     x0, x19
    bl      hv_secondary_main
    b       hv_halt
"#,
    frame = const FRAME_SIZE,
    guest_frame = const GUEST_FRAME_SIZE,
    fp_offset = const FP_OFFSET,
    fpcr_offset = const FP_OFFSET + 512,
    mmu = sym SECONDARY_MMU,
    stacks = sym SECONDARY_STACKS,
    half_stack = const SECONDARY_STACK_SIZE / 2,
);
