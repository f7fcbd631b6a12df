//! Bad input: exit 2, one paragraph naming the problem and the fix, no
//! password in the output, and nothing written (no target rows, no
//! checkpoint file).

mod common;
use common::*;
use std::io::{Read, Write};

async fn tables(db: &TestDb) {
    db.exec(
        "CREATE TABLE {s}.src (id int PRIMARY KEY, email text, code text NOT NULL, maybe int);
         CREATE UNIQUE INDEX src_code ON {s}.src (code);
         INSERT INTO {s}.src SELECT g, 'e' || g, 'c' || g, NULL FROM generate_series(1, 100) g;
         CREATE TABLE {s}.dst (LIKE {s}.src INCLUDING ALL);
         CREATE TABLE {s}.nokey (a int, b text);
         CREATE TABLE {s}.dst_nounique (id int, email text, code text, maybe int);
         CREATE VIEW {s}.v AS SELECT * FROM {s}.src;",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_tables_columns_and_keys() {
    let db = TestDb::new("badnames").await;
    tables(&db).await;
    refused(
        &db,
        db.copy_args("nope", "dst"),
        &format!("table {}.nope does not exist", db.schema),
    )
    .await;
    refused(&db, db.copy_args("src", "nope"), "--target-table: table").await;
    refused(
        &db,
        with(db.copy_args("src", "dst"), &["--map", "nope=id"]),
        "no column `nope`",
    )
    .await;
    refused(
        &db,
        with(db.copy_args("src", "dst"), &["--key", "nope"]),
        "--key: table",
    )
    .await;
    refused(
        &db,
        with(db.copy_args("src", "dst"), &["--key", "maybe"]),
        "is nullable",
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
        with(db.copy_args("nokey", "dst"), &[]),
        "no usable key",
    )
    .await;
    refused(&db, db.copy_args("v", "dst"), "is a view, not a table").await;
    refused(&db, db.copy_args("src", "src"), "copy into another table").await;
    refused(
        &db,
        db.copy_args("src", "dst_nounique"),
        "has no unique index on (id)",
    )
    .await;
    let mut three_parts = db.copy_args("src", "dst");
    three_parts[4] = "a.b.c".into();
    refused(&db, three_parts, "has 3 parts").await;
    // A unique NOT NULL --key is accepted (and copies everything).
    let ok = run(&with(
        db.copy_args("src", "dst"),
        &["--key", "code", "--progress", "none"],
    ));
    expect_exit(&ok, 0);
    assert_eq!(db.count("dst").await, 100);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_sql_in_where_or_map_is_caught_before_any_write() {
    let db = TestDb::new("badsql").await;
    tables(&db).await;
    let err = refused(
        &db,
        with(db.copy_args("src", "dst"), &["--where", "id >>> 3"]),
        "the server rejected the copy statement",
    )
    .await;
    assert!(err.contains("--where"), "{err}");
    refused(
        &db,
        with(
            db.copy_args("src", "dst"),
            &["--map", "email=no_such_column"],
        ),
        "no_such_column",
    )
    .await;
    refused(
        &db,
        with(db.copy_args("src", "dst"), &["--where", "1; DROP TABLE x"]),
        "rejected",
    )
    .await;
    refused(
        &db,
        with(db.copy_args("src", "dst"), &["--map", "email"]),
        "is not COLUMN=EXPRESSION",
    )
    .await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_urls_and_unreachable_servers() {
    let db = TestDb::new("badurl").await;
    tables(&db).await;
    let swap_source = |url: &str| {
        let mut args = db.copy_args("src", "dst");
        args[2] = url.to_string();
        args
    };
    let err = refused(
        &db,
        swap_source("postgres//admin:hunter2@127.0.0.1/test"),
        "malformed connection URL",
    )
    .await;
    assert!(!err.contains("hunter2"), "{err}");
    let err = refused(
        &db,
        swap_source("oracle://admin:hunter2@127.0.0.1/test"),
        "unsupported URL scheme",
    )
    .await;
    assert!(!err.contains("hunter2"), "{err}");
    let err = refused(
        &db,
        swap_source("postgres://admin:hunter2@127.0.0.1:1/test"),
        "check that the server is running",
    )
    .await;
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("admin:***@127.0.0.1:1"), "{err}");
    let err = refused(
        &db,
        swap_source("postgres://no_such_role_rf:hunter2@127.0.0.1:5432/test"),
        "no_such_role_rf",
    )
    .await;
    assert!(!err.contains("hunter2"), "{err}");
    let err = refused(
        &db,
        swap_source("postgres://postgres:hunter2@127.0.0.1:5432/no_such_db_rf"),
        "check the database name",
    )
    .await;
    assert!(!err.contains("hunter2"), "{err}");
    // Nothing listens on port 1: SQL Server unreachable, said with the fix.
    let err = refused(
        &db,
        swap_source("sqlserver://sa:hunter2@127.0.0.1:1/master"),
        "check that the server is running",
    )
    .await;
    assert!(!err.contains("hunter2"), "{err}");
    db.cleanup().await;
}

/// A server that asks for a password and rejects it, as PostgreSQL does
/// under md5/scram auth (the local test server trusts everyone).
fn password_rejecting_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        if let Ok((mut sock, _)) = listener.accept() {
            let read_message = |sock: &mut std::net::TcpStream, with_tag: bool| -> Vec<u8> {
                let mut head = vec![0u8; if with_tag { 5 } else { 4 }];
                if sock.read_exact(&mut head).is_err() {
                    return Vec::new();
                }
                let n = &head[head.len() - 4..];
                let len = u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize;
                let mut body = vec![0u8; len.saturating_sub(4)];
                let _ = sock.read_exact(&mut body);
                body
            };
            let mut startup = read_message(&mut sock, false);
            if startup.starts_with(&80877103u32.to_be_bytes()) {
                // SSLRequest: no TLS here.
                let _ = sock.write_all(b"N");
                startup = read_message(&mut sock, false);
            }
            assert!(!startup.is_empty());
            // AuthenticationCleartextPassword, then read the password.
            let _ = sock.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]);
            let _ = read_message(&mut sock, true);
            let mut fields = Vec::new();
            for (tag, value) in [
                (b'S', "FATAL"),
                (b'V', "FATAL"),
                (b'C', "28P01"),
                (b'M', "password authentication failed for user \"alice\""),
            ] {
                fields.push(tag);
                fields.extend_from_slice(value.as_bytes());
                fields.push(0);
            }
            fields.push(0);
            let mut msg = vec![b'E'];
            msg.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
            msg.extend_from_slice(&fields);
            let _ = sock.write_all(&msg);
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_is_named_without_showing_it() {
    let db = TestDb::new("badpw").await;
    tables(&db).await;
    let port = password_rejecting_server();
    let mut args = db.copy_args("src", "dst");
    args[2] = format!("postgres://alice:Sup3rS3cret@127.0.0.1:{port}/test");
    let err = refused(&db, args, "password authentication failed for user `alice`").await;
    assert!(err.contains("check the password in the URL"), "{err}");
    assert!(!err.contains("Sup3rS3cret"), "{err}");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unwritable_checkpoint_and_usage_errors() {
    let db = TestDb::new("badckpt").await;
    tables(&db).await;
    let mut args = db.copy_args("src", "dst");
    let n = args.len();
    args[n - 1] = "/nonexistent-dir/rf.checkpoint".into();
    refused(&db, args, "--checkpoint: cannot write checkpoint").await;
    // Usage errors come from the argument parser, also exit 2.
    let out = run_strs(&["copy", "--source", &pg_url()]);
    expect_exit(&out, 2);
    assert!(stderr(&out).contains("--table"), "{}", stderr(&out));
    let out = run_strs(&[
        "copy",
        "--source",
        &pg_url(),
        "--table",
        "a",
        "--target-table",
        "b",
        "--workers",
        "0",
    ]);
    expect_exit(&out, 2);
    let out = run_strs(&[
        "status",
        "--checkpoint",
        db.path("absent").to_str().unwrap(),
    ]);
    expect_exit(&out, 2);
    assert!(
        stderr(&out).contains("no checkpoint at"),
        "{}",
        stderr(&out)
    );
    db.cleanup().await;
}
