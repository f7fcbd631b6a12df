//! `rowferry plan`: a dry run. Shows the key, the estimates, the first
//! chunks and the exact SQL each chunk runs; writes nothing.

use super::copy::prepare;
use crate::checkpoint::{Checkpoint, Ledger};
use crate::error::Result;
use crate::spec::{CopySpec, RunOptions};
use std::sync::Mutex;

const SHOWN_CHUNKS: usize = 3;

pub async fn run(spec: &CopySpec, opts: &RunOptions) -> Result<()> {
    let plan = prepare(spec, opts).await?;
    let job = &plan.job;
    let mut session = job.db.session().await?;
    let upper = job.planner.upper_bound(session.as_mut()).await?;
    let sizer = opts.chunk_sizer(job.source.estimated_row_bytes);

    // Probe the first chunks the way a run would (reads only).
    let ledger = Mutex::new(Ledger::new(upper.clone()));
    let mut chunks = Vec::new();
    while chunks.len() < SHOWN_CHUNKS {
        match job
            .planner
            .plan_next(session.as_mut(), &ledger, sizer.rows())
            .await?
        {
            Some(c) => chunks.push(c),
            None => break,
        }
    }
    let path = job.checkpoint_path(opts);
    let checkpoint = match Checkpoint::load(&path) {
        Ok(Some(cp)) if cp.fingerprint == job.identity.fingerprint() && cp.finished => {
            format!(
                "{} says the job is finished: a run does nothing (--restart runs it again)",
                path.display()
            )
        }
        Ok(Some(cp)) if cp.fingerprint == job.identity.fingerprint() => {
            format!(
                "{} exists: a run resumes it ({} rows done)",
                path.display(),
                cp.ledger.rows_done
            )
        }
        Ok(Some(_)) => format!(
            "{} belongs to another job: a run would refuse it (or --restart)",
            path.display()
        ),
        Ok(None) => format!("{} (absent: a run starts fresh)", path.display()),
        Err(e) => e.message,
    };
    let (probe_sql, _) = job.planner.probe(
        Some(&vec!["<lo>".into(); plan.key.columns.len()]),
        &vec!["<upper>".into(); plan.key.columns.len()],
        sizer.rows(),
    );

    if opts.json {
        let report = serde_json::json!({
            "dry_run": true,
            "source": spec.source.to_string(),
            "table": job.identity.table,
            "target_table": job.identity.target_table,
            "key": job.identity.key,
            "rows_estimate": job.source.estimated_rows,
            "row_bytes_estimate": job.source.estimated_row_bytes,
            "first_chunk_rows": sizer.rows(),
            "max_chunk_rows": sizer.max_rows(),
            "chunk_time_ms": opts.chunk_time.as_millis() as u64,
            "upper_bound": upper,
            "first_chunks": chunks.iter().map(|c| serde_json::json!({"lo": c.lo, "hi": c.hi})).collect::<Vec<_>>(),
            "columns": plan.columns.iter().map(|(t, e)| serde_json::json!({"target": t, "source": e})).collect::<Vec<_>>(),
            "first_chunk_sql": plan.fast.first,
            "chunk_sql": plan.fast.rest,
            "chunk_sql_skipping_present_rows": plan.skipping.rest,
            "boundary_probe_sql": probe_sql,
            "checkpoint": checkpoint,
        });
        println!("{report}");
        return Ok(());
    }
    let show = |k: &Option<Vec<String>>| k.as_ref().map_or("start".to_string(), |k| k.join(", "));
    println!("rowferry plan (dry run: nothing is written)");
    println!(
        "  source:      {} table {}",
        spec.source, job.identity.table
    );
    println!(
        "  target:      table {} (same database)",
        plan.target.display_name()
    );
    println!("  key:         ({})", job.identity.key.join(", "));
    println!(
        "  rows:        ~{} (catalog estimate), ~{} bytes per row",
        job.source.estimated_rows, job.source.estimated_row_bytes
    );
    println!(
        "  chunks:      first {} rows, then {}, at most {} rows",
        sizer.rows(),
        if opts.chunk_time.is_zero() {
            "fixed".to_string()
        } else {
            format!("adapting toward {:?} per chunk", opts.chunk_time)
        },
        sizer.max_rows()
    );
    println!(
        "  key range:   (start, {}]  (the largest key now; later rows are not part of this job)",
        show(&upper)
    );
    for c in &chunks {
        println!(
            "  chunk {}:     ({}, {}]",
            c.seq + 1,
            show(&c.lo),
            c.hi.join(", ")
        );
    }
    println!("  checkpoint:  {checkpoint}");
    println!("  columns:");
    for (t, e) in &plan.columns {
        println!("    {t} <- {e}");
    }
    if !plan.unwritten_source_columns.is_empty() {
        println!(
            "  not copied:  {}",
            plan.unwritten_source_columns.join(", ")
        );
    }
    println!(
        "  first chunk SQL (parameters: the chunk's upper key):\n    {}",
        plan.fast.first
    );
    println!(
        "  chunk SQL (parameters: lower key, then upper key):\n    {}",
        plan.fast.rest
    );
    println!(
        "  once a chunk meets rows already in the target, chunks skip them instead:\n    {}",
        plan.skipping.rest
    );
    if let Some(c) = chunks.get(1) {
        println!(
            "    e.g. chunk 2: lower = ({}), upper = ({})",
            show(&c.lo),
            c.hi.join(", ")
        );
    }
    println!("  boundary probe:\n    {probe_sql}");
    Ok(())
}
