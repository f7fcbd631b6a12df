//! `Session::transaction_with_bulk_load` over real TDS, against the
//! scripted peer of `fake_tds` (no SQL Server here): what the driver
//! sends, in what order, and what it does with errors, wrong counts and
//! silence. What a SQL Server does with the SQL is for the live tests
//! (`tests/mssql.rs`, `ROWFERRY_TEST_MSSQL`).

use super::fake_tds::{FakeServer, Reply, Request, Rule, session_to};
use super::*;
use crate::dialect::sqlserver::SqlServer;
use crate::dialect::test_support::column;
use std::sync::Mutex;

/// What a server answers: the stage's columns to the metadata query,
/// the rows loaded to a bulk load and, unless `insert` says otherwise,
/// the rows of its slice (`rf_n > @P1 AND rf_n <= @P2`) to each INSERT
/// ... SELECT.
fn server_rule(insert: impl Fn(u64) -> Reply + Send + Sync + 'static) -> Rule {
    let loaded = Arc::new(Mutex::new(0u64));
    Arc::new(move |request: &Request| match request {
        Request::Batch(sql) if sql.starts_with("SELECT TOP 0 ") => {
            Reply::Columns(vec!["c1".into(), "c2".into(), "c3".into()])
        }
        Request::Bulk { rows, .. } => {
            *loaded.lock().unwrap() = rows.len() as u64;
            Reply::Done(rows.len() as u64)
        }
        Request::Rpc { sql, params } if sql.contains("INSERT INTO ") => {
            let bound =
                |i: usize| -> u64 { params[i].as_deref().and_then(|p| p.parse().ok()).unwrap() };
            let loaded = *loaded.lock().unwrap();
            insert(bound(1).min(loaded).saturating_sub(bound(0)))
        }
        _ => Reply::Done(0),
    })
}

fn staged() -> StagedInsert {
    SqlServer.staged_insert(
        "[dbo].[dst]",
        &[
            column("id", "bigint"),
            column("v", "nvarchar(max)"),
            column("b", "varbinary(max)"),
        ],
        true,
        false,
    )
}

fn delete() -> Statement {
    Statement {
        sql: "DELETE FROM [dbo].[dst] WHERE [id] >= @P1 AND [id] <= @P2".into(),
        params: vec!["1".into(), "5000".into()],
    }
}

fn cell(s: &str) -> Option<String> {
    Some(s.to_string())
}

/// Rows that try the encoding: NULL, empty, quotes, control characters,
/// characters outside the BMP, a value of more than one packet.
fn rows() -> Vec<Row> {
    vec![
        vec![cell("1"), cell("plain"), cell("00FF10")],
        vec![cell("2"), None, None],
        vec![cell("3"), cell(""), cell("")],
        vec![
            cell("4"),
            cell("it's \"quoted\"\t\r\n; DROP TABLE x --"),
            cell("00"),
        ],
        vec![cell("5"), cell("żółw 🐢 \u{0}"), None],
        vec![
            cell("6"),
            Some("x".repeat(20_000)),
            Some("AB".repeat(9_000)),
        ],
    ]
}

fn commits(requests: &[Request]) -> bool {
    requests
        .iter()
        .any(|r| matches!(r, Request::Batch(sql) if sql.contains("COMMIT")))
}

#[tokio::test]
async fn a_chunk_is_deleted_bulk_loaded_and_inserted_in_one_transaction() {
    let server = FakeServer::start(server_rule(Reply::Done)).await;
    let mut session = session_to(&server, None).await;
    let load = staged();
    let written = session
        .transaction_with_bulk_load(&[delete()], &load, &rows())
        .await
        .unwrap();
    assert_eq!(written, 6);
    let requests = server.requests();
    // The connection's own setup comes first (none here: the session was
    // opened directly).
    let [
        begin,
        delete_sent,
        create,
        metadata,
        insert_bulk,
        bulk,
        insert,
        drop,
        commit,
    ] = requests.as_slice()
    else {
        panic!("requests: {requests:#?}");
    };
    assert_eq!(begin, &Request::Batch("BEGIN TRANSACTION".into()));
    assert_eq!(
        delete_sent,
        &Request::Rpc {
            sql: delete().sql,
            params: vec![cell("1"), cell("5000")],
        }
    );
    assert_eq!(create, &Request::Batch(load.create_stage.clone()));
    assert_eq!(
        metadata,
        &Request::Batch("SELECT TOP 0 [c1], [c2], [c3] FROM #rowferry_stage".into())
    );
    let Request::Batch(insert_bulk) = insert_bulk else {
        panic!("{insert_bulk:?}");
    };
    assert!(
        insert_bulk.starts_with("INSERT BULK #rowferry_stage ("),
        "{insert_bulk}"
    );
    assert_eq!(
        bulk,
        &Request::Bulk {
            columns: vec!["c1".into(), "c2".into(), "c3".into()],
            rows: rows(),
        },
        "every value arrives as it was read, NULL as NULL"
    );
    assert_eq!(
        insert,
        &Request::Rpc {
            sql: load.insert.clone(),
            params: vec![cell("0"), cell("4000")],
        }
    );
    assert_eq!(drop, &Request::Batch("DROP TABLE #rowferry_stage".into()));
    assert_eq!(commit, &Request::Batch("COMMIT TRANSACTION".into()));
    assert!(session.conn.is_some(), "a good connection is kept");
}

