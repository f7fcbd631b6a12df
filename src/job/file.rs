//! A job file: TOML with the same keys as the command-line flags, plus one
//! section per phase. Parsed into typed phases; every phase's command line
//! is built and checked by clap when the file is loaded, so a bad key or a
//! missing table is reported (exit 2) before anything runs.

use crate::cli::Cli;
use crate::error::{Error, Result};
use clap::{CommandFactory, Parser};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The phases, in the order a job runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhaseKind {
    Expand,
    Sync,
    Copy,
    Backfill,
    Indexes,
    Verify,
    Cutover,
    Contract,
    Cleanup,
}

pub const ALL_PHASES: [PhaseKind; 9] = [
    PhaseKind::Expand,
    PhaseKind::Sync,
    PhaseKind::Copy,
    PhaseKind::Backfill,
    PhaseKind::Indexes,
    PhaseKind::Verify,
    PhaseKind::Cutover,
    PhaseKind::Contract,
    PhaseKind::Cleanup,
];

impl PhaseKind {
    pub fn name(self) -> &'static str {
        match self {
            PhaseKind::Expand => "expand",
            PhaseKind::Sync => "sync",
            PhaseKind::Copy => "copy",
            PhaseKind::Backfill => "backfill",
            PhaseKind::Indexes => "indexes",
            PhaseKind::Verify => "verify",
            PhaseKind::Cutover => "cutover",
            PhaseKind::Contract => "contract",
            PhaseKind::Cleanup => "cleanup",
        }
    }

    pub fn from_name(name: &str) -> Option<PhaseKind> {
        ALL_PHASES.into_iter().find(|p| p.name() == name)
    }

    /// The rowferry subcommand (with its action) a phase runs; DDL phases
    /// run their own SQL.
    pub fn command(self) -> Option<&'static [&'static str]> {
        match self {
            PhaseKind::Expand | PhaseKind::Contract => None,
            PhaseKind::Sync => Some(&["sync", "install"]),
            PhaseKind::Copy => Some(&["copy"]),
            PhaseKind::Backfill => Some(&["backfill"]),
            PhaseKind::Indexes => Some(&["indexes", "rebuild"]),
            PhaseKind::Verify => Some(&["verify"]),
            PhaseKind::Cutover => Some(&["cutover"]),
            PhaseKind::Cleanup => Some(&["cleanup"]),
        }
    }
}

/// Keys of a phase section that are the job's own, not a flag.
const JOB_KEYS: &[(PhaseKind, &str)] = &[
    (PhaseKind::Cutover, "wait-for-file"),
    (PhaseKind::Indexes, "defer"),
];

/// Flags the job sets itself: the checkpoint lives beside the job file so
/// that a rerun resumes, and `--restart` would throw that away each run.
const MANAGED: &[&str] = &["checkpoint", "restart", "state", "drop-old-table"];

/// Keys that only steer how fast or how visibly a job runs; changing them
/// between runs is fine, so they stay out of the fingerprint.
const TUNING: &[&str] = &[
    "workers",
    "chunk-rows",
    "chunk-time",
    "max-chunk-rows",
    "max-chunk-bytes",
    "max-rows-per-sec",
    "pause-file",
    "progress",
    "json",
    "lock-timeout",
    "statement-timeout",
    "max-retries",
    "replica",
    "max-lag",
    "max-load",
    "critical-load",
    "throttle-query",
    "control-socket",
    "metrics-addr",
    "on-event",
    "index-jobs",
    "wait-for-file",
];

/// One DDL statement and how to take it back.
#[derive(Debug, Clone)]
pub struct Ddl {
    pub sql: String,
    pub undo: Option<String>,
}

/// A flag-like key and its value.
pub type Keys = Vec<(String, toml::Value)>;

#[derive(Debug, Clone)]
pub struct Phase {
    pub kind: PhaseKind,
    /// The section's own keys (flags of the phase's command).
    pub keys: Keys,
}

