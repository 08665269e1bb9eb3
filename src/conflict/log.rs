//! The conflict log: one JSON object per line, appended when the transaction
//! that resolved the conflict has committed (a rolled-back attempt is retried
//! and decided again, so it is not logged twice).
//!
//! Lines are small and conflicts rare, so they are written synchronously and
//! flushed one by one: a reader (or a crash) never sees half a line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct ConflictLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl ConflictLog {
    pub fn new(path: PathBuf) -> ConflictLog {
        ConflictLog {
            path,
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open (create) the file now, to report a bad path at startup rather than at the first conflict.
    pub fn open(&self) -> std::io::Result<()> {
        self.with_file(|_| Ok(()))
    }

    /// Append `records`, one line each.
    pub fn write(&self, records: &[serde_json::Value]) -> std::io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for r in records {
            text.push_str(&r.to_string());
            text.push('\n');
        }
        self.with_file(|f| {
            f.write_all(text.as_bytes())?;
            f.flush()
        })
    }

    fn with_file<T>(&self, f: impl FnOnce(&mut File) -> std::io::Result<T>) -> std::io::Result<T> {
        let mut slot = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let file = match &mut *slot {
            Some(file) => file,
            empty => empty.insert(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            ),
        };
        f(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_appended_as_lines() {
        let dir = std::env::temp_dir().join(format!("gtid-relay-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.jsonl");
        let _ = std::fs::remove_file(&path);
        let log = ConflictLog::new(path.clone());
        log.write(&[serde_json::json!({"a": 1})]).unwrap();
        log.write(&[
            serde_json::json!({"b": "x"}),
            serde_json::json!({"c": null}),
        ])
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":\"x\"}\n{\"c\":null}\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
