//! `dispatch audit verify`: proves the log's hash chains, on the running server (admin)
//! or, with `--data-dir`, on a data dir no server has open (a stopped node, a restored
//! backup). Exits non-zero naming the first break.

use clap::Subcommand;
use reqwest::Method;

use super::{ClientArgs, connect, print};
use crate::api::audit::{AuditReport, report};

#[derive(Subcommand)]
pub(super) enum AuditCmd {
    /// Re-compute every hash chain and check the global order; exits 1 naming the first break.
    Verify {
        /// Only this stream, e.g. ticket/<id>.
        #[arg(long)]
        stream: Option<String>,
        /// Verify this data dir's log directly instead of asking the server (it must not be running).
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
    },
}

pub(super) async fn audit(args: ClientArgs, command: AuditCmd) -> anyhow::Result<()> {
    let AuditCmd::Verify { stream, data_dir } = command;
    let found: AuditReport = match data_dir {
        Some(dir) => {
            let path = crate::datadir::log_path(&dir);
            anyhow::ensure!(path.exists(), "no log at {}", path.display());
            let log = actors::storage::Log::open(&path).map_err(|e| {
                anyhow::anyhow!("opening {} (is a dispatch running on this data dir?): {e}", path.display())
            })?;
            report(&log, stream.as_deref())?
        }
        None => {
            let query = stream.map(|s| format!("?stream={}", encode(&s))).unwrap_or_default();
            let out =
                connect(&args).await?.call(Method::GET, &format!("/v1/admin/audit/verify{query}"), None, None).await?;
            serde_json::from_value(out)?
        }
    };
    let value = serde_json::to_value(&found)?;
    print(&args, &value, |_| match found.breaks.first() {
        None => format!("verified {}: {} events, every chain intact", found.checked, found.events),
        Some(b) => {
            let more = found.breaks.len() - 1;
            let others = if more > 0 { format!(" (and {more} more broken stream(s))") } else { String::new() };
            format!("BROKEN: stream {} at seq {}: {}{others}", b.stream, b.seq, b.reason)
        }
    });
    if !found.ok {
        std::process::exit(1);
    }
    Ok(())
}

/// A stream name as a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
