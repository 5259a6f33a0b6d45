//! hv's own command line (arm64: `/chosen/bootargs`; x86: the PVH command line).
//!
//! Options are space-separated `key=value` words:
//! - `guest=none|linux|test` — what hv starts after its self-check (default `none`).
//! - `selftest=wx[,fault][,panic]` — boot-time self-tests: `wx` maps one page
//!   writable and executable on purpose (the W+X check must then refuse to boot);
//!   `fault` touches the guard page below hv's stack (the exception handler must
//!   report it); `panic` panics after the self-check (the panic handler must report it).
//! - `log=off|error|warn|info|debug|trace` — hv's log level (default `info`).
//! - `--` ends hv's options: the rest is the guest's command line.
//!
//! Parsing never fails: an unknown option or a bad value is reported to the
//! caller's warning sink and otherwise ignored, so a typo never stops a boot.

use core::fmt;

use log::LevelFilter;

/// What hv runs once its own boot checks pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guest {
    /// No guest: hv reports and powers the machine off.
    None,
    /// A Linux kernel (and initramfs) handed to hv by the boot loader.
    Linux,
    /// hv's built-in test guest.
    Test,
}

impl Guest {
    pub const fn name(self) -> &'static str {
        match self {
            Guest::None => "none",
            Guest::Linux => "linux",
            Guest::Test => "test",
        }
    }
}

impl fmt::Display for Guest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Boot-time self-tests that break something on purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelfTests {
    /// Map one page writable and executable; the W+X check must catch it.
    pub wx: bool,
    /// Touch the unmapped guard page below hv's stack; the exception handler must report it.
    pub fault: bool,
    /// Panic once the self-check passed; the panic handler must report it.
    pub panic: bool,
}

/// hv's configuration as the command line sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config<'a> {
    pub guest: Guest,
    pub selftests: SelfTests,
    pub log_level: LevelFilter,
    /// Everything after `--`, trimmed; empty when there is no `--`.
    pub guest_cmdline: &'a str,
}

impl Default for Config<'_> {
    fn default() -> Self {
        Config {
            guest: Guest::None,
            selftests: SelfTests::default(),
            log_level: LevelFilter::Info,
            guest_cmdline: "",
        }
    }
}

/// Something on the command line hv ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning<'a> {
    /// A word hv does not know.
    UnknownOption(&'a str),
    /// A known key with a value it does not take.
    BadValue {
        key: &'a str,
        value: &'a str,
        expected: &'static str,
    },
}

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::UnknownOption(word) => {
                write!(f, "unknown command-line option '{word}' ignored")
            }
            Warning::BadValue { key, value, expected } => {
                write!(f, "bad value '{value}' for {key}= ignored (expected {expected})")
            }
        }
    }
}

const GUEST_VALUES: &str = "none, linux or test";
const SELFTEST_VALUES: &str = "a comma-separated list of wx, fault, panic";
const LOG_VALUES: &str = "off, error, warn, info, debug or trace";

