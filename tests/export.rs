//! `gwctl export terraform`: the exported configuration validates with the Terraform on this
//! machine (hashicorp/aws from its offline mirror), and against the same moto every resource
//! imports with no change; after the import, Terraform plans nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::moto::{Moto, gwctl};
use crate::support::{Regions, TUNNEL_KEYS};

const REGION: &str = "us-east-1";

/// Terraform and its provider mirror, as `../shared/peers/terraform/README.md` runs them.
struct Terraform {
    bin: PathBuf,
    config: PathBuf,
}

impl Terraform {
    fn find(work: &Path) -> Terraform {
        let bin = std::env::var_os("TF_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("terraform"));
        let mirror = std::env::var("TF_PLUGIN_MIRROR").unwrap_or_else(|_| "/opt/tf-plugins".into());
        assert!(
            Path::new(&mirror)
                .join("registry.terraform.io/hashicorp/aws")
                .is_dir(),
            "the hashicorp/aws provider mirror is missing at {mirror} (TF_PLUGIN_MIRROR)"
        );
        let config = work.join("cli.tfrc");
        std::fs::write(
            &config,
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{mirror}\"\n    include = [\"registry.terraform.io/*/*\"]\n  }}\n  direct {{\n    exclude = [\"registry.terraform.io/*/*\"]\n  }}\n}}\n"
            ),
        )
        .expect("cli config");
        Terraform { bin, config }
    }

