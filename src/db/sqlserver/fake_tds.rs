//! A scripted TDS peer, for offline tests of the driver's side of the
//! conversation (no SQL Server can run here). It speaks just enough TDS
//! 7.4 to log a tiberius client in without TLS, records every request
//! (SQL batches, `sp_executesql` calls with their text parameters, bulk
//! load rows) and answers each by the test's rule.
//!
//! It is NOT a SQL Server: it checks what the client sends, in what
//! order, and how the client handles answers, errors and silence;
//! nothing of what a server would do with the SQL.

use super::{Held, MsSession, Secret};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::TokioAsyncWriteCompatExt;

/// What the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A SQL batch (`simple_query`): its text.
    Batch(String),
    /// `sp_executesql`: the statement and its parameter values (the
    /// `@params` declaration left out).
    Rpc {
        sql: String,
        params: Vec<Option<String>>,
    },
    /// A bulk load: the column names of its metadata, and its rows.
    Bulk {
        columns: Vec<String>,
        rows: Vec<Vec<Option<String>>>,
    },
    /// An Attention (a cancel).
    Attention,
}

/// How the peer answers a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Done, with this row count.
    Done(u64),
    /// `sp_executesql` of several statements: one DONEINPROC each, with
    /// its row count or (a SET) none.
    Statements(Vec<Option<u64>>),
    /// A result set of no rows whose columns are these names, all
    /// `nvarchar(max) NULL` (what `SELECT TOP 0 * FROM stage` returns).
    Columns(Vec<String>),
    /// A result set of one `nvarchar(max) NULL` column per value of a
    /// row, and these rows.
    Rows(Vec<Vec<Option<String>>>),
    /// A server error.
    Error { number: u32, message: String },
    /// No answer at all.
    Silence,
}

pub type Rule = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

pub struct FakeServer {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeServer {
    pub async fn start(rule: Rule) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, rule.clone(), log.clone()));
            }
        });
        FakeServer { port, requests }
    }

    /// Every request so far, in order (all connections).
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// A session to `server`, as `MsDatabase` makes them but without TLS
/// (which the peer does not speak).
pub(super) async fn session_to(server: &FakeServer, timeout: Option<Duration>) -> MsSession {
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(server.port);
    config.authentication(AuthMethod::sql_server("sa", "Secret!pw"));
    config.encryption(EncryptionLevel::NotSupported);
    let tcp = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let client = Client::connect(config, tcp.compat_write()).await.unwrap();
    MsSession {
        conn: Some(Held::Dedicated(Box::new(client))),
        timeout,
        secret: Secret {
            password: "Secret!pw".into(),
            raw: None,
        },
        bulk_load: true,
    }
}

// Packet types (MS-TDS 2.2.3.1.1).
const SQL_BATCH: u8 = 0x01;
const RPC: u8 = 0x03;
const REPLY: u8 = 0x04;
const ATTENTION: u8 = 0x06;
const BULK_LOAD: u8 = 0x07;
const LOGIN7: u8 = 0x10;
const PRELOGIN: u8 = 0x12;

/// One whole message (its packets joined): type and payload. None at
/// the end of the stream.
async fn read_message(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 8];
        stream.read_exact(&mut header).await.ok()?;
        let length = u16::from_be_bytes([header[2], header[3]]) as usize;
        let mut part = vec![0u8; length.checked_sub(8)?];
        stream.read_exact(&mut part).await.ok()?;
        payload.extend_from_slice(&part);
        if header[1] & 0x01 != 0 {
            return Some((header[0], payload));
        }
    }
}

async fn write_reply(stream: &mut TcpStream, payload: &[u8]) {
    let mut packet = vec![REPLY, 0x01];
    packet.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0, 1, 0]);
    packet.extend_from_slice(payload);
    let _ = stream.write_all(&packet).await;
}

