//! HCL text for a Terraform configuration (`model::terraform`): what `gwctl export terraform`
//! writes. Strings are escaped as HCL requires (`"`, `\`, and the template sequences `${` and
//! `%{`, which would otherwise be interpolated).

use crate::model::terraform::{Block, Body, Export, Value};

use super::Rendered;

/// The provider version the export is written for (the one on this machine's mirror).
pub const AWS_PROVIDER: &str = "~> 5.100";

/// The files of an export: main.tf, imports.tf, variables.tf, README.md, user-data files.
pub fn export_files(e: &Export) -> Rendered {
    let mut out = Rendered::default();
    let mut main = String::from(HEADER);
    main.push_str(&format!(
        "terraform {{\n  required_version = \">= 1.5\"\n  required_providers {{\n    aws = {{\n      source  = \"hashicorp/aws\"\n      version = \"{AWS_PROVIDER}\"\n    }}\n  }}\n}}\n\nprovider \"aws\" {{\n  region = {}\n}}\n",
        string(&e.region)
    ));
    for b in &e.resources {
        main.push('\n');
        main.push_str(&block(b, 0));
    }
    out.push("main.tf", main, 0o644);

    let mut imports = String::from(HEADER);
    for (to, id) in &e.imports {
        imports.push_str(&format!(
            "\nimport {{\n  to = {to}\n  id = {}\n}}\n",
            string(id)
        ));
    }
    out.push("imports.tf", imports, 0o644);

    let mut vars = String::from(HEADER);
    for (name, what) in &e.variables {
        vars.push_str(&format!(
            "\nvariable \"{name}\" {{\n  description = {}\n  type        = string\n  sensitive   = true\n}}\n",
            string(what)
        ));
    }
    out.push("variables.tf", vars, 0o644);
    for (path, contents) in &e.files {
        out.push(path.clone(), contents.clone(), 0o644);
    }
    out.push("README.md", readme(e), 0o644);
    out
}

const HEADER: &str =
    "# Written by `gwctl export terraform`: what gwctl manages in AWS for this region.\n";

fn readme(e: &Export) -> String {
    let mut text = format!(
        "# {region}, exported from gwctl\n\n\
         This configuration describes what gwctl manages in AWS for `{region}`, with an `import`\n\
         block for each existing resource, so Terraform can take it over without rebuilding\n\
         anything:\n\n\
         ```sh\n\
         terraform init\n\
         terraform plan    # {n} to import, 0 to add, 0 to change, 0 to destroy\n\
         terraform apply   # imports them; nothing in AWS changes\n\
         ```\n\n\
         **Terraform state will hold secrets.** Every secret gwctl keeps in SSM (passwords, the\n\
         Erlang cookie, the brokers' TLS keys) and the VPN's pre-shared keys are sensitive\n\
         variables here (`variables.tf`); once imported, Terraform's state holds their values in\n\
         clear. Keep the state in an encrypted, access-controlled backend before the first\n\
         `apply`. Read the SSM values with\n\
         `aws ssm get-parameter --with-decryption --name NAME`, the tunnels' pre-shared keys from\n\
         the sources the region file names, and pass them as `TF_VAR_*` variables, never in a\n\
         file you commit.\n\n\
         Security groups are written with AWS's default egress rule, which gwctl keeps and does\n\
         not compare: if egress rules were edited in AWS, `terraform plan` shows it.\n\n\
         Instances keep the user-data they booted with (`user-data/`, gzip, base64); changes to it\n\
         are ignored (`lifecycle.ignore_changes`), since it runs only at first boot.\n\n",
        region = e.region,
        n = e.imports.len()
    );
    if !e.not_exported.is_empty() {
        text.push_str(
            "## Not exported\n\nWhat gwctl manages that this configuration leaves out:\n\n",
        );
        for (what, why) in &e.not_exported {
            text.push_str(&format!("- **{what}**: {why}\n"));
        }
    }
    text
}