#[derive(Debug, Clone)]
pub struct JobFile {
    pub path: PathBuf,
    pub fingerprint: String,
    /// Top-level keys, given to every phase whose command has the flag.
    pub common: Keys,
    /// The phases present, in running order.
    pub phases: Vec<Phase>,
    pub expand: Vec<Ddl>,
    pub contract: Vec<Ddl>,
    /// `[cutover] wait-for-file`: the cutover waits until this file exists.
    pub wait_for_file: Option<PathBuf>,
    /// `[indexes] defer = true`: the copy drops the target's secondary
    /// indexes first (`copy --defer-indexes`).
    pub defer_indexes: bool,
    /// `rowferry run --progress`: every phase's progress display.
    pub progress: Option<String>,
}

impl JobFile {
    pub fn load(path: &Path) -> Result<JobFile> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::input(format!(
                "cannot read the job file {}: {e}; pass the path of a job TOML file",
                path.display()
            ))
        })?;
        parse(path, &text)
    }

    pub fn has(&self, kind: PhaseKind) -> bool {
        self.phases.iter().any(|p| p.kind == kind)
    }

    pub fn phase(&self, kind: PhaseKind) -> Option<&Phase> {
        self.phases.iter().find(|p| p.kind == kind)
    }

    /// A common or phase value, as text.
    pub fn value(&self, kind: Option<PhaseKind>, key: &str) -> Option<String> {
        let phase = kind.and_then(|k| self.phase(k));
        phase
            .and_then(|p| p.keys.iter().find(|(k, _)| k == key))
            .or_else(|| self.common.iter().find(|(k, _)| k == key))
            .and_then(|(_, v)| scalar_text(v))
    }

    pub fn flag(&self, kind: Option<PhaseKind>, key: &str) -> bool {
        self.value(kind, key).as_deref() == Some("true")
    }

    /// Where a phase keeps its checkpoint: beside the job file, named
    /// after it, so that a rerun finds it.
    pub fn checkpoint_path(&self, kind: PhaseKind) -> PathBuf {
        self.beside(&format!("{}.checkpoint", kind.name()))
    }

    pub fn state_path(&self) -> PathBuf {
        self.beside("state")
    }

    fn beside(&self, suffix: &str) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(format!(".{suffix}"));
        self.path.with_file_name(name)
    }

    /// The command line of `sub` (e.g. `["sync", "remove"]`) for a phase:
    /// common keys the command has, the phase's keys, then `extra`.
    pub fn argv(&self, phase: Option<PhaseKind>, sub: &[&str], extra: &[String]) -> Vec<String> {
        let mut argv: Vec<String> = vec!["rowferry".into()];
        argv.extend(sub.iter().map(|s| s.to_string()));
        let own: &[(String, toml::Value)] = phase
            .and_then(|k| self.phase(k))
            .map_or(&[], |p| p.keys.as_slice());
        let overridden = |k: &str| k == "progress" && self.progress.is_some();
        let given_extra = |k: &str| extra.iter().any(|e| e == &format!("--{k}")) || overridden(k);
        // `indexes` names the table it rebuilds with --table and its
        // database with --target: the copy's target, set by the caller.
        let skip_common: &[&str] = if sub.first() == Some(&"indexes") {
            &["table", "target", "source"]
        } else {
            &[]
        };
        for (k, v) in &self.common {
            if own.iter().any(|(o, _)| o == k)
                || skip_common.contains(&k.as_str())
                || given_extra(k)
                || !accepts(sub[0], k)
            {
                continue;
            }
            push_flag(&mut argv, k, v);
        }
        for (k, v) in own {
            if JOB_KEYS.iter().any(|(_, j)| j == k) || given_extra(k) || !accepts(sub[0], k) {
                continue;
            }
            push_flag(&mut argv, k, v);
        }
        if let Some(mode) = self
            .progress
            .as_ref()
            .filter(|_| accepts(sub[0], "progress"))
        {
            argv.extend(["--progress".to_string(), mode.clone()]);
        }
        argv.extend(extra.iter().cloned());
        argv
    }

    /// Parse a command line built by `argv` with the real CLI.
    pub fn parse_argv(&self, phase: &str, argv: &[String]) -> Result<crate::cli::Command> {
        Cli::try_parse_from(argv).map(|c| c.command).map_err(|e| {
            let text = e.to_string();
            // The message without clap's usage and help hints.
            let first = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.trim_start().starts_with("tip:"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
                .trim_start_matches("error: ")
                .to_string();
            Error::input(format!(
                "{}: [{phase}]: {first} (job file keys are the flags' names without the \
                 leading dashes, e.g. target-table = \"schema.t\")",
                self.path.display()
            ))
        })
    }
}