async fn serve(mut stream: TcpStream, rule: Rule, log: Arc<Mutex<Vec<Request>>>) {
    // Prelogin: version, and encryption NOT_SUP (no TLS at all).
    if !matches!(read_message(&mut stream).await, Some((PRELOGIN, _))) {
        return;
    }
    let mut prelogin = vec![0x00, 0, 11, 0, 6, 0x01, 0, 17, 0, 1, 0xFF];
    prelogin.extend_from_slice(&[16, 0, 0x10, 0x00, 0, 0]);
    prelogin.push(0x02);
    write_reply(&mut stream, &prelogin).await;
    if !matches!(read_message(&mut stream).await, Some((LOGIN7, _))) {
        return;
    }
    let mut login = Tokens::default();
    login.login_ack();
    login.done(0xFD, 0, 0);
    write_reply(&mut stream, &login.0).await;
    while let Some((kind, payload)) = read_message(&mut stream).await {
        let mut wire = Wire::new(&payload);
        let request = match kind {
            SQL_BATCH => {
                wire.all_headers();
                Request::Batch(wire.utf16_rest())
            }
            RPC => {
                wire.all_headers();
                wire.rpc()
            }
            BULK_LOAD => wire.bulk(),
            ATTENTION => Request::Attention,
            _ => return,
        };
        log.lock().unwrap().push(request.clone());
        let in_proc = kind == RPC;
        let mut tokens = Tokens::default();
        if request == Request::Attention {
            tokens.done(0xFD, 0x0020, 0);
            write_reply(&mut stream, &tokens.0).await;
            continue;
        }
        match rule(&request) {
            Reply::Silence => continue,
            Reply::Done(rows) if in_proc => {
                tokens.done(0xFF, 0x0010, rows);
                tokens.0.extend_from_slice(&[0x79, 0, 0, 0, 0]);
                tokens.done(0xFE, 0, 0);
            }
            Reply::Done(rows) => tokens.done(0xFD, 0x0010, rows),
            Reply::Statements(counts) => {
                for count in counts {
                    tokens.done(
                        0xFF,
                        if count.is_some() { 0x0011 } else { 0x0001 },
                        count.unwrap_or(0),
                    );
                }
                tokens.0.extend_from_slice(&[0x79, 0, 0, 0, 0]);
                tokens.done(0xFE, 0, 0);
            }
            Reply::Columns(names) => {
                tokens.columns(&names);
                tokens.done(0xFD, 0x0010, 0);
            }
            Reply::Rows(rows) => {
                let width = rows.first().map_or(1, Vec::len);
                tokens.columns(&(1..=width).map(|i| format!("c{i}")).collect::<Vec<_>>());
                for row in &rows {
                    tokens.row(row);
                }
                if in_proc {
                    tokens.done(0xFF, 0x0010, rows.len() as u64);
                    tokens.0.extend_from_slice(&[0x79, 0, 0, 0, 0]);
                    tokens.done(0xFE, 0, 0);
                } else {
                    tokens.done(0xFD, 0x0010, rows.len() as u64);
                }
            }
            Reply::Error { number, message } => {
                tokens.error(number, &message);
                tokens.done(if in_proc { 0xFE } else { 0xFD }, 0x0002, 0);
            }
        }
        write_reply(&mut stream, &tokens.0).await;
    }
}

/// A reply's token stream.
#[derive(Default)]
struct Tokens(Vec<u8>);

impl Tokens {
    fn utf16(&mut self, s: &str) {
        for unit in s.encode_utf16() {
            self.0.extend_from_slice(&unit.to_le_bytes());
        }
    }

    fn b_varchar(&mut self, s: &str) {
        self.0.push(s.encode_utf16().count() as u8);
        self.utf16(s);
    }

    fn login_ack(&mut self) {
        let name = "fake";
        self.0.push(0xAD);
        let length = 1 + 4 + 1 + 2 * name.len() + 4;
        self.0.extend_from_slice(&(length as u16).to_le_bytes());
        self.0.push(1);
        self.0.extend_from_slice(&0x7400_0004u32.to_be_bytes());
        self.b_varchar(name);
        self.0.extend_from_slice(&[16, 0, 0, 0]);
    }

    /// DONE (0xFD), DONEPROC (0xFE) or DONEINPROC (0xFF).
    fn done(&mut self, token: u8, status: u16, rows: u64) {
        self.0.push(token);
        self.0.extend_from_slice(&status.to_le_bytes());
        self.0.extend_from_slice(&0u16.to_le_bytes());
        self.0.extend_from_slice(&rows.to_le_bytes());
    }

    fn columns(&mut self, names: &[String]) {
        self.0.push(0x81);
        self.0
            .extend_from_slice(&(names.len() as u16).to_le_bytes());
        for name in names {
            self.0.extend_from_slice(&0u32.to_le_bytes());
            // Nullable, read/write.
            self.0.extend_from_slice(&0x0005u16.to_le_bytes());
            // nvarchar(max), SQL_Latin1_General_CP1_CI_AS.
            self.0
                .extend_from_slice(&[0xE7, 0xFF, 0xFF, 0x09, 0x04, 0xD0, 0x00, 0x34]);
            self.b_varchar(name);
        }
    }

