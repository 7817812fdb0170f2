//! The API server's audit log (JSON lines, level Metadata): the requests of one user, one entry
//! per request.
//!
//! The control plane's policy omits the `RequestReceived` stage, so an ordinary request has one
//! line (`ResponseComplete`) and a watch two (`ResponseStarted` when it opens, `ResponseComplete`
//! when it closes); lines are joined by `auditID`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use chrono::{DateTime, Utc};
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

/// The requests of each of `usernames` in `path` from byte `offset` on, in the order they were
/// received. Panics with the path when the log cannot be read; lines that are not audit events
/// are counted and returned as the second value.
pub fn read(
    path: &Path,
    offset: u64,
    usernames: &[&str],
) -> (HashMap<String, Vec<Request>>, usize) {
    let mut file = std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("cannot open the audit log {}: {e}", path.display()));
    file.seek(SeekFrom::Start(offset))
        .unwrap_or_else(|e| panic!("cannot seek in the audit log {}: {e}", path.display()));
    parse(file, usernames)
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