fn push_flag(argv: &mut Vec<String>, key: &str, value: &toml::Value) {
    match value {
        toml::Value::Boolean(true) => argv.push(format!("--{key}")),
        toml::Value::Boolean(false) => {}
        toml::Value::Array(items) => {
            for item in items {
                push_flag(argv, key, item);
            }
        }
        other => {
            if let Some(text) = scalar_text(other) {
                argv.push(format!("--{key}"));
                argv.push(text);
            }
        }
    }
}

fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        _ => None,
    }
}

/// Whether `rowferry <sub>` has the flag `--<key>`.
pub fn accepts(sub: &str, key: &str) -> bool {
    let cmd = Cli::command();
    cmd.find_subcommand(sub).is_some_and(|c| {
        c.get_arguments()
            .any(|a| a.get_long() == Some(key) && !a.is_positional())
    })
}

/// The line of `key` in `section` (None: top level), for error messages.
fn line_of(text: &str, section: Option<&str>, key: &str) -> Option<usize> {
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            current = Some(t.trim_matches(|c| c == '[' || c == ']').trim().to_string());
            continue;
        }
        let in_section = match section {
            None => current.is_none(),
            Some(s) => current.as_deref() == Some(s),
        };
        let name = t.split('=').next().unwrap_or("").trim().trim_matches('"');
        if in_section && t.contains('=') && name.replace('_', "-") == key {
            return Some(i + 1);
        }
        if section.is_none() && current.is_none() && t.starts_with(key) {
            return Some(i + 1);
        }
    }
    None
}

fn at(path: &Path, text: &str, section: Option<&str>, key: &str) -> String {
    let place = match section {
        Some(s) => format!("[{s}] "),
        None => String::new(),
    };
    match line_of(text, section, key) {
        Some(line) => format!("{}:{line}: {place}", path.display()),
        None => format!("{}: {place}", path.display()),
    }
}

/// `${NAME}` in a string value becomes the environment variable's value.
fn substitute(value: &mut toml::Value, unset: &mut Vec<String>) {
    match value {
        toml::Value::String(s) => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                match after.find('}') {
                    Some(end) => {
                        let name = &after[..end];
                        match std::env::var(name) {
                            Ok(v) => out.push_str(&v),
                            Err(_) => unset.push(name.to_string()),
                        }
                        rest = &after[end + 1..];
                    }
                    None => {
                        out.push_str(&rest[start..]);
                        rest = "";
                    }
                }
            }
            out.push_str(rest);
            *s = out;
        }
        toml::Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, unset)),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| substitute(v, unset)),
        _ => {}
    }
}

fn normalize(key: &str) -> String {
    key.replace('_', "-")
}

