//! The lane-creation freeze, a setting an admin turns on and off with a reason. The
//! `settings` index holds the current reason (what the API checks); the stream
//! `settings/lanes` holds who changed it, when and why.

use serde::{Deserialize, Serialize};
use storage::IndexOp;

use crate::kernel::{At, Context, Entity};

/// Index of node-wide settings: key `lanes_frozen`, value the freeze's reason.
pub const SETTINGS: &str = "settings";
pub const FROZEN: &str = "lanes_frozen";

/// Freeze or thaw lane creation.
#[derive(Debug, Clone)]
pub struct SetFreeze {
    pub frozen: bool,
    pub reason: String,
}

/// The freeze changed. (Records written before `frozen` was stored read as a thaw;
/// the index, not the stream, is what the API checks.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FreezeChanged {
    #[serde(default)]
    pub frozen: bool,
    pub reason: String,
}

/// The setting as the stream tells it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FreezeState {
    pub frozen: bool,
    pub reason: String,
    pub changed_ms: i64,
}

/// Why a freeze change was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FreezeError {
    #[error("a reason is required")]
    ReasonRequired,
}

/// The lane-freeze setting kind (one entity, id `lanes`).
#[derive(Debug, Clone, Copy)]
pub struct LaneFreeze;

impl Entity for LaneFreeze {
    const KIND: &'static str = "setting";
    const STREAM: &'static str = "settings";
    type Id = String;
    type State = FreezeState;
    type Command = SetFreeze;
    type Event = FreezeChanged;
    type Error = FreezeError;
    type Deps = ();

    fn creates(_: &SetFreeze) -> bool {
        true
    }
    fn not_found() -> FreezeError {
        FreezeError::ReasonRequired
    }
    fn decide(
        _: &(),
        _: &Context<'_, Self>,
        _: Option<&FreezeState>,
        c: &SetFreeze,
    ) -> Result<Vec<FreezeChanged>, FreezeError> {
        if c.reason.trim().is_empty() {
            return Err(FreezeError::ReasonRequired);
        }
        Ok(vec![FreezeChanged { frozen: c.frozen, reason: c.reason.clone() }])
    }
    fn apply(_: Option<FreezeState>, at: At<'_, String>, e: &FreezeChanged) -> Option<FreezeState> {
        Some(FreezeState { frozen: e.frozen, reason: e.reason.clone(), changed_ms: at.time_ms })
    }
    fn event_kind(e: &FreezeChanged) -> &'static str {
        if e.frozen { "lanes.frozen" } else { "lanes.unfrozen" }
    }
    fn state_name(s: &FreezeState) -> &'static str {
        if s.frozen { "FROZEN" } else { "OPEN" }
    }
    fn index_ops(
        _: &Context<'_, Self>,
        _: Option<&FreezeState>,
        after: &FreezeState,
        _: &[FreezeChanged],
    ) -> Vec<IndexOp> {
        vec![if after.frozen {
            IndexOp::Put { index: SETTINGS.into(), key: FROZEN.into(), value: after.reason.clone().into_bytes() }
        } else {
            IndexOp::Delete { index: SETTINGS.into(), key: FROZEN.into() }
        }]
    }
}
