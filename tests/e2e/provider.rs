//! A stand-in for the UK Carbon Intensity API on 127.0.0.1, for the provider-outage scenario:
//! a plain `std::net::TcpListener` on a thread answering `GET /intensity/{from}/fw48h` (the
//! national forecast, see `src/forecast/uk.rs` and `/work/shared/providers/uk-national-fw48h.json`)
//! with whatever [`Answer`] the test has set: good half-hourly data, HTTP 500, or a body that is
//! not JSON, optionally after a delay (a slow provider). It records every request it answered.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// What the stand-in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 with the forecast.
    Good,
    /// 500 with a JSON error body (the client retries, then gives up).
    ServerError,
    /// 200 with a body that is not JSON.
    Garbage,
}

impl Answer {
    fn code(self) -> u8 {
        match self {
            Answer::Good => 0,
            Answer::ServerError => 1,
            Answer::Garbage => 2,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            0 => Answer::Good,
            1 => Answer::ServerError,
            _ => Answer::Garbage,
        }
    }
}

/// One request answered: what was answered and the request's path.
#[derive(Debug, Clone)]
pub struct Served {
    pub answer: Answer,
    pub path: String,
}

/// The running stand-in; stops when dropped.
pub struct UkStandIn {
    addr: SocketAddr,
    answer: Arc<AtomicU8>,
    delay_ms: Arc<AtomicU64>,
    served: Arc<Mutex<Vec<Served>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// 48 hours of half-hour slots from the one holding `now`: 300 g/kWh, except one clean slot of 40
/// an hour after the current one (far enough that no scenario reaches it). Returns the slots and
/// the clean slot's start.
pub fn slots_with_one_clean(now: DateTime<Utc>) -> (Vec<(DateTime<Utc>, f64)>, DateTime<Utc>) {
    let slot = now
        .duration_trunc(TimeDelta::minutes(30))
        .expect("a half-hour boundary");
    let clean = slot + TimeDelta::hours(1);
    let slots = (0..96)
        .map(|i| {
            let from = slot + TimeDelta::minutes(30 * i);
            (from, if from == clean { 40.0 } else { 300.0 })
        })
        .collect();
    (slots, clean)
}

/// The national answer for half-hour `slots` (`from`, intensity), in the API's shape.
pub fn national_body(slots: &[(DateTime<Utc>, f64)]) -> String {
    let data: Vec<serde_json::Value> = slots
        .iter()
        .map(|(from, intensity)| {
            let to = *from + TimeDelta::minutes(30);
            let index = if *intensity < 100.0 { "low" } else { "high" };
            serde_json::json!({
                "from": from.format("%Y-%m-%dT%H:%MZ").to_string(),
                "to": to.format("%Y-%m-%dT%H:%MZ").to_string(),
                "intensity": {"forecast": intensity.round() as i64, "actual": null, "index": index},
            })
        })
        .collect();
    serde_json::json!({ "data": data }).to_string()
}

impl UkStandIn {
    /// Listens on a free port of 127.0.0.1, answering [`Answer::Good`] with `body` at first.
    pub fn start(body: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let answer = Arc::new(AtomicU8::new(Answer::Good.code()));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let served: Arc<Mutex<Vec<Served>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (answer, served, stop) = (answer.clone(), served.clone(), stop.clone());
            let delay_ms = delay_ms.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let delay = delay_ms.load(Ordering::SeqCst);
                            if delay > 0 {
                                std::thread::sleep(Duration::from_millis(delay));
                            }
                            let now = Answer::from_code(answer.load(Ordering::SeqCst));
                            if let Some(path) = respond(stream, now, &body) {
                                served
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .push(Served { answer: now, path });
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        Self {
            addr,
            answer,
            delay_ms,
            served,
            stop,
            thread: Some(thread),
        }
    }

    /// The `spec.baseUrl` pointing at it.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, answer: Answer) {
        self.answer.store(answer.code(), Ordering::SeqCst);
    }

    /// Answers every request `delay` late (zero: at once).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Every request answered so far.
    pub fn served(&self) -> Vec<Served> {
        self.served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many requests got `answer`.
    pub fn count(&self, answer: Answer) -> usize {
        self.served().iter().filter(|s| s.answer == answer).count()
    }
}

impl Drop for UkStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request and answers it; returns the request path.
fn respond(mut stream: TcpStream, answer: Answer, body: &str) -> Option<String> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65_536 {
        let n = stream.read(&mut buffer).ok()?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..n]);
    }
    let head = String::from_utf8_lossy(&request);
    let path = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    let (status, content_type, body) = match answer {
        Answer::Good => ("200 OK", "application/json", body.to_string()),
        Answer::ServerError => (
            "500 Internal Server Error",
            "application/json",
            r#"{"error":{"code":"500 Internal Server Error","message":"stand-in outage"}}"#
                .to_string(),
        ),
        Answer::Garbage => (
            "200 OK",
            "application/json",
            "<html><body>not a forecast</body></html>".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).ok()?;
    let _ = stream.flush();
    Some(path)
}
