//! [`ProviderError`]: every way a forecast provider can fail, each with a stable
//! [`category`](ProviderError::category) for metrics and Events and a message saying what to check.
//!
//! Messages never contain credentials: the clients only ever put provider names, URLs without user
//! information, HTTP statuses, parser details about the payload and hints into them.

use std::time::Duration;

use thiserror::Error;

/// Why a forecast could not be obtained.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ProviderError {
    /// The provider configuration is unusable (missing zone, bad base URL, missing credential,
    /// invalid inline points...). Fixing the spec or the flags is the only remedy.
    #[error("{0}")]
    Config(String),
    /// HTTP 401: the credentials were refused.
    #[error("{provider} refused the credentials (HTTP 401): check {check}")]
    Unauthorized {
        /// Provider display name.
        provider: &'static str,
        /// Where the credentials come from, e.g. "the `token` key of Secret em-token".
        check: String,
    },
    /// HTTP 403: the credentials are valid but do not grant this request.
    #[error("{provider} refused the request (HTTP 403): {check}")]
    Forbidden {
        /// Provider display name.
        provider: &'static str,
        /// What to check.
        check: String,
    },
    /// HTTP 404: the region, zone or location is unknown, or the base URL is wrong.
    #[error("{provider} does not know this resource (HTTP 404): {check}")]
    NotFound {
        /// Provider display name.
        provider: &'static str,
        /// What to check.
        check: String,
    },
    /// Another status that retrying cannot fix (400, 422, 501...).
    #[error("{provider} rejected the request (HTTP {status}{detail}): {check}")]
    Rejected {
        /// Provider display name.
        provider: &'static str,
        /// HTTP status code.
        status: u16,
        /// `": "` followed by a short, sanitised excerpt of the provider's answer, or empty.
        detail: String,
        /// What to check.
        check: String,
    },
    /// HTTP 429 on every attempt, or a `Retry-After` longer than the client is willing to wait.
    #[error(
        "{provider} is rate limiting requests (HTTP 429) after {attempts} attempt(s){}: check how many CarbonForecasts share this account and their refreshInterval",
        after_hint(*retry_after)
    )]
    RateLimited {
        /// Provider display name.
        provider: &'static str,
        /// Requests made.
        attempts: u32,
        /// The last `Retry-After` the provider sent.
        retry_after: Option<Duration>,
    },
    /// HTTP 5xx on every attempt.
    #[error(
        "{provider} failed with HTTP {status} after {attempts} attempt(s){}: the service is having trouble; check its status page or the base URL {url}",
        after_hint(*retry_after)
    )]
    ServerError {
        /// Provider display name.
        provider: &'static str,
        /// The last HTTP status.
        status: u16,
        /// Requests made.
        attempts: u32,
        /// The last `Retry-After` the provider sent.
        retry_after: Option<Duration>,
        /// The base URL (never with user information).
        url: String,
    },
    /// No complete answer within the timeout, on every attempt.
    #[error(
        "{provider} did not answer within {}s ({attempts} attempt(s)) at {url}: check the base URL and network egress, or raise the timeout",
        timeout.as_secs_f64()
    )]
    Timeout {
        /// Provider display name.
        provider: &'static str,
        /// The per-request timeout.
        timeout: Duration,
        /// Requests made.
        attempts: u32,
        /// The base URL (never with user information).
        url: String,
    },
    /// The connection could not be made or broke, on every attempt.
    #[error(
        "cannot reach {provider} at {url} ({attempts} attempt(s)): {detail}; check the base URL, DNS and network egress (NetworkPolicy, proxy)"
    )]
    Connect {
        /// Provider display name.
        provider: &'static str,
        /// The base URL (never with user information).
        url: String,
        /// Requests made.
        attempts: u32,
        /// The innermost transport error.
        detail: String,
    },
    /// The answer is not the documented JSON shape (truncated, wrong types, missing fields, too
    /// large).
    #[error(
        "{provider} answered with something other than the documented JSON ({detail}): check that the base URL is the {provider} endpoint"
    )]
    Malformed {
        /// Provider display name.
        provider: &'static str,
        /// Parser detail (position, expected type); never a credential.
        detail: String,
    },
    /// The provider (or its configuration) publishes no such data, for example no measured history
    /// to verify savings against.
    #[error("{provider} {detail}")]
    Unsupported {
        /// Provider display name.
        provider: &'static str,
        /// What it does not publish, and what would.
        detail: String,
    },
    /// Well-formed JSON whose values cannot be used: no points, unsorted or duplicate timestamps,
    /// intensities outside 0..=5000 gCO2eq/kWh, unsupported units.
    #[error("{provider} returned unusable data: {detail}")]
    InvalidData {
        /// Provider display name.
        provider: &'static str,
        /// What exactly is wrong and where.
        detail: String,
    },
}

