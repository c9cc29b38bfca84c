//! Diagnostics about region files: `file:line:column: field.path: message`.

use std::fmt;
use std::path::{Path, PathBuf};

use super::yaml::{Document, Pos};

/// One problem in one region file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub pos: Option<Pos>,
    /// Dotted field path (`brokers.count`, `network.subnets[1].cidr`); empty for the whole file.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(pos) = self.pos {
            write!(f, ":{}:{}", pos.line, pos.col)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Collects the diagnostics of one file, locating JSON pointers in its parsed document.
pub struct Sink<'d> {
    file: PathBuf,
    doc: &'d Document,
    pub found: Vec<Diagnostic>,
}

impl<'d> Sink<'d> {
    pub fn new(file: &Path, doc: &'d Document) -> Self {
        Sink {
            file: file.to_path_buf(),
            doc,
            found: Vec::new(),
        }
    }

    /// An error about the value at `pointer`.
    pub fn at(&mut self, pointer: &str, message: impl Into<String>) {
        let pos = self.doc.position(pointer);
        self.push(pos, pointer, message.into());
    }

    /// An error about the key at `pointer` (unknown or misplaced keys).
    pub fn at_key(&mut self, pointer: &str, message: impl Into<String>) {
        let pos = self.doc.key_position(pointer);
        self.push(pos, pointer, message.into());
    }

    fn push(&mut self, pos: Pos, pointer: &str, message: String) {
        self.found.push(Diagnostic {
            file: self.file.clone(),
            pos: Some(pos),
            field: field_path(pointer),
            message,
        });
    }
}

/// `/network/subnets/1/cidr` → `network.subnets[1].cidr`.
pub fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

/// Sorts diagnostics by file and position so output is stable and reads top to bottom.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (&a.file, a.pos, &a.field, &a.message).cmp(&(&b.file, b.pos, &b.field, &b.message))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_field_paths() {
        assert_eq!(field_path("/brokers/count"), "brokers.count");
        assert_eq!(
            field_path("/network/subnets/1/cidr"),
            "network.subnets[1].cidr"
        );
        assert_eq!(field_path(""), "");
        assert_eq!(field_path("/tags/a~1b"), "tags.a/b");
    }
}
