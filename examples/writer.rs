//! examples/writer.rs - an application-like writer, to measure what an
//! online copy costs the application (scripts/bench.sh dualwrite).
//!
//!   cargo run --release --example writer -- \
//!       --url postgres://postgres@127.0.0.1:5432/test --table rowferry_bench.orders \
//!       --connections 4 --seconds 20
//!
//! N connections (default 4), each running single-statement autocommit
//! operations, one at a time, on a table with a bigint primary key `id` and
//! the columns of fixtures/orders_*.sql (customer_id, status, amount,
//! created_at, note):
//!
//!   40%  UPDATE ... SET amount = ... WHERE id = <random key up to max(id)>
//!   30%  INSERT a new key above the starting max(id); connection c of N
//!        takes max + 1 + c, max + 1 + c + N, ... (disjoint key spaces)
//!   15%  SELECT <all columns> ... WHERE id = <random key>
//!   15%  DELETE ... WHERE id = <random key>
//!
//! Random keys are drawn from 1..=max(id) as it was at the start, so most
//! of them hit (the fixture skips every 7th id). The URL scheme picks the
//! engine: postgres:// or postgresql://, mysql:// or mariadb://.
//!
//! It stops after --seconds (0: no limit), when --stop-file appears, or on
//! Ctrl-C, whichever comes first; --ready-file is created once every
//! connection is open and its statements prepared (the clock starts then).
//! Every operation's latency is recorded, failed ones included; at the end
//! one line of JSON goes to stdout:
//!
//!   {"ops":..,"ok":..,"errors":{"total":..,"deadlock":..,"lock_timeout":..,..},
//!    "reconnect_failures":..,
//!    "p50_ms":..,"p95_ms":..,"p99_ms":..,"max_ms":..,"ops_per_sec":..,"by_op":{..}}
//!
//! Errors never stop it: deadlocks, lock waits, serialization failures,
//! duplicate keys and anything else the server says are counted by kind
//! (the first message of each kind goes to stderr); a lost connection is
//! counted and reopened. The table name is written into the SQL as given.

use clap::Parser;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Application-like writer for rowferry benchmarks (one JSON line of latencies)")]
struct Args {
    /// postgres://user@host:5432/db or mysql://user@host:3306/db
    #[arg(long)]
    url: String,
    /// Table to write (schema.table / database.table), with a bigint key `id`
    #[arg(long)]
    table: String,
    /// Concurrent connections
    #[arg(long, default_value_t = 4)]
    connections: u64,
    /// Run this long (0: until --stop-file or Ctrl-C)
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Stop when this file appears (it must not exist at the start)
    #[arg(long)]
    stop_file: Option<PathBuf>,
    /// Created once all connections are ready and the clock starts
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Seed of the random choices
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

// ------------------------------------------------------------------ random

/// xorshift64*: good enough to pick operations and keys.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that nearby seeds diverge; never 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in 0..n (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ------------------------------------------------------------------ operations

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Update,
    Insert,
    Select,
    Delete,
}

impl Op {
    const ALL: [Op; 4] = [Op::Update, Op::Insert, Op::Select, Op::Delete];

    fn pick(rng: &mut Rng) -> Op {
        match rng.below(100) {
            0..40 => Op::Update,
            40..70 => Op::Insert,
            70..85 => Op::Select,
            _ => Op::Delete,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::Update => "update",
            Op::Insert => "insert",
            Op::Select => "select",
            Op::Delete => "delete",
        }
    }
}

/// The values one operation needs.
struct Params {
    key: i64,
    customer_id: i64,
    status: &'static str,
    cents: i64,
    note: String,
}

const STATUSES: [&str; 6] = [
    "new",
    "paid",
    "shipped",
    "delivered",
    "cancelled",
    "refunded",
];

/// Why an operation failed; the JSON's error kinds.
#[derive(Debug)]
struct Failure {
    kind: String,
    message: String,
    /// The connection is gone and must be reopened.
    lost: bool,
}

fn failure(kind: impl Into<String>, message: String, lost: bool) -> Failure {
    Failure {
        kind: kind.into(),
        message,
        lost,
    }
}

