//! Region files: reading, validating and defaulting them.
//!
//! `regions/backend.yaml` describes the backend; every other `regions/<region>.yaml` one
//! gateway region. Loading is all-or-nothing: either every selected file (and the backend) is
//! valid and a [`Stack`] comes back, or every problem found is returned as a diagnostic.

pub mod diag;
pub mod model;
pub mod patterns;
pub mod regions;
pub mod schema_check;
pub mod secret;
pub mod semantic;
pub mod tls;
pub mod yaml;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use diag::Diagnostic;
use diag::Sink;
pub use model::{BackendSpec, GatewaySpec};
use schema_check::FileKind;
use yaml::Document;

pub const BACKEND_FILE: &str = "backend.yaml";

/// A validated file: where it is, its positions, its typed content (defaults applied).
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub path: PathBuf,
    pub doc: Document,
    pub spec: T,
}

/// Every region file of a directory, validated.
#[derive(Debug, Clone)]
pub struct Stack {
    pub dir: PathBuf,
    pub backend: Loaded<BackendSpec>,
    /// Sorted by region name.
    pub gateways: Vec<Loaded<GatewaySpec>>,
}

impl Stack {
    pub fn gateway(&self, region: &str) -> Option<&Loaded<GatewaySpec>> {
        self.gateways.iter().find(|g| g.spec.region == region)
    }
}

/// Which gateway regions a command works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Regions(Vec<String>),
}

impl Selection {
    fn includes(&self, region: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Regions(r) => r.iter().any(|x| x == region),
        }
    }
}

/// Loads and validates the backend and the selected gateways of `dir`. The other gateway files
/// are read too, because overlaps and duplicate names are only visible across files, but their
/// own problems are reported only when they are selected.
pub fn load(dir: &Path, selection: &Selection) -> Result<Stack, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let whole = |file: PathBuf, message: String| Diagnostic {
        file,
        pos: None,
        field: String::new(),
        message,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            return Err(vec![whole(
                dir.to_path_buf(),
                format!("cannot read the region directory: {e}"),
            )]);
        }
    };
    let mut gateway_files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "yaml" || x == "yml")
                && p.file_name().is_some_and(|n| n != BACKEND_FILE)
        })
        .collect();
    gateway_files.sort();

    if let Selection::Regions(wanted) = selection {
        for region in wanted {
            let stem_matches = |p: &PathBuf| p.file_stem().is_some_and(|s| s == region.as_str());
            if !gateway_files.iter().any(stem_matches) {
                let known: Vec<String> = gateway_files
                    .iter()
                    .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                    .collect();
                let hint = schema_check::suggest(region, &known)
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                diags.push(whole(
                    dir.join(format!("{region}.yaml")),
                    format!(
                        "no region file for `{region}` ({hint}known: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
    }

    let backend_path = dir.join(BACKEND_FILE);
    let backend = if backend_path.exists() {
        read_file::<BackendSpec>(&backend_path, FileKind::Backend, dir, &mut diags)
    } else {
        diags.push(whole(
            backend_path,
            "missing: every stack needs a backend.yaml describing the backend side".into(),
        ));
        None
    };

    let mut gateways = Vec::new();
    for path in gateway_files {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let selected = selection.includes(&stem);
        let mut own = Vec::new();
        let loaded = read_file::<GatewaySpec>(&path, FileKind::Gateway, dir, &mut own);
        if selected {
            diags.extend(own);
        }
        if let Some(l) = loaded {
            gateways.push((selected, l));
        }
    }

    if let Some(backend) = &backend {
        diags.extend(cross_check(backend, &gateways));
    }

    match backend {
        Some(backend) if diags.is_empty() => {
            let mut selected: Vec<Loaded<GatewaySpec>> = gateways
                .into_iter()
                .filter(|(s, _)| *s)
                .map(|(_, mut g)| {
                    g.spec.apply_defaults(&backend.spec);
                    g
                })
                .collect();
            selected.sort_by(|a, b| a.spec.region.cmp(&b.spec.region));
            Ok(Stack {
                dir: dir.to_path_buf(),
                backend,
                gateways: selected,
            })
        }
        _ => {
            diag::sort(&mut diags);
            Err(diags)
        }
    }
}

/// Every network the region files in `dir` claim (the backend's `network_cidr`, each gateway's
/// `network.vpc_cidr` and `vpn.static_routes`), read leniently: a file that fails validation for another reason (a
/// secret not set here, a typo elsewhere) still claims its network, so `gwctl init` never
/// hands the same addresses out twice.
pub fn claimed_networks(dir: &Path) -> std::io::Result<Vec<(PathBuf, ipnet::Ipv4Net)>> {
    let mut claims = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            continue;
        }
        let Ok(doc) = std::fs::read_to_string(&path).map(|src| yaml::parse(&src)) else {
            continue;
        };
        let Ok(doc) = doc else { continue };
        // The backend's network, each VPC, and every network a VPN routes to (the backend's
        // other networks).
        let routes = doc
            .value
            .pointer("/vpn/static_routes")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten();
        let texts = ["/network_cidr", "/network/vpc_cidr"]
            .iter()
            .filter_map(|p| doc.value.pointer(p))
            .chain(routes)
            .filter_map(|v| v.as_str());
        for net in texts.filter_map(|s| s.parse::<ipnet::Ipv4Net>().ok()) {
            claims.push((path.clone(), net));
        }
    }
    claims.sort();
    Ok(claims)
}

/// A text value of backend.yaml in `dir` (`/stack`, `/routing/exchange`), read leniently (see
/// [`claimed_networks`]).
pub fn backend_text(dir: &Path, pointer: &str) -> Option<String> {
    let src = std::fs::read_to_string(dir.join(BACKEND_FILE)).ok()?;
    let doc = yaml::parse(&src).ok()?;
    doc.value.pointer(pointer)?.as_str().map(str::to_string)
}

/// YAML → schema → typed → semantic checks. Returns the typed file only if it had no problem.
fn read_file<T: DeserializeOwned + Checked>(
    path: &Path,
    kind: FileKind,
    dir: &Path,
    diags: &mut Vec<Diagnostic>,
) -> Option<Loaded<T>> {
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            diags.push(Diagnostic {
                file: path.to_path_buf(),
                pos: None,
                field: String::new(),
                message: format!("cannot read: {e}"),
            });
            return None;
        }
    };
    let doc = match yaml::parse(&src) {
        Ok(doc) => doc,
        Err(errors) => {
            diags.extend(errors.into_iter().map(|e| Diagnostic {
                file: path.to_path_buf(),
                pos: Some(e.pos),
                field: diag::field_path(&e.pointer),
                message: e.message,
            }));
            return None;
        }
    };
    let mut sink = Sink::new(path, &doc);
    if !doc.value.is_object() {
        sink.at("", "expected a mapping of settings at the top of the file");
    } else {
        schema_check::check(kind, &doc.value, &mut sink);
    }
    if !sink.found.is_empty() {
        diags.extend(sink.found);
        return None;
    }
    let spec: T = match serde_json::from_value(doc.value.clone()) {
        Ok(spec) => spec,
        Err(e) => {
            // The schema is derived from the same types, so this means the two disagree.
            sink.at(
                "",
                format!("internal: the file passed the schema but not the model: {e}"),
            );
            diags.extend(sink.found);
            return None;
        }
    };
    spec.check(path, dir, &mut sink);
    let found = std::mem::take(&mut sink.found);
    if !found.is_empty() {
        diags.extend(found);
        return None;
    }
    Some(Loaded {
        path: path.to_path_buf(),
        doc,
        spec,
    })
}

