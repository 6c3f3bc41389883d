//! Backups of an orchestrator's data dir, taken while it runs, and their restore.
//!
//! A backup is one uncompressed tar: `manifest.json` first (what the copy holds: global
//! position, streams, a digest of every stream head), then `dispatch.redb` (a consistent
//! copy through one read transaction), the cluster CA (`ca/…`, so workers keep trusting
//! the restored orchestrator) and every blob the events reference (`blobs/sha256/<hex>`).
//! A restore trusts none of it: every entry is bounded and named from a closed set, every
//! chain and blob is verified and the copy must match its manifest before the target
//! directory appears.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use actors::storage::{BlobStore, BlobUri, Log, LogSummary};
use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::api::BLOB_BODY_LIMIT;
use crate::datadir::log_path;

/// What a backup archive says it holds; a restore proves the copy matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `dispatch-backup/1`.
    pub format: String,
    /// The log file's data format (`dispatch version`).
    pub data_format_version: u32,
    pub created_at: String,
    /// Events in the global order when the copy was taken.
    pub global_position: u64,
    pub streams: u64,
    /// SHA-256 (hex) over every stream's name, last seq and head hash.
    pub heads_sha256: String,
    /// Size of `dispatch.redb` in the archive.
    pub log_bytes: u64,
    /// Blobs referenced by the events (all of them are in the archive).
    pub blobs: u64,
}

const FORMAT: &str = "dispatch-backup/1";
const MANIFEST: &str = "manifest.json";
const LOG_ENTRY: &str = "dispatch.redb";
const MAX_MANIFEST: u64 = 64 * 1024;
/// The CA's files are a key and a certificate: small.
const MAX_CA_FILE: u64 = 64 * 1024;
const MAX_CA_FILES: usize = 16;

impl Manifest {
    fn new(summary: &LogSummary, log_bytes: u64, blobs: u64) -> Manifest {
        let now = time::OffsetDateTime::now_utc();
        Manifest {
            format: FORMAT.into(),
            data_format_version: actors::storage::FORMAT_VERSION,
            created_at: now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            global_position: summary.global_position,
            streams: summary.streams,
            heads_sha256: hex::encode(summary.heads_sha256),
            log_bytes,
            blobs,
        }
    }

    /// The copy holds exactly what the manifest says.
    fn matches(&self, summary: &LogSummary) -> bool {
        (self.global_position, self.streams, self.heads_sha256.as_str())
            == (summary.global_position, summary.streams, hex::encode(summary.heads_sha256).as_str())
    }
}

/// Writes a backup of `log` and the blobs and CA beside it into `out`. The log's copy
/// goes through a temp file in the data dir, removed before this returns.
pub fn write_archive(log: &Log, out: impl Write) -> anyhow::Result<Manifest> {
    let data_dir = log.path().parent().context("the log has no data dir")?;
    let temp = data_dir.join(format!(".backup-{}.redb", uuid::Uuid::new_v4()));
    let written = archive_copy(log, data_dir, &temp, out);
    let _ = fs::remove_file(&temp);
    written
}

fn archive_copy(log: &Log, data_dir: &Path, temp: &Path, out: impl Write) -> anyhow::Result<Manifest> {
    let (summary, referenced) = log.copy_to(temp).context("copying the log")?;
    let blobs = BlobStore::open(data_dir.join("blobs")).context("opening the blob store")?;
    let mut blob_files = Vec::new();
    for uri in &referenced {
        let path = blobs.path_of_intact(uri).with_context(|| format!("{uri} is referenced but missing or damaged"))?;
        blob_files.push((uri.hex().to_owned(), path));
    }
    let mut log_file = File::open(temp)?;
    let manifest = Manifest::new(&summary, log_file.metadata()?.len(), blob_files.len() as u64);
    let mut tar = tar::Builder::new(out);
    let bytes = serde_json::to_vec_pretty(&manifest)?;
    append(&mut tar, MANIFEST, bytes.len() as u64, bytes.as_slice())?;
    append(&mut tar, LOG_ENTRY, manifest.log_bytes, &mut log_file)?;
    for (name, path) in ca_files(&data_dir.join("ca"))? {
        let mut f = File::open(&path)?;
        append(&mut tar, &format!("ca/{name}"), f.metadata()?.len(), &mut f)?;
    }
    for (hex, path) in blob_files {
        let mut f = File::open(&path)?;
        append(&mut tar, &format!("blobs/sha256/{hex}"), f.metadata()?.len(), &mut f)?;
    }
    tar.into_inner()?.flush()?;
    Ok(manifest)
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, size: u64, data: impl Read) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data.take(size)).with_context(|| format!("writing {name}"))
}