#[tokio::test]
async fn thousands_of_rows_span_many_packets_and_arrive_whole() {
    let server = FakeServer::start(server_rule(Reply::Done)).await;
    let mut session = session_to(&server, None).await;
    let many: Vec<Row> = (0..5_000)
        .map(|i| vec![Some(i.to_string()), Some(format!("row {i} ✓")), None])
        .collect();
    let written = session
        .transaction_with_bulk_load(&[], &staged(), &many)
        .await
        .unwrap();
    assert_eq!(written, 5_000);
    let requests = server.requests();
    let loaded: Vec<&Request> = requests
        .iter()
        .filter(|r| matches!(r, Request::Bulk { .. }))
        .collect();
    assert_eq!(
        loaded,
        [&Request::Bulk {
            columns: vec!["c1".into(), "c2".into(), "c3".into()],
            rows: many,
        }]
    );
    // Into the target 4,000 rows at a time (lock escalation).
    let slices: Vec<&Vec<Option<String>>> = requests
        .iter()
        .filter_map(|r| match r {
            Request::Rpc { sql, params } if sql.starts_with("INSERT INTO ") => Some(params),
            _ => None,
        })
        .collect();
    assert_eq!(
        slices,
        [
            &vec![cell("0"), cell("4000")],
            &vec![cell("4000"), cell("8000")]
        ]
    );
}

#[tokio::test]
async fn no_rows_is_a_rehearsal_rolled_back() {
    let server = FakeServer::start(server_rule(Reply::Done)).await;
    let mut session = session_to(&server, None).await;
    assert_eq!(
        session
            .transaction_with_bulk_load(&[], &staged(), &[])
            .await
            .unwrap(),
        0
    );
    let requests = server.requests();
    assert!(requests.contains(&Request::Bulk {
        columns: vec!["c1".into(), "c2".into(), "c3".into()],
        rows: vec![],
    }));
    // The INSERT still runs (the server compiles its conversions).
    assert!(requests.contains(&Request::Rpc {
        sql: staged().insert,
        params: vec![cell("0"), cell("4000")],
    }));
    assert!(!commits(&requests));
    assert_eq!(
        requests.last(),
        Some(&Request::Batch("ROLLBACK TRANSACTION".into()))
    );
}

#[tokio::test]
async fn identity_insert_is_on_around_the_insert_whose_own_count_is_last() {
    // An AFTER INSERT trigger on the target reports its statements' counts
    // before the INSERT's own.
    let server = FakeServer::start(server_rule(|n| {
        Reply::Statements(vec![Some(99), None, Some(n)])
    }))
    .await;
    let mut session = session_to(&server, None).await;
    let load = SqlServer.staged_insert(
        "[dbo].[dst]",
        &[
            column("id", "int"),
            column("v", "nvarchar(10)"),
            column("w", "int"),
        ],
        false,
        true,
    );
    let rows = vec![vec![cell("7"), cell("x"), None]];
    assert_eq!(
        session
            .transaction_with_bulk_load(&[], &load, &rows)
            .await
            .unwrap(),
        1
    );
    let requests = server.requests();
    let on = Request::Batch("SET IDENTITY_INSERT [dbo].[dst] ON".into());
    let from = requests
        .iter()
        .position(|r| *r == on)
        .expect("IDENTITY_INSERT ON");
    assert_eq!(
        requests[from + 1],
        Request::Rpc {
            sql: load.insert.clone(),
            params: vec![cell("0"), cell("4000")]
        }
    );
    assert_eq!(
        requests[from + 2],
        Request::Batch("SET IDENTITY_INSERT [dbo].[dst] OFF".into())
    );
    assert!(commits(&requests));
}