pub fn parse(path: &Path, text: &str) -> Result<JobFile> {
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| {
        Error::input(format!(
            "{}: not a valid TOML job file: {}",
            path.display(),
            e.to_string().trim()
        ))
    })?;
    let mut unset = Vec::new();
    for (_, v) in doc.iter_mut() {
        substitute(v, &mut unset);
    }
    if !unset.is_empty() {
        unset.sort();
        unset.dedup();
        return Err(Error::input(format!(
            "{}: environment variable(s) {} used as ${{...}} are not set; export them or write \
             the value in the file",
            path.display(),
            unset.join(", ")
        )));
    }

    let mut common: Keys = Vec::new();
    let mut phases: Vec<Phase> = Vec::new();
    let mut expand = Vec::new();
    let mut contract = Vec::new();
    let mut wait_for_file = None;
    let mut defer_indexes = false;
    for (raw_key, value) in &doc {
        let key = normalize(raw_key);
        let kind = PhaseKind::from_name(&key);
        match (kind, value) {
            (Some(k @ (PhaseKind::Expand | PhaseKind::Contract)), _) => {
                let list = ddl_list(path, text, k.name(), value)?;
                if list.is_empty() {
                    continue;
                }
                if k == PhaseKind::Expand {
                    expand = list;
                } else {
                    contract = list;
                }
                phases.push(Phase {
                    kind: k,
                    keys: Vec::new(),
                });
            }
            (Some(k), toml::Value::Table(t)) => {
                let mut keys = Vec::new();
                for (raw, v) in t {
                    let name = normalize(raw);
                    let job_key = JOB_KEYS.iter().any(|(p, j)| *p == k && *j == name);
                    if MANAGED.contains(&name.as_str()) {
                        return Err(managed(path, text, Some(k.name()), &name));
                    }
                    let sub = k.command().map_or("", |c| c[0]);
                    if !job_key && !accepts(sub, &name) {
                        return Err(Error::input(format!(
                            "{}unknown key `{raw}`: `rowferry {}` has no --{name}{}",
                            at(path, text, Some(k.name()), &name),
                            k.command().map_or(k.name(), |c| c[0]),
                            if k == PhaseKind::Cutover {
                                " (the job's own key here: wait-for-file)"
                            } else if k == PhaseKind::Indexes {
                                " (the job's own key here: defer)"
                            } else {
                                ""
                            }
                        )));
                    }
                    if name == "wait-for-file" {
                        let Some(p) = v.as_str() else {
                            return Err(Error::input(format!(
                                "{}wait-for-file must be a path (a string)",
                                at(path, text, Some(k.name()), &name)
                            )));
                        };
                        wait_for_file = Some(PathBuf::from(p));
                    } else if name == "defer" {
                        let Some(b) = v.as_bool() else {
                            return Err(Error::input(format!(
                                "{}defer must be true or false",
                                at(path, text, Some(k.name()), &name)
                            )));
                        };
                        defer_indexes = b;
                    }
                    keys.push((name, v.clone()));
                }
                phases.push(Phase { kind: k, keys });
            }
            (Some(k), _) => {
                return Err(Error::input(format!(
                    "{}`{raw_key}` is a phase: write it as a section, [{}]",
                    at(path, text, None, &key),
                    k.name()
                )));
            }
            (None, toml::Value::Table(_)) => {
                return Err(Error::input(format!(
                    "{}: unknown section [{raw_key}]; the phases are expand, sync, copy, \
                     backfill, indexes, verify, cutover, contract, cleanup",
                    path.display()
                )));
            }
            (None, _) => {
                if MANAGED.contains(&key.as_str()) {
                    return Err(managed(path, text, None, &key));
                }
                common.push((key, value.clone()));
            }
        }
    }
    phases.sort_by_key(|p| ALL_PHASES.iter().position(|k| *k == p.kind));
    if phases.is_empty() {
        return Err(Error::input(format!(
            "{}: no phase; add at least one of [[expand]], [sync], [copy], [backfill], \
             [indexes], [verify], [cutover], [[contract]], [cleanup]",
            path.display()
        )));
    }
    let has = |k| phases.iter().any(|p| p.kind == k);
    if has(PhaseKind::Copy) && has(PhaseKind::Backfill) {
        return Err(Error::input(format!(
            "{}: [copy] and [backfill] in one job; a job either copies into a new table or \
             updates one in place: split it into two job files",
            path.display()
        )));
    }
    if has(PhaseKind::Indexes) && !(defer_indexes && has(PhaseKind::Copy)) {
        return Err(Error::input(format!(
            "{}: [indexes] rebuilds the indexes a copy deferred: it needs [copy] and \
             `defer = true` in [indexes]",
            path.display()
        )));
    }
    // Every top-level key must be a flag of some phase's command (or of
    // the commands abort runs: sync remove, rollback).
    for (key, _) in &common {
        let used = phases
            .iter()
            .filter_map(|p| p.kind.command())
            .chain([&["rollback"][..]])
            .any(|c| accepts(c[0], key));
        if !used {
            return Err(Error::input(format!(
                "{}unknown key `{key}`: no phase of this job has a --{key} flag (keys are the \
                 flags' names: source, table, target-table, map, where, key, workers, ...)",
                at(path, text, None, key)
            )));
        }
    }
    let fingerprint = fingerprint(&doc);
    let job = JobFile {
        path: path.to_path_buf(),
        fingerprint,
        common,
        phases,
        expand,
        contract,
        wait_for_file,
        defer_indexes,
        progress: None,
    };
    // Build and parse every phase's command line now: a missing table or
    // a bad value is reported before the first phase runs.
    for phase in &job.phases {
        for (name, argv) in super::phases::command_lines(&job, phase.kind) {
            job.parse_argv(name, &argv)?;
        }
    }
    Ok(job)
}

