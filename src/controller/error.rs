//! Why a reconcile failed, sorted into a small fixed set of categories that the
//! `carbonshift_reconcile_errors_total{category}` metric, the log line and the retry policy of
//! both controllers' `error_policy` share.

use kube::runtime::controller::Action;
use thiserror::Error;

/// Why a reconcile failed. Provider failures are not errors here: they are recorded in the
/// status and retried by the decision itself.
#[derive(Debug, Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Api {
        /// What was attempted, for example `reading Secret carbonshift/em-token`.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The object itself cannot be handled (no name...): wait for it to change.
    #[error("{0}")]
    InvalidObject(String),
    /// A write shared by several reconciles (the CarbonLedger's group commit) failed in another
    /// reconcile; its message and category.
    #[error("{message}")]
    Shared {
        /// What was attempted and why it failed.
        message: String,
        /// The category of the failure.
        category: ErrorCategory,
    },
}

/// What kind of failure an [`Error`] is: the `category` label of the reconcile-error metric, and
/// what decides how soon the reconcile is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// HTTP 409/422: the object changed since it was read; the next read sees the new one.
    Conflict,
    /// HTTP 404: the object is gone.
    NotFound,
    /// HTTP 401/403: the operator's ServiceAccount may not do this (RBAC); retrying soon will
    /// not help, so it is retried at the longest backoff.
    Forbidden,
    /// HTTP 429: API priority and fairness asked the client to slow down.
    Throttled,
    /// HTTP 5xx: the API server (or a webhook or etcd behind it) failed.
    Server,
    /// Any other HTTP 4xx: the request itself was refused (a schema or version mismatch).
    Rejected,
    /// No answer: connection refused or reset, TLS or timeout.
    Unreachable,
    /// The client failed before or after the request (building it, decoding the reply).
    Client,
    /// The object cannot be handled ([`Error::InvalidObject`]).
    Invalid,
}

impl ErrorCategory {
    /// Every category, for tests and dashboards.
    pub const ALL: [ErrorCategory; 9] = [
        ErrorCategory::Conflict,
        ErrorCategory::NotFound,
        ErrorCategory::Forbidden,
        ErrorCategory::Throttled,
        ErrorCategory::Server,
        ErrorCategory::Rejected,
        ErrorCategory::Unreachable,
        ErrorCategory::Client,
        ErrorCategory::Invalid,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Conflict => "conflict",
            ErrorCategory::NotFound => "not_found",
            ErrorCategory::Forbidden => "forbidden",
            ErrorCategory::Throttled => "throttled",
            ErrorCategory::Server => "server",
            ErrorCategory::Rejected => "rejected",
            ErrorCategory::Unreachable => "unreachable",
            ErrorCategory::Client => "client",
            ErrorCategory::Invalid => "invalid",
        }
    }

    /// The category of a client error.
    pub fn of(error: &kube::Error) -> ErrorCategory {
        match error {
            kube::Error::Api(status) => match status.code {
                409 | 422 => ErrorCategory::Conflict,
                404 | 410 => ErrorCategory::NotFound,
                401 | 403 => ErrorCategory::Forbidden,
                429 => ErrorCategory::Throttled,
                500..=599 => ErrorCategory::Server,
                _ => ErrorCategory::Rejected,
            },
            kube::Error::HyperError(_)
            | kube::Error::Service(_)
            | kube::Error::RustlsTls(_)
            | kube::Error::TlsRequired
            | kube::Error::ReadEvents(_) => ErrorCategory::Unreachable,
            _ => ErrorCategory::Client,
        }
    }

    /// When to reconcile again after the `failures`-th failure in a row: never on its own for an
    /// invalid object (its next change triggers one), at the longest backoff when forbidden
    /// (RBAC is fixed by a person, not by retrying), else with exponential backoff
    /// ([`crate::retry::api_backoff`]).
    pub fn retry(self, failures: u32) -> Action {
        match self {
            ErrorCategory::Invalid => Action::await_change(),
            ErrorCategory::Forbidden => Action::requeue(crate::retry::api_backoff(u32::MAX)),
            _ => Action::requeue(crate::retry::api_backoff(failures)),
        }
    }
}

impl Error {
    /// The error's [`ErrorCategory`].
    pub fn kind(&self) -> ErrorCategory {
        match self {
            Self::Api { source, .. } => ErrorCategory::of(source),
            Self::InvalidObject(_) => ErrorCategory::Invalid,
            Self::Shared { category, .. } => *category,
        }
    }

    /// The `category` label of `reconcile_errors`: [`ErrorCategory::as_str`].
    pub fn category(&self) -> &'static str {
        self.kind().as_str()
    }

    /// A mapper for `map_err` that records what was attempted.
    pub fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Api { action, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(Status::failure("refused", "Test").with_code(code)))
    }

    #[test]
    fn errors_are_sorted_into_categories() {
        let e = Error::InvalidObject("no name".into());
        assert_eq!(e.category(), "invalid");
        assert_eq!(e.to_string(), "no name");
        let e = Error::api("reading Secret carbonshift/em")(
            kube::Error::LinesCodecMaxLineLengthExceeded,
        );
        assert_eq!(e.category(), "client");
        assert!(e.to_string().starts_with("reading Secret carbonshift/em: "));
        for (code, category) in [
            (409, "conflict"),
            (422, "conflict"),
            (404, "not_found"),
            (403, "forbidden"),
            (401, "forbidden"),
            (429, "throttled"),
            (500, "server"),
            (503, "server"),
            (400, "rejected"),
        ] {
            assert_eq!(
                Error::api("patching")(status(code)).category(),
                category,
                "{code}"
            );
        }
        let labels: std::collections::BTreeSet<&str> =
            ErrorCategory::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels.len(), ErrorCategory::ALL.len());
    }

    #[test]
    fn the_retry_follows_the_category() {
        assert_eq!(ErrorCategory::Invalid.retry(1), Action::await_change());
        let longest = Action::requeue(crate::retry::api_backoff(u32::MAX));
        assert_eq!(ErrorCategory::Forbidden.retry(1), longest);
        assert_eq!(
            ErrorCategory::Server.retry(1),
            Action::requeue(crate::retry::api_backoff(1))
        );
        assert_ne!(ErrorCategory::Throttled.retry(1), longest);
    }
}
