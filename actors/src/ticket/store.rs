//! How tickets live in the log: stream names, index keys, and rebuilding a ticket
//! from its snapshot and the events after it. Reads used by the API go here too.

use storage::{IndexOp, Log, StorageError};
use time::OffsetDateTime;
use uuid::Uuid;

use super::entity::Tickets;
use super::model::{Ticket, TicketState};
use crate::kernel::{self, LoadError};

/// Index of tickets by state: key `STATE␟id`.
pub const BY_STATE: &str = "ticket_by_state";
/// Index of tickets by site: key `site␟id`.
pub const BY_SITE: &str = "ticket_by_site";
const SEP: char = '\u{1f}';

/// The log stream of one ticket.
pub fn stream(id: Uuid) -> String {
    format!("ticket/{id}")
}

/// A snapshot is stored every this many events, so waking a ticket replays at most
/// this many; most tickets live and close within one interval.
pub const SNAPSHOT_EVERY: u64 = 16;

/// Event time as stored (milliseconds since the epoch) back to a timestamp.
pub fn time_of(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The current ticket: its snapshot plus any events after it. `None` if it never existed.
pub fn load(log: &Log, id: Uuid) -> Result<Option<Ticket>, LoadError> {
    Ok(kernel::load::<Tickets>(log, &id)?.state)
}

/// The ticket id of a ticket stream name.
pub fn id_of(stream: &str) -> Option<Uuid> {
    stream.strip_prefix("ticket/").and_then(|id| Uuid::parse_str(id).ok())
}

/// Index changes for a ticket moving from `before` (None when created) to `after`.
pub fn index_ops(before: Option<&Ticket>, after: &Ticket) -> Vec<IndexOp> {
    let state_key = |s: TicketState| format!("{}{SEP}{}", s.as_str(), after.id);
    let mut ops = Vec::new();
    match before {
        None => ops.push(IndexOp::Put {
            index: BY_SITE.into(),
            key: format!("{}{SEP}{}", after.site_id, after.id),
            value: Vec::new(),
        }),
        Some(b) if b.state == after.state => return ops,
        Some(b) => ops.push(IndexOp::Delete { index: BY_STATE.into(), key: state_key(b.state) }),
    }
    ops.push(IndexOp::Put { index: BY_STATE.into(), key: state_key(after.state), value: Vec::new() });
    ops
}

/// Which tickets to list: filters, a cursor and a page size.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter<'a> {
    pub state: Option<TicketState>,
    pub site_id: Option<&'a str>,
    /// Only tickets created after this one (the previous page's cursor).
    pub after: Option<Uuid>,
    pub limit: usize,
}

/// One page of tickets the caller may see, oldest first (ticket ids are time-ordered
/// UUIDv7), and the cursor of the next page when there may be one. Only the tickets
/// on the page are loaded; the indexes hold just ids.
pub fn list(
    log: &Log,
    filter: &ListFilter<'_>,
    visible: impl Fn(&Ticket) -> bool,
) -> Result<(Vec<Ticket>, Option<Uuid>), LoadError> {
    let mut ids: Vec<Uuid> = match (filter.state, filter.site_id) {
        (Some(s), _) => ids_in(log, BY_STATE, &format!("{}{SEP}", s.as_str()))?,
        (None, Some(site)) => ids_in(log, BY_SITE, &format!("{site}{SEP}"))?,
        (None, None) => ids_in(log, BY_SITE, "")?,
    };
    ids.sort_unstable();
    let mut page = Vec::new();
    for id in ids.into_iter().filter(|id| filter.after.is_none_or(|after| *id > after)) {
        if page.len() >= filter.limit {
            let last = page.last().map(|t: &Ticket| t.id);
            return Ok((page, last));
        }
        if let Some(t) = load(log, id)?
            && filter.site_id.is_none_or(|s| t.site_id == s)
            && visible(&t)
        {
            page.push(t);
        }
    }
    Ok((page, None))
}

/// Tickets in each state, counted from the index in pages (at start-up; the
/// `dispatch_tickets` gauge follows commits after that).
pub fn count_by_state(log: &Log) -> Result<Vec<(TicketState, u64)>, StorageError> {
    const PAGE: usize = 10_000;
    let mut counts = Vec::new();
    for state in TicketState::ALL {
        let prefix = format!("{}{SEP}", state.as_str());
        let (mut n, mut after) = (0u64, None::<String>);
        loop {
            let page = log.index_page(BY_STATE, &prefix, after.as_deref(), PAGE)?;
            n += page.len() as u64;
            match page.last() {
                Some((key, _)) if page.len() == PAGE => after = Some(key.clone()),
                _ => break,
            }
        }
        counts.push((state, n));
    }
    Ok(counts)
}

fn ids_in(log: &Log, index: &str, prefix: &str) -> Result<Vec<Uuid>, StorageError> {
    Ok(log
        .index_scan(index, prefix, usize::MAX)?
        .into_iter()
        .filter_map(|(k, _)| k.rsplit(SEP).next().and_then(|id| Uuid::parse_str(id).ok()))
        .collect())
}
