//! The CI pipeline example (`examples/ci/gwctl.yml`): its shape (OIDC, no keys, one run per
//! stack, `--scope aws` on hosted runners, federation inside the VPN), and its gwctl steps run
//! in order against moto — the pull request's validate and plan, then the merge's apply of
//! that saved plan and the check that nothing is left to change.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::Regions;
use crate::support::moto::{Moto, gwctl, is_read_only};

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

/// Every `env:VAR` the repository's region files name.
fn region_file_variables() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regions");
    let mut vars: Vec<String> = std::fs::read_dir(&dir)
        .expect("regions")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .flat_map(|text| {
            text.lines()
                // Sources, not the comments that explain them (`env:VAR or file:PATH`).
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| Some(l.split_once("env:")?.1.trim().to_string()))
                .filter(|v| {
                    v.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                })
                .collect::<Vec<_>>()
        })
        .collect();
    vars.sort();
    vars.dedup();
    vars
}

#[test]
fn the_pipeline_has_no_keys_one_change_at_a_time_and_the_federation_inside_the_vpn() {
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
    // Every secret the region files name reaches the jobs, from GitHub's secrets.
    let vars = region_file_variables();
    assert!(vars.len() >= 10, "{vars:?}");
    for var in &vars {
        assert_eq!(
            w["env"][var.as_str()],
            format!("${{{{ secrets.{var} }}}}"),
            "the workflow sets {var}"
        );
    }
    for job in ["plan", "apply", "federation"] {
        let j = &w["jobs"][job];
        let roles: Vec<&str> = j["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter_map(|s| s["with"]["role-to-assume"].as_str())
            .collect();
        assert_eq!(roles.len(), 1, "{job} assumes one role before gwctl runs");
        assert!(
            gwctl_steps(j).iter().all(|(_, run)| !run.contains("AWS_")),
            "{job} passes no credentials itself"
        );
    }
    // Plans are superseded per pull request; changes to the stack never cancel one another.
    let plan = &w["jobs"]["plan"];
    assert!(
        plan["concurrency"]["group"]
            .as_str()
            .is_some_and(|g| g.contains("pull_request.number"))
    );
    assert_eq!(plan["concurrency"]["cancel-in-progress"], true);
    for job in ["apply", "federation"] {
        let j = &w["jobs"][job];
        assert!(
            j["concurrency"]["group"]
                .as_str()
                .is_some_and(|g| g.contains("stack"))
        );
        assert_eq!(j["concurrency"]["cancel-in-progress"], false);
        assert_eq!(
            j["environment"], "production",
            "{job} runs behind the environment's reviewers"
        );
    }
    assert!(
        w["concurrency"].is_null(),
        "no workflow-wide group: plans would cancel applies"
    );
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

    // The merge: the artifact (here: the same directory) is applied, then nothing is left in
    // AWS (the pipeline's own final check also needs the backend: it runs inside the VPN).
    m.record();
    run_job("apply");
    assert!(
        m.recorded_actions().iter().any(|a| a == "CreateVpc"),
        "the apply job created the stack"
    );
    gwctl(&r, &m)
        .args(["plan", "--all", "--scope", "aws", "--detailed-exitcode"])
        .assert()
        .code(0);
}