/// One block at `indent` spaces, with its comment.
pub fn block(b: &Block, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    if let Some(c) = &b.body.comment {
        for line in c.lines() {
            out.push_str(&format!("{pad}# {line}\n"));
        }
    }
    out.push_str(&pad);
    out.push_str(&b.kind);
    for l in &b.labels {
        out.push(' ');
        out.push_str(&string(l));
    }
    out.push_str(" {\n");
    out.push_str(&body(&b.body, indent + 2));
    out.push_str(&pad);
    out.push_str("}\n");
    out
}

/// Attributes as `terraform fmt` writes them: the `=` of consecutive one-line attributes
/// aligned; a multi-line one is not aligned and ends its group.
fn body(b: &Body, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let rendered: Vec<(&str, String)> = b
        .attrs
        .iter()
        .map(|(k, v)| (k.as_str(), value(v, indent)))
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i < rendered.len() {
        let (k, v) = &rendered[i];
        if v.contains('\n') {
            out.push_str(&format!("{pad}{k} = {v}\n"));
            i += 1;
            continue;
        }
        let end = rendered[i..]
            .iter()
            .position(|(_, v)| v.contains('\n'))
            .map_or(rendered.len(), |n| i + n);
        let width = rendered[i..end]
            .iter()
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(0);
        for (k, v) in &rendered[i..end] {
            out.push_str(&format!("{pad}{k:width$} = {v}\n"));
        }
        i = end;
    }
    for nested in &b.blocks {
        out.push_str(&block(nested, indent));
    }
    out
}

fn value(v: &Value, indent: usize) -> String {
    match v {
        Value::Str(s) => string(s),
        Value::Num(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Expr(e) => e.clone(),
        Value::List(items) => {
            let parts: Vec<String> = items.iter().map(|i| value(i, indent)).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Map(items) if items.is_empty() => "{}".into(),
        Value::Map(items) => {
            let pad = " ".repeat(indent + 2);
            let width = items.iter().map(|(k, _)| key(k).len()).max().unwrap_or(0);
            let mut out = String::from("{\n");
            for (k, v) in items {
                out.push_str(&format!(
                    "{pad}{:width$} = {}\n",
                    key(k),
                    value(v, indent + 2)
                ));
            }
            out.push_str(&" ".repeat(indent));
            out.push('}');
            out
        }
    }
}

/// An object key: bare when it is an identifier, quoted otherwise (`"gwctl:id"`).
fn key(k: &str) -> String {
    let bare = k
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    if bare { k.to_string() } else { string(k) }
}

/// A quoted HCL string.
pub fn string(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_for_hcl() {
        assert_eq!(string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(string("${var.x} %{if}"), r#""$${var.x} %%{if}""#);
        assert_eq!(string("line\nnext"), r#""line\nnext""#);
        assert_eq!(string("cost $5 100%"), r#""cost $5 100%""#);
    }

    #[test]
    fn blocks_nest_with_aligned_attributes_and_quoted_keys() {
        let b = Block::new(
            "resource",
            &["aws_vpc", "main"],
            Body::new()
                .attr("cidr_block", Value::str("10.10.0.0/16"))
                .attr("enable_dns_hostnames", Value::Bool(true))
                .attr(
                    "tags",
                    Value::map([("Name", "main"), ("gwctl:id", "vpc/main")]),
                )
                .block(
                    "lifecycle",
                    Body::new().attr(
                        "ignore_changes",
                        Value::List(vec![Value::expr("user_data")]),
                    ),
                ),
        );
        assert_eq!(
            block(&b, 0),
            "resource \"aws_vpc\" \"main\" {\n  cidr_block           = \"10.10.0.0/16\"\n  enable_dns_hostnames = true\n  tags = {\n    Name       = \"main\"\n    \"gwctl:id\" = \"vpc/main\"\n  }\n  lifecycle {\n    ignore_changes = [user_data]\n  }\n}\n"
        );
    }
}
