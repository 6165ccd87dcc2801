//! Waiting for what can happen in the current phase: commands, the launched server becoming
//! ready, and, while it runs, its exit, health probes, client counts and the idle timeout.

use super::*;

impl<L: Launcher> Supervisor<L> {
    pub(super) async fn command(&mut self) -> Event {
        match self.commands.recv().await {
            Some(Command::Stop) | None => Event::Stop,
            Some(Command::Restart) => Event::Restart,
        }
    }

    /// Waits for what can happen in the current phase.
    pub(super) async fn next_event(&mut self) -> Event {
        match self.machine.phase {
            ServerPhase::Starting(Some(_)) => self.wait_ready().await,
            ServerPhase::Running { .. } => self.watch().await,
            // Backoff and failed wait out their timer (failed retries every max_backoff),
            // or a command; the other phases are left by actions.
            _ => {
                let until = self.backoff_until.unwrap_or_else(Instant::now);
                let mut maintenance = tokio::time::interval(self.settings.health.interval);
                maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until.into()) => return Event::BackoffElapsed,
                        e = self.command() => return e,
                        _ = maintenance.tick() => {
                            if let Some(e) = self.maintain() {
                                return e;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Starting with a process: polls `SELECT 1` until it answers, the process exits, a
    /// command arrives or `ready_timeout` passes.
    pub(super) async fn wait_ready(&mut self) -> Event {
        let (Some(child), Some(probe)) = (self.child.as_mut(), self.probe.as_mut()) else {
            return Event::Exited("no server process".into());
        };
        let started = Instant::now();
        let mut last_error;
        loop {
            tokio::select! {
                status = child.wait() => {
                    child.after_exit().await;
                    let status = status.map(describe_exit).unwrap_or_else(|e| e.to_string());
                    let pid = child.identity().pid;
                    self.child = None;
                    if let Some(e) = self.fenced(pid, &status) {
                        return e;
                    }
                    self.log.event(&format!("dolt exited before it was ready ({status})"));
                    let e = Error::ExitedBeforeReady { status, log_tail: self.log.excerpt(5) };
                    return Event::Exited(e.to_string());
                }
                cmd = self.commands.recv() => {
                    return match cmd {
                        Some(Command::Restart) => Event::Restart,
                        _ => Event::Stop,
                    };
                }
                r = probe.ready() => match r {
                    Ok(()) => break,
                    Err(e) => last_error = e,
                }
            }
            if Instant::now() >= self.ready_deadline {
                let e = Error::NotReady {
                    host: self.record.host.clone(),
                    port: self.record.port,
                    waited: self.settings.ready_timeout,
                    last_error,
                    log_tail: self.log.excerpt(5),
                };
                return Event::NotReady(e.to_string());
            }
            // Fine-grained polling (as fine as the yardstick's): refused connections come
            // back at once and cost next to nothing.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                _ = child.wait() => {}
            }
        }
        self.log.event(&format!(
            "dolt pid {} ready on {}:{} after {} ms",
            child.identity().pid,
            self.record.host,
            self.record.port,
            started.elapsed().as_millis()
        ));
        // Remembered for this binary, or asked beside the launch (done by now): recorded with
        // readiness, so `status` right after `start` names it.
        if let Some(v) = self.launcher.version().await {
            self.record.dolt_version = Some(v);
        }
        // Idle time counts from the first ready time until a client is seen.
        if self.record.last_client_at.is_none() {
            self.record.last_client_at = Some(now_rfc3339());
        }
        Event::Ready {
            at: SystemTime::now(),
        }
    }

    /// Running: notices an exit at once (by reaping), a wedge after `max_missed` probes, and
    /// no clients for `idle_timeout`.
    pub(super) async fn watch(&mut self) -> Event {
        let h = self.settings.health.clone();
        let idle_timeout = self.settings.idle_timeout;
        let mut missed = 0u32;
        let mut last_client = Instant::now();
        let mut tick = tokio::time::interval(h.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            {
                let Some(child) = self.child.as_mut() else {
                    return Event::Exited("no server process".into());
                };
                tokio::select! {
                    // An exit first: a tick that is due too must not start another probe.
                    biased;
                    status = child.wait() => {
                        child.after_exit().await;
                        let status = status.map(describe_exit).unwrap_or_else(|e| e.to_string());
                        let pid = child.identity().pid;
                        self.release().await;
                        if let Some(e) = self.fenced(pid, &status) {
                            return e;
                        }
                        let msg = format!("dolt pid {pid} exited unexpectedly ({status})");
                        self.log.event(&msg);
                        return Event::Exited(msg);
                    }
                    cmd = self.commands.recv() => {
                        return match cmd {
                            Some(Command::Restart) => Event::Restart,
                            _ => Event::Stop,
                        };
                    }
                    _ = tick.tick() => {}
                }
            }
            if let Some(e) = self.maintain() {
                return e;
            }
            let (Some(child), Some(probe)) = (self.child.as_mut(), self.probe.as_mut()) else {
                return Event::Exited("no server process".into());
            };
            let pid = child.identity().pid;
            // A probe of a dead server can take its whole timeout (its port taken over by a
            // process that accepts and never answers): the exit wins, and is reported above.
            let health = tokio::select! {
                biased;
                _ = child.wait() => continue,
                r = probe.health(h.timeout) => r,
            };
            match health {
                Ok(()) => {
                    missed = 0;
                    // Counted on every tick, idle_timeout or not: `doltctl ps`, `gc --idle`
                    // and the metrics read the count (and the idle time from the state file).
                    // One query on the probe's open connection.
                    let counted = probe.client_connections(h.timeout).await;
                    if let Ok(n) = counted {
                        self.vitals.set_clients(n);
                        self.note_clients(n);
                    }
                    match counted {
                        Ok(n) if n > 0 => last_client = Instant::now(),
                        Ok(_) if idle_timeout.is_zero() => {}
                        Ok(_) if last_client.elapsed() >= idle_timeout => {
                            if let Some(lock) = try_lock_start(&self.instance) {
                                self.log.event(&format!(
                                    "no client connection for {:?} (idle_timeout); stopping the server",
                                    last_client.elapsed()
                                ));
                                self.idle_lock = Some(lock);
                                return Event::IdleTimeout;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!("counting client connections: {e}"),
                    }
                }
                Err(e) => {
                    missed += 1;
                    self.log.event(&format!(
                        "health probe missed ({missed}/{}): {e}",
                        h.max_missed
                    ));
                    if missed >= h.max_missed {
                        let msg = format!(
                            "dolt pid {pid} is wedged: {missed} health probes missed ({e})"
                        );
                        self.log.event(&format!("{msg}; killing it"));
                        return Event::Wedged(msg);
                    }
                }
            }
        }
    }

    /// Records a client count; the state is published only when the count changes, with the
    /// time a client was last seen when clients come or the last one goes.
    pub(super) fn note_clients(&mut self, n: u64) {
        let was = self.record.clients;
        if was == Some(n) {
            return;
        }
        if n > 0 || was.is_some_and(|w| w > 0) {
            self.record.last_client_at = Some(now_rfc3339());
        }
        self.record.clients = Some(n);
        self.publish();
    }

    /// The exit of dolt `pid` was a fence the cluster controller ordered (it killed the
    /// process to relaunch it as a standby): a replacement, not a failure.
    fn fenced(&self, pid: i32, status: &str) -> Option<Event> {
        self.start_role
            .as_ref()
            .filter(|r| r.take_fenced(pid))
            .map(|_| {
                Event::Replaced(format!(
                    "dolt pid {pid} stopped by the cluster controller's fence ({status})"
                ))
            })
    }
}
