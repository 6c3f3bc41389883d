//! The one generic supervisor: finds or wakes the actor of an id, passivates idle and
//! least recently used actors (memory follows the working set, not the history), and
//! lets a failed actor go: the next command wakes a fresh one from snapshot + log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

// tokio's clock, not the OS's: in a simulation idle actors passivate on simulated time.
use tokio::time::Instant;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, MessagingErr, SupervisionEvent};

use super::actor::EntityActor;
use super::command::{Failure, Kernel, Outcome, Request};
use super::entity::Entity;
use super::messages::{EntityMsg, SupervisorMsg};

/// Bounds on live actors of one kind.
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

struct Supervisor<E: Entity>(std::marker::PhantomData<E>);

struct Child<E: Entity> {
    actor: ActorRef<EntityMsg<E>>,
    last_used: Instant,
}

struct State<E: Entity> {
    kernel: Kernel,
    deps: Arc<E::Deps>,
    config: SupervisorConfig,
    children: HashMap<E::Id, Child<E>>,
    by_actor: HashMap<ActorId, E::Id>,
}

impl<E: Entity> Actor for Supervisor<E> {
    type Msg = SupervisorMsg<E>;
    type State = State<E>;
    type Arguments = (Kernel, Arc<E::Deps>, SupervisorConfig);

    async fn pre_start(
        &self,
        me: ActorRef<Self::Msg>,
        (kernel, deps, config): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let every = (config.idle_after / 2).max(Duration::from_millis(100));
        me.send_interval(every, || SupervisorMsg::Sweep);
        Ok(State { kernel, deps, config, children: HashMap::new(), by_actor: HashMap::new() })
    }

    async fn post_stop(&self, _me: ActorRef<Self::Msg>, st: &mut Self::State) -> Result<(), ActorProcessingErr> {
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
            SupervisorMsg::Route(id, msg) => st.route(&me, id, msg).await,
            SupervisorMsg::Finished(id, actor) => {
                if st.children.get(&id).is_some_and(|c| c.actor.get_id() == actor) {
                    st.passivate(&id);
                }
            }
            SupervisorMsg::Sweep => st.sweep_idle(),
            SupervisorMsg::LiveCount(reply) => {
                let _ = reply.send(st.children.len());
            }
        }
        st.report();
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _me: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                st.forget(cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(id) = st.forget(cell.get_id()) {
                    tracing::warn!(kind = E::KIND, %id, error = %err, "actor failed; the next command wakes it from the log");
                    metrics::counter!("dispatch_actor_restarts_total", "kind" => E::KIND).increment(1);
                }
            }
            _ => {}
        }
        st.report();
        Ok(())
    }
}

