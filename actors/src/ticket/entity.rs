//! Tickets on the kernel: which stream, which rules, which indexes. No shell code:
//! the kernel's actor runs every ticket command.

use std::sync::Arc;

use storage::{BlobStore, IndexOp};
use uuid::Uuid;

use super::closeout::Templates;
use super::model::{Ticket, TicketCommand, TicketError, TicketEvent};
use super::rules::{DecideContext, apply, decide};
use super::store;
use crate::kernel::{At, Context, Entity};
use crate::policy::Denied;

/// What ticket rules consult besides the ticket: closeout templates and whether an
/// evidence URI resolves to an intact blob.
pub struct TicketDeps {
    pub blobs: BlobStore,
    pub templates: Arc<Templates>,
}

/// The ticket kind.
#[derive(Debug, Clone, Copy)]
pub struct Tickets;

impl Entity for Tickets {
    const KIND: &'static str = "ticket";
    const STREAM: &'static str = "ticket";
    /// Most tickets live and close within one interval.
    const SNAPSHOT_EVERY: Option<u64> = Some(store::SNAPSHOT_EVERY);

    type Id = Uuid;
    type State = Ticket;
    type Command = TicketCommand;
    type Event = TicketEvent;
    type Error = TicketError;
    type Deps = TicketDeps;

    fn creates(command: &TicketCommand) -> bool {
        matches!(command, TicketCommand::Create(_))
    }

    fn not_found() -> TicketError {
        TicketError::NotFound
    }

    fn decide(
        deps: &TicketDeps,
        cx: &Context<'_, Self>,
        ticket: Option<&Ticket>,
        command: &TicketCommand,
    ) -> Result<Vec<TicketEvent>, TicketError> {
        let principal = cx.origin.principal.as_ref().ok_or_else(|| Denied::Role("no authenticated caller".into()))?;
        let resolves = |uri: &str| deps.blobs.resolves(uri);
        let cx = DecideContext {
            principal,
            now: store::time_of(cx.now_ms),
            ticket_id: *cx.id,
            templates: &deps.templates,
            resolves: &resolves,
        };
        decide(ticket, command, &cx)
    }

    fn apply(ticket: Option<Ticket>, at: At<'_, Uuid>, event: &TicketEvent) -> Option<Ticket> {
        apply(ticket, *at.id, at.seq, store::time_of(at.time_ms), event)
    }

    fn to_snapshot(ticket: &Ticket) -> Option<Result<Vec<u8>, String>> {
        Some(serde_json::to_vec(ticket).map_err(|e| e.to_string()))
    }

    fn from_snapshot(bytes: &[u8]) -> Option<Result<Ticket, String>> {
        Some(serde_json::from_slice(bytes).map_err(|e| e.to_string()))
    }

    fn event_kind(event: &TicketEvent) -> &'static str {
        event.kind()
    }

    fn state_name(ticket: &Ticket) -> &'static str {
        ticket.state.as_str()
    }

    fn index_ops(_cx: &Context<'_, Self>, before: Option<&Ticket>, after: &Ticket, _: &[TicketEvent]) -> Vec<IndexOp> {
        store::index_ops(before, after)
    }

    fn is_final(ticket: &Ticket) -> bool {
        ticket.state.is_terminal()
    }

    fn committed(_: &TicketDeps, before: Option<&Ticket>, after: &Ticket, _: &[TicketEvent]) {
        let from = before.map_or("NONE", |t| t.state.as_str());
        if from != after.state.as_str() {
            metrics::counter!("dispatch_ticket_transitions_total", "from" => from, "to" => after.state.as_str())
                .increment(1);
            if let Some(b) = before {
                metrics::gauge!("dispatch_tickets", "state" => b.state.as_str()).decrement(1.0);
            }
            metrics::gauge!("dispatch_tickets", "state" => after.state.as_str()).increment(1.0);
        }
    }
}
