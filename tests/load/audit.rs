//! The API server's audit log (JSON lines, level Metadata): the requests of one user, one entry
//! per request.
//!
//! The control plane's policy omits the `RequestReceived` stage, so an ordinary request has one
//! line (`ResponseComplete`) and a watch two (`ResponseStarted` when it opens, `ResponseComplete`
//! when it closes); lines are joined by `auditID`.
//!
//! A long run outlives one log file: the API server's log rotation (lumberjack, by default at
//! 100 MB, `--audit-log-maxsize`) renames `audit.log` to `audit-<UTC time of the rotation>.log`
//! (`.log.gz` when `--audit-log-compress` is on) in the same directory and starts a new
//! `audit.log`. [`Start`] records where the live file stood when the run began; [`read`] reads
//! that file from there on, whatever its name is now, and every file rotated after it, oldest
//! first ([`segments`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "auditID")]
    audit_id: String,
    stage: String,
    verb: String,
    user: User,
    #[serde(rename = "userAgent", default)]
    user_agent: Option<String>,
    #[serde(rename = "objectRef", default)]
    object_ref: Option<ObjectRef>,
    #[serde(rename = "responseStatus", default)]
    response_status: Option<ResponseStatus>,
    #[serde(rename = "requestReceivedTimestamp")]
    received: DateTime<Utc>,
    #[serde(rename = "stageTimestamp")]
    stage_timestamp: DateTime<Utc>,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    username: String,
}

#[derive(Deserialize, Default)]
struct ObjectRef {
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    subresource: Option<String>,
}

#[derive(Deserialize)]
struct ResponseStatus {
    #[serde(default)]
    code: Option<u16>,
}

/// One request, as the audit log recorded it.
#[derive(Debug, Clone)]
pub struct Request {
    pub verb: String,
    /// `jobs`, `carbonworkloads/status`, ...
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The response code (0 when the log has none, for example a watch still open).
    pub code: u16,
    pub user_agent: Option<String>,
    pub received: DateTime<Utc>,
    /// When the response was complete (the last stage logged).
    pub completed: DateTime<Utc>,
}

impl Request {
    /// create, update, patch or delete (server-side apply is a patch).
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }

    pub fn failed(&self) -> bool {
        self.code >= 400
    }

    /// Rejected by API Priority and Fairness (or another limit): 429 Too Many Requests.
    pub fn throttled(&self) -> bool {
        self.code == 429
    }
}

/// Where the live audit log stood when a run began.
#[derive(Debug, Clone)]
pub struct Start {
    /// The live log (`.../audit.log`).
    pub path: PathBuf,
    /// Its length then: the run's lines follow.
    pub offset: u64,
    /// Its inode then: a rotation renames the file and keeps the inode.
    pub inode: u64,
    /// When the length was read; a file rotated before this holds nothing of the run.
    pub at: DateTime<Utc>,
}

impl Start {
    /// The live log `path` now. Panics with the path when it cannot be read.
    pub fn now(path: &Path) -> Self {
        let at = Utc::now();
        let meta = std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("the audit log {}: {e}", path.display()));
        Self {
            path: path.to_path_buf(),
            offset: meta.len(),
            inode: meta.ino(),
            at,
        }
    }
}

/// One file of the log to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub name: String,
    /// Bytes to skip (of the decompressed content for a `.gz`).
    pub offset: u64,
    pub gzip: bool,
}

/// A file of the log directory: its name and inode.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub inode: u64,
}

/// When a rotated sibling of `live` (`audit.log`) was rotated, and whether it is compressed:
/// lumberjack names it `<stem>-<2006-01-02T15-04-05.000>.<ext>`, in UTC, plus `.gz`.
/// `None` for any other name.
pub fn rotated_at(live: &str, name: &str) -> Option<(DateTime<Utc>, bool)> {
    let (stem, ext) = match live.rfind('.') {
        Some(i) => (&live[..i], &live[i..]),
        None => (live, ""),
    };
    let (name, gzip) = match name.strip_suffix(".gz") {
        Some(n) => (n, true),
        None => (name, false),
    };
    let stamp = name
        .strip_prefix(stem)?
        .strip_prefix('-')?
        .strip_suffix(ext)?;
    let time = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H-%M-%S%.3f").ok()?;
    Some((time.and_utc(), gzip))
}

