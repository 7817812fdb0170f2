//! The thin HTTP shell shared by every network provider: one reqwest client, per-request timeouts,
//! retries with exponential backoff and jitter on 429 and 5xx that honour `Retry-After`, a bounded
//! body size, same-origin redirects only, and the mapping from HTTP statuses to [`ProviderError`].
//!
//! The retry arithmetic ([`RetryPolicy::backoff`], [`RetryPolicy::delay_before_retry`],
//! [`parse_retry_after`]) is pure and tested on its own; only `Shared::get` touches the network,
//! and it retries with backon (see [`crate::retry`]): the policy's delays are its schedule and
//! `Retry-After` adjusts them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::Url;
use reqwest::header::{ACCEPT, HeaderValue, RETRY_AFTER};

use super::ProviderError;
use super::tokens::TokenCache;
use crate::retry::{Backoff, Doubling, Retryable};

/// The `User-Agent` every request carries, so providers can tell who is calling.
pub const USER_AGENT: &str = concat!(
    "carbonshift/",
    env!("CARGO_PKG_VERSION"),
    " (+https://github.com/carbonshift/carbonshift)"
);

/// When and how often a failed request is tried again.
///
/// Retried: HTTP 429, HTTP 5xx except 501, timeouts and connection failures. The delay before
/// retry `n` (0-based) is `min(base_delay × 2ⁿ, max_delay)` scaled by a random factor in
/// [0.5, 1] (jitter, so that many forecasts failing together do not retry together). A
/// `Retry-After` from the provider replaces that delay; when it asks for longer than
/// `max_retry_after`, the client gives up at once and reports the wait in the error instead of
/// calling back too early.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Requests per call, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry, before jitter.
    pub base_delay: Duration,
    /// Largest backoff delay.
    pub max_delay: Duration,
    /// Longest `Retry-After` the client waits for.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 500 ms doubling up to 30 s, `Retry-After` honoured up to 2 minutes.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry `retry` (0 for the first retry) given `unit`, a random number in
    /// [0, 1): `min(base × 2^retry, max) × (0.5 + unit / 2)`.
    pub fn backoff(&self, retry: u32, unit: f64) -> Duration {
        jitter(self.doubling().after(retry.saturating_add(1)), unit)
    }

    /// How long to wait before retry `retry`, or `None` to give up now because the provider's
    /// `Retry-After` is longer than [`max_retry_after`](Self::max_retry_after).
    pub fn delay_before_retry(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<Duration> {
        self.honour_retry_after(retry_after, self.backoff(retry, unit))
    }

    /// `backoff`, replaced by the provider's `Retry-After` when it sent one; `None` (give up) when
    /// that is longer than [`max_retry_after`](Self::max_retry_after).
    fn honour_retry_after(
        &self,
        retry_after: Option<Duration>,
        backoff: Duration,
    ) -> Option<Duration> {
        match retry_after {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait),
            None => Some(backoff),
        }
    }

    /// `base_delay` doubling up to `max_delay`, before jitter.
    fn doubling(&self) -> Doubling {
        Doubling::new(self.base_delay, self.max_delay)
    }

    /// The delays of one call as backon's schedule: [`backoff`](Self::backoff) for retries 0, 1,
    /// … up to `max_attempts − 1` retries, each jittered with a fresh `unit()`.
    fn schedule<F>(&self, mut unit: F) -> impl Backoff + use<F>
    where
        F: FnMut() -> f64 + Send + Sync + Unpin,
    {
        let retries = self.max_attempts.max(1) - 1;
        self.doubling()
            .delays()
            .take(retries as usize)
            .map(move |delay| jitter(delay, unit()))
    }
}

/// `delay × (0.5 + unit / 2)`: between half and all of it.
fn jitter(delay: Duration, unit: f64) -> Duration {
    delay.mul_f64(0.5 + unit.clamp(0.0, 1.0) / 2.0)
}

