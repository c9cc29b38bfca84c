//! `gwctl init`: the region file of a new gateway region, decided from what exists (the
//! networks every region file claims) and what AWS offers there (its zones, its images), then
//! checked by the same validation every other command runs.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cloud::{Aws, Owner};
use crate::error::{Error, Result};
use crate::model::addressing::{self, NewRegion};
use crate::spec::model::{Ami, AmiLookup};
use crate::spec::{self, Selection};

/// Debian's AWS account: the owner of the images gwctl's brokers run.
const DEBIAN_OWNER: &str = "136693071363";

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub instance_type: String,
    /// Zones to use instead of asking AWS.
    pub zones: Option<Vec<String>>,
    /// Ask AWS nothing (needs `zones`; the image is not looked up).
    pub offline: bool,
}

/// A region file `init` wrote.
#[derive(Debug, Clone)]
pub struct Initialised {
    pub path: PathBuf,
    pub region: NewRegion,
    /// Environment variables its secrets name that are not set here: set them before `up`.
    pub unset_secrets: Vec<String>,
}

/// Writes `DIR/REGION.yaml` for a new gateway region; refuses to overwrite one.
pub async fn init_region(dir: &Path, region: &str, opts: &InitOptions) -> Result<Initialised> {
    if !spec::regions::is_known(region) {
        let hint = spec::regions::suggest(region)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(Error::Usage(format!(
            "`{region}` is not an AWS region{hint}"
        )));
    }
    let path = dir.join(format!("{region}.yaml"));
    for existing in [path.clone(), dir.join(format!("{region}.yml"))] {
        if existing.exists() {
            return Err(Error::Usage(format!(
                "{} exists: init never overwrites a region file",
                existing.display()
            )));
        }
    }
    if opts.zones.as_ref().is_some_and(|z| z.len() < 2) {
        return Err(Error::Usage(
            "--zones needs at least two zones: a gateway spreads its brokers over them".into(),
        ));
    }
    let stack = spec::backend_text(dir, "/stack").ok_or_else(|| {
        Error::Usage(format!(
            "{} has no backend.yaml naming its `stack`: init adds a gateway region to a stack",
            dir.display()
        ))
    })?;
    let taken: Vec<ipnet::Ipv4Net> = spec::claimed_networks(dir)
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
        .into_iter()
        .map(|(_, net)| net)
        .collect();
    let vpc_cidr = addressing::free_vpc_cidr(&taken).ok_or_else(|| {
        Error::Failed("every 10.N.0.0/16 overlaps a network the region files claim".into())
    })?;
    let ami = AmiLookup {
        owner: DEBIAN_OWNER.into(),
        name: format!(
            "debian-{}-{}-*",
            default_debian_release(),
            architecture(&opts.instance_type)
        ),
    };

    let aws = if opts.offline {
        None
    } else {
        Some(
            Aws::connect(Owner {
                stack,
                region: region.to_string(),
            })
            .await,
        )
    };
    let zones = match (&opts.zones, &aws) {
        (Some(z), _) => z.clone(),
        (None, Some(aws)) => {
            let offered = aws
                .zones_offering(&opts.instance_type)
                .await
                .map_err(|e| Error::Failed(e.to_string()))?;
            // Three zones where there are three: one broker each, so a lost zone leaves a
            // quorum.
            offered.into_iter().take(3).collect()
        }
        (None, None) => {
            return Err(Error::Usage(
                "--offline needs --zones: without AWS, init cannot know the region's zones".into(),
            ));
        }
    };
    if zones.len() < 2 {
        // Only AWS's answer can get here (given zones were checked above).
        return Err(Error::Failed(format!(
            "{region} offers {} in {} zone(s) ({}); a gateway needs at least two",
            opts.instance_type,
            zones.len(),
            zones.join(", ")
        )));
    }
    let image_now = match &aws {
        Some(aws) => {
            let images = aws
                .matching_images(&Ami::Lookup(ami.clone()))
                .await
                .map_err(|e| Error::Failed(e.to_string()))?;
            images.first().map(|i| (i.id.clone(), i.name.clone()))
        }
        None => None,
    };

    let new = NewRegion {
        region: region.to_string(),
        vpc_cidr,
        subnets: addressing::zone_subnets(vpc_cidr, &zones),
        instance_type: opts.instance_type.clone(),
        // Gateways must federate the exchange backend applications send devices' commands to.
        commands_exchange: spec::backend_text(dir, "/routing/exchange")
            .unwrap_or_else(|| "amq.topic".into()),
        ami_owner: ami.owner,
        ami_name: ami.name,
        image_now,
        env_prefix: addressing::env_prefix(region),
    };
    let text = crate::render::region_file(&new)?;
    write_new(&path, &text)?;
    match check_written(dir, region) {
        Ok(unset_secrets) => Ok(Initialised {
            path,
            region: new,
            unset_secrets,
        }),
        Err(e) => {
            // A file init wrote that does not validate is init's bug: leave nothing behind.
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Creates `path` with `text`, failing if it exists (also when another process made it since
/// the check above).
fn write_new(path: &Path, text: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Validates the new region as every command will. Secret variables not set here are the only
/// problems allowed (they are this shell's environment, not the files'); the new region's are
/// returned, for the operator to set before `up`.
fn check_written(dir: &Path, region: &str) -> Result<Vec<String>> {
    let Err(diags) = spec::load(dir, &Selection::Regions(vec![region.to_string()])) else {
        return Ok(Vec::new());
    };
    let mut unset = Vec::new();
    let mut other = Vec::new();
    for d in diags {
        match unset_variable(&d.message) {
            Some(var) if d.file.file_stem().is_some_and(|s| s == region) => {
                unset.push(var.to_string())
            }
            Some(_) => {}
            None => other.push(d),
        }
    }
    if other.is_empty() {
        Ok(unset)
    } else {
        Err(Error::Invalid(other))
    }
}

/// The variable of a "secret source `env:VAR`: the environment variable is not set" message.
fn unset_variable(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("secret source `env:")?;
    let (var, tail) = rest.split_once('`')?;
    tail.contains("is not set").then_some(var)
}

/// The Debian release of the RabbitMQ series gwctl installs by default.
fn default_debian_release() -> u8 {
    crate::spec::model::RabbitSeries::of_package(crate::spec::model::RABBITMQ_PACKAGE)
        .map_or(13, |s| s.debian_release())
}

/// `arm64` for Graviton instance types (a `g` after the generation: c7g, c6gn, t4g), else
/// `amd64`.
fn architecture(instance_type: &str) -> &'static str {
    let family = instance_type.split('.').next().unwrap_or_default();
    let after_generation = family
        .find(|c: char| c.is_ascii_digit())
        .map_or("", |i| &family[i + 1..]);
    if after_generation.contains('g') {
        "arm64"
    } else {
        "amd64"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graviton_types_take_arm64_images() {
        for t in ["c7g.large", "c6gn.xlarge", "t4g.small", "m7gd.large"] {
            assert_eq!(architecture(t), "arm64", "{t}");
        }
        for t in [
            "c6i.large",
            "c7a.large",
            "c6id.large",
            "g5.xlarge",
            "t3.small",
        ] {
            assert_eq!(architecture(t), "amd64", "{t}");
        }
    }

    #[test]
    fn reads_the_unset_variable_of_a_secret_diagnostic() {
        let m = "secret source `env:GWCTL_EU_CENTRAL_1_ADMIN_PASSWORD`: the environment variable is not set";
        assert_eq!(unset_variable(m), Some("GWCTL_EU_CENTRAL_1_ADMIN_PASSWORD"));
        assert_eq!(unset_variable("something else"), None);
    }
}