const KINDS: [&str; 6] = [
    "deadlock",
    "lock_timeout",
    "serialization",
    "duplicate_key",
    "connection",
    "other",
];

// ------------------------------------------------------------------ engines

enum Engine {
    Postgres,
    Mysql,
}

struct Sql {
    update: String,
    insert: String,
    select: String,
    delete: String,
    max_id: String,
}

impl Sql {
    fn new(engine: &Engine, table: &str) -> Sql {
        let cols = "id, customer_id, status, amount, created_at, note";
        match engine {
            Engine::Postgres => Sql {
                update: format!("UPDATE {table} SET amount = $2::bigint / 100.0 WHERE id = $1"),
                insert: format!(
                    "INSERT INTO {table} ({cols}) VALUES ($1, $2, $3, $4::bigint / 100.0, now(), $5)"
                ),
                select: format!("SELECT {cols} FROM {table} WHERE id = $1"),
                delete: format!("DELETE FROM {table} WHERE id = $1"),
                max_id: format!("SELECT coalesce(max(id), 0)::bigint FROM {table}"),
            },
            Engine::Mysql => Sql {
                update: format!("UPDATE {table} SET amount = ? / 100 WHERE id = ?"),
                insert: format!(
                    "INSERT INTO {table} ({cols}) VALUES (?, ?, ?, ? / 100, NOW(6), ?)"
                ),
                select: format!("SELECT {cols} FROM {table} WHERE id = ?"),
                delete: format!("DELETE FROM {table} WHERE id = ?"),
                max_id: format!("SELECT CAST(COALESCE(MAX(id), 0) AS SIGNED) FROM {table}"),
            },
        }
    }
}

struct PgConn {
    client: tokio_postgres::Client,
    update: tokio_postgres::Statement,
    insert: tokio_postgres::Statement,
    select: tokio_postgres::Statement,
    delete: tokio_postgres::Statement,
}

struct MyConn {
    conn: mysql_async::Conn,
    update: mysql_async::Statement,
    insert: mysql_async::Statement,
    select: mysql_async::Statement,
    delete: mysql_async::Statement,
}

enum Conn {
    Pg(PgConn),
    My(MyConn),
}

fn pg_failure(e: tokio_postgres::Error) -> Failure {
    use tokio_postgres::error::SqlState;
    let message = e.to_string();
    let message = match e.as_db_error() {
        Some(db) => format!("{message}: {}", db.message()),
        None => message,
    };
    match e.code() {
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED => failure("deadlock", message, false),
        Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE => failure("lock_timeout", message, false),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE => {
            failure("serialization", message, false)
        }
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => failure("duplicate_key", message, false),
        Some(c) if c.code().starts_with("08") || c.code().starts_with("57P") => {
            failure("connection", message, true)
        }
        Some(c) => failure(format!("sqlstate_{}", c.code()), message, false),
        None if e.is_closed() => failure("connection", message, true),
        None => failure("other", message, true),
    }
}

fn my_failure(e: mysql_async::Error) -> Failure {
    match e {
        mysql_async::Error::Server(s) => {
            let message = format!("ERROR {} ({}): {}", s.code, s.state, s.message);
            match s.code {
                1213 => failure("deadlock", message, false),
                1205 => failure("lock_timeout", message, false),
                1062 => failure("duplicate_key", message, false),
                // Server shutdown, connection killed.
                1053 | 1927 | 2006 | 2013 => failure("connection", message, true),
                code => failure(format!("mysql_{code}"), message, false),
            }
        }
        mysql_async::Error::Io(_) => failure("connection", e.to_string(), true),
        // Driver or URL trouble: the connection's state is unknown.
        other => failure("other", other.to_string(), true),
    }
}

