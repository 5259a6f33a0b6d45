//! The PVH entry: QEMU (`-kernel hv.elf`) finds the 32-bit entry in the
//! XEN_ELFNOTE_PHYS32_ENTRY note and starts there in 32-bit protected mode,
//! paging off, with EBX = physical address of `hvm_start_info`.
//!
//! The trampoline clears .bss, identity-maps the low 4 GiB with 2 MiB pages
//! (temporary tables, replaced by hv's real ones as soon as Rust runs),
//! enables PAE, EFER.LME (+NXE where the CPU has it), paging and CR0.WP, then
//! enters 64-bit mode, applies the image's run-time relocations and calls
//! `hv_x86_64_main(start_info_paddr)`.
//!
//! The image is a static PIE linked at its load address, so each relocation
//! is `*offset = addend`. 32-bit code cannot address RIP-relative, so it uses
//! the absolute symbol copies the linker script defines (`__hv_abs_*`).

use core::arch::global_asm;

/// XEN_ELFNOTE_PHYS32_ENTRY.
const PVH_NOTE_TYPE: u32 = 18;
/// ELF relocation type R_X86_64_RELATIVE: the only kind a static PIE carries.
const R_X86_64_RELATIVE: u32 = 8;
/// Boot segment selectors (the trampoline GDT and hv's own GDT agree).
pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;

global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                         /* name size: "Xen\0" */
    .long 8                         /* descriptor size */
    .long {note_type}
    .asciz "Xen"
    .balign 4
    .quad __hv_abs_pvh_entry
    .balign 4

    /* Temporary identity map of 0..4 GiB: PML4 -> PDPT -> 4 PDs of 2 MiB pages. */
    .section .bss.hv_boot_tables, "aw", @nobits
    .balign 4096
    .global hv_boot_pml4
hv_boot_pml4: .zero 4096
    .global hv_boot_pdpt
hv_boot_pdpt: .zero 4096
    .global hv_boot_pd
hv_boot_pd: .zero 4 * 4096
    .balign 8
    .global hv_start_info_paddr
hv_start_info_paddr: .zero 8

    /* Boot GDT: null, 64-bit code, data (accessed bits preset). */
    .section .data.hv_boot_gdt, "aw"
    .balign 16
    .global hv_gdt
hv_gdt:
    .quad 0
    .quad 0x00af9b000000ffff
    .quad 0x00cf93000000ffff
hv_gdt_end:
    .balign 8
    .global hv_boot_gdt_ptr
hv_boot_gdt_ptr:
    .word hv_gdt_end - hv_gdt - 1
    .long __hv_abs_boot_gdt

    .section .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %esi

    /* Clear .bss: the boot tables and hv's statics live there. */
    mov $__hv_abs_bss_start, %edi
    mov $__hv_abs_bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl
    mov %esi, __hv_abs_start_info

    /* PML4[0] -> PDPT; PDPT[0..4] -> the four PDs (present, writable). */
    mov $__hv_abs_boot_pdpt, %eax
    or $0x3, %eax
    mov %eax, __hv_abs_boot_pml4
    mov $__hv_abs_boot_pd, %eax
    or $0x3, %eax
    mov $__hv_abs_boot_pdpt, %edi
    mov $4, %ecx
1:  mov %eax, (%edi)
    add $0x1000, %eax
    add $8, %edi
    loop 1b

    /* 2048 PD entries: 2 MiB pages (present, writable, PS) over 0..4 GiB. */
    mov $__hv_abs_boot_pd, %edi
    mov $0x83, %eax
    mov $2048, %ecx
1:  mov %eax, (%edi)
    add $0x200000, %eax
    add $8, %edi
    loop 1b

    mov %cr4, %eax
    or $0x20, %eax                  /* PAE */
    mov %eax, %cr4
    mov $__hv_abs_boot_pml4, %eax
    mov %eax, %cr3

    /* EFER.LME, plus EFER.NXE when CPUID 0x8000_0001 EDX[20] says NX exists. */
    mov $0x100, %edi
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb 2f
    mov $0x80000001, %eax
    cpuid
    bt $20, %edx
    jnc 2f
    or $0x800, %edi
2:  mov $0xc0000080, %ecx
    rdmsr
    or %edi, %eax
    wrmsr

    mov %cr0, %eax
    or $0x80010001, %eax            /* PG | WP | PE */
    mov %eax, %cr0

    lgdt __hv_abs_boot_gdt_ptr
    mov $__hv_abs_boot_stack_top, %esp
    push ${kernel_cs}
    push $__hv_abs_long_mode_entry
    lret

    .code64
    .global hv_long_mode_entry
hv_long_mode_entry:
    mov ${kernel_ds}, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    lea __hv_boot_stack_top(%rip), %rsp

    /* Apply R_X86_64_RELATIVE relocations: loaded at the link address, so value = addend. */
    lea __hv_rela_start(%rip), %rsi
    lea __hv_rela_end(%rip), %rdi
1:  cmp %rdi, %rsi
    jae 3f
    cmpl ${r_relative}, 8(%rsi)
    jne 2f
    mov (%rsi), %rcx
    mov 16(%rsi), %rax
    mov %rax, (%rcx)
    add $24, %rsi
    jmp 1b
    /* Another relocation kind: the image is not what hv was linked as. Stop here. */
2:  cli
    hlt
    jmp 2b

3:  mov hv_start_info_paddr(%rip), %rdi
    xor %ebp, %ebp
    call hv_x86_64_main
    ud2
    "#,
    note_type = const PVH_NOTE_TYPE,
    kernel_cs = const KERNEL_CS,
    kernel_ds = const KERNEL_DS,
    r_relative = const R_X86_64_RELATIVE,
    options(att_syntax)
);

/// Where the linker put each part of hv (see arch/x86_64.ld).
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    pub text: (u64, u64),
    pub rodata: (u64, u64),
    pub data: (u64, u64),
    pub boot_stack: (u64, u64),
    pub fault_stack: (u64, u64),
    pub stacks: (u64, u64),
    pub image: (u64, u64),
}

extern "C" {
    static __hv_image_start: u8;
    static __hv_image_end: u8;
    static __hv_text_start: u8;
    static __hv_text_end: u8;
    static __hv_rodata_start: u8;
    static __hv_rodata_end: u8;
    static __hv_data_start: u8;
    static __hv_data_end: u8;
    static __hv_stacks_start: u8;
    static __hv_stacks_end: u8;
    static __hv_boot_stack_bottom: u8;
    static __hv_boot_stack_top: u8;
    static __hv_fault_stack_bottom: u8;
    static __hv_fault_stack_top: u8;
}

impl ImageLayout {
    pub fn get() -> ImageLayout {
        fn addr(sym: &u8) -> u64 {
            sym as *const u8 as u64
        }
        // SAFETY: linker-script symbols; only their addresses are taken, never their contents.
        unsafe {
            ImageLayout {
                text: (addr(&__hv_text_start), addr(&__hv_text_end)),
                rodata: (addr(&__hv_rodata_start), addr(&__hv_rodata_end)),
                data: (addr(&__hv_data_start), addr(&__hv_data_end)),
                boot_stack: (addr(&__hv_boot_stack_bottom), addr(&__hv_boot_stack_top)),
                fault_stack: (addr(&__hv_fault_stack_bottom), addr(&__hv_fault_stack_top)),
                stacks: (addr(&__hv_stacks_start), addr(&__hv_stacks_end)),
                image: (addr(&__hv_image_start), addr(&__hv_image_end)),
            }
        }
    }
}