/// Reads a `Retry-After` header value: delay-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2026 07:28:00 GMT`, read relative to `now`; a date in the past means no wait).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?.to_utc();
    Some((date - now).to_std().unwrap_or(Duration::ZERO))
}

/// Settings of the HTTP client shared by every provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// Longest time for one request, from connecting to the last byte of the body.
    pub timeout: Duration,
    /// Longest time to open a connection.
    pub connect_timeout: Duration,
    /// Retries on 429, 5xx, timeouts and connection failures.
    pub retry: RetryPolicy,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Largest answer accepted, in bytes; larger ones are an error (a week of 5-minute points is
    /// well under 1 MB).
    pub max_body_bytes: usize,
}

impl Default for ClientOptions {
    /// 10 s per request, 5 s to connect, [`RetryPolicy::default`], [`USER_AGENT`], 8 MiB bodies.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            user_agent: USER_AGENT.to_string(),
            max_body_bytes: 8 << 20,
        }
    }
}

/// What every provider built by [`super::build`] shares: the HTTP client (one connection pool),
/// the [`ClientOptions`], the jitter RNG and the WattTime token cache. Cheap to clone; clones share
/// everything.
#[derive(Clone)]
pub struct Shared {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    options: ClientOptions,
    rng: Mutex<SmallRng>,
    tokens: TokenCache,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("options", &self.inner.options)
            .field("watttime_credentials_cached", &self.inner.tokens.len())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Builds the HTTP client. Installs the ring crypto provider for rustls first if none is
    /// installed yet (see [`super::install_crypto_provider`]).
    pub fn new(options: ClientOptions) -> Result<Self, ProviderError> {
        super::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(options.user_agent.clone())
            .connect_timeout(options.connect_timeout)
            .redirect(same_origin_redirects())
            .build()
            .map_err(|e| {
                ProviderError::Config(format!("cannot build the HTTP client: {}", innermost(&e)))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                options,
                rng: Mutex::new(SmallRng::from_os_rng()),
                tokens: TokenCache::default(),
            }),
        })
    }

    /// The options the client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    pub(crate) fn tokens(&self) -> &TokenCache {
        &self.inner.tokens
    }

    fn unit_random(&self) -> f64 {
        self.inner
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random::<f64>()
    }

    /// GETs `url`, retrying per the [`RetryPolicy`]. Returns the final answer when its status is
    /// not retryable (2xx, and 4xx other than 429, and 501) for the caller to interpret with
    /// [`check_status`]; an error when retries are exhausted or the answer is too large.
    pub(crate) async fn get(
        &self,
        provider: &'static str,
        url: &Url,
        auth: &Auth<'_>,
        now: DateTime<Utc>,
    ) -> Result<Reply, ProviderError> {
        let options = &self.inner.options;
        let policy = &options.retry;
        let attempts = AtomicU32::new(0);
        let counter = &attempts;
        let outcome = (move || async move {
            counter.fetch_add(1, Ordering::Relaxed);
            match self.attempt(provider, url, auth, now).await {
                Ok(reply) if retryable(reply.status) => Err(Attempt::Failed(Failure::Status {
                    status: reply.status,
                    retry_after: reply.retry_after,
                })),
                other => other,
            }
        })
        .retry(policy.schedule(|| self.unit_random()))
        .when(|attempt| matches!(attempt, Attempt::Failed(_)))
        .adjust(|attempt, backoff| {
            // No backoff left means the attempts are used up.
            backoff.and_then(|backoff| policy.honour_retry_after(attempt.retry_after(), backoff))
        })
        .notify(|attempt, delay| {
            tracing::debug!(
                provider,
                url = %display_url(url),
                attempt = counter.load(Ordering::Relaxed),
                failure = %attempt.describe(),
                delay_ms = delay.as_millis() as u64,
                "retrying provider request"
            );
        })
        .await;
        match outcome {
            Ok(reply) => Ok(reply),
            Err(Attempt::Fatal(e)) => Err(e),
            Err(Attempt::Failed(failure)) => {
                Err(failure.into_error(provider, url, attempts.load(Ordering::Relaxed), options))
            }
        }
    }

    async fn attempt(
        &self,
        provider: &'static str,
        url: &Url,
        auth: &Auth<'_>,
        now: DateTime<Utc>,
    ) -> Result<Reply, Attempt> {
        let options = &self.inner.options;
        let mut request = self
            .inner
            .client
            .get(url.clone())
            .header(ACCEPT, "application/json")
            .timeout(options.timeout);
        request = match auth {
            Auth::None => request,
            Auth::Header(name, value) => request.header(*name, (*value).clone()),
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now));
        let too_large = || {
            Attempt::Fatal(ProviderError::Malformed {
                provider,
                detail: format!("the answer is larger than {} bytes", options.max_body_bytes),
            })
        };
        if response
            .content_length()
            .is_some_and(|n| n > options.max_body_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > options.max_body_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            body,
            retry_after,
        })
    }
}

