//! A YAML reader that keeps positions.
//!
//! serde-based YAML readers stop at the first error and forget where values came from. Validation
//! wants every error of a file at once, each with `file:line:column`, so region files are read in
//! two steps: this module turns the YAML event stream (saphyr-parser) into a plain JSON value plus
//! an index from JSON pointer to source position; the schema check and the semantic checks then
//! report errors by pointer and look the position up here.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

/// A problem found while reading YAML, before any schema is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    /// JSON pointer of the offending node, when it has one.
    pub pointer: String,
    pub message: String,
}

/// A parsed document: its value and where each part of it was written.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

impl Document {
    /// Where the value at `pointer` starts; falls back to the nearest ancestor that has a
    /// position (a missing required key is reported at its parent mapping).
    pub fn position(&self, pointer: &str) -> Pos {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Pos { line: 1, col: 1 },
            }
        }
    }

    /// Where the key of the mapping entry at `pointer` was written (for unknown-key errors).
    pub fn key_position(&self, pointer: &str) -> Pos {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.position(pointer))
    }
}

/// Escapes one JSON-pointer segment (RFC 6901).
pub fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Reads one YAML document. Every error found is returned, not just the first one the parser
/// can report (a syntax error ends reading; duplicate keys and the like are all collected).
pub fn parse(src: &str) -> Result<Document, Vec<SyntaxError>> {
    let mut reader = Reader {
        parser: Parser::new_from_str(src),
        values: HashMap::new(),
        keys: HashMap::new(),
        anchors: HashMap::new(),
        errors: Vec::new(),
        last: Pos { line: 1, col: 1 },
    };
    let value = reader.stream();
    match value {
        Some(value) if reader.errors.is_empty() => Ok(Document {
            value,
            values: reader.values,
            keys: reader.keys,
        }),
        _ => Err(reader.errors),
    }
}

struct Reader<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
    anchors: HashMap<usize, Value>,
    errors: Vec<SyntaxError>,
    last: Pos,
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Option<(Event<'a>, Pos)> {
        match self.parser.next_event()? {
            Ok((event, span)) => {
                let pos = Pos::from_span(&span);
                self.last = pos;
                Some((event, pos))
            }
            Err(e) => {
                let m = e.marker();
                self.errors.push(SyntaxError {
                    pos: Pos {
                        line: m.line(),
                        col: m.col() + 1,
                    },
                    pointer: String::new(),
                    message: format!("YAML syntax error: {}", e.info()),
                });
                None
            }
        }
    }

    fn error(&mut self, pos: Pos, pointer: &str, message: impl Into<String>) {
        self.errors.push(SyntaxError {
            pos,
            pointer: pointer.to_string(),
            message: message.into(),
        });
    }

    /// StreamStart, exactly one document, StreamEnd.
    fn stream(&mut self) -> Option<Value> {
        let mut documents = Vec::new();
        while let Some((event, pos)) = self.next() {
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => break,
                Event::DocumentStart(_) => {
                    let (event, pos) = self.next()?;
                    let value = self.node(event, pos, "")?;
                    documents.push((value, pos));
                }
                _ => {
                    self.error(pos, "", "unexpected YAML event");
                    return None;
                }
            }
        }
        match documents.len() {
            0 => {
                self.error(
                    self.last,
                    "",
                    "the file is empty: expected a mapping of settings",
                );
                None
            }
            1 => {
                let (value, pos) = documents.remove(0);
                if value.is_null() {
                    self.error(pos, "", "the file is empty: expected a mapping of settings");
                    return None;
                }
                Some(value)
            }
            _ => {
                let pos = documents[1].1;
                self.error(pos, "", "a region file holds exactly one YAML document");
                None
            }
        }
    }

    fn node(&mut self, event: Event<'a>, pos: Pos, pointer: &str) -> Option<Value> {
        self.values.insert(pointer.to_string(), pos);
        let (value, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let forced_string = tag
                    .as_ref()
                    .is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                let value = if style == ScalarStyle::Plain && !forced_string {
                    resolve_plain(&text)
                } else {
                    Value::String(text.into_owned())
                };
                (value, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, pos) = self.next()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    let child = format!("{pointer}/{}", items.len());
                    items.push(self.node(event, pos, &child)?);
                }
                (Value::Array(items), anchor)
            }
            Event::MappingStart(anchor, _) => (self.mapping(pointer)?, anchor),
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(v) => return Some(v.clone()),
                None => {
                    self.error(pos, pointer, "alias to an unknown anchor");
                    return Some(Value::Null);
                }
            },
            _ => {
                self.error(pos, pointer, "unexpected YAML event");
                return None;
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        Some(value)
    }

    fn mapping(&mut self, pointer: &str) -> Option<Value> {
        let mut map = Map::new();
        loop {
            let (event, key_pos) = self.next()?;
            let key = match event {
                Event::MappingEnd => break,
                Event::Scalar(text, _, _, _) => text.into_owned(),
                other => {
                    // A mapping or sequence used as a key: read it to stay in sync, then reject.
                    let _ = self.node(other, key_pos, "");
                    self.error(key_pos, pointer, "keys must be plain strings");
                    let (event, pos) = self.next()?;
                    let _ = self.node(event, pos, "");
                    continue;
                }
            };
            let child = format!("{pointer}/{}", pointer_segment(&key));
            let (event, pos) = self.next()?;
            let value = self.node(event, pos, &child)?;
            if map.contains_key(&key) {
                let first = self.keys.get(&child).copied().unwrap_or_default();
                self.error(
                    key_pos,
                    &child,
                    format!("duplicate key `{key}` (first set at line {})", first.line),
                );
                continue;
            }
            self.keys.insert(child, key_pos);
            map.insert(key, value);
        }
        Some(Value::Object(map))
    }
}

