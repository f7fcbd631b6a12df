//! `rowferry status --checkpoint PATH`: progress read from the file alone.

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use std::path::Path;

pub fn run(path: &Path, json: bool) -> Result<()> {
    let cp = Checkpoint::load(path)?.ok_or_else(|| {
        Error::input(format!(
            "no checkpoint at {}; check the path (--checkpoint)",
            path.display()
        ))
    })?;
    let l = &cp.ledger;
    let state = if cp.finished {
        "finished"
    } else {
        "in progress or interrupted"
    };
    let pct = if cp.rows_total_estimate > 0 {
        (100.0 * l.rows_done as f64 / cp.rows_total_estimate as f64).min(100.0)
    } else {
        100.0
    };
    if json {
        let report = serde_json::json!({
            "checkpoint": path.display().to_string(),
            "state": if cp.finished { "finished" } else { "unfinished" },
            "job": cp.job,
            "fingerprint": cp.fingerprint,
            "rows_done": l.rows_done,
            "chunks_done": l.chunks_done,
            "rows_total_estimate": cp.rows_total_estimate,
            "low_watermark": l.low_watermark,
            "upper_bound": l.upper_bound,
            "done_above_watermark": l.chunks.iter().filter(|c| c.done).count(),
            "unfinished_chunks": l.unfinished().len(),
            "planning_finished": l.planning_finished,
            "started_at": cp.started_at,
            "updated_at": cp.updated_at,
            "deferred_indexes": cp.deferred_indexes,
        });
        println!("{report}");
        return Ok(());
    }
    let show = |k: &Option<Vec<String>>| k.as_ref().map_or("start".to_string(), |k| k.join(", "));
    let job = |k: &str| {
        cp.job
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string()
    };
    println!("checkpoint {}: {state}", path.display());
    println!(
        "  job:         {} {} -> {}",
        job("operation"),
        job("table"),
        job("target_table")
    );
    println!("  key:         ({})", cp.key_columns.join(", "));
    println!(
        "  rows done:   {} of ~{} ({pct:.1}%), {} chunks",
        l.rows_done, cp.rows_total_estimate, l.chunks_done
    );
    println!(
        "  complete up to key ({}), job ends at key ({})",
        show(&l.low_watermark),
        show(&l.upper_bound)
    );
    println!(
        "  above that:  {} chunk(s) done, {} to run again on resume",
        l.chunks.iter().filter(|c| c.done).count(),
        l.unfinished().len()
    );
    println!("  started {}, updated {}", cp.started_at, cp.updated_at);
    if let Some(d) = &cp.deferred_indexes {
        let names: Vec<&str> = d.indexes.iter().map(|i| i.name.as_str()).collect();
        let state = match &d.rebuilt_at {
            Some(at) => format!("rebuilt {at}"),
            None => "not yet rebuilt: rerun the copy, or `rowferry indexes rebuild --state` with this checkpoint"
                .to_string(),
        };
        println!(
            "  deferred indexes of {}: {}; {state}",
            d.table,
            names.join(", ")
        );
    }
    Ok(())
}
