//! Writing files the way every part of gwctl needs: atomically, with the mode set first.

use std::path::Path;

/// Writes `bytes` to `path` with `mode`, atomically: the mode is set before any byte lands, so
/// a secret is never readable by others even for a moment.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("gwctl-tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
