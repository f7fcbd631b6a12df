//! `--on-event CMD`: a shell command run on each job event (start,
//! throttle_begin, throttle_end, failure, completion) with the event as
//! one JSON object on stdin: how a job reaches the team's alerting.
//! Hooks run beside the job and never hold it up; a hook that fails or
//! hangs is reported, not fatal.

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
    command: Option<Arc<str>>,
    /// Fields every event carries (the job's tables and operation).
    job: Value,
    running: Arc<tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl EventHook {
    pub fn new(command: Option<&str>, job: Value) -> Self {
        EventHook {
            command: command.map(Arc::from),
            job,
            running: Arc::default(),
        }
    }

    /// Run the hook for `event` with `fields` merged into the job's.
    pub async fn emit(&self, event: &str, fields: Value) {
        let Some(command) = self.command.clone() else {
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
        let event = event.to_string();
        let task = tokio::spawn(async move {
            let line = format!("{body}\n");
            let spawned = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&*command)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn();
            let mut child = match spawned {
                Ok(child) => child,
                Err(e) => {
                    eprintln!("rowferry: warning: --on-event could not start for {event}: {e}");
                    return;
                }
            };
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(line.as_bytes()).await;
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
        });
        self.running.lock().await.push(task);
    }

    /// Wait for the hooks started so far (before the process exits).
    pub async fn finish(&self) {
        let tasks = std::mem::take(&mut *self.running.lock().await);
        for task in tasks {
            let _ = task.await;
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
            if hook.command.is_none() {
                return;
            }
            let mut holding: Option<String> = None;
            let mut tick = tokio::time::interval(crate::signals::OBSERVE_EVERY);
            loop {
                tokio::select! {
                    _ = done.cancelled() => break,
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
