//! arm64 stage-2 tables in the format of KVM's `stage2_page_tables` debugfs
//! file (`arch/arm64/kvm/ptdump.c`): the level as a number, then `F R W X AF BLK`.
//!
//! ```text
//! ---[ Guest IPA ]---
//! 0x0000000000000000-0x0000000001000000          16M 2
//! 0x0000000001020000-0x0000000001021000           4K 3   R W X AF
//! 0x0000000080000000-0x0000000081200000          18M 2   R W   AF BLK
//! ```
//! `X` is shown when descriptor bit 54 (XN) is clear, as KVM does without
//! FEAT_XNX. Lines never end in blanks (KVM pads the empty `BLK` column).

use pagewalk::arm64::Stage2;
use pagewalk::Format;

use crate::engine::{Flavor, Style};
use crate::{entry_points, Marker};

/// KVM's one marker, at IPA 0.
pub const GUEST_IPA: [Marker<'static>; 1] = [Marker::new(0, "Guest IPA")];

fn style(format: &Stage2) -> Style {
    Style {
        flavor: Flavor::Stage2,
        root: format.root_level(),
    }
}

entry_points::dump_entry_points! {
    /// Dumps the tables rooted at `root` over `range` (guest-physical addresses).
    format: Stage2,
    style: style,
}
