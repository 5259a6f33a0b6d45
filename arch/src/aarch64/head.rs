//! The arm64 Image header, the entry point and the EL2 exception vectors.
//!
//! QEMU's `-kernel` (like any arm64 boot loader) enters the first byte of the
//! Image with the MMU off, x0 = the device tree's physical address, at the
//! highest EL the guest may use: EL2 with `-M virt,virtualization=on`.

use core::arch::global_asm;

use super::exceptions::FRAME_SIZE;

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
       entry saves x0/x1, puts its index in x0 and joins the common path,
       which saves the rest of the frame and calls hv_exception(index, frame). */
    .section .text.vectors, "ax"
    .balign 0x800
    .global hv_vectors
hv_vectors:
    .irp kind, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    .balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       exception_common
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
       before the frame (4-7), SP_EL1 (8-15, a lower EL). */
    mrs     x1, sp_el0
    add     x2, sp, #{frame}
    cmp     x0, #4
    csel    x1, x1, x2, lo
    mrs     x2, sp_el1
    cmp     x0, #8
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
"#,
    frame = const FRAME_SIZE,
);
