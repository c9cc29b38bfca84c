//! The CI pipeline example (`examples/ci/gwctl.yml`): its shape (OIDC, no keys, one run per
//! stack, `--scope aws` on hosted runners, federation inside the VPN), and its gwctl steps run
//! in order against moto — the pull request's validate and plan, then the merge's apply of
//! that saved plan and the check that nothing is left to change.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::Regions;
use crate::support::moto::{Moto, is_read_only};

fn workflow() -> (String, Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci/gwctl.yml");
    let text = std::fs::read_to_string(&path).expect("the example pipeline");
    let value = gwctl::spec::yaml::parse(&text)
        .expect("the example is YAML")
        .value;
    (text, value)
}

/// The `run` scripts of a job's steps that drive gwctl (installing it and talking to GitHub
/// are the runner's business, not the test's).
fn gwctl_steps(job: &Value) -> Vec<(String, String)> {
    job["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| {
            let run = s["run"].as_str()?;
            let drives_gwctl = run.lines().any(|l| l.trim_start().starts_with("gwctl "));
            let other = run.contains("cargo install") || run.contains("gh ");
            (drives_gwctl && !other).then(|| {
                let name = s["name"].as_str().unwrap_or("(unnamed)").to_string();
                (name, run.to_string())
            })
        })
        .collect()
}

#[test]
fn the_pipeline_has_no_keys_one_run_per_stack_and_the_federation_inside_the_vpn() {
    let (text, w) = workflow();
    assert_eq!(
        w["permissions"]["id-token"], "write",
        "OIDC role assumption"
    );
    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "aws-access-key-id",
    ] {
        assert!(!text.contains(key), "no long-lived key ({key})");
    }
    assert!(text.contains("role-to-assume"));
    assert!(
        w["concurrency"]["group"]
            .as_str()
            .is_some_and(|g| g.contains("stack"))
    );
    assert_eq!(w["concurrency"]["cancel-in-progress"], false);
    // Hosted runners cannot reach the backend's management API: AWS scope only there.
    for job in ["plan", "apply"] {
        assert_eq!(w["jobs"][job]["runs-on"], "ubuntu-latest");
        for (name, run) in gwctl_steps(&w["jobs"][job]) {
            for line in run
                .lines()
                .filter(|l| l.contains("gwctl plan") || l.contains("gwctl up"))
            {
                assert!(line.contains("--scope aws"), "{job}/{name}: {line}");
            }
        }
    }
    let federation = &w["jobs"]["federation"];
    assert!(
        federation["runs-on"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x == "self-hosted")),
        "the federation job runs inside the backend network"
    );
    assert!(gwctl_steps(federation)[0].1.contains("--scope federation"));
    // Apply is exactly the reviewed plan.
    let apply = gwctl_steps(&w["jobs"]["apply"]);
    assert!(
        apply
            .iter()
            .any(|(_, r)| r.contains("up --all --scope aws --plan gwctl.plan.json"))
    );
}

#[test]
fn the_pipelines_gwctl_steps_run_against_moto() {
    let (r, m) = (Regions::examples(), Moto::start());
    let (_, w) = workflow();
    let work = tempfile::tempdir().expect("tempdir");
    let bin = assert_cmd::cargo::cargo_bin("gwctl");
    let path = format!(
        "{}:{}",
        bin.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run_job = |job: &str| {
        for (name, script) in gwctl_steps(&w["jobs"][job]) {
            let mut cmd = Command::new("bash");
            // GitHub's default shell for `run`: bash -e {0}, with pipefail.
            cmd.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
                .current_dir(work.path())
                .env("PATH", &path)
                .env("GWCTL_REGIONS", r.dir())
                .env("GWCTL_BROKER_ENDPOINTS", &r.endpoints)
                .env("NO_COLOR", "1");
            m.std_env(&mut cmd);
            let out = cmd.output().expect("bash runs");
            assert!(out.status.success(), "{job}/{name}: {out:?}");
        }
    };

    // The pull request: validate and plan change nothing in AWS.
    m.record();
    run_job("plan");
    let calls = m.recorded_actions();
    assert!(calls.iter().all(|a| is_read_only(a)), "{calls:?}");
    let comment = std::fs::read_to_string(work.path().join("plan.md")).expect("plan.md");
    assert!(
        comment.contains("us-east-1") && comment.contains("create"),
        "{comment}"
    );
    assert!(work.path().join("gwctl.plan.json").exists());

    // The merge: the artifact (here: the same directory) is applied, then nothing is left.
    m.record();
    run_job("apply");
    assert!(
        m.recorded_actions().iter().any(|a| a == "CreateVpc"),
        "the apply job created the stack"
    );
}