impl<E: Entity> State<E> {
    async fn route(&mut self, me: &ActorRef<SupervisorMsg<E>>, id: E::Id, mut msg: EntityMsg<E>) {
        // Two tries: a child can stop between lookup and send; the second wakes a fresh one.
        for _ in 0..2 {
            let live = self.children.get_mut(&id).map(|c| {
                c.last_used = Instant::now();
                c.actor.clone()
            });
            let actor = match live {
                Some(actor) => actor,
                None => {
                    let Some(wakes) = self.may_wake(&id, msg) else { return };
                    msg = wakes;
                    match self.spawn(me, id.clone()).await {
                        Ok(a) => a,
                        Err(e) => return refuse(msg, format!("{} actor did not start: {e}", E::KIND)),
                    }
                }
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
        refuse(msg, format!("{} actor unavailable; retry", E::KIND));
    }

    /// Whether an asleep id may be woken for `msg`: an id that was never created gets
    /// no actor (an unknown id must not cost memory), and its caller is answered here.
    /// Checked only on waking, so a command to a live actor reads nothing extra.
    fn may_wake(&self, id: &E::Id, msg: EntityMsg<E>) -> Option<EntityMsg<E>> {
        if let EntityMsg::Run(request, _) = &msg
            && E::creates(&request.command)
        {
            return Some(msg);
        }
        let exists = self.kernel.log.stream_head(&E::stream(id)).map(|(seq, _)| seq > 0);
        match (exists, msg) {
            (Ok(true), msg) => return Some(msg),
            (Ok(false), EntityMsg::Run(_, reply)) => {
                let _ = reply.send(Err(Failure::Rejected(E::not_found())));
            }
            (Ok(false), EntityMsg::Get(reply)) => {
                let _ = reply.send(None);
            }
            (Err(e), EntityMsg::Run(_, reply)) => {
                let _ = reply.send(Err(Failure::Unavailable(e.to_string())));
            }
            (Ok(false) | Err(_), _) => {}
        }
        None
    }

    async fn spawn(
        &mut self,
        me: &ActorRef<SupervisorMsg<E>>,
        id: E::Id,
    ) -> Result<ActorRef<EntityMsg<E>>, ractor::SpawnErr> {
        let actor = EntityActor { kernel: self.kernel.clone(), deps: self.deps.clone(), supervisor: me.clone() };
        let (actor, _) = Actor::spawn_linked(None, actor, id.clone(), me.get_cell()).await?;
        self.by_actor.insert(actor.get_id(), id.clone());
        self.children.insert(id, Child { actor: actor.clone(), last_used: Instant::now() });
        if self.children.len() > self.config.max_live {
            self.evict_least_recently_used();
        }
        Ok(actor)
    }

    fn sweep_idle(&mut self) {
        let idle_after = self.config.idle_after;
        let idle: Vec<E::Id> = self
            .children
            .iter()
            .filter(|(_, c)| c.last_used.elapsed() >= idle_after)
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            self.passivate(&id);
        }
    }

    /// Passivates the least recently used tenth, so eviction costs O(log n) per spawn.
    fn evict_least_recently_used(&mut self) {
        let mut by_age: Vec<(Instant, &E::Id)> = self.children.iter().map(|(id, c)| (c.last_used, id)).collect();
        by_age.sort_unstable_by_key(|(used, _)| *used);
        let excess = self.children.len() - self.config.max_live;
        let n = excess.max(self.config.max_live / 10).min(by_age.len().saturating_sub(1));
        let oldest: Vec<E::Id> = by_age.into_iter().take(n).map(|(_, id)| id.clone()).collect();
        for id in oldest {
            self.passivate(&id);
        }
    }

    fn passivate(&mut self, id: &E::Id) {
        if let Some(child) = self.children.remove(id) {
            self.by_actor.remove(&child.actor.get_id());
            let _ = child.actor.send_message(EntityMsg::Passivate);
        }
    }

    fn forget(&mut self, actor: ActorId) -> Option<E::Id> {
        let id = self.by_actor.remove(&actor)?;
        if self.children.get(&id).is_some_and(|c| c.actor.get_id() == actor) {
            self.children.remove(&id);
        }
        Some(id)
    }

    fn report(&self) {
        metrics::gauge!("dispatch_live_actors", "kind" => E::KIND).set(self.children.len() as f64);
    }
}

/// Answers a message that could not be delivered (a dropped port would too, but
/// with a reason the caller can log).
fn refuse<E: Entity>(msg: EntityMsg<E>, why: String) {
    if let EntityMsg::Run(_, reply) = msg {
        let _ = reply.send(Err(Failure::Unavailable(why)));
    }
}

/// Handle to every entity of one kind on this node. Clone freely.
pub struct Entities<E: Entity> {
    supervisor: ActorRef<SupervisorMsg<E>>,
    kernel: Kernel,
    deps: Arc<E::Deps>,
}

impl<E: Entity> Clone for Entities<E> {
    fn clone(&self) -> Self {
        Entities { supervisor: self.supervisor.clone(), kernel: self.kernel.clone(), deps: self.deps.clone() }
    }
}

impl<E: Entity> Entities<E> {
    /// Starts the kind's supervisor.
    pub async fn start(kernel: Kernel, deps: Arc<E::Deps>, config: SupervisorConfig) -> Result<Self, ractor::SpawnErr> {
        let (supervisor, _) =
            Actor::spawn(None, Supervisor::<E>(std::marker::PhantomData), (kernel.clone(), deps.clone(), config))
                .await?;
        Ok(Entities { supervisor, kernel, deps })
    }

    pub fn deps(&self) -> &Arc<E::Deps> {
        &self.deps
    }

    /// Runs a command on its entity's actor and waits for the durable outcome.
    pub async fn run(&self, request: Request<E>) -> Result<Outcome<E>, Failure<E>> {
        let (tx, rx) = ractor::concurrency::oneshot();
        let id = request.id.clone();
        self.supervisor
            .cast(SupervisorMsg::Route(id, EntityMsg::Run(Box::new(request), tx.into())))
            .map_err(|_| Failure::Unavailable(format!("{} actors are shutting down", E::KIND)))?;
        rx.await.unwrap_or_else(|_| {
            Err(Failure::Unavailable(format!(
                "the {} actor stopped before answering; retry with the same idempotency key",
                E::KIND
            )))
        })
    }

    /// The entity as its actor holds it (woken from the log if asleep); `None` if it
    /// never existed.
    pub async fn get(&self, id: &E::Id) -> Result<Option<E::State>, Failure<E>> {
        let (tx, rx) = ractor::concurrency::oneshot();
        self.supervisor
            .cast(SupervisorMsg::Route(id.clone(), EntityMsg::Get(tx.into())))
            .map_err(|_| Failure::Unavailable(format!("{} actors are shutting down", E::KIND)))?;
        rx.await.map_err(|_| Failure::Unavailable(format!("the {} actor stopped; retry", E::KIND)))
    }

    /// How many actors of this kind are awake.
    pub async fn live_count(&self) -> Result<usize, ractor::RactorErr<SupervisorMsg<E>>> {
        ractor::call!(self.supervisor, SupervisorMsg::LiveCount)
    }

    /// Passivates idle actors now (the periodic sweep, on demand).
    pub fn sweep(&self) {
        let _ = self.supervisor.cast(SupervisorMsg::Sweep);
    }

    /// Makes the id's actor fail (supervision tests).
    #[cfg(test)]
    pub fn crash(&self, id: &E::Id) {
        let _ = self.supervisor.cast(SupervisorMsg::Route(id.clone(), EntityMsg::Crash));
    }

    /// Stops every actor of this kind and waits until they are gone (they hold the
    /// log and its writer, which shutdown closes next).
    pub async fn stop(&self) {
        let wait = Some(Duration::from_secs(10));
        self.supervisor.stop_children_and_wait(Some("shutdown".into()), wait).await;
        let _ = self.supervisor.stop_and_wait(Some("shutdown".into()), wait).await;
    }
}
