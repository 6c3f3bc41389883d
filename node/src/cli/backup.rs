//! `dispatch backup FILE` and `dispatch restore FILE --data-dir DIR`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{ClientArgs, connect};
use crate::backup::Manifest;

/// Writes a backup to `file`: from the running server (admin), or with `data_dir` from
/// a stopped node's data dir. The file appears only once complete and fsynced.
pub(super) async fn backup(args: ClientArgs, file: PathBuf, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    anyhow::ensure!(!file.exists(), "{} exists: a backup never overwrites a file", file.display());
    let partial = file.with_extension("partial");
    let mut out = BufWriter::new(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .with_context(|| format!("creating {}", partial.display()))?,
    );
    let written = match data_dir {
        Some(dir) => offline(&dir, &mut out).map(Some),
        None => {
            let client = connect(&args).await?;
            client.download("/v1/admin/backup", &mut out).await.map(|_| None).map_err(anyhow::Error::from)
        }
    };
    let kept = written.and_then(|manifest| finish(out, &partial, &file).map(|()| manifest));
    let manifest = match kept {
        Ok(Some(m)) => m,
        Ok(None) => read_manifest(&file)?,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e.context("the backup was not written"));
        }
    };
    println!(
        "backup {}: {} events in {} streams, {} blob(s), heads {}",
        file.display(),
        manifest.global_position,
        manifest.streams,
        manifest.blobs,
        &manifest.heads_sha256[..16]
    );
    Ok(())
}

fn offline(dir: &Path, out: &mut impl Write) -> anyhow::Result<Manifest> {
    let path = crate::datadir::log_path(dir);
    anyhow::ensure!(path.exists(), "no log at {}", path.display());
    let log = actors::storage::Log::open(&path).map_err(|e| {
        anyhow::anyhow!("opening {} (is a dispatch running on it? then leave out --data-dir): {e}", path.display())
    })?;
    crate::backup::write_archive(&log, out)
}

/// Flushes and fsyncs the partial file, checks it is a whole archive, then renames it.
fn finish(out: BufWriter<File>, partial: &Path, file: &Path) -> anyhow::Result<()> {
    let f = out.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    drop(f);
    let mut archive = tar::Archive::new(File::open(partial)?);
    let entries = archive.entries()?.count();
    anyhow::ensure!(entries >= 2, "the archive ended early ({entries} entries)");
    read_manifest(partial)?;
    fs::rename(partial, file)?;
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn read_manifest(file: &Path) -> anyhow::Result<Manifest> {
    let mut archive = tar::Archive::new(File::open(file)?);
    let first = archive.entries()?.next().context("the archive is empty")??;
    anyhow::ensure!(first.size() <= 64 * 1024, "the manifest is too large");
    serde_json::from_reader(first).context("reading the archive's manifest")
}

/// Restores `file` into the new or empty `data_dir`, verifying everything first.
pub(super) fn restore(file: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let manifest = crate::backup::restore(file, data_dir)?;
    println!(
        "restored {} into {}: {} events in {} streams verified, {} blob(s), heads {} as in the manifest",
        file.display(),
        data_dir.display(),
        manifest.global_position,
        manifest.streams,
        manifest.blobs,
        &manifest.heads_sha256[..16]
    );
    Ok(())
}