impl Conn {
    async fn open(engine: &Engine, url: &str, sql: &Sql) -> Result<Conn, Failure> {
        match engine {
            Engine::Postgres => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .map_err(pg_failure)?;
                tokio::spawn(async move {
                    // Its error reaches the caller through the client.
                    let _ = connection.await;
                });
                let update = client.prepare(&sql.update).await.map_err(pg_failure)?;
                let insert = client.prepare(&sql.insert).await.map_err(pg_failure)?;
                let select = client.prepare(&sql.select).await.map_err(pg_failure)?;
                let delete = client.prepare(&sql.delete).await.map_err(pg_failure)?;
                Ok(Conn::Pg(PgConn {
                    client,
                    update,
                    insert,
                    select,
                    delete,
                }))
            }
            Engine::Mysql => {
                use mysql_async::prelude::Queryable;
                let opts = mysql_async::Opts::from_url(url)
                    .map_err(|e| failure("other", e.to_string(), true))?;
                let mut conn = mysql_async::Conn::new(opts).await.map_err(my_failure)?;
                let update = conn.prep(&sql.update).await.map_err(my_failure)?;
                let insert = conn.prep(&sql.insert).await.map_err(my_failure)?;
                let select = conn.prep(&sql.select).await.map_err(my_failure)?;
                let delete = conn.prep(&sql.delete).await.map_err(my_failure)?;
                Ok(Conn::My(MyConn {
                    conn,
                    update,
                    insert,
                    select,
                    delete,
                }))
            }
        }
    }

    async fn max_id(&mut self, sql: &Sql) -> Result<i64, Failure> {
        match self {
            Conn::Pg(c) => {
                let row = c
                    .client
                    .query_one(&sql.max_id, &[])
                    .await
                    .map_err(pg_failure)?;
                row.try_get::<_, i64>(0)
                    .map_err(|e| failure("other", e.to_string(), false))
            }
            Conn::My(c) => {
                use mysql_async::prelude::Queryable;
                let max: Option<i64> = c.conn.query_first(&sql.max_id).await.map_err(my_failure)?;
                Ok(max.unwrap_or(0))
            }
        }
    }

    async fn run(&mut self, op: Op, p: &Params) -> Result<(), Failure> {
        match self {
            Conn::Pg(c) => {
                let r = match op {
                    Op::Update => c.client.execute(&c.update, &[&p.key, &p.cents]).await,
                    Op::Insert => {
                        c.client
                            .execute(
                                &c.insert,
                                &[&p.key, &p.customer_id, &p.status, &p.cents, &p.note],
                            )
                            .await
                    }
                    Op::Select => c.client.query_opt(&c.select, &[&p.key]).await.map(|_| 0),
                    Op::Delete => c.client.execute(&c.delete, &[&p.key]).await,
                };
                r.map(drop).map_err(pg_failure)
            }
            Conn::My(c) => {
                use mysql_async::prelude::Queryable;
                let r = match op {
                    Op::Update => c.conn.exec_drop(&c.update, (p.cents, p.key)).await,
                    Op::Insert => {
                        c.conn
                            .exec_drop(
                                &c.insert,
                                (p.key, p.customer_id, p.status, p.cents, p.note.as_str()),
                            )
                            .await
                    }
                    Op::Select => c
                        .conn
                        .exec_first::<mysql_async::Row, _, _>(&c.select, (p.key,))
                        .await
                        .map(drop),
                    Op::Delete => c.conn.exec_drop(&c.delete, (p.key,)).await,
                };
                r.map_err(my_failure)
            }
        }
    }

    async fn close(self) {
        if let Conn::My(c) = self {
            let _ = c.conn.disconnect().await;
        }
    }
}

// ------------------------------------------------------------------ workers

/// What one connection saw.
#[derive(Default)]
struct Tally {
    /// Latency in microseconds of every operation, by kind of operation.
    latencies: BTreeMap<Op, Vec<u32>>,
    /// Failed operations by kind.
    errors: BTreeMap<String, u64>,
    /// Failed attempts to reopen a lost connection.
    reconnect_failures: u64,
    first_messages: BTreeMap<String, String>,
}

impl Tally {
    fn record(&mut self, op: Op, started: Instant) {
        let us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
        self.latencies.entry(op).or_default().push(us);
    }

    fn fail(&mut self, f: &Failure) {
        *self.errors.entry(f.kind.clone()).or_default() += 1;
        self.note(f);
    }

