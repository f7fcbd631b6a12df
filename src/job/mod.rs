//! Job files: a whole migration (expand DDL, sync, copy or backfill, index
//! rebuild, verify, cutover, contract DDL, cleanup) described in one TOML
//! file, run phase by phase with its progress persisted beside the file.
//! `run` resumes at the phase it reached; `abort` takes back what ran.

pub mod file;
pub mod phases;
pub mod state;

use crate::error::{Error, Result};
use file::{JobFile, PhaseKind};
use state::{JobState, PhaseStatus};
use std::path::Path;

/// Test hook: abort the process right after this phase's completion is
/// recorded, as a crash there would.
fn crash_after(kind: PhaseKind) {
    if std::env::var("ROWFERRY_CRASH_AFTER_PHASE").ok().as_deref() == Some(kind.name()) {
        eprintln!(
            "rowferry: ROWFERRY_CRASH_AFTER_PHASE={} reached; aborting",
            kind.name()
        );
        std::process::abort();
    }
}

/// Load the state and check that it belongs to this job file.
fn load_state(job: &JobFile) -> Result<Option<JobState>> {
    let Some(st) = state::load(&job.state_path())? else {
        return Ok(None);
    };
    if st.fingerprint != job.fingerprint {
        return Err(Error::input(format!(
            "{} was changed since its run started (the state {} records another job: keys \
             other than throttling and wait-for-file differ). Put the file back as it was, or \
             `rowferry abort` with the old file first, then run the new one",
            job.path.display(),
            job.state_path().display()
        )));
    }
    Ok(Some(st))
}

