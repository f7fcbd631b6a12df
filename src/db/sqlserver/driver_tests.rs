//! The driver's conversation over real TDS, against the scripted peer of
//! `fake_tds` (no SQL Server here): reads, transactions and their
//! rollback, the compile-only check, timeouts, and the pool's health
//! check. What a SQL Server answers is for `tests/mssql.rs`.

use super::fake_tds::{FakeServer, Reply, Request, Rule, session_to};
use super::*;
use deadpool::managed::Manager as _;

fn cell(s: &str) -> Option<String> {
    Some(s.to_string())
}

fn statement(sql: &str, params: &[&str]) -> Statement {
    Statement {
        sql: sql.into(),
        params: params.iter().map(|p| p.to_string()).collect(),
    }
}

fn rpc(sql: &str, params: &[Option<&str>]) -> Request {
    Request::Rpc {
        sql: sql.into(),
        params: params.iter().map(|p| p.map(str::to_string)).collect(),
    }
}

fn batch(sql: &str) -> Request {
    Request::Batch(sql.into())
}

#[tokio::test]
async fn every_cell_is_read_as_text_and_null_as_none() {
    let rule: Rule = Arc::new(|_: &Request| {
        Reply::Rows(vec![
            vec![cell("1"), None, cell("żółw 🐢")],
            vec![cell("2"), cell(""), cell("x")],
        ])
    });
    let server = FakeServer::start(rule).await;
    let mut session = session_to(&server, None).await;
    let rows = session
        .query("SELECT a, b, c FROM t WHERE id > @P1", &["0".into()])
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            vec![cell("1"), None, cell("żółw 🐢")],
            vec![cell("2"), cell(""), cell("x")],
        ]
    );
    assert_eq!(
        server.requests(),
        [rpc("SELECT a, b, c FROM t WHERE id > @P1", &[Some("0")])]
    );
}

#[tokio::test]
async fn a_transaction_commits_and_counts_each_statement() {
    let rule: Rule = Arc::new(|request: &Request| match request {
        Request::Rpc { sql, .. } if sql.starts_with("DELETE") => Reply::Done(4),
        Request::Rpc { .. } => Reply::Done(2),
        _ => Reply::Done(0),
    });
    let server = FakeServer::start(rule).await;
    let mut session = session_to(&server, None).await;
    let counts = session
        .transaction(&[
            statement("DELETE FROM t WHERE id <= @P1", &["9"]),
            statement("INSERT INTO t VALUES (@P1), (@P2)", &["1", "2"]),
        ])
        .await
        .unwrap();
    assert_eq!(counts, [4, 2]);
    assert_eq!(
        server.requests(),
        [
            batch("BEGIN TRANSACTION"),
            rpc("DELETE FROM t WHERE id <= @P1", &[Some("9")]),
            rpc("INSERT INTO t VALUES (@P1), (@P2)", &[Some("1"), Some("2")]),
            batch("COMMIT TRANSACTION"),
        ]
    );
}

#[tokio::test]
async fn a_failed_statement_rolls_back_and_the_connection_stays_usable() {
    let rule: Rule = Arc::new(|request: &Request| match request {
        Request::Rpc { sql, .. } if sql.starts_with("INSERT") => Reply::Error {
            number: 2627,
            message: "Violation of PRIMARY KEY constraint 'pk_t'. Cannot insert duplicate key \
                      in object 'dbo.t'. The duplicate key value is (1)."
                .into(),
        },
        _ => Reply::Done(1),
    });
    let server = FakeServer::start(rule).await;
    let mut session = session_to(&server, None).await;
    let e = session
        .transaction(&[
            statement("DELETE FROM t WHERE id <= @P1", &["9"]),
            statement("INSERT INTO t VALUES (@P1)", &["1"]),
        ])
        .await
        .unwrap_err();
    assert_eq!(e.code.as_deref(), Some("2627"), "{e}");
    assert_eq!(e.duplicate_key.as_deref(), Some("pk_t"), "{e}");
    assert!(!e.is_retryable(), "{e}");
    assert_eq!(
        server.requests()[3..],
        [batch("IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION")]
    );
    // The error was read to its end: the connection goes on.
    assert!(session.conn.is_some());
    assert_eq!(session.execute("DROP INDEX i ON t").await.unwrap(), 1);
}