trait Checked {
    fn check(&self, path: &Path, base: &Path, sink: &mut Sink<'_>);
}

impl Checked for GatewaySpec {
    fn check(&self, path: &Path, base: &Path, sink: &mut Sink<'_>) {
        semantic::check_gateway(self, path, base, sink);
    }
}

impl Checked for BackendSpec {
    fn check(&self, _: &Path, base: &Path, sink: &mut Sink<'_>) {
        semantic::check_backend(self, base, sink);
    }
}

/// Checks that need several files: overlapping networks, duplicate names. A conflict between
/// two gateways is reported on the later of the two when both are selected, otherwise on the
/// selected one.
fn cross_check(
    backend: &Loaded<BackendSpec>,
    gateways: &[(bool, Loaded<GatewaySpec>)],
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let b = &backend.spec;
    let mut bsink = Sink::new(&backend.path, &backend.doc);
    for (i, e) in b.brokers.endpoints.iter().enumerate() {
        if let Ok(ip) = e.host.parse::<std::net::Ipv4Addr>()
            && !b.network_cidr.0.contains(&ip)
        {
            bsink.at(
                &format!("/brokers/endpoints/{i}/host"),
                format!("{ip} is outside network_cidr {}: gateways reach the backend only through the VPN", b.network_cidr),
            );
        }
    }
    out.extend(bsink.found);

    for (i, (selected, g)) in gateways.iter().enumerate() {
        let mut sink = Sink::new(&g.path, &g.doc);
        let spec = &g.spec;
        let vpc = spec.network.vpc_cidr.0;
        if *selected {
            if semantic::overlaps(vpc, b.network_cidr.0) {
                sink.at(
                    "/network/vpc_cidr",
                    format!(
                        "{vpc} overlaps the backend network {} ({})",
                        b.network_cidr,
                        backend.path.display()
                    ),
                );
            }
            let name = spec.cluster_name();
            if name == b.cluster_name {
                sink.at(
                    "/cluster_name",
                    format!("`{name}` is already the backend's cluster_name"),
                );
            }
            let routed = &b.routing.exchange;
            if !spec
                .federation
                .from_backend
                .iter()
                .any(|x| x.peer() == routed)
            {
                sink.at(
                    "/federation/from_backend",
                    format!(
                        "no entry federates `{routed}`, the exchange backend applications send \
                         devices' messages to (routing.exchange in {}): devices here would \
                         receive nothing",
                        backend.path.display()
                    ),
                );
            }
            let fed = &b.credentials.federation.user;
            if &spec.credentials.admin.user == fed {
                sink.at(
                    "/credentials/admin/user",
                    format!("`{fed}` is the federation user of backend.yaml"),
                );
            }
        }
        for (j, (other_selected, other)) in gateways.iter().enumerate() {
            if i == j || !(*selected && (j < i || !other_selected)) {
                continue;
            }
            let o = &other.spec;
            if semantic::overlaps(vpc, o.network.vpc_cidr.0) {
                sink.at(
                    "/network/vpc_cidr",
                    format!(
                        "{vpc} overlaps the VPC {} of {} ({})",
                        o.network.vpc_cidr,
                        o.region,
                        other.path.display()
                    ),
                );
            }
            if spec.cluster_name() == o.cluster_name() {
                sink.at(
                    "/cluster_name",
                    format!(
                        "`{}` is also the cluster_name of {} ({})",
                        spec.cluster_name(),
                        o.region,
                        other.path.display()
                    ),
                );
            }
            if spec.region == o.region {
                sink.at(
                    "/region",
                    format!(
                        "{} is also declared by {}",
                        spec.region,
                        other.path.display()
                    ),
                );
            }
        }
        out.extend(sink.found);
    }
    out
}