/// How a request authenticates. The values are marked sensitive so that they never appear in
/// reqwest's or hyper's debug output.
pub(crate) enum Auth<'a> {
    /// No credential.
    None,
    /// A header such as Electricity Maps' `auth-token` (value already marked sensitive).
    Header(&'static str, &'a HeaderValue),
    /// `Authorization: Bearer`.
    Bearer(&'a str),
    /// `Authorization: Basic`.
    Basic {
        username: &'a str,
        password: &'a str,
    },
}

/// A complete answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub retry_after: Option<Duration>,
}

enum Attempt {
    /// Worth retrying.
    Failed(Failure),
    /// Not worth retrying.
    Fatal(ProviderError),
}

impl Attempt {
    /// The provider's `Retry-After`, if the answer carried one.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Failed(Failure::Status { retry_after, .. }) => *retry_after,
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Failed(failure) => failure.describe(),
            Self::Fatal(e) => e.to_string(),
        }
    }
}

enum Failure {
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    Timeout,
    Transport(String),
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Self::Status { status, .. } => format!("HTTP {status}"),
            Self::Timeout => "timeout".into(),
            Self::Transport(detail) => detail.clone(),
        }
    }

    fn into_error(
        self,
        provider: &'static str,
        url: &Url,
        attempts: u32,
        options: &ClientOptions,
    ) -> ProviderError {
        let url = display_url(url);
        match self {
            Self::Status {
                status: 429,
                retry_after,
            } => ProviderError::RateLimited {
                provider,
                attempts,
                retry_after,
            },
            Self::Status {
                status,
                retry_after,
            } => ProviderError::ServerError {
                provider,
                status,
                attempts,
                retry_after,
                url,
            },
            Self::Timeout => ProviderError::Timeout {
                provider,
                timeout: options.timeout,
                attempts,
                url,
            },
            Self::Transport(detail) => ProviderError::Connect {
                provider,
                url,
                attempts,
                detail,
            },
        }
    }
}

fn transport(e: reqwest::Error) -> Attempt {
    Attempt::Failed(if e.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Transport(innermost(&e))
    })
}

/// The most specific message in an error's source chain ("Connection refused (os error 111)"
/// rather than "error sending request").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

fn retryable(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status) && status != 501
}

