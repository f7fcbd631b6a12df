//! The job's persisted state machine: which phases ran and completed, and
//! what they changed, in a JSON file beside the job file. Written
//! atomically (temp file, fsync, rename), like a checkpoint.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    /// Started (or interrupted, or failed): a rerun runs it again.
    Running,
    Complete,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseState {
    pub status: Option<PhaseStatus>,
    /// DDL phases: statements (by position) about to run; a crash may have
    /// left any of them applied or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempted: Vec<usize>,
    /// DDL phases: statements known to be applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<usize>,
    /// The last error, prefixed with the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    pub fingerprint: String,
    /// The job file as given; for messages.
    pub job_file: String,
    pub phases: BTreeMap<String, PhaseState>,
    /// Set while the cutover waits for its file.
    #[serde(default)]
    pub held: bool,
    #[serde(default)]
    pub complete: bool,
}

impl JobState {
    pub fn phase(&self, name: &str) -> PhaseState {
        self.phases.get(name).cloned().unwrap_or_default()
    }

    pub fn phase_mut(&mut self, name: &str) -> &mut PhaseState {
        self.phases.entry(name.to_string()).or_default()
    }

    pub fn is_complete(&self, name: &str) -> bool {
        self.phase(name).status == Some(PhaseStatus::Complete)
    }

    pub fn started(&self, name: &str) -> bool {
        self.phase(name).status.is_some()
    }
}

pub fn load(path: &Path) -> Result<Option<JobState>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::input(format!(
                "cannot read the job state {}: {e}",
                path.display()
            )));
        }
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::input(format!(
            "the job state {} is corrupt ({e}); if no phase ran, delete it; otherwise restore \
             it, since `rowferry abort` needs it to know what to undo",
            path.display()
        ))
    })
}

pub fn save(path: &Path, state: &JobState) -> Result<()> {
    let text = serde_json::to_string_pretty(state)
        .map_err(|e| Error::fatal(format!("internal: cannot encode the job state: {e}")))?;
    let tmp: PathBuf = {
        let mut name = path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(".tmp");
        path.with_file_name(name)
    };
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        Error::fatal(format!(
            "cannot write the job state {}: {e}; check the directory's permissions and space",
            path.display()
        ))
    })
}
