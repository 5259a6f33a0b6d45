//! Running the `ptdump` binary from tests.

use std::path::PathBuf;
use std::process::{Command, Output};

/// TCR_EL1: 48-bit VAs in both halves, 4K granules.
pub const TCR_48: u64 = 16 | (16 << 16) | (0b10 << 30);

/// A temporary file removed when dropped.
pub struct TempFile(PathBuf);

impl TempFile {
    pub fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("ptdump-test-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }
    /// Replaces the file's contents.
    pub fn rewrite(&self, bytes: &[u8]) {
        std::fs::write(&self.0, bytes).unwrap();
    }
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn ptdump(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptdump")).args(args).output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}