    fn run(&self, dir: &Path, args: &[&str], vars: &[(String, String)]) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .current_dir(dir)
            .env("TF_CLI_CONFIG_FILE", &self.config)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1");
        for (k, v) in vars {
            cmd.env(format!("TF_VAR_{k}"), v);
        }
        cmd.output()
            .unwrap_or_else(|e| panic!("terraform ({}) runs: {e}", self.bin.display()))
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// (parameter name, variable) of each SSM parameter the export declares.
fn ssm_variables(main_tf: &str) -> Vec<(String, String)> {
    main_tf
        .split("\nresource ")
        .filter(|b| b.starts_with("\"aws_ssm_parameter\""))
        .filter_map(|b| {
            let field = |name: &str| {
                b.lines()
                    .find_map(|l| l.trim().strip_prefix(name)?.trim().strip_prefix('='))
                    .map(|v| v.trim().trim_matches('"').to_string())
            };
            Some((
                field("name")?,
                field("value")?.strip_prefix("var.")?.to_string(),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_terraform_imports_every_resource_with_no_change() {
    // Both example regions (support instances, gp3 and io2 volumes), us-east-1 with declared
    // tunnel options and keys and a 4-byte ASN.
    let (r, m) = (Regions::with_declared_tunnels(), Moto::start());
    gwctl(&r, &m)
        .args(["up", "--all", "--yes", "--scope", "aws"])
        .assert()
        .success();
    for region in [REGION, "ap-northeast-1"] {
        imports_with_no_change(&r, &m, region).await;
    }
}

async fn imports_with_no_change(r: &Regions, m: &Moto, region: &str) {
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("tf");
    let export = gwctl(r, m)
        .args(["export", "terraform", region, "--out"])
        .arg(&out)
        .output()
        .expect("run");
    assert!(export.status.success(), "{export:?}");
    let main_tf = std::fs::read_to_string(out.join("main.tf")).expect("main.tf");
    let imports = std::fs::read_to_string(out.join("imports.tf")).expect("imports.tf");
    let readme = std::fs::read_to_string(out.join("README.md")).expect("README.md");
    assert!(readme.contains("Terraform state will hold secrets"));
    assert!(readme.contains("static routes") && readme.contains("federation"));
    // No secret value is written, in any file (user-data decoded): each is a variable.
    let mut written = String::new();
    for entry in walk(&out) {
        let text = std::fs::read_to_string(&entry).expect("text file");
        if entry.extension().is_some_and(|x| x == "b64") {
            use base64::Engine;
            use std::io::Read;
            let gz = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .expect("base64 user-data");
            let mut plain = String::new();
            flate2::read::GzDecoder::new(gz.as_slice())
                .read_to_string(&mut plain)
                .expect("gzip user-data");
            written.push_str(&plain);
        }
        written.push_str(&text);
    }
    assert!(written.contains("#cloud-config"), "user-data decodes");
    for (name, secret) in r.secrets.iter().filter(|(n, _)| !n.ends_with("_CERT")) {
        let longest = secret.lines().max_by_key(|l| l.len()).unwrap_or_default();
        assert!(longest.len() >= 12, "{name} is long enough to look for");
        assert!(
            !written.contains(longest),
            "{name} is written in the export"
        );
    }
    for key in TUNNEL_KEYS {
        assert!(
            !written.contains(key),
            "a tunnel key is written in the export"
        );
    }
    let expected_imports = imports.matches("\nimport {").count();
    assert!(expected_imports >= 30, "{imports}");

    let tf = Terraform::find(work.path());
    let ok = |o: Output, what: &str| {
        assert!(
            o.status.success(),
            "terraform {what}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    };
    // Written as `terraform fmt` writes it.
    ok(
        tf.run(&out, &["fmt", "-check", "-recursive"], &[]),
        "fmt -check",
    );

    // Terraform reaches the same moto through a provider override (the export itself names
    // only the region), and gets the secrets as the README says: from SSM.
    std::fs::write(
        out.join("provider_override.tf"),
        format!(
            "provider \"aws\" {{\n  access_key = \"test\"\n  secret_key = \"test\"\n  skip_credentials_validation = true\n  skip_metadata_api_check = true\n  skip_requesting_account_id = true\n  skip_region_validation = true\n  endpoints {{\n    ec2 = \"{e}\"\n    iam = \"{e}\"\n    ssm = \"{e}\"\n    route53 = \"{e}\"\n    sts = \"{e}\"\n  }}\n}}\n",
            e = m.endpoint
        ),
    )
    .expect("override");
    let ssm = m.ssm(region).await;
    let mut vars = Vec::new();
    if main_tf.contains("var.tunnel1_preshared_key") {
        for (i, key) in TUNNEL_KEYS.iter().enumerate() {
            vars.push((format!("tunnel{}_preshared_key", i + 1), key.to_string()));
        }
    }
    for (name, var) in ssm_variables(&main_tf) {
        let p = ssm
            .get_parameter()
            .name(&name)
            .with_decryption(true)
            .send()
            .await
            .expect("parameter");
        let value = p.parameter().and_then(|p| p.value()).expect("value");
        vars.push((var, value.to_string()));
    }
    assert!(
        vars.len() >= 6,
        "passwords, cookie and certificates: {vars:?}"
    );
    ok(
        tf.run(&out, &["init", "-input=false", "-no-color"], &[]),
        "init",
    );
    ok(tf.run(&out, &["validate", "-no-color"], &[]), "validate");
    ok(
        tf.run(
            &out,
            &["plan", "-input=false", "-no-color", "-out=import.plan"],
            &vars,
        ),
        "plan",
    );
    let shown = ok(tf.run(&out, &["show", "-json", "import.plan"], &[]), "show");
    let plan: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("plan JSON");
    let changes = plan["resource_changes"]
        .as_array()
        .expect("resource_changes");
    let imported = changes
        .iter()
        .filter(|c| !c["change"]["importing"].is_null())
        .count();
    assert_eq!(imported, expected_imports, "every import block imports");
    let changing: Vec<String> = changes
        .iter()
        .filter(|c| c["change"]["actions"] != serde_json::json!(["no-op"]))
        .map(|c| {
            // Which attributes differ, to say what the export got wrong.
            let (before, after) = (&c["change"]["before"], &c["change"]["after"]);
            let keys: Vec<String> = after
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| *k != "tags_all" && before.get(k.as_str()) != Some(v))
                .map(|(k, v)| format!("{k}: {} -> {v}", before[k.as_str()]))
                .collect();
            format!(
                "{} {}: {}",
                c["address"],
                c["change"]["actions"],
                keys.join("; ")
            )
        })
        .collect();
    assert!(
        changing.is_empty(),
        "after import, nothing changes: {changing:?}"
    );

    // Importing changes nothing in AWS, and then Terraform has nothing left to do.
    m.record();
    ok(
        tf.run(
            &out,
            &["apply", "-input=false", "-no-color", "import.plan"],
            &vars,
        ),
        "apply",
    );
    let calls = m.recorded_actions();
    assert!(
        calls.iter().all(|a| crate::support::moto::is_read_only(a)),
        "the import made a change in AWS: {calls:?}"
    );
    let again = tf.run(
        &out,
        &["plan", "-input=false", "-no-color", "-detailed-exitcode"],
        &vars,
    );
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}

#[test]
fn export_needs_a_region_in_sync_and_an_empty_directory() {
    let (r, m) = (Regions::examples(), Moto::start());
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing exists yet: the plan has changes, so there is nothing to export faithfully.
    let out = gwctl(&r, &m)
        .args(["export", "terraform", REGION, "--out"])
        .arg(dir.path().join("tf"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in sync"));
    assert!(!dir.path().join("tf").exists());
    std::fs::write(dir.path().join("keep.tf"), "# mine\n").expect("write");
    let full = gwctl(&r, &m)
        .args(["export", "terraform", REGION, "--out"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(full.status.code(), Some(2), "{full:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.tf")).expect("kept"),
        "# mine\n"
    );
}
