//! Throttling on real replicas (built by scripts/replicas.sh, which these
//! tests start): a PostgreSQL streaming replica of the local server on
//! 5433, and a MariaDB primary/replica pair on 3307/3308. With replay
//! paused or the replication SQL thread stopped, no chunk commits and
//! progress says why; once replay resumes the copy finishes exact. A
//! replica that does not answer holds the job too (fails closed).

mod common;
use common::*;
use std::time::Duration;

const PG_REPLICA: &str = "postgres://postgres@127.0.0.1:5433/test";
const MY_PRIMARY: &str = "mysql://root@127.0.0.1:3307/test";
const MY_REPLICA: &str = "mysql://root@127.0.0.1:3308/test";

/// Start (or check) the replicas; fails the test loudly if they cannot run.
fn replicas() {
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/replicas.sh"))
        .arg("start")
        .output()
        .expect("run scripts/replicas.sh");
    assert!(
        out.status.success(),
        "scripts/replicas.sh start failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `command` when dropped: replication is restarted even when an
/// assertion fails while it is paused.
struct Restore(&'static str, &'static [&'static str]);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::process::Command::new(self.0).args(self.1).output();
    }
}

async fn pg_replica() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(PG_REPLICA, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("the PostgreSQL replica at {PG_REPLICA} is unreachable: {e}"));
    tokio::spawn(conn);
    client
}

/// The target's row count, read a few times over `window`: it must not move.
async fn stays(db: &TestDb, table: &str, window: Duration) -> i64 {
    let first = db.count(table).await;
    let steps = 5;
    for _ in 0..steps {
        tokio::time::sleep(window / steps).await;
        assert_eq!(db.count(table).await, first, "a chunk committed while held");
    }
    first
}

async fn source_table(db: &TestDb, rows: u32) {
    let (g, from) = if db.url().starts_with("mysql") {
        ("seq", format!("seq_1_to_{rows}"))
    } else {
        ("g", format!("generate_series(1, {rows}) AS g"))
    };
    db.exec(&format!(
        "CREATE TABLE {{s}}.src (id int PRIMARY KEY, name varchar(40), amount decimal(10,2));
         CREATE TABLE {{s}}.dst (id int PRIMARY KEY, name varchar(40), amount decimal(10,2));
         INSERT INTO {{s}}.src SELECT {g}, CONCAT('n', {g}), {g} / 4.0 FROM {from};"
    ))
    .await;
}

fn slow_copy(db: &TestDb, extra: &[&str]) -> Vec<String> {
    with(
        db.copy_args("src", "dst"),
        &[
            &["--chunk-rows", "500", "--chunk-time", "0", "--workers", "2"],
            extra,
        ]
        .concat(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_paused_replay_holds_every_chunk_until_it_resumes() {
    replicas();
    let db = TestDb::new("rep_pg").await;
    source_table(&db, 20_000).await;
    let replica = pg_replica().await;
    // Replay paused with WAL waiting for it: the replica falls behind.
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    let _resume = Restore(
        "psql",
        &[
            "-X",
            "-q",
            PG_REPLICA,
            "-c",
            "SELECT pg_wal_replay_resume()",
        ],
    );
    let paused = async {
        db.exec("CREATE TABLE {s}.nudge (x int); INSERT INTO {s}.nudge VALUES (1)")
            .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut run = Running::start(&slow_copy(
            &db,
            &["--replica", PG_REPLICA, "--max-lag", "1s"],
        ));
        let held = run.wait_for_progress(|p| {
            p["throttled"]
                .as_str()
                .is_some_and(|t| t.contains("replica lag") && t.contains("127.0.0.1:5433"))
        });
        assert_eq!(held["rows_done"], 0, "{held}");
        assert_eq!(stays(&db, "dst", Duration::from_millis(1500)).await, 0);
        run
    }
    .await;
    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume replay");
    let (code, stderr) = paused.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        db.checksum("src", "id, name, amount", "id").await,
        db.checksum("dst", "id, name, amount", "id").await
    );
    db.cleanup().await;
}

/// A replica that cannot be reached is not ignored: the job holds, says
/// why, and stops cleanly when asked.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_replica_holds_the_job() {
    let db = TestDb::new("rep_gone").await;
    source_table(&db, 2_000).await;
    let mut run = Running::start(&slow_copy(
        &db,
        &["--replica", "postgres://postgres@127.0.0.1:1/test"],
    ));
    let held = run.wait_for_progress(|p| {
        p["throttled"]
            .as_str()
            .is_some_and(|t| t.contains("replica lag unknown on 127.0.0.1:1"))
    });
    assert_eq!(held["rows_done"], 0, "{held}");
    assert_eq!(stays(&db, "dst", Duration::from_secs(1)).await, 0);
    run.signal(libc::SIGINT);
    let (code, stderr) = run.finish();
    assert_eq!(code, Some(130), "{stderr}");
    db.cleanup().await;
}

/// MariaDB: the replica's SQL thread stopped makes its lag unknown (NULL
/// Seconds_Behind_Master): held; started again, the copy finishes exact.
#[tokio::test(flavor = "multi_thread")]
async fn mysql_stopped_replica_sql_thread_holds_every_chunk() {
    replicas();
    let db = TestDb::mysql_at("rep_my", MY_PRIMARY).await;
    source_table(&db, 20_000).await;
    let mut replica = connect_mysql_at(MY_REPLICA).await;
    use mysql_async::prelude::Queryable;
    replica
        .query_drop("STOP REPLICA SQL_THREAD")
        .await
        .expect("stop the SQL thread");
    let _restart = Restore(
        "mariadb",
        &[
            "-h",
            "127.0.0.1",
            "-P",
            "3308",
            "-u",
            "root",
            "-e",
            "START REPLICA SQL_THREAD",
        ],
    );
    let mut run = Running::start(&slow_copy(&db, &["--replica", MY_REPLICA]));
    let held = run.wait_for_progress(|p| {
        p["throttled"]
            .as_str()
            .is_some_and(|t| t.contains("127.0.0.1:3308") && t.contains("SQL thread"))
    });
    let result = async {
        assert_eq!(held["rows_done"], 0, "{held}");
        stays(&db, "dst", Duration::from_secs(1)).await
    }
    .await;
    replica
        .query_drop("START REPLICA SQL_THREAD")
        .await
        .expect("start the SQL thread");
    assert_eq!(result, 0);
    let (code, stderr) = run.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        db.checksum("src", "id, name, amount", "id").await,
        db.checksum("dst", "id, name, amount", "id").await
    );
    db.cleanup().await;
}

/// One run per target table, whichever source feeds it: the lock is taken
/// on the target's server. A second copy reading the same table from
/// another server (the replica) into the same MariaDB table is refused
/// while the first writes (with the lock on the source, both ran).
#[tokio::test(flavor = "multi_thread")]
async fn a_second_source_writing_the_same_target_is_refused() {
    replicas();
    let pg = TestDb::new("rep_lock").await;
    let my = TestDb::mysql("rep_lock").await;
    pg.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, v int);
         INSERT INTO {s}.src SELECT g, g FROM generate_series(1, 5000) g",
    )
    .await;
    my.exec("CREATE TABLE {s}.dst (id int PRIMARY KEY, v int)")
        .await;
    let copy = |source: &str, checkpoint: &str, extra: &[&str]| {
        with(
            vec![
                "copy".into(),
                "--source".into(),
                source.into(),
                "--target".into(),
                my.url(),
                "--table".into(),
                pg.q("src"),
                "--target-table".into(),
                my.q("dst"),
                "--checkpoint".into(),
                pg.path(checkpoint).display().to_string(),
            ],
            extra,
        )
    };
    let mut first = Running::start(&copy(
        &pg.url(),
        "first.checkpoint",
        &[
            "--max-rows-per-sec",
            "1000",
            "--chunk-rows",
            "200",
            "--chunk-time",
            "0",
        ],
    ));
    first.wait_for_progress(|p| p["rows_done"].as_u64().is_some_and(|n| n > 0));
    let out = run(&copy(PG_REPLICA, "second.checkpoint", &[]));
    expect_exit(&out, 2);
    assert!(stderr(&out).contains("already writing"), "{}", stderr(&out));
    first.signal(libc::SIGINT);
    let (code, err) = first.finish();
    assert_eq!(code, Some(130), "{err}");
    my.cleanup().await;
    pg.cleanup().await;
}
