//! Finds or wakes the actor of a ticket, restarts one that fails (it rehydrates
//! from snapshot + log), and passivates idle ones so memory follows the working
//! set, not the history.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort, SupervisionEvent};
use storage::{BlobStore, Log, LogWriter};
use uuid::Uuid;

use super::actor::{CommandError, TicketActor, TicketMsg, TicketRequest};
use super::closeout::Templates;

/// What every ticket actor needs from the node.
pub struct TicketDeps {
    pub log: Log,
    pub writer: LogWriter,
    pub blobs: BlobStore,
    pub templates: Arc<Templates>,
}

/// Bounds on live ticket actors.
#[derive(Debug, Clone, Copy)]
pub struct SupervisorConfig {
    /// Most actors kept awake; past it the least recently used are passivated.
    pub max_live: usize,
    /// Actors idle this long are passivated by the periodic sweep.
    pub idle_after: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig { max_live: 10_000, idle_after: Duration::from_secs(300) }
    }
}

/// Messages to the ticket supervisor.
pub enum SupervisorMsg {
    /// Route a command to its ticket's actor, waking it if needed.
    Dispatch(Box<TicketRequest>),
    /// Passivate actors idle longer than the configured time.
    Sweep,
    /// How many ticket actors are awake.
    LiveCount(RpcReplyPort<usize>),
    /// The ticket reached a final state; its actor can be passivated.
    Finished(Uuid, ActorId),
    #[cfg(test)]
    Crash(Uuid),
}

/// The supervisor of all ticket actors on this node.
pub struct TicketSupervisor;

struct Child {
    actor: ActorRef<TicketMsg>,
    last_used: Instant,
}

pub struct SupervisorState {
    deps: Arc<TicketDeps>,
    config: SupervisorConfig,
    children: HashMap<Uuid, Child>,
    by_actor: HashMap<ActorId, Uuid>,
    sweeper: Option<tokio::task::JoinHandle<()>>,
}

impl Actor for TicketSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = (Arc<TicketDeps>, SupervisorConfig);

    async fn pre_start(
        &self,
        me: ActorRef<Self::Msg>,
        (deps, config): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let every = (config.idle_after / 2).max(Duration::from_millis(100));
        let sweeper = Some(me.send_interval(every, || SupervisorMsg::Sweep));
        Ok(SupervisorState { deps, config, children: HashMap::new(), by_actor: HashMap::new(), sweeper })
    }

    async fn post_stop(&self, _me: ActorRef<Self::Msg>, st: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(s) = st.sweeper.take() {
            s.abort();
        }
        for (_, child) in st.children.drain() {
            child.actor.stop(None);
        }
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Dispatch(req) => st.dispatch(&me, req).await,
            SupervisorMsg::Finished(id, actor) => {
                if st.children.get(&id).is_some_and(|c| c.actor.get_id() == actor) {
                    st.passivate(id);
                }
            }
            SupervisorMsg::Sweep => {
                let idle_after = st.config.idle_after;
                let idle: Vec<Uuid> = st
                    .children
                    .iter()
                    .filter(|(_, c)| c.last_used.elapsed() >= idle_after)
                    .map(|(id, _)| *id)
                    .collect();
                for id in idle {
                    st.passivate(id);
                }
            }
            SupervisorMsg::LiveCount(reply) => {
                let _ = reply.send(st.children.len());
            }
            #[cfg(test)]
            SupervisorMsg::Crash(id) => {
                if let Some(c) = st.children.get(&id) {
                    let _ = c.actor.send_message(TicketMsg::Crash);
                }
            }
        }
        st.report();
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                st.forget(cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(id) = st.forget(cell.get_id()) {
                    tracing::warn!(ticket = %id, error = %err, "ticket actor failed; restarting from snapshot and log");
                    metrics::counter!("dispatch_actor_restarts_total", "kind" => "ticket").increment(1);
                    if let Err(e) = st.spawn(&me, id).await {
                        tracing::error!(ticket = %id, error = %e, "ticket actor could not be restarted; will retry on next command");
                    }
                }
            }
            _ => {}
        }
        st.report();
        Ok(())
    }
}

impl SupervisorState {
    async fn dispatch(&mut self, me: &ActorRef<SupervisorMsg>, req: Box<TicketRequest>) {
        let id = req.ticket_id;
        let mut msg = TicketMsg::Command(req);
        // Two tries: a child can die between lookup and send; the second wakes a fresh one.
        for _ in 0..2 {
            let actor = match self.children.get_mut(&id) {
                Some(c) => {
                    c.last_used = Instant::now();
                    c.actor.clone()
                }
                None => match self.spawn(me, id).await {
                    Ok(a) => a,
                    Err(e) => return fail(msg, CommandError::Unavailable(format!("ticket actor did not start: {e}"))),
                },
            };
            match actor.send_message(msg) {
                Ok(()) => return,
                Err(MessagingErr::SendErr(back)) => {
                    self.forget(actor.get_id());
                    msg = back;
                }
                Err(_) => return,
            }
        }
        fail(msg, CommandError::Unavailable("ticket actor unavailable".into()));
    }

    async fn spawn(&mut self, me: &ActorRef<SupervisorMsg>, id: Uuid) -> Result<ActorRef<TicketMsg>, ractor::SpawnErr> {
        let actor = TicketActor { deps: self.deps.clone(), supervisor: me.clone() };
        let (actor, _) = Actor::spawn_linked(None, actor, id, me.get_cell()).await?;
        self.by_actor.insert(actor.get_id(), id);
        self.children.insert(id, Child { actor: actor.clone(), last_used: Instant::now() });
        if self.children.len() > self.config.max_live {
            self.evict_least_recently_used();
        }
        Ok(actor)
    }

    /// Passivates the least recently used tenth, so eviction costs O(log n) per spawn.
    fn evict_least_recently_used(&mut self) {
        let mut by_age: Vec<(Instant, Uuid)> = self.children.iter().map(|(id, c)| (c.last_used, *id)).collect();
        by_age.sort_unstable();
        let excess = self.children.len() - self.config.max_live;
        let n = excess.max(self.config.max_live / 10).min(by_age.len().saturating_sub(1));
        for (_, id) in by_age.into_iter().take(n) {
            self.passivate(id);
        }
    }

    fn passivate(&mut self, id: Uuid) {
        if let Some(child) = self.children.remove(&id) {
            self.by_actor.remove(&child.actor.get_id());
            let _ = child.actor.send_message(TicketMsg::Passivate);
        }
    }

    fn forget(&mut self, actor: ActorId) -> Option<Uuid> {
        let id = self.by_actor.remove(&actor)?;
        if self.children.get(&id).is_some_and(|c| c.actor.get_id() == actor) {
            self.children.remove(&id);
        }
        Some(id)
    }

    fn report(&self) {
        metrics::gauge!("dispatch_live_actors", "kind" => "ticket").set(self.children.len() as f64);
    }
}

fn fail(msg: TicketMsg, err: CommandError) {
    if let TicketMsg::Command(req) = msg {
        let _ = req.reply.send(Err(err));
    }
}

#[cfg(test)]
#[path = "supervisor_tests.rs"]
mod tests;
