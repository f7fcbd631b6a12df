//! The job's memory across crashes. The ledger tracks every chunk handed
//! out, in key order; the file holds the low watermark (everything below
//! it committed), the chunks above it, and where planning goes on. Only
//! chunks whose transactions committed are ever marked done.

use crate::error::{Error, Result};
use crate::table::KeyValue;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FORMAT_VERSION: u32 = 1;

/// A key range `(lo, hi]`; `lo` is None for the first chunk of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub seq: u64,
    pub lo: Option<KeyValue>,
    pub hi: KeyValue,
    /// How many rows the planner counted into it (for sizing and the rate).
    pub planned_rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRecord {
    pub lo: Option<KeyValue>,
    pub hi: KeyValue,
    pub planned_rows: u64,
    pub done: bool,
    pub rows: u64,
}

/// In-memory state of a job's chunks; serialised into the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Every chunk up to and including this key committed. None: nothing yet.
    pub low_watermark: Option<KeyValue>,
    /// Chunks handed out above the watermark, in key order.
    pub chunks: VecDeque<ChunkRecord>,
    /// Sequence number of `chunks[0]`.
    #[serde(skip)]
    first_seq: u64,
    /// The last key of the job's range, fixed when the job started.
    pub upper_bound: Option<KeyValue>,
    /// The planner handed out the chunk that ends at `upper_bound`.
    pub planning_finished: bool,
    pub rows_done: u64,
    pub chunks_done: u64,
}

impl Ledger {
    pub fn new(upper_bound: Option<KeyValue>) -> Self {
        let planning_finished = upper_bound.is_none();
        Ledger {
            low_watermark: None,
            chunks: VecDeque::new(),
            first_seq: 0,
            upper_bound,
            planning_finished,
            rows_done: 0,
            chunks_done: 0,
        }
    }

    /// The sequence number the next issued chunk gets.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.chunks.len() as u64
    }

    /// Where the planner continues: the end of the last chunk handed out.
    pub fn frontier(&self) -> Option<KeyValue> {
        self.chunks
            .back()
            .map(|c| c.hi.clone())
            .or_else(|| self.low_watermark.clone())
    }

    /// Record a new chunk `(frontier, hi]` before it is queued.
    pub fn issue(&mut self, hi: KeyValue, planned_rows: u64) -> Chunk {
        let lo = self.frontier();
        let seq = self.first_seq + self.chunks.len() as u64;
        self.chunks.push_back(ChunkRecord {
            lo: lo.clone(),
            hi: hi.clone(),
            planned_rows,
            done: false,
            rows: 0,
        });
        Chunk {
            seq,
            lo,
            hi,
            planned_rows,
        }
    }

    /// Chunks handed out before but never committed (to run first on resume).
    pub fn unfinished(&self) -> Vec<Chunk> {
        self.chunks
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.done)
            .map(|(i, c)| Chunk {
                seq: self.first_seq + i as u64,
                lo: c.lo.clone(),
                hi: c.hi.clone(),
                planned_rows: c.planned_rows,
            })
            .collect()
    }

    /// Mark a committed chunk done and advance the watermark over the done
    /// prefix. Returns false for an unknown sequence number.
    pub fn complete(&mut self, seq: u64, rows: u64) -> bool {
        let Some(index) = seq.checked_sub(self.first_seq) else {
            return false;
        };
        let Some(record) = self.chunks.get_mut(index as usize) else {
            return false;
        };
        if record.done {
            return true;
        }
        record.done = true;
        record.rows = rows;
        self.rows_done += rows;
        self.chunks_done += 1;
        while self.chunks.front().is_some_and(|c| c.done) {
            if let Some(done) = self.chunks.pop_front() {
                self.low_watermark = Some(done.hi);
                self.first_seq += 1;
            }
        }
        true
    }

    /// Everything planned and committed.
    pub fn is_complete(&self) -> bool {
        self.planning_finished && self.chunks.is_empty()
    }
}

/// The checkpoint file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: u32,
    /// Hash of what defines the job (see `spec::JobIdentity`).
    pub fingerprint: String,
    /// The job in words, without secrets, for `rowferry status` and humans.
    pub job: serde_json::Value,
    pub key_columns: Vec<String>,
    pub rows_total_estimate: u64,
    pub started_at: String,
    pub updated_at: String,
    pub finished: bool,
    pub ledger: Ledger,
    /// Secondary indexes `copy --defer-indexes` dropped: owed a rebuild
    /// until marked rebuilt. Absent from older checkpoints, which load as
    /// before; not part of the fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_indexes: Option<crate::ops::indexes::DeferredIndexes>,
}

