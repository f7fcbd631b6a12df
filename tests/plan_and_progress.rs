//! `rowferry plan` is a dry run that shows the real bounds and SQL; progress
//! JSON lines and the summary carry the documented fields.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn plan_shows_key_bounds_and_sql_and_writes_nothing() {
    let db = TestDb::new("plan").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, v text);
         INSERT INTO {s}.src SELECT g * 10, 'v' FROM generate_series(1, 1000) g;
         ANALYZE {s}.src;
         CREATE TABLE {s}.dst (LIKE {s}.src INCLUDING ALL);",
    )
    .await;
    let mut args = db.copy_args("src", "dst");
    args[0] = "plan".into();
    args.extend(["--chunk-rows", "100", "--where", "v IS NOT NULL"].map(String::from));
    let out = run(&args);
    expect_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("dry run: nothing is written"), "{text}");
    assert!(text.contains("key:         (id)"), "{text}");
    assert!(text.contains("rows:        ~1000"), "{text}");
    assert!(
        text.contains("(start, 10000]"),
        "the key range ends at the largest key: {text}"
    );
    assert!(text.contains("chunk 1:     (start, 1000]"), "{text}");
    assert!(text.contains("chunk 2:     (1000, 2000]"), "{text}");
    assert!(
        text.contains(&format!("INSERT INTO \"{}\".\"dst\"", db.schema)),
        "{text}"
    );
    assert!(text.contains("AND (v IS NOT NULL)"), "{text}");
    assert!(text.contains("absent: a run starts fresh"), "{text}");
    assert_eq!(db.count("dst").await, 0);
    assert!(!db.path("job.checkpoint").exists());

    args.push("--json".into());
    let out = run(&args);
    expect_exit(&out, 0);
    let plan: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("plan JSON");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["upper_bound"], serde_json::json!(["10000"]));
    assert_eq!(
        plan["first_chunks"][1],
        serde_json::json!({"lo": ["1000"], "hi": ["2000"]})
    );
    assert_eq!(db.count("dst").await, 0);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_progress_lines_and_summary_carry_the_documented_fields() {
    let db = TestDb::new("progress").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY);
         INSERT INTO {s}.src SELECT g FROM generate_series(1, 3000) g;
         ANALYZE {s}.src;
         CREATE TABLE {s}.dst (LIKE {s}.src INCLUDING ALL);",
    )
    .await;
    let mut args = db.copy_args("src", "dst");
    args.extend(
        [
            "--chunk-rows",
            "100",
            "--chunk-time",
            "0",
            "--max-rows-per-sec",
            "1500",
            "--json",
        ]
        .map(String::from),
    );
    let mut running = Running::start(&args);
    let line = running.wait_for_progress(|p| p["chunks_done"].as_u64() >= Some(1));
    for field in [
        "phase",
        "rows_done",
        "rows_total_estimate",
        "chunks_done",
        "rows_per_sec",
        "eta_s",
        "throttled",
    ] {
        assert!(
            line.get(field).is_some(),
            "progress line lacks {field}: {line}"
        );
    }
    assert_eq!(line["phase"], "copy");
    assert_eq!(line["rows_total_estimate"], 3000);
    let out = running.child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    let summary: serde_json::Value =
        serde_json::from_str(stdout(&out).trim()).expect("summary JSON on stdout");
    assert_eq!(summary["status"], "done");
    assert_eq!(summary["rows"], 3000);
    assert_eq!(summary["chunks"], 30);
    assert_eq!(summary["resumed"], false);
    for field in ["elapsed_s", "rows_per_sec", "retries"] {
        assert!(
            summary.get(field).is_some(),
            "summary lacks {field}: {summary}"
        );
    }
    db.cleanup().await;
}