/// Resolves a plain scalar with the YAML 1.2 core schema (so `no` stays a string, unlike 1.1).
fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(n) = parse_int(s) {
        return Value::Number(n);
    }
    if looks_like_float(s)
        && let Ok(f) = s.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(s.to_string())
}

fn parse_int(s: &str) -> Option<Number> {
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = if let Some(hex) = digits.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        u64::from_str_radix(oct, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<u64>().ok()?
    } else {
        return None;
    };
    if neg {
        let v = i64::try_from(magnitude).ok()?;
        Some(Number::from(-v))
    } else {
        Some(Number::from(magnitude))
    }
}

fn looks_like_float(s: &str) -> bool {
    let body = s.trim_start_matches(['-', '+']);
    !body.is_empty()
        && body.bytes().any(|b| b.is_ascii_digit())
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_recorded_for_values_and_keys() {
        let doc = parse("a: 1\nb:\n  c: [x, y]\n").expect("valid");
        assert_eq!(doc.position("/a"), Pos { line: 1, col: 4 });
        assert_eq!(doc.key_position("/b/c"), Pos { line: 3, col: 3 });
        assert_eq!(doc.position("/b/c/1"), Pos { line: 3, col: 10 });
        assert_eq!(doc.position("/b/missing"), Pos { line: 3, col: 3 });
    }

    #[test]
    fn core_schema_scalars() {
        let doc =
            parse("a: no\nb: 0x10\nc: '5'\nd: 1.5\ne: ~\nf: -3\ng: 10.0.0.0/16\n").expect("valid");
        let v = &doc.value;
        assert_eq!(v["a"], "no");
        assert_eq!(v["b"], 16);
        assert_eq!(v["c"], "5");
        assert_eq!(v["d"], 1.5);
        assert!(v["e"].is_null());
        assert_eq!(v["f"], -3);
        assert_eq!(v["g"], "10.0.0.0/16");
    }

    #[test]
    fn duplicate_keys_are_all_reported() {
        let errs = parse("a: 1\nb: 2\na: 3\nb: 4\n").expect_err("duplicates");
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].pos, Pos { line: 3, col: 1 });
        assert!(
            errs[0]
                .message
                .contains("duplicate key `a` (first set at line 1)")
        );
    }

    #[test]
    fn empty_and_syntax_errors() {
        assert!(parse("").expect_err("empty")[0].message.contains("empty"));
        assert!(parse("# only a comment\n").is_err());
        let errs = parse("a: [1, 2\nb: 3\n").expect_err("syntax");
        assert!(errs[0].message.starts_with("YAML syntax error"), "{errs:?}");
    }

    #[test]
    fn anchors_are_resolved() {
        let doc = parse("a: &x {k: 1}\nb: *x\n").expect("valid");
        assert_eq!(doc.value["b"]["k"], 1);
    }
}