/// Parses hv's command line; `warn` hears about every word that was ignored.
pub fn parse<'a>(cmdline: &'a str, mut warn: impl FnMut(Warning<'a>)) -> Config<'a> {
    let mut config = Config::default();
    let (own, guest_cmdline) = split_guest_part(cmdline);
    config.guest_cmdline = guest_cmdline;
    for word in own.split_ascii_whitespace() {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        match (key, value) {
            ("guest", Some(v)) => match parse_guest(v) {
                Some(g) => config.guest = g,
                None => warn(Warning::BadValue {
                    key,
                    value: v,
                    expected: GUEST_VALUES,
                }),
            },
            ("selftest", Some(v)) => {
                for test in v.split(',') {
                    match test {
                        "wx" => config.selftests.wx = true,
                        "fault" => config.selftests.fault = true,
                        "panic" => config.selftests.panic = true,
                        _ => warn(Warning::BadValue {
                            key,
                            value: test,
                            expected: SELFTEST_VALUES,
                        }),
                    }
                }
            }
            ("log", Some(v)) => match parse_level(v) {
                Some(l) => config.log_level = l,
                None => warn(Warning::BadValue {
                    key,
                    value: v,
                    expected: LOG_VALUES,
                }),
            },
            ("guest" | "selftest" | "log", None) => warn(Warning::BadValue {
                key,
                value: "",
                expected: match key {
                    "guest" => GUEST_VALUES,
                    "selftest" => SELFTEST_VALUES,
                    _ => LOG_VALUES,
                },
            }),
            _ => warn(Warning::UnknownOption(word)),
        }
    }
    config
}

/// Splits at the first `--` word: hv's options before, the guest's after.
fn split_guest_part(cmdline: &str) -> (&str, &str) {
    let mut rest = cmdline;
    let mut offset = 0;
    loop {
        let trimmed = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        offset += rest.len() - trimmed.len();
        if trimmed.is_empty() {
            return (cmdline, "");
        }
        let word_len = trimmed.find(|c: char| c.is_ascii_whitespace()).unwrap_or(trimmed.len());
        if &trimmed[..word_len] == "--" {
            return (&cmdline[..offset], cmdline[offset + word_len..].trim());
        }
        offset += word_len;
        rest = &trimmed[word_len..];
    }
}

fn parse_guest(value: &str) -> Option<Guest> {
    match value {
        "none" => Some(Guest::None),
        "linux" => Some(Guest::Linux),
        "test" => Some(Guest::Test),
        _ => None,
    }
}

fn parse_level(value: &str) -> Option<LevelFilter> {
    Some(match value {
        "off" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    fn parse_collect(cmdline: &str) -> (Config<'_>, Vec<Warning<'_>>) {
        let mut warnings = Vec::new();
        let config = parse(cmdline, |w| warnings.push(w));
        (config, warnings)
    }

    #[test]
    fn empty_gives_defaults() {
        let (config, warnings) = parse_collect("");
        assert_eq!(config, Config::default());
        assert_eq!(config.guest, Guest::None);
        assert_eq!(config.log_level, LevelFilter::Info);
        assert!(warnings.is_empty());
    }

    #[test]
    fn known_options() {
        let (config, warnings) = parse_collect("  guest=linux\tselftest=wx log=debug ");
        assert_eq!(config.guest, Guest::Linux);
        assert!(config.selftests.wx);
        assert!(!config.selftests.fault);
        assert_eq!(config.log_level, LevelFilter::Debug);
        assert!(warnings.is_empty());
    }

    #[test]
    fn selftest_list_and_later_options_win() {
        let (config, warnings) = parse_collect("selftest=wx,fault guest=test guest=none log=off log=trace");
        assert_eq!(
            config.selftests,
            SelfTests {
                wx: true,
                fault: true,
                panic: false
            }
        );
        assert_eq!(config.guest, Guest::None);
        assert_eq!(config.log_level, LevelFilter::Trace);
        assert!(warnings.is_empty());
        let (config, _) = parse_collect("selftest=panic");
        assert!(config.selftests.panic && !config.selftests.wx);
    }

    #[test]
    fn unknown_and_bad_values_warn_and_keep_defaults() {
        let (config, warnings) = parse_collect("console=ttyAMA0 guest=windows selftest=wx,boom log=loud quiet guest");
        assert_eq!(config.guest, Guest::None);
        assert!(config.selftests.wx);
        assert_eq!(config.log_level, LevelFilter::Info);
        assert_eq!(
            warnings,
            [
                Warning::UnknownOption("console=ttyAMA0"),
                Warning::BadValue {
                    key: "guest",
                    value: "windows",
                    expected: GUEST_VALUES
                },
                Warning::BadValue {
                    key: "selftest",
                    value: "boom",
                    expected: SELFTEST_VALUES
                },
                Warning::BadValue {
                    key: "log",
                    value: "loud",
                    expected: LOG_VALUES
                },
                Warning::UnknownOption("quiet"),
                Warning::BadValue {
                    key: "guest",
                    value: "",
                    expected: GUEST_VALUES
                },
            ]
        );
    }

    #[test]
    fn warning_messages_name_the_word() {
        let (_, warnings) = parse_collect("nokaslr log=x");
        let texts: Vec<_> = warnings.iter().map(|w| std::format!("{w}")).collect();
        assert_eq!(texts[0], "unknown command-line option 'nokaslr' ignored");
        assert_eq!(
            texts[1],
            "bad value 'x' for log= ignored (expected off, error, warn, info, debug or trace)"
        );
    }

    #[test]
    fn double_dash_separates_the_guest_command_line() {
        let (config, warnings) = parse_collect("guest=linux -- console=ttyAMA0 --  init=/init  ");
        assert_eq!(config.guest, Guest::Linux);
        assert_eq!(config.guest_cmdline, "console=ttyAMA0 --  init=/init");
        assert!(warnings.is_empty());

        let (config, _) = parse_collect("--");
        assert_eq!(config.guest_cmdline, "");
        // `--x` is a word of its own, not the separator.
        let (config, warnings) = parse_collect("--x guest=test");
        assert_eq!(config.guest, Guest::Test);
        assert_eq!(config.guest_cmdline, "");
        assert_eq!(warnings, [Warning::UnknownOption("--x")]);
    }
}