fn managed(path: &Path, text: &str, section: Option<&str>, key: &str) -> Error {
    Error::input(format!(
        "{}`{key}` is managed by the job (checkpoints live beside the job file, a rerun \
         resumes, cleanup drops the old table); leave it out",
        at(path, text, section, key)
    ))
}

fn ddl_list(path: &Path, text: &str, name: &str, value: &toml::Value) -> Result<Vec<Ddl>> {
    let bad = || {
        Error::input(format!(
            "{}{name} must be a list of statements: [[{name}]] sections with sql = \"...\" \
             and optionally undo = \"...\", or {name} = [{{ sql = \"...\", undo = \"...\" }}]",
            at(path, text, None, name)
        ))
    };
    let items = value.as_array().ok_or_else(bad)?;
    let mut out = Vec::new();
    for item in items {
        let t = match item {
            toml::Value::String(s) => {
                out.push(Ddl {
                    sql: s.clone(),
                    undo: None,
                });
                continue;
            }
            toml::Value::Table(t) => t,
            _ => return Err(bad()),
        };
        for k in t.keys() {
            if k != "sql" && k != "undo" {
                return Err(Error::input(format!(
                    "{}: [[{name}]]: unknown key `{k}`; a statement has sql and undo",
                    path.display()
                )));
            }
        }
        let sql = t
            .get("sql")
            .and_then(|v| v.as_str())
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(bad)?;
        let undo = match t.get("undo") {
            None => None,
            Some(v) => Some(v.as_str().ok_or_else(bad)?.to_string()),
        };
        out.push(Ddl {
            sql: sql.to_string(),
            undo,
        });
    }
    Ok(out)
}

/// The hash of what defines the job: everything but the tuning keys and
/// the cutover's hold.
fn fingerprint(doc: &toml::Table) -> String {
    fn strip(v: &toml::Value) -> toml::Value {
        match v {
            toml::Value::Table(t) => toml::Value::Table(
                t.iter()
                    .filter(|(k, _)| !TUNING.contains(&normalize(k).as_str()))
                    .map(|(k, v)| (normalize(k), strip(v)))
                    .collect(),
            ),
            toml::Value::Array(a) => toml::Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    let stripped = strip(&toml::Value::Table(doc.clone()));
    let text = serde_json::to_string(&stripped).unwrap_or_default();
    hex::encode(Sha256::digest(text.as_bytes()))[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = "source = \"postgres://u@h/db\"\ntable = \"s.t\"\n\n[backfill]\nset = \"a = 1\"\nbogus = 3\n";
        let e = parse(Path::new("j.toml"), text).unwrap_err();
        assert!(
            e.message
                .contains("j.toml:6: [backfill] unknown key `bogus`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn missing_table_is_named() {
        let text = "source = \"postgres://u@h/db\"\n[backfill]\nset = \"a = 1\"\n";
        let e = parse(Path::new("j.toml"), text).unwrap_err();
        assert!(e.message.contains("--table"), "{}", e.message);
    }

    #[test]
    fn builds_command_lines() {
        let text = "source = \"postgres://u@h/db\"\ntable = \"s.t\"\ntarget-table = \"s.t2\"\nmap = [\"a=1\", \"b=2\"]\nworkers = 2\n[sync]\n[copy]\nchunk_rows = 10\n[verify]\n";
        let job = parse(Path::new("/x/j.toml"), text).unwrap();
        let copy = job.argv(Some(PhaseKind::Copy), &["copy"], &[]);
        assert!(copy.join(" ").contains("--map a=1 --map b=2"), "{copy:?}");
        assert!(copy.join(" ").contains("--chunk-rows 10"), "{copy:?}");
        let sync = job.argv(Some(PhaseKind::Sync), &["sync", "install"], &[]);
        assert!(!sync.join(" ").contains("workers"), "{sync:?}");
        assert_eq!(
            job.checkpoint_path(PhaseKind::Copy),
            Path::new("/x/j.toml.copy.checkpoint")
        );
    }
}
