//! The actions the machine asks for that touch the server: launch, terminate, kill.

use super::*;

impl<L: Launcher> Supervisor<L> {
    /// Performs `Launch`: preflight and spawn; reports the result.
    pub(super) async fn launch(&mut self) -> Event {
        let previous = (self.record.port != 0).then_some(self.record.port);
        match self.launcher.launch(previous).await {
            Ok(Launched {
                child,
                probe,
                port,
                socket,
            }) => {
                self.record.port = port;
                self.record.socket = socket;
                self.record.url = Some(crate::config::url::url_for(
                    &self.user,
                    "",
                    &self.record.host,
                    port,
                ));
                let launch = Launch {
                    identity: child.identity().clone(),
                    launched_at: Instant::now(),
                };
                self.ready_deadline = launch.launched_at + self.settings.ready_timeout;
                self.data_dir_ino = std::fs::metadata(self.instance.data_dir())
                    .ok()
                    .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
                self.child = Some(child);
                self.probe = Some(probe);
                Event::Launched(launch)
            }
            Err(LaunchError { error, fatal }) => Event::LaunchFailed {
                error: error.to_string(),
                fatal,
            },
        }
    }

    /// Performs `Terminate`: SIGTERM to the group, `stop_timeout`, then SIGKILL; reaps.
    pub(super) async fn terminate(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let pid = child.identity().pid;
        self.log
            .event(&format!("stopping dolt pid {pid} (SIGTERM)"));
        child.signal_group(Signal::SIGTERM);
        let timeout = self.settings.stop_timeout;
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => {
                let s = status.map(describe_exit).unwrap_or_else(|e| e.to_string());
                self.log.event(&format!("dolt pid {pid} stopped ({s})"));
                child.after_exit().await;
                self.release().await;
            }
            Err(_) => {
                self.log.event(&format!(
                    "dolt pid {pid} did not stop within {timeout:?}; sending SIGKILL"
                ));
                self.kill().await;
            }
        }
    }

    /// Performs `Kill`: SIGKILL to the group; reaps.
    pub(super) async fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            child.signal_group(Signal::SIGKILL);
            // SIGKILL cannot be caught or blocked, and acts on stopped processes too; only a
            // process stuck in the kernel (uninterruptible I/O) outlives it for a while.
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                tracing::error!(
                    pid = child.identity().pid,
                    "still not gone 30s after SIGKILL"
                );
            }
            child.after_exit().await;
        }
        self.release().await;
    }

    pub(super) async fn release(&mut self) {
        // No server, no count (published with the event that follows); clients connected
        // until now were last seen now.
        if self.record.clients.is_some_and(|n| n > 0) {
            self.record.last_client_at = Some(now_rfc3339());
        }
        self.record.clients = None;
        self.child = None;
        if let Some(mut p) = self.probe.take() {
            p.close().await;
        }
    }
}
