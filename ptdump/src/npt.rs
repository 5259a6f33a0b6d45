//! AMD nested page tables in x86 ptdump lines (`USR RW PWT PCD PSE PAT GLB NX`
//! columns then `pgd`..`pte`), over guest-physical addresses. Every NPT
//! mapping a guest can use carries `USR`.

use pagewalk::x86::Npt;
use pagewalk::Format;

use crate::engine::{Flavor, Style};
use crate::{entry_points, Marker};

/// One marker, at guest-physical 0.
pub const GUEST_PHYSICAL: [Marker<'static>; 1] = [Marker::new(0, "Guest Physical")];

fn style(format: &Npt) -> Style {
    Style {
        flavor: Flavor::X86,
        root: format.root_level(),
    }
}

entry_points::dump_entry_points! {
    /// Dumps the tables rooted at `root` over `range` (guest-physical addresses).
    format: Npt,
    style: style,
}