/// The CA's files (none when the node has no CA yet).
fn ca_files(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else { return Ok(out) };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            ensure!(safe_name(&name), "unexpected file {} in the CA dir", entry.path().display());
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Restores `archive` into `data_dir`, which must be missing or empty. Nothing appears
/// there unless every chain and blob verifies and the copy matches its manifest.
pub fn restore(archive: &Path, data_dir: &Path) -> anyhow::Result<Manifest> {
    if data_dir.exists() {
        let mut entries = fs::read_dir(data_dir).with_context(|| format!("reading {}", data_dir.display()))?;
        ensure!(
            entries.next().is_none(),
            "{} is not empty: restore only into a new or empty data dir (nothing was changed)",
            data_dir.display()
        );
    }
    let name = data_dir.file_name().context("the data dir needs a name")?.to_string_lossy().into_owned();
    let staging = data_dir.with_file_name(format!(".{name}.restoring-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    crate::datadir::prepare(&staging)?;
    let restored = unpack(archive, &staging).and_then(|manifest| {
        if data_dir.exists() {
            fs::remove_dir(data_dir)?;
        }
        fs::rename(&staging, data_dir)?;
        if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent)?.sync_all()?;
        }
        Ok(manifest)
    });
    if restored.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    restored
}

fn unpack(archive: &Path, staging: &Path) -> anyhow::Result<Manifest> {
    let file = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut tar = tar::Archive::new(file);
    let mut entries = tar.entries().context("reading the archive")?;
    let manifest: Manifest = {
        let mut first = entries.next().context("the archive is empty")??;
        ensure!(entry_name(&first)? == MANIFEST, "the archive does not start with {MANIFEST}: not a dispatch backup");
        ensure!(first.size() <= MAX_MANIFEST, "{MANIFEST} is larger than {MAX_MANIFEST} bytes");
        let mut bytes = Vec::new();
        first.read_to_end(&mut bytes)?;
        serde_json::from_slice(&bytes).context("reading manifest.json")?
    };
    ensure!(manifest.format == FORMAT, "unknown backup format {:?} (this dispatch reads {FORMAT})", manifest.format);
    ensure!(
        manifest.data_format_version <= actors::storage::FORMAT_VERSION,
        "the backup holds data format {}, newer than this dispatch reads ({}): restore it with a newer dispatch",
        manifest.data_format_version,
        actors::storage::FORMAT_VERSION
    );
    let blobs = BlobStore::open(staging.join("blobs"))?;
    let (mut has_log, mut ca, mut stored) = (false, 0usize, BTreeSet::new());
    for entry in entries {
        let mut entry = entry.context("reading the archive")?;
        let name = entry_name(&entry)?;
        let size = entry.size();
        if name == LOG_ENTRY && !has_log {
            ensure!(
                size == manifest.log_bytes,
                "{LOG_ENTRY} is {size} bytes, the manifest says {}",
                manifest.log_bytes
            );
            let mut out = File::create(log_path(staging))?;
            std::io::copy(&mut entry, &mut out)?;
            out.sync_all()?;
            has_log = true;
        } else if let Some(file) = name.strip_prefix("ca/").filter(|f| safe_name(f)) {
            ensure!(size <= MAX_CA_FILE && ca < MAX_CA_FILES, "ca/{file} is too large or one CA file too many");
            fs::create_dir_all(staging.join("ca"))?;
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            fs::write(staging.join("ca").join(file), bytes)?;
            ca += 1;
        } else if let Some(uri) =
            name.strip_prefix("blobs/sha256/").and_then(|h| BlobUri::parse(&format!("blob:sha256:{h}")))
        {
            ensure!(size <= BLOB_BODY_LIMIT as u64, "{name} is larger than a blob can be");
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            let (got, _) = blobs.put(&bytes)?;
            ensure!(got == uri, "{name} does not hash to its name: the backup is damaged");
            stored.insert(uri);
        } else {
            bail!("unexpected entry {name:?} in the archive: not a dispatch backup");
        }
    }
    ensure!(has_log, "the archive holds no {LOG_ENTRY}");
    verify_copy(staging, &manifest, &stored)?;
    Ok(manifest)
}

/// The restored log verifies, matches the manifest and finds every blob it references.
fn verify_copy(staging: &Path, manifest: &Manifest, stored: &BTreeSet<BlobUri>) -> anyhow::Result<()> {
    let log = Log::open(log_path(staging)).context("opening the restored log")?;
    if let Some(b) = log.verify_all()?.first() {
        bail!("the backup is damaged: stream {} at seq {}: {}", b.stream, b.seq, b.reason);
    }
    let summary = log.summary()?;
    ensure!(
        manifest.matches(&summary),
        "the backup's log does not match its manifest (it holds {} events in {} streams, heads {}; the manifest \
         says {} in {}, heads {})",
        summary.global_position,
        summary.streams,
        hex::encode(summary.heads_sha256),
        manifest.global_position,
        manifest.streams,
        manifest.heads_sha256
    );
    let referenced = log.referenced_blobs()?;
    if let Some(missing) = referenced.difference(stored).next() {
        bail!("the backup lacks {missing}, which an event references");
    }
    Ok(())
}

/// An entry's path as UTF-8, only for regular files.
fn entry_name<R: Read>(entry: &tar::Entry<R>) -> anyhow::Result<String> {
    ensure!(entry.header().entry_type() == tar::EntryType::Regular, "the archive holds something other than files");
    let path = entry.path().context("an entry's name is not valid")?;
    path.to_str().map(str::to_owned).context("an entry's name is not UTF-8")
}
