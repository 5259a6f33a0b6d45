//! Intel EPT in the spirit of the stage-2 dump (there is no Linux EPT dump):
//! range, size, the level as a number (pagewalk's numbering: 3 maps 4K,
//! 2 maps 2M, 1 maps 1G), then `R W X`, `UX` (user execute, only with
//! mode-based execute control), the memory type (`WB UC WC WT WP`, as Xen
//! names them), `IPAT` and `BLK` for a large page.
//!
//! ```text
//! 0x0000000000000000-0x0000000000200000           2M 2 R W X WB IPAT BLK
//! 0x00000000fee00000-0x00000000fee01000           4K 3 R W   UC
//! ```

use pagewalk::ept::Ept;
use pagewalk::Format;

use crate::engine::{Flavor, Style};
use crate::{entry_points, Marker};

/// One marker, at guest-physical 0.
pub const GUEST_PHYSICAL: [Marker<'static>; 1] = [Marker::new(0, "Guest Physical")];

fn style(format: &Ept) -> Style {
    Style {
        flavor: Flavor::Ept {
            mode_based_exec: format.mode_based_exec(),
        },
        root: format.root_level(),
    }
}

entry_points::dump_entry_points! {
    /// Dumps the tables rooted at `root` over `range` (guest-physical addresses).
    format: Ept,
    style: style,
}
