//! A writer's CPU work off the async executor: its state moves to a blocking-pool thread
//! for one step and comes back with the step's result.

use std::sync::Arc;

use crate::error::{Error, Result};

/// Run `f` with `plan` on `state` in the blocking pool. The state comes back whatever `f`
/// returns, so the writer keeps it (to go on, or to abort); a panic in `f` is an
/// [`Error::Task`] named by `context`, and the state is lost with it.
pub(crate) async fn step_blocking<P, S, F>(
    plan: &Arc<P>,
    mut state: Box<S>,
    context: &str,
    f: F,
) -> Result<(Box<S>, Result<()>)>
where
    P: Send + Sync + 'static,
    S: Send + 'static,
    F: FnOnce(&P, &mut S) -> Result<()> + Send + 'static,
{
    let plan = Arc::clone(plan);
    tokio::task::spawn_blocking(move || {
        let result = f(&plan, &mut state);
        (state, result)
    })
    .await
    .map_err(|e| Error::Task {
        context: context.to_string(),
        reason: e.to_string(),
    })
}
