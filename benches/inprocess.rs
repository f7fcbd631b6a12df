//! The in-process parts of a copy, which must stay negligible next to the
//! database's work: chunk sizing, the checkpoint ledger, saving the
//! checkpoint file, and generating a chunk's SQL. Run: cargo bench.

use criterion::{Criterion, criterion_group, criterion_main};
use rowferry::checkpoint::{Checkpoint, FORMAT_VERSION, Ledger};
use rowferry::dialect::postgres::Postgres;
use rowferry::dialect::{CopyStatement, Presence, copy_chunk_sql};
use rowferry::planner::ChunkSizer;
use rowferry::table::{Column, Key};
use std::hint::black_box;
use std::time::Duration;

fn sizer(c: &mut Criterion) {
    let mut s = ChunkSizer::new(1000, Duration::from_millis(500), 100_000, 16 << 20, 120);
    c.bench_function("chunk_sizer_record", |b| {
        b.iter(|| s.record(black_box(5000), black_box(Duration::from_millis(430))))
    });
}

fn ledger(c: &mut Criterion) {
    // Out-of-order completions with 4 chunks in flight, as 4 workers do.
    c.bench_function("ledger_1000_chunks_4_in_flight", |b| {
        b.iter(|| {
            let mut l = Ledger::new(Some(vec!["1000000".into()]));
            let mut in_flight = std::collections::VecDeque::new();
            for i in 0..1000u64 {
                in_flight.push_back(l.issue(vec![(i * 1000).to_string()], 1000).seq);
                if in_flight.len() == 4 {
                    let seq = in_flight.remove(1).unwrap_or_default();
                    l.complete(seq, 1000);
                }
            }
            for seq in in_flight {
                l.complete(seq, 1000);
            }
            black_box(l.rows_done)
        })
    });
}

fn checkpoint_save(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("rowferry-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_default();
    let path = dir.join("bench.checkpoint");
    let mut ledger = Ledger::new(Some(vec!["99999999".into()]));
    for i in 0..8u64 {
        ledger.issue(vec![(i * 5000).to_string()], 5000);
    }
    let cp = Checkpoint {
        format: FORMAT_VERSION,
        fingerprint: "f".repeat(64),
        job: serde_json::json!({"operation": "copy", "table": "public.orders"}),
        key_columns: vec!["id".into()],
        rows_total_estimate: 1_000_000_000,
        started_at: "2026-01-01T00:00:00Z".into(),
        updated_at: "2026-01-01T00:00:00Z".into(),
        finished: false,
        ledger,
        deferred_indexes: None,
    };
    // Atomic write with fsync: bounds how often the coordinator may save.
    c.bench_function("checkpoint_save_fsync", |b| b.iter(|| cp.save(&path)));
    let _ = std::fs::remove_dir_all(&dir);
}

fn chunk_sql(c: &mut Criterion) {
    let col = |n: &str, t: &str| Column {
        name: n.into(),
        data_type: t.into(),
        nullable: false,
        generated: false,
        identity_always: false,
        has_default: false,
        domain_base: None,
        charset: None,
    };
    let key = Key {
        columns: vec![col("tenant", "integer"), col("id", "bigint")],
    };
    let copy = CopyStatement {
        source: r#""public"."orders""#.into(),
        target: r#""public"."orders_v2""#.into(),
        target_columns: (0..20).map(|i| format!("\"c{i}\"")).collect(),
        source_exprs: (0..20).map(|i| format!("\"c{i}\"")).collect(),
        key_match: vec![
            (r#""tenant""#.into(), r#""tenant""#.into()),
            (r#""id""#.into(), r#""id""#.into()),
        ],
        where_sql: Some("status <> 'deleted'".into()),
        overriding_identity: false,
        lock_source_rows: true,
        skip_key_conflicts: false,
    };
    c.bench_function("copy_chunk_sql_20_columns", |b| {
        b.iter(|| copy_chunk_sql(&Postgres, black_box(&copy), &key, true, Presence::MaySkip))
    });
}

criterion_group!(benches, sizer, ledger, checkpoint_save, chunk_sql);
criterion_main!(benches);
