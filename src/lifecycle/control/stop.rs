//! Stopping and restarting through the supervisor, or stopping servers of ours that run
//! without one.

use super::*;

/// What `stop` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing was running.
    NotRunning,
    /// The supervisor stopped the server and exited.
    Stopped,
    /// No supervisor ran; these servers of ours (pids) ran without one and were stopped.
    Orphans(Vec<i32>),
}

/// Stops the supervisor and its server; returns once both are gone. Servers of ours running
/// without a supervisor (see [`unsupervised_servers`]) are stopped too: SIGTERM to the group,
/// SIGKILL after `stop_timeout`. A malformed state file is no obstacle unless a supervisor
/// runs (then it says which file).
pub async fn stop(cfg: &Config) -> Result<Stopped> {
    let instance = Instance::new(&cfg.data_dir);
    // Without a runtime dir there is no start lock to take (and no supervisor), but a server
    // of ours whose files were deleted under it may still run.
    let _lock = match instance.runtime_dir().is_dir() {
        true => Some(lock_start(&instance, start_deadline(cfg), cfg.client.retry_window).await?),
        false => None,
    };
    stop_locked(cfg, &instance).await
}

/// [`stop`] for a caller that holds the start lock (or has no runtime dir to take it in).
pub(crate) async fn stop_locked(cfg: &Config, instance: &Instance) -> Result<Stopped> {
    let instance = instance.clone();
    let mut state = match current_state(&instance) {
        Ok(s) => s,
        Err(e @ Error::StateFile { .. }) => {
            if crate::sys::locks::holder_of(&instance.supervisor_lock()).is_some() {
                return Err(e);
            }
            tracing::warn!("{e}");
            None
        }
        Err(e) => return Err(e),
    };
    let mut did = false;
    if let Some(sup) = state
        .as_ref()
        .and_then(|s| s.supervisor.clone())
        .filter(|s| s.is_running())
    {
        did = true;
        sup.signal(Signal::SIGTERM)?;
        // The supervisor itself escalates to SIGKILL after stop_timeout.
        if !sup
            .wait_gone(cfg.server.stop_timeout + Duration::from_secs(15))
            .await
        {
            tracing::warn!(pid = sup.pid, "supervisor did not exit; killing it");
            let _ = sup.signal(Signal::SIGKILL);
            sup.wait_gone(Duration::from_secs(5)).await;
        }
        state = current_state(&instance)?.or(state);
    }
    // Left behind by a killed supervisor, or by one whose state file was lost.
    let mut orphans = vec![];
    for server in unsupervised_servers(&instance, state.as_ref()) {
        server.terminate(cfg.server.stop_timeout).await?;
        orphans.push(server.pid);
    }
    // The supervisor was killed before it could record the stop itself. Where there is no
    // runtime dir (the data dir was removed under the supervisor) there is no state file to
    // correct either: nothing is recorded, and nothing is created.
    let recordable = instance.runtime_dir().is_dir();
    if let Some(state) = state
        .as_mut()
        .filter(|s| recordable && s.phase != PhaseRecord::Stopped)
    {
        state.phase = PhaseRecord::Stopped;
        state.updated_at = crate::sys::clock::now_rfc3339();
        state.write(&instance.state_file())?;
    }
    Ok(match (did, orphans.is_empty()) {
        (true, _) => Stopped::Stopped,
        (false, false) => Stopped::Orphans(orphans),
        (false, true) => Stopped::NotRunning,
    })
}

/// Restarts the server: through the running supervisor (which also leaves `failed`), or by
/// starting one.
pub async fn restart(cfg: &Config) -> Result<State> {
    let instance = Instance::new(&cfg.data_dir);
    let st = status(cfg)?;
    let sup = st.state.as_ref().and_then(|s| s.supervisor.clone());
    match sup.filter(|s| s.is_running()) {
        Some(sup) => {
            let old = st.state.as_ref().and_then(|s| s.server().map(|p| p.pid));
            let old_update = st.state.as_ref().map(|s| s.updated_at.clone());
            sup.signal(Signal::SIGUSR1)?;
            // Judge only states written after the signal was handled, not the old one.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline
                && current_state(&instance)?.map(|s| s.updated_at) == old_update
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            match wait_ready(cfg, &instance, None, old, start_deadline(cfg)).await? {
                Some(state) => Ok(state),
                None => start(cfg).await,
            }
        }
        None => start(cfg).await,
    }
}