pub async fn run(path: &Path, cutover_now: bool, progress: Option<String>) -> Result<()> {
    let mut job = JobFile::load(path)?;
    job.progress = progress;
    let mut st = match load_state(&job)? {
        Some(st) => {
            if st.complete {
                eprintln!(
                    "rowferry: job {} is already complete (state {}); nothing to do",
                    job.path.display(),
                    job.state_path().display()
                );
                return Ok(());
            }
            let done: Vec<&str> = job
                .phases
                .iter()
                .filter(|p| st.is_complete(p.kind.name()))
                .map(|p| p.kind.name())
                .collect();
            if !done.is_empty() {
                eprintln!(
                    "rowferry: job {}: resuming; phases done: {}",
                    job.path.display(),
                    done.join(", ")
                );
            }
            st
        }
        None => JobState {
            fingerprint: job.fingerprint.clone(),
            job_file: job.path.display().to_string(),
            ..JobState::default()
        },
    };
    for phase in &job.phases {
        let kind = phase.kind;
        let name = kind.name();
        if st.is_complete(name) {
            continue;
        }
        if kind == PhaseKind::Cutover {
            if let Some(flag) = job.wait_for_file.as_ref()
                && !cutover_now
                && !flag.exists()
            {
                st.held = true;
                state::save(&job.state_path(), &st)?;
                eprintln!(
                    "rowferry: job {}: held before the cutover: create {} or run with \
                         --cutover-now, then run the job again (the sync keeps the new table \
                         current meanwhile)",
                    job.path.display(),
                    flag.display()
                );
                return Ok(());
            }
            st.held = false;
        }
        eprintln!("rowferry: job {}: phase {name}", job.path.display());
        let resumed = st.started(name);
        let p = st.phase_mut(name);
        p.status = Some(PhaseStatus::Running);
        p.error = None;
        state::save(&job.state_path(), &st)?;
        match phases::run(&job, &mut st, kind, resumed).await {
            Ok(()) => {
                st.phase_mut(name).status = Some(PhaseStatus::Complete);
                state::save(&job.state_path(), &st)?;
                crash_after(kind);
            }
            Err(e) => {
                let e = e.context(format!("phase {name}"));
                st.phase_mut(name).error = Some(e.message.clone());
                state::save(&job.state_path(), &st)?;
                return Err(e);
            }
        }
    }
    st.complete = true;
    state::save(&job.state_path(), &st)?;
    // The chunked phases are done: their checkpoints are no longer needed.
    for kind in [PhaseKind::Copy, PhaseKind::Backfill] {
        let _ = std::fs::remove_file(job.checkpoint_path(kind));
    }
    eprintln!(
        "rowferry: job {} complete: {}",
        job.path.display(),
        job.phases
            .iter()
            .map(|p| p.kind.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

pub async fn abort(path: &Path) -> Result<()> {
    let job = JobFile::load(path)?;
    let Some(mut st) = load_state(&job)? else {
        remove_files(&job);
        eprintln!(
            "rowferry: job {} has no state ({}): nothing ran, nothing to undo",
            job.path.display(),
            job.state_path().display()
        );
        return Ok(());
    };
    // Refuse before changing anything if some step cannot be taken back.
    let reversed: Vec<PhaseKind> = job.phases.iter().rev().map(|p| p.kind).collect();
    for kind in &reversed {
        if let Some(why) = phases::irreversible(&job, &st, *kind) {
            return Err(Error::input(format!(
                "cannot abort job {}: {why}. Nothing was changed",
                job.path.display()
            )));
        }
    }
    for kind in reversed {
        if !st.started(kind.name()) {
            continue;
        }
        eprintln!(
            "rowferry: job {}: undoing {}",
            job.path.display(),
            kind.name()
        );
        phases::abort(&job, &mut st, kind)
            .await
            .map_err(|e| e.context(format!("abort of phase {}", kind.name())))?;
        st.phases.remove(kind.name());
        state::save(&job.state_path(), &st)?;
    }
    remove_files(&job);
    eprintln!(
        "rowferry: job {} aborted: everything it did is taken back; its state and checkpoints \
         are removed",
        job.path.display()
    );
    Ok(())
}

fn remove_files(job: &JobFile) {
    for kind in [PhaseKind::Copy, PhaseKind::Backfill] {
        let _ = std::fs::remove_file(job.checkpoint_path(kind));
    }
    let _ = std::fs::remove_file(job.state_path());
}

pub fn status(path: &Path, json: bool) -> Result<()> {
    let job = JobFile::load(path)?;
    let st = load_state(&job)?;
    let overall = match &st {
        None => "not started".to_string(),
        Some(s) if s.complete => "complete".to_string(),
        Some(s) if s.held => "held before the cutover".to_string(),
        Some(s) => match job.phases.iter().find(|p| !s.is_complete(p.kind.name())) {
            Some(p) if s.phase(p.kind.name()).error.is_some() => {
                format!("failed in phase {}", p.kind.name())
            }
            Some(p) if s.started(p.kind.name()) => {
                format!("in phase {} (running or interrupted)", p.kind.name())
            }
            Some(p) => format!("next phase {}", p.kind.name()),
            None => "complete".to_string(),
        },
    };
    let phase_status = |kind: PhaseKind| -> (&'static str, Option<String>) {
        let Some(s) = st.as_ref() else {
            return ("pending", None);
        };
        let p = s.phase(kind.name());
        let status = match p.status {
            None => "pending",
            Some(PhaseStatus::Running) if p.error.is_some() => "failed",
            Some(PhaseStatus::Running) => "running",
            Some(PhaseStatus::Complete) => "complete",
        };
        (status, p.error)
    };
    if json {
        let phases: Vec<serde_json::Value> = job
            .phases
            .iter()
            .map(|p| {
                let (status, error) = phase_status(p.kind);
                serde_json::json!({ "phase": p.kind.name(), "status": status, "error": error })
            })
            .collect();
        let out = serde_json::json!({
            "job": job.path.display().to_string(),
            "status": overall,
            "held": st.as_ref().is_some_and(|s| s.held),
            "complete": st.as_ref().is_some_and(|s| s.complete),
            "phases": phases,
        });
        println!("{out}");
        return Ok(());
    }
    println!("job {}: {overall}", job.path.display());
    for p in &job.phases {
        let (status, error) = phase_status(p.kind);
        println!("  {:<9} {status}", p.kind.name());
        if let Some(e) = error {
            println!("            {e}");
        }
        let cp = job.checkpoint_path(p.kind);
        if (status == "running" || status == "failed") && cp.exists() {
            println!(
                "            progress: rowferry status --checkpoint {}",
                cp.display()
            );
        }
    }
    if let (Some(flag), Some(s)) = (job.wait_for_file.as_ref(), st.as_ref())
        && s.held
    {
        println!(
            "  the cutover waits for {} (or run with --cutover-now)",
            flag.display()
        );
    }
    Ok(())
}