impl Checkpoint {
    /// Read a checkpoint; a file that is not one of ours is an input error.
    pub fn load(path: &Path) -> Result<Option<Checkpoint>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::input(format!(
                    "cannot read checkpoint {}: {e}; fix its permissions or pass another --checkpoint",
                    path.display()
                )));
            }
        };
        let checkpoint: Checkpoint = serde_json::from_str(&text).map_err(|e| {
            Error::input(format!(
                "checkpoint {} is corrupt ({e}); nothing was written. Move it aside and rerun \
                 with --restart to start the job over",
                path.display()
            ))
        })?;
        if checkpoint.format != FORMAT_VERSION {
            return Err(Error::input(format!(
                "checkpoint {} has format {} but this rowferry reads format {FORMAT_VERSION}; \
                 finish the job with the rowferry that wrote it, or rerun with --restart",
                path.display(),
                checkpoint.format
            )));
        }
        Ok(Some(checkpoint))
    }

    /// Write atomically: temp file, fsync, rename, fsync the directory. A
    /// crash leaves either the old or the new checkpoint, never half of one.
    pub fn save(&self, path: &Path) -> Result<()> {
        let fail = |e: std::io::Error| {
            Error::fatal(format!("cannot write checkpoint {}: {e}", path.display()))
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        let body = serde_json::to_vec_pretty(self).map_err(|e| Error::fatal(e.to_string()))?;
        {
            let mut f = std::fs::File::create(&tmp).map_err(fail)?;
            f.write_all(&body).map_err(fail)?;
            f.sync_all().map_err(fail)?;
        }
        std::fs::rename(&tmp, path).map_err(fail)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(v: &str) -> KeyValue {
        vec![v.to_string()]
    }

    #[test]
    fn watermark_advances_over_the_done_prefix_only() {
        let mut l = Ledger::new(Some(k("100")));
        let a = l.issue(k("10"), 10);
        let b = l.issue(k("20"), 10);
        let c = l.issue(k("30"), 10);
        assert_eq!((a.lo.clone(), b.lo.clone()), (None, Some(k("10"))));
        assert!(l.complete(c.seq, 7));
        assert_eq!(l.low_watermark, None);
        assert!(l.complete(a.seq, 10));
        assert_eq!(l.low_watermark, Some(k("10")));
        assert_eq!(l.unfinished(), vec![b.clone()]);
        assert!(l.complete(b.seq, 9));
        assert_eq!(l.low_watermark, Some(k("30")));
        assert!(l.chunks.is_empty());
        assert_eq!((l.rows_done, l.chunks_done), (26, 3));
        assert_eq!(l.frontier(), Some(k("30")));
        assert!(
            !l.complete(b.seq, 9),
            "a finished chunk is gone from the ledger"
        );
        assert_eq!(l.rows_done, 26, "a repeat never double counts");
        assert!(!l.is_complete());
        l.planning_finished = true;
        assert!(l.is_complete());
    }

    #[test]
    fn resumed_ledger_keeps_sequence_and_order() {
        let mut l = Ledger::new(Some(k("100")));
        let a = l.issue(k("10"), 10);
        let _b = l.issue(k("20"), 10);
        l.complete(a.seq, 10);
        let c = l.issue(k("30"), 10);
        l.complete(c.seq, 10);
        // Round trip through JSON as a resume does.
        let mut r: Ledger = serde_json::from_str(&serde_json::to_string(&l).unwrap()).unwrap();
        let pending = r.unfinished();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].lo.clone(), pending[0].hi.clone()),
            (Some(k("10")), k("20"))
        );
        assert!(r.complete(pending[0].seq, 10));
        assert_eq!(r.low_watermark, Some(k("30")));
        assert_eq!(r.frontier(), Some(k("30")));
        let d = r.issue(k("40"), 5);
        assert_eq!(d.lo, Some(k("30")));
    }

    #[test]
    fn empty_table_is_complete_at_once() {
        assert!(Ledger::new(None).is_complete());
    }

    #[test]
    fn save_and_load_round_trip_and_refuse_garbage() {
        let dir = std::env::temp_dir().join(format!("rowferry-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("job.checkpoint");
        let cp = Checkpoint {
            format: FORMAT_VERSION,
            fingerprint: "abc".into(),
            job: serde_json::json!({"op": "copy"}),
            key_columns: vec!["id".into()],
            rows_total_estimate: 5,
            started_at: now_rfc3339(),
            updated_at: now_rfc3339(),
            finished: false,
            ledger: Ledger::new(Some(k("5"))),
            deferred_indexes: None,
        };
        cp.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap().unwrap();
        assert_eq!(back.ledger, cp.ledger);
        // Written without the field, as older versions wrote it.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("deferred_indexes"), "{text}");
        assert!(back.deferred_indexes.is_none());
        std::fs::write(&path, "{not json").unwrap();
        let e = Checkpoint::load(&path).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("corrupt"), "{e}");
        assert!(Checkpoint::load(&dir.join("absent")).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