fn after_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (it asked to wait {}s)", d.as_secs()),
        None => String::new(),
    }
}

impl ProviderError {
    /// A short stable label for metrics and Events: `config`, `unauthorized`, `forbidden`,
    /// `not_found`, `rejected`, `rate_limited`, `server_error`, `timeout`, `connect`,
    /// `malformed`, `invalid_data` or `unsupported`.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::Rejected { .. } => "rejected",
            Self::RateLimited { .. } => "rate_limited",
            Self::ServerError { .. } => "server_error",
            Self::Timeout { .. } => "timeout",
            Self::Connect { .. } => "connect",
            Self::Malformed { .. } => "malformed",
            Self::InvalidData { .. } => "invalid_data",
            Self::Unsupported { .. } => "unsupported",
        }
    }

    /// Whether trying again later may succeed without anyone changing the configuration
    /// (rate limits, server errors, timeouts, connection failures). The controller may retry these
    /// sooner than its refresh interval; the others need a fix.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::ServerError { .. }
                | Self::Timeout { .. }
                | Self::Connect { .. }
        )
    }

    /// How long the provider asked to wait before the next request, if it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::ServerError { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_stable_labels() {
        let p = "WattTime";
        let cases: Vec<(ProviderError, &str, bool)> = vec![
            (ProviderError::Config("x".into()), "config", false),
            (
                ProviderError::Unauthorized {
                    provider: p,
                    check: "c".into(),
                },
                "unauthorized",
                false,
            ),
            (
                ProviderError::Forbidden {
                    provider: p,
                    check: "c".into(),
                },
                "forbidden",
                false,
            ),
            (
                ProviderError::NotFound {
                    provider: p,
                    check: "c".into(),
                },
                "not_found",
                false,
            ),
            (
                ProviderError::Rejected {
                    provider: p,
                    status: 400,
                    detail: String::new(),
                    check: "c".into(),
                },
                "rejected",
                false,
            ),
            (
                ProviderError::RateLimited {
                    provider: p,
                    attempts: 3,
                    retry_after: None,
                },
                "rate_limited",
                true,
            ),
            (
                ProviderError::ServerError {
                    provider: p,
                    status: 502,
                    attempts: 3,
                    retry_after: None,
                    url: "u".into(),
                },
                "server_error",
                true,
            ),
            (
                ProviderError::Timeout {
                    provider: p,
                    timeout: Duration::from_secs(1),
                    attempts: 1,
                    url: "u".into(),
                },
                "timeout",
                true,
            ),
            (
                ProviderError::Connect {
                    provider: p,
                    url: "u".into(),
                    attempts: 1,
                    detail: "refused".into(),
                },
                "connect",
                true,
            ),
            (
                ProviderError::Malformed {
                    provider: p,
                    detail: "d".into(),
                },
                "malformed",
                false,
            ),
            (
                ProviderError::InvalidData {
                    provider: p,
                    detail: "d".into(),
                },
                "invalid_data",
                false,
            ),
        ];
        for (error, category, transient) in cases {
            assert_eq!(error.category(), category, "{error}");
            assert_eq!(error.is_transient(), transient, "{error}");
        }
    }

    #[test]
    fn messages_say_what_to_check() {
        let e = ProviderError::RateLimited {
            provider: "WattTime",
            attempts: 4,
            retry_after: Some(Duration::from_secs(300)),
        };
        assert_eq!(
            e.to_string(),
            "WattTime is rate limiting requests (HTTP 429) after 4 attempt(s) (it asked to wait 300s): check how many CarbonForecasts share this account and their refreshInterval"
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(300)));
        let e = ProviderError::Timeout {
            provider: "Electricity Maps",
            timeout: Duration::from_millis(2500),
            attempts: 2,
            url: "https://api.electricitymap.org/".into(),
        };
        assert_eq!(
            e.to_string(),
            "Electricity Maps did not answer within 2.5s (2 attempt(s)) at https://api.electricitymap.org/: check the base URL and network egress, or raise the timeout"
        );
        assert_eq!(e.retry_after(), None);
    }
}
