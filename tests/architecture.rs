//! The layering of ARCHITECTURE.md, checked on the source itself: spec → model → plan →
//! engine → commands, one direction, no import circle between files, each external system
//! reached from one folder only. Reads `src/` as text: comments and string literals are
//! stripped, `use` groups are expanded, and every `crate::…`/`super::…` path is resolved to the
//! file that defines the module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A source file and the module path it defines (`engine::apply`, `` for lib.rs).
struct File {
    module: String,
    text: String,
}

fn files() -> BTreeMap<String, File> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("src dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    paths
        .into_iter()
        .filter(|p| !p.ends_with("main.rs"))
        .map(|p| {
            let rel = p
                .strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .to_string();
            let module = rel
                .trim_end_matches(".rs")
                .trim_end_matches("/mod")
                .trim_end_matches("lib")
                .replace('/', "::");
            let text = strip(&std::fs::read_to_string(&p).expect("read"));
            (rel, File { module, text })
        })
        .collect()
}

/// The source without comments, string and char literals (their contents could look like
/// paths), and without `#[cfg(test)]` modules (unit tests may import what the layer may not).
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'r' && (b[i + 1..].starts_with(b"\"") || b[i + 1..].starts_with(b"#")) {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while j < b.len() && b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            if j < b.len() && b[j] == b'"' {
                let end = format!("\"{}", "#".repeat(hashes));
                j += 1;
                while j < b.len() && !b[j..].starts_with(end.as_bytes()) {
                    j += 1;
                }
                i = j + end.len();
                out.push_str("\"\"");
            } else {
                out.push('r');
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('x', '\n'); lifetimes ('a) are left alone.
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            let ch = src[i..].chars().next().expect("char");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    match out.find("#[cfg(test)]\nmod tests") {
        Some(at) => out[..at].to_string(),
        None => out,
    }
}

/// Every path a `use` declaration names, braces expanded: `use a::{b, c::{d, e}}` gives
/// `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    // Renames (`x as y`) name the same item; drop them before the whitespace goes.
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut kept = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "as" {
            i += 2;
        } else {
            kept.push(words[i]);
            i += 1;
        }
    }
    let tree: String = kept.concat();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{prefix}{p}")))
        .collect()
}

/// Every crate-relative path a file mentions, made absolute (`engine::planning::RegionWork`).
fn paths_in(file: &File) -> Vec<String> {
    let mut raw = Vec::new();
    let text = &file.text;
    // `use` declarations (with groups).
    let mut rest = text.as_str();
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let tail = &rest[at + 4..];
        if before.is_none_or(|c| !c.is_alphanumeric() && c != '_')
            && let Some(end) = tail.find(';')
        {
            raw.extend(expand(&tail[..end]));
        }
        rest = tail;
    }
    // Inline paths: crate::a::b, super::a.
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(start) {
            let pos = from + at;
            let before = text[..pos].chars().last();
            if before.is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != ':') {
                let path: String = text[pos..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                raw.push(path);
            }
            from = pos + start.len();
        }
    }
    let parent = |m: &str| {
        m.rsplit_once("::")
            .map_or(String::new(), |(p, _)| p.to_string())
    };
    raw.into_iter()
        .filter_map(|p| {
            let p = p.trim_end_matches(':').to_string();
            let mut base = if let Some(r) = p.strip_prefix("crate::") {
                return Some(r.to_string());
            } else if p.starts_with("super::") || p.starts_with("self::") {
                file.module.clone()
            } else {
                return None;
            };
            let mut r = p.as_str();
            loop {
                if let Some(x) = r.strip_prefix("super::") {
                    base = parent(&base);
                    r = x;
                } else if let Some(x) = r.strip_prefix("self::") {
                    r = x;
                } else {
                    break;
                }
            }
            Some(if base.is_empty() {
                r.to_string()
            } else {
                format!("{base}::{r}")
            })
        })
        .collect()
}

/// File → the files it imports from (itself excluded).
fn graph(files: &BTreeMap<String, File>) -> BTreeMap<String, BTreeSet<String>> {
    let by_module: BTreeMap<&str, &str> = files
        .iter()
        .map(|(path, f)| (f.module.as_str(), path.as_str()))
        .collect();
    files
        .iter()
        .map(|(path, f)| {
            let targets = paths_in(f)
                .into_iter()
                .filter_map(|p| {
                    // The longest prefix of the path that is a module of its own file.
                    let segments: Vec<&str> = p.split("::").collect();
                    (1..=segments.len())
                        .rev()
                        .find_map(|n| by_module.get(segments[..n].join("::").as_str()))
                        .map(|t| t.to_string())
                })
                .filter(|t| t != path && t != "lib.rs")
                .collect();
            (path.clone(), targets)
        })
        .collect()
}

fn layer(path: &str) -> &str {
    path.split('/')
        .next()
        .unwrap_or(path)
        .trim_end_matches(".rs")
}

