//! `gwctl export terraform`: a region's AWS resources as a Terraform configuration with
//! import blocks, from a plan in which nothing changes (`plan::terraform`), written as HCL
//! (`render::terraform`).

use std::path::Path;

use super::Engine;
use crate::error::{Error, Result};
use crate::model::terraform::Export;

impl Engine {
    /// Writes the Terraform export of `region` into `out` (new or empty) and returns what it
    /// holds. Refused while the region is not in sync with its file: the export describes
    /// what exists, which is then also what the file says.
    pub async fn export_terraform(&self, region: &str, out: &Path) -> Result<Export> {
        let occupied = std::fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_some());
        if occupied {
            return Err(Error::Usage(format!(
                "{} is not empty: export writes into a new or empty directory",
                out.display()
            )));
        }
        let gw = self
            .stack
            .gateway(region)
            .ok_or_else(|| Error::Usage(format!("no gateway region `{region}`")))?;
        let work = self.plan_region(Some(&gw.spec), region).await?;
        let mut free = self.stack.backend.spec.tags.clone();
        free.extend(gw.spec.tags.clone());
        let export = crate::plan::terraform::export(&work.plan, work.dns.as_ref(), &free)
            .map_err(|e| Error::Failed(e.to_string()))?;
        crate::render::terraform::export_files(&export)
            .write_to(out)
            .map_err(|e| Error::io(format!("writing {}", out.display()), e))?;
        Ok(export)
    }
}