    fn note(&mut self, f: &Failure) {
        self.first_messages
            .entry(f.kind.clone())
            .or_insert_with(|| f.message.clone());
    }
}

struct Shared {
    engine: Engine,
    url: String,
    sql: Sql,
    stop: AtomicBool,
    /// Keys are drawn from 1..=max_id; inserts go above it.
    max_id: i64,
    connections: u64,
}

async fn work(shared: Arc<Shared>, index: u64, mut conn: Conn, seed: u64) -> Tally {
    let mut rng = Rng::new(seed ^ index.wrapping_mul(0x1000_0000_01B3));
    let mut tally = Tally::default();
    let mut next_insert = 0u64;
    let range = shared.max_id.max(1) as u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let op = Op::pick(&mut rng);
        let key = match op {
            Op::Insert => {
                let key = shared.max_id as u64 + 1 + index + next_insert * shared.connections;
                next_insert += 1;
                key as i64
            }
            _ => (1 + rng.below(range)) as i64,
        };
        let n = rng.next();
        let params = Params {
            key,
            customer_id: (n % 50_000) as i64 + 1,
            status: STATUSES[(n >> 20) as usize % STATUSES.len()],
            cents: ((n >> 32) % 9_999_991) as i64,
            note: format!("writer {index} op {n:x}"),
        };
        let started = Instant::now();
        let result = conn.run(op, &params).await;
        tally.record(op, started);
        if let Err(f) = result {
            tally.fail(&f);
            if f.lost {
                // Reopen (the time this takes is not an operation's).
                loop {
                    if shared.stop.load(Ordering::Relaxed) {
                        return tally;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    match Conn::open(&shared.engine, &shared.url, &shared.sql).await {
                        Ok(c) => {
                            conn = c;
                            break;
                        }
                        Err(f) => {
                            tally.reconnect_failures += 1;
                            tally.note(&f);
                        }
                    }
                }
            }
        }
    }
    conn.close().await;
    tally
}

// ------------------------------------------------------------------ report

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn summary(sorted: &[u32], into: &mut Map<String, Value>) {
    for (name, p) in [("p50_ms", 50.0), ("p95_ms", 95.0), ("p99_ms", 99.0)] {
        into.insert(name.into(), json!(round3(percentile_ms(sorted, p))));
    }
    let max = sorted.last().copied().unwrap_or(0) as f64 / 1000.0;
    into.insert("max_ms".into(), json!(round3(max)));
}

/// The password of a URL, to keep it out of messages.
fn password_of(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(String::from))
        .filter(|p| !p.is_empty())
}

fn scrub(text: &str, password: Option<&str>) -> String {
    match password {
        Some(p) => text.replace(p, "***"),
        None => text.to_string(),
    }
}