/// The files holding the run's lines, oldest first, of the directory's `entries`: the file that
/// was live at `start` (found by its inode, or else as the first file rotated after `start.at`)
/// from `start.offset` on, then every file rotated after it, then the live file from 0.
/// Files rotated before the run are left out. The second value is false when the file that was
/// live at `start` was not found by its inode (compressed, or the log was replaced): the offset
/// then applies to the first file rotated after `start.at`.
pub fn segments(start: &Start, entries: &[Entry]) -> (Vec<Segment>, bool) {
    let live = start
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // (rotation time, or None for the live file; entry; compressed), oldest first.
    let mut files: Vec<(Option<DateTime<Utc>>, &Entry, bool)> = entries
        .iter()
        .filter_map(|e| {
            if e.name == live {
                Some((None, e, false))
            } else {
                rotated_at(&live, &e.name).map(|(at, gzip)| (Some(at), e, gzip))
            }
        })
        .collect();
    // None (the live file) sorts first in Option's order: put it last.
    files.sort_by_key(|(at, e, _)| (at.is_none(), *at, e.name.clone()));
    let by_inode = files
        .iter()
        .position(|(_, e, gzip)| !gzip && e.inode == start.inode);
    let first = by_inode.or_else(|| {
        files
            .iter()
            .position(|(at, _, _)| at.is_none_or(|at| at >= start.at))
    });
    let Some(first) = first else {
        return (Vec::new(), false);
    };
    let list = files[first..]
        .iter()
        .enumerate()
        .map(|(i, (_, e, gzip))| Segment {
            name: e.name.clone(),
            offset: if i == 0 { start.offset } else { 0 },
            gzip: *gzip,
        })
        .collect();
    (list, by_inode.is_some())
}

/// The requests of each of `usernames` in the log since `start` (every file of [`segments`]),
/// in the order they were received. Panics with the path when the log cannot be read; lines
/// that are not audit events are counted and returned as the second value. The third value
/// names the files read.
pub fn read(
    start: &Start,
    usernames: &[&str],
) -> (HashMap<String, Vec<Request>>, usize, Vec<String>) {
    let dir = start.path.parent().unwrap_or(Path::new("."));
    let entries: Vec<Entry> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter_map(|d| {
            Some(Entry {
                name: d.file_name().into_string().ok()?,
                inode: d.metadata().ok()?.ino(),
            })
        })
        .collect();
    let (segments, found) = segments(start, &entries);
    let mut notes: Vec<String> = segments
        .iter()
        .map(|s| format!("{} from byte {}", s.name, s.offset))
        .collect();
    if !found {
        notes.push(format!(
            "(the file live at the start, inode {}, was not found; its offset was applied to the first file rotated after {})",
            start.inode, start.at
        ));
    }
    let mut reader: Box<dyn Read> = Box::new(std::io::empty());
    for segment in &segments {
        let path = dir.join(&segment.name);
        let mut part: Box<dyn Read> =
            if segment.gzip {
                // lumberjack's compressed backups; no gzip crate in this build, gzip(1) is.
                let output = Command::new("gzip")
                    .arg("-dc")
                    .arg(&path)
                    .stderr(Stdio::inherit())
                    .output()
                    .unwrap_or_else(|e| panic!("gzip -dc {}: {e}", path.display()));
                assert!(
                    output.status.success(),
                    "gzip -dc {}: {}",
                    path.display(),
                    output.status
                );
                Box::new(std::io::Cursor::new(output.stdout))
            } else {
                Box::new(std::fs::File::open(&path).unwrap_or_else(|e| {
                    panic!("cannot open the audit log {}: {e}", path.display())
                }))
            };
        if segment.offset > 0 {
            std::io::copy(&mut (&mut part).take(segment.offset), &mut std::io::sink())
                .unwrap_or_else(|e| panic!("cannot skip in the audit log {}: {e}", path.display()));
        }
        reader = Box::new(reader.chain(part));
    }
    let (requests, unreadable) = parse(reader, usernames);
    (requests, unreadable, notes)
}