    /// A ROW of nvarchar(max) values (PLP: NULL, or a length, one chunk
    /// and the terminator).
    fn row(&mut self, values: &[Option<String>]) {
        self.0.push(0xD1);
        for value in values {
            match value {
                None => self.0.extend_from_slice(&u64::MAX.to_le_bytes()),
                Some(text) => {
                    let bytes = 2 * text.encode_utf16().count();
                    self.0.extend_from_slice(&(bytes as u64).to_le_bytes());
                    if bytes > 0 {
                        self.0.extend_from_slice(&(bytes as u32).to_le_bytes());
                        self.utf16(text);
                    }
                    self.0.extend_from_slice(&0u32.to_le_bytes());
                }
            }
        }
    }

    fn error(&mut self, number: u32, message: &str) {
        let (server, procedure) = ("fake", "");
        let length = 4
            + 1
            + 1
            + 2
            + 2 * message.encode_utf16().count()
            + 1
            + 2 * server.len()
            + 1
            + 2 * procedure.len()
            + 4;
        self.0.push(0xAA);
        self.0.extend_from_slice(&(length as u16).to_le_bytes());
        self.0.extend_from_slice(&number.to_le_bytes());
        self.0.push(1);
        self.0.push(16);
        self.0
            .extend_from_slice(&(message.encode_utf16().count() as u16).to_le_bytes());
        self.utf16(message);
        self.b_varchar(server);
        self.b_varchar(procedure);
        self.0.extend_from_slice(&1u32.to_le_bytes());
    }
}

/// A request's payload, read front to back.
struct Wire<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Wire<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Wire { bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let taken = &self.bytes[self.at..self.at + n];
        self.at += n;
        taken
    }

    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take(2).try_into().unwrap())
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }

    fn utf16(&mut self, units: usize) -> String {
        let bytes = self.take(2 * units);
        let units: Vec<u16> = bytes
            .chunks(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]))
            .collect();
        String::from_utf16(&units).unwrap()
    }

    fn utf16_rest(&mut self) -> String {
        let units = (self.bytes.len() - self.at) / 2;
        self.utf16(units)
    }

    fn b_varchar(&mut self) -> String {
        let units = self.u8() as usize;
        self.utf16(units)
    }

    fn all_headers(&mut self) {
        let length = self.u32() as usize;
        self.take(length - 4);
    }

    /// A PLP value (nvarchar(max)): None for NULL.
    fn plp(&mut self) -> Option<String> {
        if self.u64() == u64::MAX {
            return None;
        }
        let mut bytes = Vec::new();
        loop {
            let chunk = self.u32() as usize;
            if chunk == 0 {
                break;
            }
            bytes.extend_from_slice(self.take(chunk));
        }
        Some(Wire::new(&bytes).utf16_rest())
    }

    /// An nvarchar parameter's TYPE_INFO and value (or a NULL's).
    fn nvarchar(&mut self) -> Option<String> {
        let ty = self.u8();
        if ty == 0x1F {
            return None;
        }
        assert_eq!(ty, 0xE7, "a parameter other than nvarchar");
        let max = self.u16();
        self.take(5);
        if max == 0xFFFF {
            return self.plp();
        }
        match self.u16() {
            0xFFFF => None,
            bytes => Some(self.utf16(bytes as usize / 2)),
        }
    }

    fn rpc(&mut self) -> Request {
        assert_eq!(self.u16(), 0xFFFF, "a procedure called by name");
        assert_eq!(self.u16(), 10, "a procedure other than sp_executesql");
        self.u16();
        let mut values = Vec::new();
        while self.at < self.bytes.len() {
            self.b_varchar();
            self.u8();
            values.push(self.nvarchar());
        }
        let sql = values.first().cloned().flatten().unwrap_or_default();
        Request::Rpc {
            sql,
            // After the statement and the @params declaration.
            params: values.into_iter().skip(2).collect(),
        }
    }

    fn bulk(&mut self) -> Request {
        assert_eq!(self.u8(), 0x81, "bulk load without COLMETADATA");
        let count = self.u16() as usize;
        let mut columns = Vec::new();
        for _ in 0..count {
            self.u32();
            self.u16();
            assert_eq!(self.u8(), 0xE7, "a stage column other than nvarchar");
            assert_eq!(
                self.u16(),
                0xFFFF,
                "a stage column other than nvarchar(max)"
            );
            self.take(5);
            columns.push(self.b_varchar());
        }
        let mut rows = Vec::new();
        loop {
            match self.u8() {
                0xD1 => rows.push((0..count).map(|_| self.plp()).collect()),
                0xFD => break,
                other => panic!("unexpected bulk token {other:#x}"),
            }
        }
        Request::Bulk { columns, rows }
    }
}