#[tokio::test]
async fn a_statement_past_the_timeout_is_cancelled_and_its_connection_closed() {
    let rule: Rule = Arc::new(|request: &Request| match request {
        Request::Rpc { .. } => Reply::Silence,
        _ => Reply::Done(0),
    });
    let server = FakeServer::start(rule).await;
    let mut session = session_to(&server, Some(Duration::from_millis(200))).await;
    let e = session
        .transaction(&[
            statement("UPDATE t SET v = 1 WHERE id = @P1", &["1"]),
            statement("UPDATE t SET v = 2 WHERE id = @P1", &["2"]),
        ])
        .await
        .unwrap_err();
    assert_eq!(e.code.as_deref(), Some(STATEMENT_TIMEOUT_CODE), "{e}");
    assert!(e.message.contains("--statement-timeout (200ms)"), "{e}");
    assert!(e.message.contains("UPDATE t SET v = 1"), "{e}");
    let requests = server.requests();
    assert!(requests.contains(&Request::Attention), "{requests:#?}");
    assert!(
        !requests
            .iter()
            .any(|r| matches!(r, Request::Batch(sql) if sql.contains("COMMIT"))),
        "{requests:#?}"
    );
    assert!(session.conn.is_none(), "never back into the pool");
    let again = session.query("SELECT 1", &[]).await.unwrap_err();
    assert!(again.is_retryable(), "{again}");
}

#[tokio::test]
async fn a_check_compiles_without_running_then_binds_every_name() {
    let server = FakeServer::start(Arc::new(|_: &Request| Reply::Done(0))).await;
    let mut session = session_to(&server, None).await;
    let sql = "INSERT INTO t (a) SELECT @P1 FROM s WHERE b = @P2";
    session.check(sql).await.unwrap();
    let declared = "@P1 nvarchar(max), @P2 nvarchar(max)";
    assert_eq!(
        server.requests(),
        [
            batch(&format!(
                "SET NOEXEC ON; DECLARE {declared}; {sql}; SET NOEXEC OFF;"
            )),
            batch("SET NOEXEC OFF"),
            rpc(
                "EXEC sys.sp_describe_first_result_set @tsql = @P1, @params = @P2",
                &[Some(sql), Some(declared)]
            ),
        ]
    );
    // No parameters: @params is NULL.
    session.check("SELECT a FROM t").await.unwrap();
    assert_eq!(
        server.requests().last(),
        Some(&rpc(
            "EXEC sys.sp_describe_first_result_set @tsql = @P1, @params = @P2",
            &[Some("SELECT a FROM t"), None]
        ))
    );
}

#[tokio::test]
async fn a_check_reports_what_the_server_refuses_and_no_more() {
    let describe_fails = |number: u32| -> Rule {
        Arc::new(move |request: &Request| match request {
            Request::Rpc { sql, .. } if sql.contains("sp_describe_first_result_set") => {
                Reply::Error {
                    number,
                    message: format!("error {number}"),
                }
            }
            Request::Batch(sql) if sql.contains("nope") => Reply::Error {
                number: 207,
                message: "Invalid column name 'nope'.".into(),
            },
            _ => Reply::Done(0),
        })
    };
    // A name the compile finds wrong.
    let server = FakeServer::start(describe_fails(0)).await;
    let mut session = session_to(&server, None).await;
    let e = session.check("SELECT nope FROM t").await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some("207"), "{e}");
    assert!(session.conn.is_some());
    // A missing table, found when names are bound.
    let server = FakeServer::start(describe_fails(208)).await;
    let mut session = session_to(&server, None).await;
    let e = session.check("SELECT a FROM missing").await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some("208"), "{e}");
    // The procedure cannot describe a batch (a temporary table): the
    // compile stands.
    let server = FakeServer::start(describe_fails(11526)).await;
    let mut session = session_to(&server, None).await;
    session.check("SELECT a FROM #stage").await.unwrap();
    // An identity column written under IDENTITY_INSERT, which a check
    // does not run.
    let server = FakeServer::start(describe_fails(544)).await;
    let mut session = session_to(&server, None).await;
    session
        .check("SET IDENTITY_INSERT t ON; INSERT INTO t (id) VALUES (@P1)")
        .await
        .unwrap();
}

#[tokio::test]
async fn the_pool_lends_a_connection_again_only_outside_a_transaction() {
    let trancount = Arc::new(std::sync::Mutex::new("0"));
    let reading = trancount.clone();
    let rule: Rule = Arc::new(move |request: &Request| match request {
        Request::Batch(sql) if sql == "SELECT @@TRANCOUNT" => {
            Reply::Rows(vec![vec![cell(&reading.lock().unwrap())]])
        }
        _ => Reply::Done(0),
    });
    let server = FakeServer::start(rule).await;
    let url = DbUrl::parse(&format!("sqlserver://sa:pw@127.0.0.1:{}/db", server.port)).unwrap();
    let (options, secret) = Options::from_url(&url).unwrap();
    let manager = Manager {
        opener: Arc::new(Opener {
            options,
            secret,
            setup: String::new(),
            url,
        }),
    };
    let mut conn = match session_to(&server, None).await.conn {
        Some(Held::Dedicated(conn)) => *conn,
        _ => unreachable!("a dedicated session"),
    };
    let metrics = Metrics::default();
    assert!(manager.recycle(&mut conn, &metrics).await.is_ok());
    *trancount.lock().unwrap() = "1";
    let refused = manager.recycle(&mut conn, &metrics).await.unwrap_err();
    assert!(
        refused.to_string().contains("left inside a transaction"),
        "{refused}"
    );
}
