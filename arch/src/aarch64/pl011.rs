//! The PL011 UART (Arm PrimeCell UART, DDI 0183): hv's console.

use core::fmt;

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields! [u32,
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    LCR_H [
        /// Word length.
        WLEN OFFSET(5) NUMBITS(2) [EightBit = 0b11],
        /// FIFOs enabled.
        FEN OFFSET(4) NUMBITS(1) []
    ],
    CR [
        RXE OFFSET(9) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) []
    ]
];

register_structs! {
    Registers {
        (0x000 => dr: ReadWrite<u32>),
        (0x004 => _reserved0),
        (0x018 => fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        (0x02c => lcr_h: ReadWrite<u32, LCR_H::Register>),
        (0x030 => cr: ReadWrite<u32, CR::Register>),
        (0x034 => _reserved2),
        (0x044 => icr: WriteOnly<u32>),
        (0x048 => @END),
    }
}

/// Bytes of the register block hv maps.
pub const MMIO_SIZE: u64 = 0x1000;

pub struct Pl011 {
    regs: &'static Registers,
}

// SAFETY: the registers are MMIO, not Rust-shared memory; hv serialises all
// use of the one `Pl011` behind the console mutex.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// # Safety
    /// `base` must be a PL011's registers, reachable at VA == PA (MMU off, or
    /// mapped as device memory) for the rest of hv's life, used by no one else.
    pub unsafe fn new(base: u64) -> Pl011 {
        // SAFETY: the caller promises `base` is the device's register block.
        let regs = unsafe { &*(base as usize as *const Registers) };
        Pl011 { regs }
    }

    /// 8N1 with FIFOs, transmit and receive on. The baud rate is left as the
    /// firmware set it (QEMU's model has none).
    pub fn init(&mut self) {
        self.flush();
        self.regs.cr.set(0);
        self.regs.icr.set(0x7ff);
        self.regs.lcr_h.write(LCR_H::WLEN::EightBit + LCR_H::FEN::SET);
        self.regs.cr.write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
    }

    pub fn put_byte(&mut self, byte: u8) {
        while self.regs.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.regs.dr.set(byte as u32);
    }

    /// Waits until every byte has left the UART (before power-off).
    pub fn flush(&self) {
        while self.regs.fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }
}

impl fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.put_byte(b'\r');
            }
            self.put_byte(byte);
        }
        Ok(())
    }
}
