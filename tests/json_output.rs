//! Every `--json` output has the top-level keys `docs/json-output.md` documents: the
//! documentation is the shape's contract, and this test holds both to it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::Regions;
use crate::support::moto::{Moto, gwctl};

/// `keys: NAME: a, b, c` lines of the documentation.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json-output.md"))
            .expect("docs/json-output.md");
    doc.lines()
        .filter_map(|l| l.strip_prefix("keys: "))
        .filter_map(|l| l.split_once(": "))
        .map(|(name, keys)| {
            (
                name.to_string(),
                keys.split(", ").map(str::to_string).collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_output_has_its_documented_keys() {
    let (r, m) = (Regions::examples(), Moto::start());
    gwctl(&r, &m)
        .args(["up", "--all", "--yes", "--scope", "aws"])
        .assert()
        .success();
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("plan", vec!["plan", "--all", "--scope", "aws", "--json"]),
        (
            "up",
            vec!["up", "--all", "--scope", "aws", "--yes", "--json"],
        ),
        (
            "status",
            vec!["status", "--all", "--scope", "aws", "--json"],
        ),
        ("drill", vec!["drill", "us-east-1", "--json"]),
        (
            "upgrade",
            vec!["upgrade", "--all", "--scope", "aws", "--dry-run", "--json"],
        ),
        ("validate", vec!["validate", "--json"]),
        ("render", vec!["render", "us-east-1", "--json"]),
        (
            "init",
            vec![
                "init",
                "eu-west-3",
                "--offline",
                "--zones",
                "eu-west-3a,eu-west-3b",
                "--json",
            ],
        ),
        // Against a closed port: the report of a storm no device survived (exit 1).
        (
            "loadtest",
            vec![
                "loadtest",
                "us-east-1",
                "--endpoint",
                "127.0.0.1:9",
                "--devices",
                "1",
                "--give-up",
                "1",
                "--json",
            ],
        ),
        // Last: it deletes the region.
        (
            "down",
            vec!["down", "us-east-1", "--scope", "aws", "--yes", "--json"],
        ),
    ];
    let docs = documented();
    let mut checked = BTreeSet::new();
    let mut wrong = Vec::new();
    for (name, args) in runs {
        let out = gwctl(&r, &m).args(&args).output().expect("run");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: stdout is not one JSON document ({e}): {out:?}"));
        // An array is documented as `NAME[]`, with the keys of its elements.
        let (name, object) = match &v {
            serde_json::Value::Array(items) => (format!("{name}[]"), items.first()),
            _ => (name.to_string(), Some(&v)),
        };
        let keys: BTreeSet<String> = object
            .and_then(|o| o.as_object())
            .unwrap_or_else(|| panic!("{name}: no object to read keys from"))
            .keys()
            .cloned()
            .collect();
        let name = name.as_str();
        if docs.get(name) != Some(&keys) {
            wrong.push(format!(
                "{name}: prints {keys:?}, documented {:?}",
                docs.get(name)
            ));
        }
        checked.insert(name.to_string());
    }
    assert!(
        wrong.is_empty(),
        "keys printed vs documented:\n{}",
        wrong.join("\n")
    );
    let undocumented: Vec<_> = docs.keys().filter(|k| !checked.contains(*k)).collect();
    assert!(
        undocumented.is_empty(),
        "documented but not run: {undocumented:?}"
    );

    // Bad input: the problems, with positions, and exit 2.
    r.edit("us-east-1.yaml", "  count: 3", "  cout: 3");
    let out = gwctl(&r, &m)
        .args(["validate", "--json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["valid"], false);
    let problems = v["problems"].as_array().expect("problems");
    let typo = problems
        .iter()
        .find(|p| p["field"] == "brokers.cout")
        .unwrap_or_else(|| panic!("the typo is reported: {problems:?}"));
    assert!(
        typo["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("us-east-1.yaml"))
    );
    assert!(typo["line"].as_u64().is_some() && typo["column"].as_u64().is_some());
}