#[tokio::test]
async fn a_server_error_rolls_back_by_closing_the_connection() {
    let server = FakeServer::start(server_rule(|_| Reply::Error {
        number: 2627,
        message: "Violation of PRIMARY KEY constraint 'pk_dst'. Cannot insert duplicate key in \
                  object 'dbo.dst'. The duplicate key value is (4)."
            .into(),
    }))
    .await;
    let mut session = session_to(&server, None).await;
    let e = session
        .transaction_with_bulk_load(&[delete()], &staged(), &rows())
        .await
        .unwrap_err();
    assert_eq!(e.code.as_deref(), Some("2627"), "{e}");
    assert!(e.message.contains("pk_dst"), "{e}");
    assert!(!commits(&server.requests()));
    assert!(
        session.conn.is_none(),
        "the connection (its transaction, its stage) is closed"
    );
    let again = session.query("SELECT 1", &[]).await.unwrap_err();
    assert!(again.is_retryable(), "{again}");
}

#[tokio::test]
async fn a_count_that_is_not_the_rows_sent_commits_nothing() {
    let server = FakeServer::start(server_rule(|n| Reply::Done(n.saturating_sub(1)))).await;
    let mut session = session_to(&server, None).await;
    let e = session
        .transaction_with_bulk_load(&[], &staged(), &rows())
        .await
        .unwrap_err();
    assert!(
        e.message
            .contains("took 6 of 6 rows by bulk load and inserted 5"),
        "{e}"
    );
    assert!(e.message.contains("bulk_load=false"), "{e}");
    assert!(!commits(&server.requests()));
    assert!(session.conn.is_none());
}

#[tokio::test]
async fn a_silent_server_mid_bulk_load_times_out_and_the_connection_is_closed() {
    let rule: Rule = Arc::new(|request: &Request| match request {
        Request::Batch(sql) if sql.starts_with("SELECT TOP 0 ") => {
            Reply::Columns(vec!["c1".into(), "c2".into(), "c3".into()])
        }
        Request::Bulk { .. } => Reply::Silence,
        _ => Reply::Done(0),
    });
    let server = FakeServer::start(rule).await;
    let mut session = session_to(&server, Some(Duration::from_millis(300))).await;
    let e = session
        .transaction_with_bulk_load(&[], &staged(), &rows())
        .await
        .unwrap_err();
    assert_eq!(e.code.as_deref(), Some(STATEMENT_TIMEOUT_CODE), "{e}");
    assert!(e.message.contains("INSERT BULK #rowferry_stage"), "{e}");
    let requests = server.requests();
    // No Attention into a bulk stream: the connection is closed, which
    // rolls the transaction back.
    assert!(!requests.contains(&Request::Attention), "{requests:#?}");
    assert!(!commits(&requests));
    assert!(session.conn.is_none());
}

#[tokio::test]
async fn bulk_load_false_in_the_url_sends_nothing() {
    let server = FakeServer::start(server_rule(Reply::Done)).await;
    let mut session = session_to(&server, None).await;
    session.bulk_load = false;
    let e = session
        .transaction_with_bulk_load(&[delete()], &staged(), &rows())
        .await
        .unwrap_err();
    assert_eq!(e.message, BULK_LOAD_OFF);
    assert_eq!(e.code.as_deref(), Some(BULK_LOAD_OFF_CODE));
    assert_eq!(server.requests(), []);
}

#[tokio::test]
async fn rows_of_another_width_send_nothing() {
    let server = FakeServer::start(server_rule(Reply::Done)).await;
    let mut session = session_to(&server, None).await;
    let e = session
        .transaction_with_bulk_load(&[], &staged(), &[vec![cell("1")]])
        .await
        .unwrap_err();
    assert!(
        e.message.contains("a row of 1 values for a stage of 3"),
        "{e}"
    );
    assert_eq!(server.requests(), []);
}

#[test]
fn values_over_32767_utf16_units_do_not_fit_the_drivers_bulk_load() {
    let rows = |v: String| vec![vec![cell("1"), Some(v), None]];
    assert!(fits_bulk_load(&rows("x".repeat(32_767))));
    assert!(!fits_bulk_load(&rows("x".repeat(32_768))));
    // Two bytes in UTF-8, one code unit: fits.
    assert!(fits_bulk_load(&rows("é".repeat(32_767))));
    // Four bytes, two code units each.
    assert!(fits_bulk_load(&rows("🐢".repeat(16_383))));
    assert!(!fits_bulk_load(&rows("🐢".repeat(16_384))));
    assert!(fits_bulk_load(&[]));
}

#[tokio::test]
async fn a_value_too_long_for_bulk_load_sends_nothing() {
    let server = FakeServer::start(server_rule(Reply::Done)).await;
    let mut session = session_to(&server, None).await;
    let long = vec![vec![cell("1"), Some("x".repeat(40_000)), None]];
    let e = session
        .transaction_with_bulk_load(&[delete()], &staged(), &long)
        .await
        .unwrap_err();
    assert!(
        e.message.contains("more than 32767 UTF-16 code units"),
        "{e}"
    );
    assert_eq!(server.requests(), []);
}