fn same_origin_redirects() -> reqwest::redirect::Policy {
    // A custom credential header (Electricity Maps' `auth-token`) would follow a redirect to any
    // host, so only redirects within the same scheme, host and port are followed.
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if attempt.previous().len() > 5 || !same_origin {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// What to tell the user for each non-success status of one endpoint.
pub(crate) struct Hints {
    /// After "check ..." on 401.
    pub credentials: String,
    /// The whole hint on 403.
    pub forbidden: String,
    /// The whole hint on 404.
    pub not_found: String,
    /// The whole hint on other statuses (400, 422, 501, unfollowed redirects...).
    pub rejected: String,
}

/// The body of a 2xx answer, or the error its status means.
pub(crate) fn check_status(
    provider: &'static str,
    reply: Reply,
    hints: &Hints,
    secrets: &[&str],
) -> Result<Vec<u8>, ProviderError> {
    match reply.status {
        200..=299 => Ok(reply.body),
        401 => Err(ProviderError::Unauthorized {
            provider,
            check: hints.credentials.clone(),
        }),
        403 => Err(ProviderError::Forbidden {
            provider,
            check: hints.forbidden.clone(),
        }),
        404 => Err(ProviderError::NotFound {
            provider,
            check: hints.not_found.clone(),
        }),
        status => {
            let excerpt = excerpt(&reply.body, secrets);
            Err(ProviderError::Rejected {
                provider,
                status,
                detail: if excerpt.is_empty() {
                    String::new()
                } else {
                    format!(": {excerpt}")
                },
                check: hints.rejected.clone(),
            })
        }
    }
}

/// A short single-line excerpt of an error body for messages: control characters removed,
/// whitespace collapsed, at most 160 characters, and any of `secrets` replaced by `<redacted>` in
/// case a provider echoes what it was sent.
pub(crate) fn excerpt(body: &[u8], secrets: &[&str]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut text: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "<redacted>");
    }
    if text.chars().count() > 160 {
        text = text.chars().take(157).collect::<String>() + "...";
    }
    text
}