#[test]
fn no_import_circle_between_files() {
    let g = graph(&files());
    // Depth-first search with colours; a grey target closes a cycle.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        colour: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        cycles: &mut Vec<String>,
    ) {
        colour.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for t in g.get(n).into_iter().flatten() {
            match colour.get(t.as_str()).copied().unwrap_or(0) {
                0 => visit(t, g, colour, stack, cycles),
                1 => {
                    let from = stack.iter().position(|s| s == t).unwrap_or(0);
                    cycles.push(format!("{} -> {t}", stack[from..].join(" -> ")));
                }
                _ => {}
            }
        }
        stack.pop();
        colour.insert(n.to_string(), 2);
    }
    let mut colour = BTreeMap::new();
    let mut cycles = Vec::new();
    for n in g.keys() {
        if colour.get(n.as_str()).copied().unwrap_or(0) == 0 {
            visit(n, &g, &mut colour, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import circles:\n{}", cycles.join("\n"));
    // The check sees real edges (a parser that found none would pass vacuously).
    assert!(g["engine/apply.rs"].contains("engine/planning.rs"));
    assert!(g["commands/up.rs"].contains("engine/saved.rs"));
}

/// Which layers each layer may import from. Everything may use `spec`, `model`, `error` and
/// `files`; nothing may import `commands` or `cli` besides `commands`/`cli`/`lib`.
#[test]
fn layers_import_in_one_direction() {
    let base = ["spec", "model", "error", "files", "endpoints", "pki"];
    let allowed: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        ("spec", vec![]),
        ("model", vec![]),
        ("error", vec!["render", "broker"]),
        ("files", vec![]),
        ("pki", vec![]),
        ("endpoints", vec![]),
        ("render", vec![]),
        ("broker", vec![]),
        ("cloud", vec![]),
        ("plan", vec!["render", "broker", "cloud"]),
        ("engine", vec!["plan", "render", "broker", "cloud"]),
        ("printer", vec!["engine", "plan"]),
        ("sandbox", vec!["engine", "render", "broker"]),
        ("cli", vec!["engine", "printer", "sandbox"]),
        (
            "commands",
            vec!["engine", "printer", "cli", "sandbox", "render"],
        ),
    ]);
    let g = graph(&files());
    let mut bad = Vec::new();
    for (from, targets) in &g {
        let l = layer(from);
        let Some(ok) = allowed.get(l) else {
            assert_eq!(from, "lib.rs", "a top-level module without a layer: {from}");
            continue;
        };
        for t in targets {
            let tl = layer(t);
            if tl != l && !base.contains(&tl) && !ok.contains(&tl) {
                bad.push(format!("{from} imports {t}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "imports against the layering:\n{}",
        bad.join("\n")
    );
}

#[test]
fn commands_are_thin() {
    let all = files();
    let g = graph(&all);
    for (path, f) in all.iter().filter(|(p, _)| p.starts_with("commands/")) {
        let lines = f.text.lines().count();
        assert!(lines <= 250, "{path} has {lines} lines (at most 250)");
        for t in &g[path] {
            assert!(
                !t.starts_with("cloud/") && !t.starts_with("broker/"),
                "{path} imports {t}: commands reach AWS and RabbitMQ through the engine"
            );
            if path != "commands/render.rs" {
                assert!(!t.starts_with("render/"), "{path} imports {t}");
            }
            if path != "commands/sandbox.rs" {
                assert!(!t.starts_with("sandbox/"), "{path} imports {t}");
            }
        }
    }
}

#[test]
fn the_engine_prints_nothing_and_the_model_calls_nothing() {
    let all = files();
    let g = graph(&all);
    for (path, targets) in &g {
        if path.starts_with("engine/") || path.starts_with("plan/") {
            for t in targets {
                assert!(!t.starts_with("printer/"), "{path} imports {t}");
            }
        }
        if path.starts_with("sandbox/") {
            for t in targets {
                assert!(
                    !t.starts_with("plan/"),
                    "{path} imports {t}: the sandbox reaches federation through the engine"
                );
            }
        }
    }
    for (path, f) in all.iter().filter(|(p, _)| p.starts_with("engine/")) {
        for call in ["println!", "eprintln!", "print!(", "eprint!("] {
            assert!(!f.text.contains(call), "{path} prints ({call})");
        }
    }
}

/// Each external system from one folder: AWS from `cloud/`, RabbitMQ's HTTP API and AMQP
/// from `broker/` (the sandbox's device and service clients aside), tera from `render/`.
#[test]
fn each_external_system_has_one_door() {
    for (path, f) in &files() {
        let uses = |krate: &str| {
            f.text.contains(&format!("{krate}::")) || f.text.contains(&format!("use {krate}"))
        };
        if uses("aws_sdk_ec2")
            || uses("aws_sdk_route53")
            || uses("aws_sdk_iam")
            || uses("aws_sdk_ssm")
            || uses("aws_config")
        {
            assert!(path.starts_with("cloud/"), "{path} calls AWS");
        }
        if uses("reqwest") {
            assert!(path.starts_with("broker/"), "{path} calls an HTTP API");
        }
        // AMQP: gwctl's own (the router) from `broker/`; the sandbox's stand-in clients.
        if uses("lapin") {
            assert!(
                path.starts_with("broker/") || path.starts_with("sandbox/"),
                "{path} speaks AMQP"
            );
        }
        if uses("tera") {
            assert!(path.starts_with("render/"), "{path} calls tera");
        }
    }
}

#[test]
fn the_parser_expands_groups_and_resolves_super() {
    assert_eq!(
        expand("crate::a::{b, c::{d, e as f}}"),
        ["crate::a::b", "crate::a::c::d", "crate::a::c::e"]
    );
    let f = File {
        module: "engine::apply".into(),
        text: "use super::Engine; fn x() { crate::plan::exec::run(); }".into(),
    };
    let p = paths_in(&f);
    assert!(p.contains(&"engine::Engine".to_string()), "{p:?}");
    assert!(p.contains(&"plan::exec::run".to_string()), "{p:?}");
}
