//! Shell habits: completion scripts that load and complete, man pages generated from the
//! parser, and an example in every command's help.

use std::process::Command;

use crate::support::Regions;

fn gwctl_stdout(r: &Regions, args: &[&str]) -> String {
    let out = r.gwctl().args(args).output().expect("gwctl runs");
    assert!(out.status.success(), "gwctl {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// What bash completes after `line` (the words typed so far, the last one being completed),
/// with the script `gwctl completions bash` printed loaded into a fresh shell.
fn bash_completes(script: &std::path::Path, line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split(' ').collect();
    let program = format!(
        "source {script}\n\
         COMP_WORDS=({words})\n\
         COMP_CWORD={cword}\n\
         COMP_LINE='{line}'\n\
         COMP_POINT={point}\n\
         _gwctl gwctl '{current}' '{previous}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script = script.display(),
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        cword = words.len() - 1,
        point = line.len(),
        current = words[words.len() - 1],
        previous = words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "bash: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_loads_and_completes_subcommands() {
    let r = Regions::examples();
    let script = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(script.path(), gwctl_stdout(&r, &["completions", "bash"])).expect("write");

    assert_eq!(bash_completes(script.path(), "gwctl pl"), ["plan"]);
    let mut top = bash_completes(script.path(), "gwctl u");
    top.sort();
    assert_eq!(top, ["unlock", "up", "upgrade"]);
    let mut sandbox = bash_completes(script.path(), "gwctl sandbox st");
    sandbox.sort();
    assert_eq!(sandbox, ["start", "stop"]);
    assert!(
        bash_completes(script.path(), "gwctl plan --detailed")
            .contains(&"--detailed-exitcode".to_string())
    );
}

#[test]
fn zsh_and_fish_scripts_name_every_command() {
    let r = Regions::examples();
    for shell in ["zsh", "fish"] {
        let script = gwctl_stdout(&r, &["completions", shell]);
        for command in ["plan", "up", "down", "upgrade", "router", "sandbox"] {
            assert!(script.contains(command), "{shell}'s script lacks {command}");
        }
    }
    let out = r
        .gwctl()
        .args(["completions", "tcsh"])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_pages_cover_every_command_and_render() {
    let r = Regions::examples();
    let page = gwctl_stdout(&r, &["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH gwctl 1"),
        "{page}"
    );
    for command in [
        "validate",
        "plan",
        "up",
        "down",
        "upgrade",
        "router",
        "completions",
    ] {
        assert!(page.contains(command), "gwctl.1 lacks {command}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    r.gwctl()
        .args(["man", "--out"])
        .arg(dir.path())
        .assert()
        .success();
    for name in [
        "gwctl.1",
        "gwctl-plan.1",
        "gwctl-sandbox-start.1",
        "gwctl-router-lookup.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(name)).expect(name);
        let title = name.trim_end_matches(".1");
        assert!(text.contains(&format!(".TH {title} 1")), "{name}: {text}");
    }
    // man(1) itself formats the page, where it is installed.
    if let Ok(out) = Command::new("man")
        .arg("-l")
        .arg(dir.path().join("gwctl-plan.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("--detailed-exitcode"), "man -l: {out:?}");
    }
}

#[test]
fn every_command_has_an_example_in_its_help() {
    use clap::CommandFactory;
    let cli = gwctl::cli::Cli::command();
    let mut missing = Vec::new();
    fn walk(cmd: &clap::Command, path: String, missing: &mut Vec<String>) {
        let subs: Vec<_> = cmd
            .get_subcommands()
            .filter(|s| s.get_name() != "help")
            .collect();
        if subs.is_empty() {
            let help = cmd.clone().render_long_help().to_string();
            if !help.contains("Example") {
                missing.push(path.clone());
            }
        }
        for s in subs {
            walk(s, format!("{path} {}", s.get_name()), missing);
        }
    }
    walk(&cli, "gwctl".into(), &mut missing);
    assert!(
        missing.is_empty(),
        "commands without an example: {missing:?}"
    );
}
