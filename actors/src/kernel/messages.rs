//! What the kernel's actors say to each other: commands to an entity's actor, and
//! routing and bookkeeping to its supervisor (the actor tells it when it is done).

use ractor::{ActorId, RpcReplyPort};

use super::command::{Failure, Outcome, Request};
use super::entity::Entity;

/// A command's answer port.
pub type Reply<E> = RpcReplyPort<Result<Outcome<E>, Failure<E>>>;

/// Messages to an entity's actor.
pub enum EntityMsg<E: Entity> {
    Run(Box<Request<E>>, Reply<E>),
    /// The state as the actor holds it (no replay).
    Get(RpcReplyPort<Option<E::State>>),
    /// Stop once everything queued before this is done (the log keeps everything).
    Passivate,
    /// Fail on purpose (supervision tests).
    #[cfg(test)]
    Crash,
}

/// Messages to a supervisor.
pub enum SupervisorMsg<E: Entity> {
    /// Route a message to the id's actor, waking it if needed.
    Route(E::Id, EntityMsg<E>),
    /// Passivate actors idle longer than the configured time.
    Sweep,
    /// How many actors are awake.
    LiveCount(RpcReplyPort<usize>),
    /// The entity reached a final state; its actor can go.
    Finished(E::Id, ActorId),
}