/// Parses a base URL: `http` or `https`, no user information (credentials belong in the Secret),
/// no query or fragment. A trailing `suffix` path segment (`v3`) is dropped so that both
/// `https://api.example.org` and `https://api.example.org/v3` work.
pub(crate) fn base_url(
    provider: &'static str,
    text: &str,
    suffix: Option<&str>,
) -> Result<Url, ProviderError> {
    let bad = |why: &str| {
        ProviderError::Config(format!(
            "the {provider} base URL {:?} {why}; expected for example https://host[:port][/path]",
            text.chars().take(200).collect::<String>()
        ))
    };
    let mut url = Url::parse(text.trim()).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("must use http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Do not echo the URL: it holds a credential.
        return Err(ProviderError::Config(format!(
            "the {provider} base URL must not contain a user name or password; put credentials in the Secret"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty();
    }
    let ends_with_suffix = suffix.is_some_and(|suffix| {
        url.path_segments()
            .and_then(|mut s| s.next_back())
            .is_some_and(|last| last == suffix)
    });
    if ends_with_suffix && let Ok(mut segments) = url.path_segments_mut() {
        segments.pop();
    }
    Ok(url)
}

/// `base` with `segments` appended to its path (each percent-encoded) and `query` pairs.
pub(crate) fn endpoint(base: &Url, segments: &[&str], query: &[(&str, &str)]) -> Url {
    let mut url = base.clone();
    // http(s) URLs always have a path, so path_segments_mut cannot fail here.
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    url
}

/// A URL for messages and logs: scheme, host, port and path, without user information or query.
pub(crate) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// A header value marked sensitive (so it never shows in debug output), or `None` when `value`
/// holds characters an HTTP header cannot carry.
pub(crate) fn sensitive_header(value: &str) -> Option<HeaderValue> {
    let mut header = HeaderValue::from_str(value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(700),
            max_retry_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_between_half_and_full() {
        let p = policy();
        assert_eq!(p.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(2, 0.5), Duration::from_millis(300));
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(700));
        assert_eq!(p.backoff(40, 1.0), Duration::from_millis(700));
    }

    #[test]
    fn retry_after_replaces_backoff_and_too_long_gives_up() {
        let p = policy();
        assert_eq!(
            p.delay_before_retry(0, Some(Duration::from_secs(3)), 0.9),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            p.delay_before_retry(0, Some(Duration::from_secs(60)), 0.9),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            p.delay_before_retry(0, Some(Duration::from_secs(61)), 0.9),
            None
        );
        assert_eq!(
            p.delay_before_retry(1, None, 1.0),
            Some(Duration::from_millis(200))
        );
    }

    #[test]
    fn retry_after_in_seconds_or_http_date() {
        let now = DateTime::parse_from_rfc3339("2026-10-21T07:27:00Z")
            .map(|t| t.to_utc())
            .unwrap_or_default();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
    }

    #[test]
    fn only_429_and_5xx_but_501_are_retried() {
        for status in [429, 500, 502, 503, 504, 599] {
            assert!(retryable(status), "{status}");
        }
        for status in [200, 204, 301, 400, 401, 403, 404, 408, 422, 501] {
            assert!(!retryable(status), "{status}");
        }
    }

    #[test]
    fn base_urls_are_checked_and_version_suffix_dropped() {
        let url = |t: &str| base_url("P", t, Some("v3")).map(|u| u.to_string());
        assert_eq!(
            url("https://api.electricitymap.org/v3"),
            Ok("https://api.electricitymap.org/".into())
        );
        assert_eq!(
            url("https://api.electricitymap.org/v3/"),
            Ok("https://api.electricitymap.org/".into())
        );
        assert_eq!(
            url("http://proxy:8080/em/"),
            Ok("http://proxy:8080/em".into())
        );
        assert_eq!(
            base_url("P", "http://127.0.0.1:9/", None).map(|u| u.to_string()),
            Ok("http://127.0.0.1:9/".into())
        );
        let err = |t: &str| match base_url("P", t, None) {
            Err(ProviderError::Config(m)) => m,
            other => format!("unexpected {other:?}"),
        };
        assert!(
            err("ftp://x").contains("must use http or https"),
            "{}",
            err("ftp://x")
        );
        assert!(err("not a url").contains("is not a URL"));
        assert!(err("https://x/?a=b").contains("must not have a query"));
        let secret = err("https://user:hunter2@x/");
        assert!(secret.contains("must not contain a user name or password"));
        assert!(!secret.contains("hunter2"));
    }

    #[test]
    fn endpoints_append_encoded_segments_and_query() {
        let base = base_url("P", "http://h:1/prefix/", None).unwrap_or_else(|e| panic!("{e}"));
        let url = endpoint(
            &base,
            &["regional", "postcode", "SW1A 1"],
            &[("zone", "US-CAL")],
        );
        assert_eq!(
            url.as_str(),
            "http://h:1/prefix/regional/postcode/SW1A%201?zone=US-CAL"
        );
        assert_eq!(
            display_url(&url),
            "http://h:1/prefix/regional/postcode/SW1A%201"
        );
    }

    #[test]
    fn excerpts_are_short_single_line_and_redacted() {
        assert_eq!(
            excerpt(b"{\"error\":\n  \"bad token abc123\"}\r\n", &["abc123", ""]),
            "{\"error\": \"bad token <redacted>\"}"
        );
        let long = excerpt(&[b'x'; 500], &[]);
        assert_eq!(long.chars().count(), 160);
        assert!(long.ends_with("..."));
        assert_eq!(excerpt(&[0xff, 0xfe, b'a'], &[]), "\u{fffd}\u{fffd}a");
    }

    proptest! {
        #[test]
        fn backoff_is_within_half_and_full_capped_delay(retry in 0u32..64, unit in 0.0f64..1.0) {
            let p = policy();
            let full = p.base_delay.saturating_mul(2u32.saturating_pow(retry.min(31))).min(p.max_delay);
            let d = p.backoff(retry, unit);
            prop_assert!(d >= full / 2 && d <= full);
        }

        #[test]
        fn retry_after_never_panics(text in ".{0,40}") {
            let _ = parse_retry_after(&text, DateTime::<Utc>::UNIX_EPOCH);
        }

        #[test]
        fn excerpt_never_panics_and_stays_short(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let e = excerpt(&body, &["ab"]);
            prop_assert!(e.chars().count() <= 160);
            prop_assert!(!e.contains("ab"));
        }
    }
}