/// [`read`] from any reader.
pub fn parse(reader: impl Read, usernames: &[&str]) -> (HashMap<String, Vec<Request>>, usize) {
    // The quoted names as they appear in the JSON: a cheap filter before parsing the line.
    let needles: Vec<String> = usernames
        .iter()
        .map(|u| format!("\"username\":\"{u}\""))
        .collect();
    let mut by_id: HashMap<String, (String, usize)> = HashMap::new();
    let mut requests: HashMap<String, Vec<Request>> = usernames
        .iter()
        .map(|u| (u.to_string(), Vec::new()))
        .collect();
    let mut unreadable = 0;
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else {
            unreadable += 1;
            continue;
        };
        if !needles.iter().any(|n| line.contains(n.as_str())) {
            continue;
        }
        let Ok(entry) = serde_json::from_str::<Line>(&line) else {
            unreadable += 1;
            continue;
        };
        let Some(list) = requests.get_mut(&entry.user.username) else {
            continue;
        };
        let code = entry
            .response_status
            .as_ref()
            .and_then(|s| s.code)
            .unwrap_or(0);
        if let Some((user, i)) = by_id.get(&entry.audit_id)
            && *user == entry.user.username
        {
            let request = &mut list[*i];
            if entry.stage_timestamp > request.completed {
                request.completed = entry.stage_timestamp;
            }
            if entry.stage == "ResponseComplete" || request.code == 0 {
                request.code = code;
            }
            continue;
        }
        let object = entry.object_ref.unwrap_or_default();
        let resource = match (object.resource, object.subresource) {
            (Some(r), Some(sub)) if !sub.is_empty() => format!("{r}/{sub}"),
            (Some(r), _) => r,
            (None, _) => "(non-resource)".to_string(),
        };
        by_id.insert(entry.audit_id, (entry.user.username.clone(), list.len()));
        list.push(Request {
            verb: entry.verb,
            resource,
            namespace: object.namespace,
            name: object.name,
            code,
            user_agent: entry.user_agent,
            received: entry.received,
            completed: entry.stage_timestamp,
        });
    }
    for list in requests.values_mut() {
        list.sort_by_key(|r| r.received);
    }
    (requests, unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, inode: u64) -> Entry {
        Entry {
            name: name.to_string(),
            inode,
        }
    }

    fn start(inode: u64, at: &str) -> Start {
        Start {
            path: PathBuf::from("/cp/audit.log"),
            offset: 500,
            inode,
            at: at.parse().unwrap(),
        }
    }

    fn names(list: &[Segment]) -> Vec<(&str, u64, bool)> {
        list.iter()
            .map(|s| (s.name.as_str(), s.offset, s.gzip))
            .collect()
    }

    #[test]
    fn rotated_names_are_lumberjacks() {
        let (at, gzip) = rotated_at("audit.log", "audit-2026-12-07T15-37-07.123.log").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-07T15:37:07.123+00:00");
        assert!(!gzip);
        assert!(
            rotated_at("audit.log", "audit-2026-12-07T15-37-07.123.log.gz")
                .unwrap()
                .1
        );
        for other in [
            "audit.log",
            "audit-policy.yaml",
            "audit-2026-12-07.log",
            "other-2026-12-07T15-37-07.123.log",
            "audit-2026-12-07T15-37-07.123.txt",
        ] {
            assert!(rotated_at("audit.log", other).is_none(), "{other}");
        }
    }

    #[test]
    fn no_rotation_reads_the_live_file_from_the_offset() {
        let entries = [
            entry("audit-2026-12-07T10-00-00.000.log", 1),
            entry("audit.log", 2),
            entry("audit-policy.yaml", 3),
        ];
        let (list, found) = segments(&start(2, "2026-12-07T12:00:00Z"), &entries);
        assert!(found);
        assert_eq!(names(&list), vec![("audit.log", 500, false)]);
    }

    #[test]
    fn rotations_during_the_run_are_read_in_time_order() {
        // Listed out of order; the file live at the start (inode 7) was rotated at 12:10.
        let entries = [
            entry("audit.log", 9),
            entry("audit-2026-12-07T12-20-00.000.log", 8),
            entry("audit-2026-12-07T09-00-00.000.log", 5),
            entry("audit-2026-12-07T12-10-00.000.log", 7),
            entry("audit-2026-12-07T11-00-00.000.log", 6),
        ];
        let (list, found) = segments(&start(7, "2026-12-07T12:00:00Z"), &entries);
        assert!(found);
        assert_eq!(
            names(&list),
            vec![
                ("audit-2026-12-07T12-10-00.000.log", 500, false),
                ("audit-2026-12-07T12-20-00.000.log", 0, false),
                ("audit.log", 0, false),
            ]
        );
    }

    #[test]
    fn compressed_backups_are_found_by_time() {
        // Compression writes a new file: the inode is gone, the rotation time tells.
        let entries = [
            entry("audit-2026-12-07T11-00-00.000.log.gz", 11),
            entry("audit-2026-12-07T12-10-00.000.log.gz", 12),
            entry("audit-2026-12-07T12-20-00.000.log", 13),
            entry("audit.log", 14),
        ];
        let (list, found) = segments(&start(7, "2026-12-07T12:00:00Z"), &entries);
        assert!(!found);
        assert_eq!(
            names(&list),
            vec![
                ("audit-2026-12-07T12-10-00.000.log.gz", 500, true),
                ("audit-2026-12-07T12-20-00.000.log", 0, false),
                ("audit.log", 0, false),
            ]
        );
    }

    #[test]
    fn reading_joins_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let line = |id: &str, t: &str| {
            format!(
                r#"{{"auditID":"{id}","stage":"ResponseComplete","verb":"patch","user":{{"username":"op"}},"objectRef":{{"resource":"jobs"}},"responseStatus":{{"code":200}},"requestReceivedTimestamp":"{t}","stageTimestamp":"{t}"}}"#
            ) + "\n"
        };
        let live = dir.path().join("audit.log");
        let before = line("old", "2026-01-01T00:00:00Z");
        std::fs::write(&live, &before).unwrap();
        let started = Start::now(&live);
        let mut first = std::fs::OpenOptions::new()
            .append(true)
            .open(&live)
            .unwrap();
        std::io::Write::write_all(&mut first, line("a", "2026-01-01T00:00:01Z").as_bytes())
            .unwrap();
        drop(first);
        let stamp = (started.at + chrono::TimeDelta::seconds(1)).format("%Y-%m-%dT%H-%M-%S%.3f");
        std::fs::rename(&live, dir.path().join(format!("audit-{stamp}.log"))).unwrap();
        std::fs::write(&live, line("b", "2026-01-01T00:00:02Z")).unwrap();
        let (by_user, unreadable, files) = read(&started, &["op"]);
        assert_eq!(unreadable, 0);
        assert_eq!(files.len(), 2, "{files:?}");
        let ids: Vec<_> = by_user["op"]
            .iter()
            .map(|r| r.received.to_rfc3339())
            .collect();
        assert_eq!(
            ids,
            vec!["2026-01-01T00:00:01+00:00", "2026-01-01T00:00:02+00:00"]
        );
    }

    #[test]
    fn requests_of_one_user_are_joined_by_audit_id() {
        let log = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a","stage":"ResponseComplete","requestURI":"/apis/batch/v1/namespaces/ns/jobs/j","verb":"patch","user":{"username":"op","groups":["x"]},"userAgent":"kube-rs","objectRef":{"resource":"jobs","namespace":"ns","name":"j","apiGroup":"batch","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-01-01T00:00:01.000100Z","stageTimestamp":"2026-01-01T00:00:01.020000Z"}
{"kind":"Event","auditID":"w","stage":"ResponseStarted","verb":"watch","user":{"username":"op"},"objectRef":{"resource":"carbonworkloads","namespace":"ns"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-01-01T00:00:00Z","stageTimestamp":"2026-01-01T00:00:00.1Z"}
{"kind":"Event","auditID":"b","stage":"ResponseComplete","verb":"patch","user":{"username":"other"},"objectRef":{"resource":"jobs"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-01-01T00:00:00Z","stageTimestamp":"2026-01-01T00:00:00Z"}
not json "username":"op"
{"kind":"Event","auditID":"w","stage":"ResponseComplete","verb":"watch","user":{"username":"op"},"objectRef":{"resource":"carbonworkloads","namespace":"ns"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-01-01T00:00:00Z","stageTimestamp":"2026-01-01T00:05:00Z"}
{"kind":"Event","auditID":"c","stage":"ResponseComplete","verb":"patch","user":{"username":"op"},"objectRef":{"resource":"carbonworkloads","namespace":"ns","name":"j","subresource":"status"},"responseStatus":{"code":409},"requestReceivedTimestamp":"2026-01-01T00:00:02Z","stageTimestamp":"2026-01-01T00:00:02Z"}
"#;
        let (by_user, unreadable) = parse(log.as_bytes(), &["op", "nobody"]);
        assert_eq!(unreadable, 1);
        assert!(by_user["nobody"].is_empty());
        let requests = &by_user["op"];
        let summary: Vec<_> = requests
            .iter()
            .map(|r| (r.verb.as_str(), r.resource.as_str(), r.code, r.is_write()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("watch", "carbonworkloads", 200, false),
                ("patch", "jobs", 200, true),
                ("patch", "carbonworkloads/status", 409, true),
            ]
        );
        assert_eq!(
            requests[0].completed.to_rfc3339(),
            "2026-01-01T00:05:00+00:00"
        );
        assert!(requests[2].failed());
        assert_eq!(requests[1].user_agent.as_deref(), Some("kube-rs"));
    }
}
