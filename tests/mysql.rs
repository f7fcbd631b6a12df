//! The PostgreSQL scenarios on the real MariaDB (ROWFERRY_TEST_MYSQL): each
//! key kind compared by checksum, --map, unique violations, kill -9 and
//! resume, checkpoint refusals, bad input, the one-run lock.

mod common;
use common::*;

/// Copy in fixed chunks of `chunk` rows with 3 workers; expect success.
fn copy(db: &TestDb, src: &str, dst: &str, chunk: u32, extra: &[&str]) -> serde_json::Value {
    let mut args = db.copy_args(src, dst);
    args.extend([
        "--chunk-rows".into(),
        chunk.to_string(),
        "--chunk-time".into(),
        "0".into(),
    ]);
    args.extend(["--workers", "3", "--progress", "none", "--json"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = run(&args);
    expect_exit(&out, 0);
    serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("summary JSON: {e}: {}", stdout(&out)))
}

async fn assert_same(db: &TestDb, cols: &str, order: &str) {
    assert_eq!(
        db.checksum("src", cols, order).await,
        db.checksum("dst", cols, order).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn integer_keys_with_gaps_and_extremes() {
    let db = TestDb::mysql("my_int").await;
    db.exec(
        "CREATE TABLE {s}.src (id bigint PRIMARY KEY, v varchar(20), n decimal(12,2));
         INSERT INTO {s}.src SELECT seq * seq % 1000003 + seq * 1000, CONCAT('v', seq), seq / 3
           FROM seq_1_to_5000 WHERE seq % 7 <> 0;
         INSERT INTO {s}.src VALUES (-9223372036854775808, 'min', 0), (9223372036854775807, 'max', 1);
         CREATE TABLE {s}.dst LIKE {s}.src;
         CREATE TABLE {s}.usrc (id bigint unsigned PRIMARY KEY);
         INSERT INTO {s}.usrc VALUES (0), (1), (9007199254740993), (18446744073709551614), (18446744073709551615);
         CREATE TABLE {s}.udst LIKE {s}.usrc;",
    )
    .await;
    let s = copy(&db, "src", "dst", 97, &[]);
    assert_eq!(s["rows"], 4288);
    assert!(s["chunks"].as_u64() >= Some(45), "{s}");
    assert_same(&db, "id, v, n", "id").await;
    // Past 2^53 a key compared as a double would merge neighbours.
    std::fs::remove_file(db.path("job.checkpoint")).expect("checkpoint");
    copy(&db, "usrc", "udst", 1, &[]);
    assert_eq!(db.count("udst").await, 5);
    assert_eq!(
        db.checksum("usrc", "id", "id").await,
        db.checksum("udst", "id", "id").await
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn composite_key_with_skewed_groups() {
    let db = TestDb::mysql("my_composite").await;
    db.exec(
        "CREATE TABLE {s}.src (tenant int, seq int, payload varchar(20) NOT NULL, PRIMARY KEY (tenant, seq));
         INSERT INTO {s}.src SELECT 1, seq, CONCAT('big', seq) FROM seq_1_to_3000;
         INSERT INTO {s}.src SELECT t.seq, s.seq, 'small' FROM seq_2_to_60 t JOIN seq_1_to_5 s ON s.seq <= t.seq % 5 + 1;
         INSERT INTO {s}.src SELECT 1000, seq, 'tail' FROM seq_1_to_700;
         CREATE TABLE {s}.dst LIKE {s}.src;",
    )
    .await;
    copy(&db, "src", "dst", 53, &[]);
    assert_eq!(db.count("dst").await, db.count("src").await);
    assert_same(&db, "tenant, seq, payload", "tenant, seq").await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn varchar_keys_under_case_and_accent_insensitive_collations() {
    let db = TestDb::mysql("my_collation").await;
    // Under these collations 'a' = 'A' = 'á' and 'ß' sorts with 'ss': a
    // copier that orders keys in binary, or binds bounds under another
    // collation, loses or repeats rows.
    for (i, collation) in [
        "utf8mb4_unicode_ci",
        "utf8mb4_unicode_520_ci",
        "utf8mb4_german2_ci",
        "utf8mb4_general_ci",
    ]
    .iter()
    .enumerate()
    {
        db.exec(&format!(
            "DROP TABLE IF EXISTS {{s}}.src, {{s}}.dst;
             CREATE TABLE {{s}}.src (name varchar(40) COLLATE {collation} PRIMARY KEY, n int NOT NULL);
             INSERT INTO {{s}}.src SELECT CONCAT(ELT(seq % 12 + 1, 'a', 'B', 'ç', 'D', 'é', 'f', 'G', 'ñ', 'Ö', 'p', 'ß', 'Œ'),
                                             seq, ELT(seq % 3 + 1, '', ' x', 'Ÿz')), seq FROM seq_1_to_3000;
             CREATE TABLE {{s}}.dst LIKE {{s}}.src;"
        ))
        .await;
        let _ = std::fs::remove_file(db.path("job.checkpoint"));
        copy(&db, "src", "dst", 37 + i as u32, &[]);
        assert_eq!(db.count("dst").await, 3000, "{collation}");
        assert_eq!(
            db.checksum("src", "name, n", "n").await,
            db.checksum("dst", "name, n", "n").await,
            "{collation}"
        );
    }
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_uuid_datetime_and_decimal_keys() {
    let db = TestDb::mysql("my_types").await;
    db.exec(
        "CREATE TABLE {s}.src (id binary(16) PRIMARY KEY, at datetime(6) NOT NULL UNIQUE, amount decimal(30,10) NOT NULL UNIQUE);
         INSERT INTO {s}.src SELECT UNHEX(MD5(seq)), '1999-12-31 23:59:59.5' + INTERVAL seq * 7 MICROSECOND + INTERVAL seq SECOND,
                                    seq / 7 + 0.0000000001 FROM seq_1_to_2500;
         CREATE TABLE {s}.dst LIKE {s}.src;",
    )
    .await;
    for (i, key) in ["id", "at", "amount"].iter().enumerate() {
        db.exec("TRUNCATE {s}.dst").await;
        let _ = std::fs::remove_file(db.path("job.checkpoint"));
        copy(&db, "src", "dst", 89 + i as u32, &["--key", key]);
        assert_eq!(db.count("dst").await, 2500, "--key {key}");
        assert_same(&db, "HEX(id), at, amount", "id").await;
    }
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn map_defaults_and_generated_columns() {
    let db = TestDb::mysql("my_map").await;
    db.exec(
        "SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO');
         CREATE TABLE {s}.src (id int PRIMARY KEY AUTO_INCREMENT, first varchar(20) NOT NULL, last varchar(20) NOT NULL,
                               price int NOT NULL, total int AS (price * 2) STORED);
         INSERT INTO {s}.src (id, first, last, price) SELECT seq, CONCAT('F', seq), CONCAT('L', seq), seq % 100 FROM seq_0_to_1499;
         CREATE TABLE {s}.dst (user_id int PRIMARY KEY AUTO_INCREMENT, full_name varchar(50) NOT NULL, price int NOT NULL,
                               total int AS (price * 2) VIRTUAL, origin varchar(10) NOT NULL DEFAULT 'legacy');",
    )
    .await;
    // id 0 exists: AUTO_INCREMENT must keep it (NO_AUTO_VALUE_ON_ZERO).
    copy(
        &db,
        "src",
        "dst",
        200,
        &[
            "--map",
            "user_id=id",
            "--map",
            "full_name=CONCAT(first, ' ', last)",
        ],
    );
    assert_eq!(db.count("dst").await, 1500);
    assert_eq!(
        db.checksum("src", "id, CONCAT(first, ' ', last), price, total", "id")
            .await,
        db.checksum("dst", "user_id, full_name, price, total", "user_id")
            .await
    );
    assert_eq!(
        db.scalar("SELECT CAST(COUNT(*) AS CHAR) FROM {s}.dst WHERE origin = 'legacy'")
            .await,
        "1500"
    );
    assert_eq!(
        db.scalar("SELECT full_name FROM {s}.dst WHERE user_id = 0")
            .await,
        "F0 L0"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unique_violation_on_another_key_stops_names_the_index_and_drops_nothing() {
    let db = TestDb::mysql("my_uniq").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, email varchar(50) NOT NULL);
         INSERT INTO {s}.src SELECT seq, CONCAT('user', seq, '@example.com') FROM seq_1_to_2000;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, email varchar(50) NOT NULL, UNIQUE KEY dst_email_unique (email));
         INSERT INTO {s}.dst SELECT * FROM {s}.src WHERE id % 100 = 0 AND id < 1400;
         INSERT INTO {s}.dst VALUES (100000, 'USER1500@example.com');",
    )
    .await;
    let args = with(
        db.copy_args("src", "dst"),
        &[
            "--chunk-rows",
            "100",
            "--chunk-time",
            "0",
            "--workers",
            "1",
            "--progress",
            "none",
        ],
    );
    let out = run(&args);
    expect_exit(&out, 1);
    let err = stderr(&out);
    // Rows already present (on the key) were skipped; the other key was not.
    assert!(
        err.contains("dst_email_unique") && err.contains("chunk (1400, 1500]"),
        "{err}"
    );
    assert!(err.contains("no row was dropped"), "{err}");
    assert_eq!(
        db.scalar("SELECT CAST(COUNT(*) AS CHAR) FROM {s}.dst WHERE id > 1400 AND id <= 1500")
            .await,
        "0"
    );
    // (Duplicates within the source are refused before the copy starts;
    // this conflict is with a row already in the target.)
    db.exec("DELETE FROM {s}.dst WHERE id = 100000").await;
    let out = run(&args);
    expect_exit(&out, 0);
    assert!(stderr(&out).contains("resuming from checkpoint"));
    assert_same(&db, "id, email", "id").await;
    db.cleanup().await;
}

async fn orders(db: &TestDb, rows: u32) {
    db.exec(&format!(
        "CREATE TABLE {{s}}.src (id bigint PRIMARY KEY, customer int NOT NULL, note varchar(60));
         INSERT INTO {{s}}.src SELECT seq * 2, seq % 97, REPEAT('x', seq % 50) FROM seq_1_to_{rows};
         ANALYZE TABLE {{s}}.src;
         CREATE TABLE {{s}}.dst LIKE {{s}}.src;"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_then_rerun_resumes_and_copies_everything() {
    let db = TestDb::mysql("my_kill9").await;
    orders(&db, 20_000).await;
    let base = with(
        db.copy_args("src", "dst"),
        &["--chunk-rows", "200", "--chunk-time", "0", "--workers", "2"],
    );
    let mut running = Running::start(&with(base.clone(), &["--max-rows-per-sec", "4000"]));
    running.wait_for_progress(|p| p["chunks_done"].as_u64() >= Some(3));
    running.child.kill().expect("kill -9");
    let (code, _) = running.finish();
    assert_eq!(code, None);
    let partial = db.count("dst").await;
    assert!(partial > 0 && partial < 20_000, "{partial}");
    let out = run(&with(base, &["--progress", "none"]));
    expect_exit(&out, 0);
    assert!(
        stderr(&out).contains("resuming from checkpoint"),
        "{}",
        stderr(&out)
    );
    assert_same(&db, "id, customer, note", "id").await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_saves_exact_progress_and_second_run_is_refused() {
    let db = TestDb::mysql("my_sigint").await;
    orders(&db, 10_000).await;
    let base = with(
        db.copy_args("src", "dst"),
        &["--chunk-rows", "250", "--chunk-time", "0"],
    );
    let mut running = Running::start(&with(base.clone(), &["--max-rows-per-sec", "2500"]));
    running.wait_for_progress(|p| p["chunks_done"].as_u64() >= Some(2));
    // GET_LOCK: one run per job.
    let second = run(&with(base.clone(), &["--progress", "none"]));
    expect_exit(&second, 2);
    assert!(
        stderr(&second).contains("another rowferry run is already writing"),
        "{}",
        stderr(&second)
    );
    running.signal(libc::SIGINT);
    let (code, err) = running.finish();
    assert_eq!(code, Some(130), "{err}");
    let copied = db.count("dst").await as u64;
    let status = run_strs(&[
        "status",
        "--checkpoint",
        db.path("job.checkpoint").to_str().unwrap(),
        "--json",
    ]);
    let status: serde_json::Value =
        serde_json::from_str(stdout(&status).trim()).expect("status JSON");
    assert_eq!(status["rows_done"].as_u64(), Some(copied));
    let out = run(&with(base, &["--progress", "none"]));
    expect_exit(&out, 0);
    assert_same(&db, "id, customer, note", "id").await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_and_corrupt_checkpoints_are_refused() {
    let db = TestDb::mysql("my_ckpt").await;
    orders(&db, 500).await;
    db.exec("CREATE TABLE {s}.dst2 LIKE {s}.src").await;
    expect_exit(
        &run(&with(db.copy_args("src", "dst"), &["--progress", "none"])),
        0,
    );
    let other = run(&with(db.copy_args("src", "dst2"), &["--progress", "none"]));
    expect_exit(&other, 2);
    assert!(
        stderr(&other).contains("belongs to another job"),
        "{}",
        stderr(&other)
    );
    std::fs::write(db.path("job.checkpoint"), "garbage").expect("corrupt it");
    let corrupt = run(&with(db.copy_args("src", "dst2"), &["--progress", "none"]));
    expect_exit(&corrupt, 2);
    assert!(
        stderr(&corrupt).contains("is corrupt"),
        "{}",
        stderr(&corrupt)
    );
    assert_eq!(db.count("dst2").await, 0);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_identifiers_are_quoted() {
    let db = TestDb::mysql("my_hostile").await;
    db.exec(
        "CREATE TABLE {s}.`Odd ``Src``; DROP TABLE x;--` (`Key Col` int PRIMARY KEY, `Mixed;Case` varchar(9), `select` varchar(9));
         INSERT INTO {s}.`Odd ``Src``; DROP TABLE x;--` SELECT seq, CONCAT('v', seq), 's' FROM seq_1_to_700;
         CREATE TABLE {s}.`dst.with.dots` LIKE {s}.`Odd ``Src``; DROP TABLE x;--`;",
    )
    .await;
    let mut args: Vec<String> = vec!["copy".into(), "--source".into(), mysql_url()];
    args.extend([
        "--table".into(),
        format!(r#"{}."Odd `Src`; DROP TABLE x;--""#, db.schema),
    ]);
    args.extend([
        "--target-table".into(),
        format!(r#"{}."dst.with.dots""#, db.schema),
    ]);
    args.extend([
        "--checkpoint".into(),
        db.path("odd.checkpoint").display().to_string(),
    ]);
    args.extend(
        [
            "--chunk-rows",
            "50",
            "--chunk-time",
            "0",
            "--progress",
            "none",
        ]
        .map(String::from),
    );
    expect_exit(&run(&args), 0);
    assert_eq!(
        db.checksum(
            "`Odd ``Src``; DROP TABLE x;--`",
            "`Key Col`, `Mixed;Case`, `select`",
            "`Key Col`"
        )
        .await,
        db.checksum(
            "`dst.with.dots`",
            "`Key Col`, `Mixed;Case`, `select`",
            "`Key Col`"
        )
        .await
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_before_any_write() {
    let db = TestDb::mysql("my_bad").await;
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, email varchar(20), code varchar(9) NOT NULL, UNIQUE KEY (email));
         INSERT INTO {s}.src SELECT seq, CONCAT('e', seq), CONCAT('c', seq) FROM seq_1_to_100;
         CREATE TABLE {s}.dst LIKE {s}.src;
         CREATE TABLE {s}.nokey (a int, b text);
         CREATE TABLE {s}.prefix_only (id varchar(50) NOT NULL, UNIQUE KEY (id(10)));
         CREATE VIEW {s}.v AS SELECT * FROM {s}.src;",
    )
    .await;
    refused(
        &db,
        db.copy_args("nope", "dst"),
        &format!("table {}.nope does not exist", db.schema),
    )
    .await;
    refused(&db, db.copy_args("nokey", "dst"), "no usable key").await;
    refused(&db, db.copy_args("prefix_only", "dst"), "no usable key").await;
    refused(&db, db.copy_args("v", "dst"), "is a view").await;
    refused(
        &db,
        with(db.copy_args("src", "dst"), &["--map", "nope=id"]),
        "no column `nope`",
    )
    .await;
    refused(
        &db,
        with(db.copy_args("src", "dst"), &["--key", "email"]),
        "is nullable",
    )
    .await;
    refused(
        &db,
        with(db.copy_args("src", "dst"), &["--key", "code"]),
        "is not unique",
    )
    .await;
    refused(
        &db,
        with(db.copy_args("src", "dst"), &["--where", "no_such_col = 1"]),
        "no_such_col",
    )
    .await;
    refused(
        &db,
        with(db.copy_args("src", "dst"), &["--map", "email=CONCAT(id,"]),
        "rejected",
    )
    .await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_and_unknown_database_are_named_without_the_password() {
    let db = TestDb::mysql("my_auth").await;
    db.exec("CREATE TABLE {s}.src (id int PRIMARY KEY); CREATE TABLE {s}.dst LIKE {s}.src;")
        .await;
    let user = format!("rfpw{}", std::process::id());
    db.exec(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'Right0ne'; CREATE USER '{user}'@'localhost' IDENTIFIED BY 'Right0ne'"))
        .await;
    let hostport = mysql_url()
        .split('@')
        .nth(1)
        .unwrap_or("127.0.0.1:3306/test")
        .to_string();
    let mut args = db.copy_args("src", "dst");
    args[2] = format!("mysql://{user}:Wr0ngSecret@{hostport}");
    let err = refused(
        &db,
        args.clone(),
        &format!("access denied for user `{user}`"),
    )
    .await;
    assert!(
        err.contains("check the user name and the password"),
        "{err}"
    );
    assert!(!err.contains("Wr0ngSecret"), "{err}");
    let server = hostport
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:3306")
        .to_string();
    args[2] = format!("mysql://{user}:Right0ne@{server}/no_such_db_rf");
    let err = refused(&db, args.clone(), "no_such_db_rf").await;
    assert!(err.contains("check the database name"), "{err}");
    assert!(!err.contains("Right0ne"), "{err}");
    db.exec(&format!(
        "DROP USER '{user}'@'%'; DROP USER '{user}'@'localhost'"
    ))
    .await;
    args[2] = "mysql://root@127.0.0.1:1/test".into();
    refused(&db, args, "check that the server is running").await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_wait_timeouts_are_retried_and_plan_writes_nothing() {
    use mysql_async::prelude::Queryable;
    let db = TestDb::mysql("my_retry").await;
    orders(&db, 500).await;
    let mut plan = with(db.copy_args("src", "dst"), &["--chunk-rows", "100"]);
    plan[0] = "plan".into();
    let out = run(&plan);
    expect_exit(&out, 0);
    assert!(
        stdout(&out).contains("chunk 2:     (200, 400]"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains(&format!("INSERT INTO `{}`.`dst`", db.schema)),
        "{}",
        stdout(&out)
    );
    assert_eq!(db.count("dst").await, 0);

    // Another session inserts one of the rows and keeps its transaction
    // open: the copy's insert of that key waits, times out (1205), retries.
    let mut blocker = connect_mysql().await;
    blocker
        .query_drop("START TRANSACTION")
        .await
        .expect("begin");
    blocker
        .query_drop(format!(
            "INSERT INTO {0}.dst SELECT * FROM {0}.src WHERE id = 400",
            db.schema
        ))
        .await
        .expect("blocking insert");
    let args = with(
        db.copy_args("src", "dst"),
        &[
            "--lock-timeout",
            "1s",
            "--progress",
            "none",
            "--json",
            "--workers",
            "1",
        ],
    );
    let child = bin()
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    blocker.query_drop("COMMIT").await.expect("commit");
    let out = child.wait_with_output().expect("wait");
    expect_exit(&out, 0);
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("summary");
    assert!(summary["retries"].as_u64() >= Some(1), "{summary}");
    assert_same(&db, "id, customer, note", "id").await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn enum_keys_follow_their_index_order_and_float_keys_are_refused() {
    let db = TestDb::mysql("my_enum").await;
    // ENUM sorts by declaration order, not alphabetically: bounds compared
    // as text would split the table wrongly.
    db.exec(
        "CREATE TABLE {s}.src (kind enum('zeta', 'alpha', 'mid', 'beta', 'omega') NOT NULL, n int NOT NULL, PRIMARY KEY (kind, n));
         INSERT INTO {s}.src SELECT ELT(seq % 5 + 1, 'zeta', 'alpha', 'mid', 'beta', 'omega'), seq FROM seq_1_to_1000;
         CREATE TABLE {s}.dst LIKE {s}.src;
         CREATE TABLE {s}.fsrc (f double PRIMARY KEY);
         INSERT INTO {s}.fsrc VALUES (0.1), (1.2345678901234567);",
    )
    .await;
    copy(&db, "src", "dst", 33, &[]);
    assert_same(&db, "kind, n", "kind, n").await;
    std::fs::remove_file(db.path("job.checkpoint")).expect("checkpoint");
    let out = run(&with(db.copy_args("fsrc", "dst"), &["--progress", "none"]));
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("cannot bound chunks"),
        "{}",
        stderr(&out)
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_pooled_session_has_the_settings_and_none_leaks_a_change() {
    // The pool resets a connection it gets back (or opens a new one): either
    // way the settings must be there, or a session copies in the server's
    // time zone, with long lock waits and without NO_AUTO_VALUE_ON_ZERO.
    let url = rowferry::url::DbUrl::parse(&mysql_url()).expect("URL");
    let settings = rowferry::db::SessionSettings {
        pool_size: 1,
        lock_timeout: std::time::Duration::from_secs(3),
        statement_timeout: std::time::Duration::from_secs(60),
        idle_in_transaction_timeout: None,
    };
    let db = rowferry::db::connect(&url, &settings)
        .await
        .expect("connect");
    for round in 0..3 {
        let mut session = db.session().await.expect("session");
        let rows = session
            .query(
                "SELECT @@time_zone, @@sql_mode, @@tx_isolation, CAST(@@innodb_lock_wait_timeout AS CHAR), @@lc_messages",
                &[],
            )
            .await
            .expect("settings");
        let row: Vec<String> = rows[0]
            .iter()
            .map(|v| v.clone().unwrap_or_default())
            .collect();
        assert_eq!(row[0], "+00:00", "round {round}: {row:?}");
        assert!(
            row[1].contains("STRICT_ALL_TABLES") && row[1].contains("NO_AUTO_VALUE_ON_ZERO"),
            "{row:?}"
        );
        assert_eq!(row[2], "READ-COMMITTED", "round {round}: {row:?}");
        assert_eq!(row[3], "3", "round {round}: {row:?}");
        assert_eq!(row[4], "en_US", "round {round}: {row:?}");
        // Change the session as a careless statement might; the pool's
        // reset and setup must undo it for the next user.
        session
            .query("SET time_zone = '+05:00'", &[])
            .await
            .expect("change the session");
        drop(session);
        // Returning a connection to the pool happens in the background.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn zero_dates_and_tricky_map_text_copy_exactly() {
    let db = TestDb::mysql("my_zero").await;
    db.exec(
        "SET SESSION sql_mode = '';
         CREATE TABLE {s}.src (id int PRIMARY KEY, d datetime NOT NULL, gross int NOT NULL, tax int NOT NULL);
         INSERT INTO {s}.src SELECT seq, IF(seq % 3 = 0, '0000-00-00 00:00:00', '2024-01-02 03:04:05'), seq * 10, seq FROM seq_1_to_300;
         CREATE TABLE {s}.dst (id int PRIMARY KEY, d datetime NOT NULL, net int NOT NULL, note varchar(20));",
    )
    .await;
    // A backquote right after `-`, a quoted ':p1' and a comment in --map.
    copy(
        &db,
        "src",
        "dst",
        40,
        &[
            "--map",
            "net=`gross`-`tax`",
            "--map",
            "note=CONCAT(':p1', '-', id) /* :p2 */",
        ],
    );
    assert_eq!(
        db.checksum("src", "id, d, gross - tax, CONCAT(':p1-', id)", "id")
            .await,
        db.checksum("dst", "id, d, net, note", "id").await
    );
    assert_eq!(
        db.scalar("SELECT CAST(COUNT(*) AS CHAR) FROM {s}.dst WHERE d = '0000-00-00 00:00:00'")
            .await,
        "100"
    );
    db.cleanup().await;
}
