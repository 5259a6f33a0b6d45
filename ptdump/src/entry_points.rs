//! The public entry points every format module has. They are the same
//! functions for every table format, written once here; each module expands
//! them for its own format type, so a caller cannot hand one format's tables
//! to another format's dumper.

/// Expands to `dump` and `dump_with_limits` for `format`, printing in the
/// style `style(&format)` returns. The attributes given first (the doc
/// comment) go on `dump`.
macro_rules! dump_entry_points {
    ($(#[$dump_attr:meta])* format: $format:ty, style: $style:path $(,)?) => {
        $(#[$dump_attr])*
        pub fn dump<W, M>(
            out: &mut W,
            format: &$format,
            mem: &M,
            root: u64,
            range: ::pagewalk::AddrRange,
            markers: &[$crate::Marker<'_>],
        ) -> ::core::result::Result<$crate::DumpStats, ::core::fmt::Error>
        where
            W: ::core::fmt::Write + ?Sized,
            M: ::pagewalk::TableMemory + ?Sized,
        {
            dump_with_limits(out, format, mem, root, range, markers, ::pagewalk::WalkLimits::default())
        }

        /// [`dump`] with a bound on the tables walked.
        pub fn dump_with_limits<W, M>(
            out: &mut W,
            format: &$format,
            mem: &M,
            root: u64,
            range: ::pagewalk::AddrRange,
            markers: &[$crate::Marker<'_>],
            limits: ::pagewalk::WalkLimits,
        ) -> ::core::result::Result<$crate::DumpStats, ::core::fmt::Error>
        where
            W: ::core::fmt::Write + ?Sized,
            M: ::pagewalk::TableMemory + ?Sized,
        {
            $crate::engine::dump(out, format, mem, root, range, markers, $style(format), limits)
        }
    };
}

/// Expands to `check_wx`, `check_wx_with` and `wx_session` for `format`, judging with the
/// rules `wx_arch(&format)` returns and printing lines in `style(&format)`.
/// The attributes given first (the doc comment) go on `check_wx`.
macro_rules! wx_entry_points {
    ($(#[$check_attr:meta])* format: $format:ty, style: $style:path, wx_arch: $wx_arch:path $(,)?) => {
        $(#[$check_attr])*
        pub fn check_wx<W, M>(
            out: &mut W,
            format: &$format,
            mem: &M,
            root: u64,
            range: ::pagewalk::AddrRange,
        ) -> ::core::result::Result<$crate::WxReport, ::core::fmt::Error>
        where
            W: ::core::fmt::Write + ?Sized,
            M: ::pagewalk::TableMemory + ?Sized,
        {
            check_wx_with(out, format, mem, root, range, &$crate::WxOptions::default())
        }

        /// [`check_wx`] with options (e.g. list every offending range).
        pub fn check_wx_with<W, M>(
            out: &mut W,
            format: &$format,
            mem: &M,
            root: u64,
            range: ::pagewalk::AddrRange,
            options: &$crate::WxOptions,
        ) -> ::core::result::Result<$crate::WxReport, ::core::fmt::Error>
        where
            W: ::core::fmt::Write + ?Sized,
            M: ::pagewalk::TableMemory + ?Sized,
        {
            let mut session = wx_session(format, options);
            session.feed(out, mem, root, range)?;
            session.finish(out)
        }

        /// [`check_wx_with`] in pieces: a session to feed consecutive
        /// sub-ranges, each one walk bounded by `options.limits`, whose
        /// output is that of one [`check_wx_with`] over their union.
        pub fn wx_session(format: &$format, options: &$crate::WxOptions) -> $crate::WxSession<$format> {
            $crate::WxSession::new(*format, $style(format), $wx_arch(format), options)
        }
    };
}

pub(crate) use {dump_entry_points, wx_entry_points};
