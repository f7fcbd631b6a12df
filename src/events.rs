//! `--on-event CMD`: a shell command run on each job event (start,
//! throttle_begin, throttle_end, failure, completion) with the event as
//! one JSON object on stdin: how a job reaches the team's alerting.
//! Hooks run beside the job, one at a time in the order of the events,
//! and never hold it up; a hook that fails or hangs is reported, not fatal.

use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// A hook gets this long before it is killed.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct EventHook {
    /// Events for the one task that runs the hook, in order.
    queue: Option<tokio::sync::mpsc::UnboundedSender<(String, String)>>,
    runner: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    /// Fields every event carries (the job's tables and operation).
    job: Value,
}

impl EventHook {
    pub fn new(command: Option<&str>, job: Value) -> Self {
        let (queue, runner) = match command {
            Some(command) => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                (
                    Some(tx),
                    Some(tokio::spawn(run_hooks(command.to_string(), rx))),
                )
            }
            None => (None, None),
        };
        EventHook {
            queue,
            runner: Arc::new(tokio::sync::Mutex::new(runner)),
            job,
        }
    }

    /// Queue the hook for `event` with `fields` merged into the job's.
    /// Hooks run one at a time, in the order of their events.
    pub async fn emit(&self, event: &str, fields: Value) {
        let Some(queue) = &self.queue else {
            return;
        };
        let mut body = self.job.clone();
        if let (Some(map), Some(extra)) = (body.as_object_mut(), fields.as_object()) {
            for (k, v) in extra {
                map.insert(k.clone(), v.clone());
            }
            map.insert("event".into(), json!(event));
            map.insert("at".into(), json!(crate::checkpoint::now_rfc3339()));
        }
        let _ = queue.send((event.to_string(), body.to_string()));
    }

    /// Wait for every hook queued so far (before the process exits).
    pub async fn finish(mut self) {
        self.queue.take();
        if let Some(runner) = self.runner.lock().await.take() {
            let _ = runner.await;
        }
    }

    /// Emit throttle_begin / throttle_end as the throttle starts and stops
    /// holding every chunk (the rate limit's spacing is not an event).
    pub fn watch_throttle(
        &self,
        throttle: Arc<crate::throttle::Throttle>,
        done: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let hook = self.clone();
        tokio::spawn(async move {
            if hook.queue.is_none() {
                return;
            }
            let mut holding: Option<String> = None;
            let mut tick = tokio::time::interval(crate::signals::OBSERVE_EVERY);
            loop {
                tokio::select! {
                    _ = done.cancelled() => {
                        // A hold still open when the job ends ends with it.
                        if let Some(was) = holding {
                            hook.emit("throttle_end", json!({ "reason": was })).await;
                        }
                        break;
                    }
                    _ = tick.tick() => {}
                }
                let now = throttle.holding();
                match (&holding, &now) {
                    (None, Some(reason)) => {
                        hook.emit("throttle_begin", json!({ "reason": reason }))
                            .await
                    }
                    (Some(was), None) => hook.emit("throttle_end", json!({ "reason": was })).await,
                    _ => {}
                }
                holding = now;
            }
        })
    }
}

/// Run the hook once per queued event, one after the other.
async fn run_hooks(
    command: String,
    mut events: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    while let Some((event, body)) = events.recv().await {
        let spawned = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                eprintln!("rowferry: warning: --on-event could not start for {event}: {e}");
                continue;
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(format!("{body}\n").as_bytes()).await;
        }
        match tokio::time::timeout(HOOK_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => {
                eprintln!("rowferry: warning: --on-event for {event} exited with {status}")
            }
            Ok(Err(e)) => eprintln!("rowferry: warning: --on-event for {event}: {e}"),
            Err(_) => eprintln!(
                "rowferry: warning: --on-event for {event} ran over {}s and was killed",
                HOOK_TIMEOUT.as_secs()
            ),
        }
    }
}
