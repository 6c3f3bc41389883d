//! The one generic actor: one per live entity id. It holds the entity's state, runs
//! each command through [`execute`] in arrival order, and answers the caller itself
//! (the supervisor never waits on it).

use std::sync::Arc;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef};

use super::command::{Kernel, Loaded, execute, load};
use super::entity::Entity;
use super::messages::{EntityMsg, SupervisorMsg};

pub(super) struct EntityActor<E: Entity> {
    pub(super) kernel: Kernel,
    pub(super) deps: Arc<E::Deps>,
    pub(super) supervisor: ActorRef<SupervisorMsg<E>>,
}

pub(super) struct ActorState<E: Entity> {
    id: E::Id,
    loaded: Loaded<E>,
}

impl<E: Entity> Actor for EntityActor<E> {
    type Msg = EntityMsg<E>;
    type State = ActorState<E>;
    type Arguments = E::Id;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, id: E::Id) -> Result<Self::State, ActorProcessingErr> {
        let loaded = load::<E>(&self.kernel.log, &id)?;
        Ok(ActorState { id, loaded })
    }

    async fn handle(
        &self,
        me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EntityMsg::Run(request, reply) => {
                // Boxed: the command path's future lives only while a command runs; inline,
                // its size would be part of every awake actor's task, idle or not.
                let result = Box::pin(execute(&self.kernel, &*self.deps, &mut st.loaded, &request)).await;
                // A final state takes no more commands, and a command that created
                // nothing left no entity: passivate now (told before answering, so the
                // caller never sees this actor still awake).
                if st.loaded.state.as_ref().is_none_or(E::is_final) {
                    self.finished(&st.id, me.get_id());
                }
                let _ = reply.send(result);
            }
            EntityMsg::Get(reply) => {
                let _ = reply.send(st.loaded.state.clone());
            }
            EntityMsg::Passivate => me.stop(Some("passivated".into())),
            #[cfg(test)]
            EntityMsg::Crash => return Err(format!("{} {} crashed on request", E::KIND, st.id).into()),
        }
        Ok(())
    }
}

impl<E: Entity> EntityActor<E> {
    fn finished(&self, id: &E::Id, actor: ActorId) {
        let _ = self.supervisor.cast(SupervisorMsg::Finished(id.clone(), actor));
    }
}