fn fail(message: &str, password: Option<&str>) -> ! {
    eprintln!("writer: {}", scrub(message, password));
    std::process::exit(1);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let password = password_of(&args.url);
    let pw = password.as_deref();
    let (engine, url) =
        if args.url.starts_with("postgres://") || args.url.starts_with("postgresql://") {
            (Engine::Postgres, args.url.clone())
        } else if let Some(rest) = args.url.strip_prefix("mariadb://") {
            (Engine::Mysql, format!("mysql://{rest}"))
        } else if args.url.starts_with("mysql://") {
            (Engine::Mysql, args.url.clone())
        } else {
            fail(
                "--url must start with postgres://, postgresql://, mysql:// or mariadb://",
                pw,
            );
        };
    if args.connections == 0 {
        fail("--connections must be at least 1", pw);
    }
    if !(args.seconds.is_finite() && args.seconds >= 0.0) {
        fail("--seconds must be 0 or more", pw);
    }
    if args.seconds == 0.0 && args.stop_file.is_none() {
        eprintln!("writer: no --seconds and no --stop-file: runs until Ctrl-C");
    }
    if let Some(stop) = &args.stop_file
        && stop.exists()
    {
        fail(
            &format!(
                "stop file {} exists already; remove it first",
                stop.display()
            ),
            pw,
        );
    }

    let sql = Sql::new(&engine, &args.table);
    let mut conns = Vec::new();
    for _ in 0..args.connections {
        match Conn::open(&engine, &url, &sql).await {
            Ok(c) => conns.push(c),
            Err(f) => fail(&format!("cannot connect or prepare: {}", f.message), pw),
        }
    }
    let max_id = match conns[0].max_id(&sql).await {
        Ok(m) => m,
        Err(f) => fail(&format!("cannot read max(id): {}", f.message), pw),
    };
    let shared = Arc::new(Shared {
        engine,
        url,
        sql,
        stop: AtomicBool::new(false),
        max_id,
        connections: args.connections,
    });

    let started = Instant::now();
    if let Some(ready) = &args.ready_file
        && let Err(e) = std::fs::write(ready, b"ready\n")
    {
        fail(&format!("cannot create {}: {e}", ready.display()), pw);
    }
    let deadline = (args.seconds > 0.0).then(|| started + Duration::from_secs_f64(args.seconds));
    let watcher = {
        let shared = shared.clone();
        let stop_file = args.stop_file.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let ctrl_c = tokio::signal::ctrl_c();
            tokio::pin!(ctrl_c);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut ctrl_c => break,
                }
                if deadline.is_some_and(|d| Instant::now() >= d)
                    || stop_file.as_ref().is_some_and(|f| f.exists())
                {
                    break;
                }
            }
            shared.stop.store(true, Ordering::Relaxed);
        })
    };

    let workers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| tokio::spawn(work(shared.clone(), i as u64, conn, args.seed)))
        .collect();
    let mut tallies = Vec::new();
    for w in workers {
        match w.await {
            Ok(t) => tallies.push(t),
            Err(e) => fail(&format!("a connection's task failed: {e}"), pw),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    watcher.abort();

    // Merge.
    let mut by_op: BTreeMap<Op, Vec<u32>> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = KINDS.iter().map(|k| (k.to_string(), 0)).collect();
    let mut messages: BTreeMap<String, String> = BTreeMap::new();
    let mut reconnect_failures = 0;
    for t in tallies {
        for (op, mut l) in t.latencies {
            by_op.entry(op).or_default().append(&mut l);
        }
        for (kind, n) in t.errors {
            *errors.entry(kind).or_default() += n;
        }
        reconnect_failures += t.reconnect_failures;
        for (kind, m) in t.first_messages {
            messages.entry(kind).or_insert(m);
        }
    }
    let mut all: Vec<u32> = by_op.values().flatten().copied().collect();
    all.sort_unstable();
    let ops = all.len() as u64;
    let failed: u64 = errors.values().sum();
    let mut errors_json = Map::new();
    errors_json.insert("total".into(), json!(failed));
    for (k, n) in &errors {
        errors_json.insert(k.clone(), json!(n));
    }
    let mut out = Map::new();
    out.insert(
        "engine".into(),
        json!(match shared.engine {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
        }),
    );
    out.insert("connections".into(), json!(args.connections));
    out.insert("seconds".into(), json!(round3(elapsed)));
    out.insert("ops".into(), json!(ops));
    out.insert("ok".into(), json!(ops.saturating_sub(failed)));
    out.insert("errors".into(), Value::Object(errors_json));
    out.insert("reconnect_failures".into(), json!(reconnect_failures));
    summary(&all, &mut out);
    out.insert(
        "ops_per_sec".into(),
        json!((ops as f64 / elapsed.max(1e-9)).round()),
    );
    let mut per_op = Map::new();
    for op in Op::ALL {
        let mut l = by_op.remove(&op).unwrap_or_default();
        l.sort_unstable();
        let mut m = Map::new();
        m.insert("ops".into(), json!(l.len()));
        summary(&l, &mut m);
        per_op.insert(op.name().into(), Value::Object(m));
    }
    out.insert("by_op".into(), Value::Object(per_op));
    for (kind, m) in &messages {
        eprintln!("writer: first {kind} error: {}", scrub(m, pw));
    }
    println!("{}", Value::Object(out));
}
