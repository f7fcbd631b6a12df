//! `rowferry plan`: a dry run of a copy or a backfill. Shows the key, the
//! estimates, the first chunks and the exact SQL each chunk runs; writes
//! nothing.

use super::PreparedJob;
use super::preflight::Preflight;
use crate::checkpoint::{Checkpoint, Ledger};
use crate::error::Result;
use crate::spec::{BackfillSpec, CopySpec, RunOptions};
use std::sync::Mutex;

const SHOWN_CHUNKS: usize = 3;

/// What a dry run shows besides the chunks.
struct View<'a> {
    job: &'a PreparedJob,
    source: String,
    target: String,
    /// (column written, expression)
    columns: Vec<(String, String)>,
    not_written: Vec<String>,
    /// (what it is, SQL)
    statements: Vec<(&'static str, String)>,
    /// A copy's pre-flight checks.
    preflight: Option<&'a Preflight>,
}

pub async fn copy(spec: &CopySpec, opts: &RunOptions) -> Result<()> {
    let plan = super::copy::prepare(spec, opts).await?;
    let preflight = super::copy::preflight(&plan, spec, opts).await?;
    let mut sync_statements = Vec::new();
    if spec.dual_write || plan.sync_state.any_present() {
        let label = if plan.sync_state.fully_current() {
            "dual-write: sync triggers already installed (chunks read source rows FOR SHARE / LOCK IN SHARE MODE)"
        } else {
            "dual-write: installed before the first chunk (chunks then read source rows FOR SHARE / LOCK IN SHARE MODE)"
        };
        let d = plan.job.db.dialect();
        for object in d.sync_objects(&plan.sync) {
            for sql in object.create {
                sync_statements.push((label, sql));
            }
        }
    }
    show(
        View {
            job: &plan.job,
            source: spec.source.to_string(),
            target: format!("table {} (same database)", plan.target.display_name()),
            columns: plan.columns.clone(),
            not_written: plan.unwritten_source_columns.clone(),
            preflight: Some(&preflight),
            statements: vec![
                (
                    "first chunk SQL (parameters: the chunk's upper key)",
                    plan.fast.first.clone(),
                ),
                (
                    "chunk SQL (parameters: lower key, then upper key)",
                    plan.fast.rest.clone(),
                ),
                (
                    "once a chunk meets rows already in the target, chunks skip them instead",
                    plan.skipping.rest.clone(),
                ),
            ]
            .into_iter()
            .chain(sync_statements)
            .collect(),
        },
        opts,
    )
    .await
}

pub async fn backfill(spec: &BackfillSpec, opts: &RunOptions) -> Result<()> {
    let plan = super::backfill::prepare(spec, opts).await?;
    let mut statements = vec![
        (
            "first chunk SQL (parameters: the chunk's upper key)",
            plan.update.first.clone(),
        ),
        (
            "chunk SQL (parameters: lower key, then upper key; its state row is written in the same transaction)",
            plan.update.rest.clone(),
        ),
    ];
    if let Some(not_null) = &plan.not_null {
        statements.extend(
            not_null
                .steps
                .iter()
                .map(|s| ("then, for --then-not-null", s.clone())),
        );
    }
    show(
        View {
            job: &plan.job,
            source: spec.source.to_string(),
            target: format!("table {} (updated in place)", plan.table),
            columns: spec
                .sets
                .iter()
                .map(|s| (s.column.clone(), s.expr.clone()))
                .collect(),
            not_written: vec![],
            preflight: None,
            statements,
        },
        opts,
    )
    .await
}

async fn show(view: View<'_>, opts: &RunOptions) -> Result<()> {
    let job = view.job;
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
    let key_len = job.identity.key.len();
    let (probe_sql, _) = job.planner.probe(
        Some(&vec!["<lo>".into(); key_len]),
        &vec!["<upper>".into(); key_len],
        sizer.rows(),
    );

    if opts.json {
        let mut report = serde_json::json!({
            "dry_run": true,
            "operation": job.identity.operation,
            "source": view.source,
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
            "columns": view.columns.iter().map(|(t, e)| serde_json::json!({"column": t, "expr": e})).collect::<Vec<_>>(),
            "statements": view.statements.iter().map(|(what, sql)| serde_json::json!({"what": what, "sql": sql})).collect::<Vec<_>>(),
            "boundary_probe_sql": probe_sql,
            "checkpoint": checkpoint,
        });
        if let Some(pf) = view.preflight {
            report["preflight"] = serde_json::to_value(&pf.problems).unwrap_or_default();
            report["preflight_checks"] = serde_json::json!({
                "scanned": pf.scanned,
                "proven": pf.proven,
                "not_checked": pf.not_checked,
            });
        }
        println!("{report}");
        return Ok(());
    }
    let show = |k: &Option<Vec<String>>| k.as_ref().map_or("start".to_string(), |k| k.join(", "));
    println!(
        "rowferry plan: {} (dry run: nothing is written)",
        job.identity.operation
    );
    println!(
        "  source:      {} table {}",
        view.source, job.identity.table
    );
    println!("  target:      {}", view.target);
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
    for (t, e) in &view.columns {
        println!("    {t} <- {e}");
    }
    if !view.not_written.is_empty() {
        println!("  not copied:  {}", view.not_written.join(", "));
    }
    if let Some(pf) = view.preflight {
        let lines = pf.lines();
        for (i, line) in lines.iter().enumerate() {
            if i == 0 {
                println!("  pre-flight:  {line}");
            } else {
                println!("    {line}");
            }
        }
    }
    for (what, sql) in &view.statements {
        println!("  {what}:\n    {sql}");
    }
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
