//! Provider credentials and where they came from. `Debug` redacts every value; error messages name
//! the place to fix (a Secret key, a flag, an environment variable), never the value.

/// Environment variable the CLI reads the Electricity Maps token from.
pub const ENV_EM_TOKEN: &str = "CARBONSHIFT_EM_TOKEN";
/// Environment variable the CLI reads the WattTime user name from.
pub const ENV_WATTTIME_USERNAME: &str = "CARBONSHIFT_WATTTIME_USERNAME";
/// Environment variable the CLI reads the WattTime password from.
pub const ENV_WATTTIME_PASSWORD: &str = "CARBONSHIFT_WATTTIME_PASSWORD";

/// Where credentials came from, so that errors can say what to check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CredentialSource {
    /// Not said; [`super::build`] fills in the Secret named by `spec.credentialsSecretRef`.
    #[default]
    Unspecified,
    /// The Secret with this name in the operator's namespace.
    Secret(String),
    /// `carbonshift forecast` flags or their environment variables.
    CommandLine,
}

/// The keys of a credentials Secret (or the CLI flags). Values are trimmed when used, so a Secret
/// made from a file with a trailing newline works.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Electricity Maps API token (Secret key `token`).
    pub token: Option<String>,
    /// WattTime user name (Secret key `username`).
    pub username: Option<String>,
    /// WattTime password (Secret key `password`).
    pub password: Option<String>,
    /// Where they came from, for error messages.
    pub source: CredentialSource,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("Credentials")
            .field("token", &shown(&self.token))
            .field("username", &shown(&self.username))
            .field("password", &shown(&self.password))
            .field("source", &self.source)
            .finish()
    }
}

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl Credentials {
    /// The token, trimmed, if set and not blank.
    pub fn token(&self) -> Option<&str> {
        present(&self.token)
    }

    /// The user name, trimmed, if set and not blank.
    pub fn username(&self) -> Option<&str> {
        present(&self.username)
    }

    /// The password, trimmed, if set and not blank.
    pub fn password(&self) -> Option<&str> {
        present(&self.password)
    }

    /// Where to check the token: completes "check ...".
    pub fn token_hint(&self) -> String {
        match &self.source {
            CredentialSource::Secret(name) => format!("the `token` key of Secret {name}"),
            CredentialSource::CommandLine => format!("--token (or {ENV_EM_TOKEN})"),
            CredentialSource::Unspecified => {
                "the `token` key of the Secret in spec.credentialsSecretRef".into()
            }
        }
    }

    /// Where to check the user name and password: completes "check ...".
    pub fn login_hint(&self) -> String {
        match &self.source {
            CredentialSource::Secret(name) => {
                format!("the `username` and `password` keys of Secret {name}")
            }
            CredentialSource::CommandLine => format!(
                "--username and --password (or {ENV_WATTTIME_USERNAME} and {ENV_WATTTIME_PASSWORD})"
            ),
            CredentialSource::Unspecified => {
                "the `username` and `password` keys of the Secret in spec.credentialsSecretRef"
                    .into()
            }
        }
    }

    /// What to do when `keys` are missing, completing "<provider> needs ...: ".
    pub(crate) fn missing_hint(&self, keys: &str) -> String {
        match &self.source {
            CredentialSource::Secret(name) => {
                format!("Secret {name} has no non-empty {keys}")
            }
            CredentialSource::CommandLine => match keys {
                "key `token`" => format!("pass --token or set {ENV_EM_TOKEN}"),
                _ => format!(
                    "pass --username and --password or set {ENV_WATTTIME_USERNAME} and {ENV_WATTTIME_PASSWORD}"
                ),
            },
            CredentialSource::Unspecified => {
                format!("set spec.credentialsSecretRef to a Secret with {keys}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_values() {
        let c = Credentials {
            token: Some("tok-secret".into()),
            username: Some("alice".into()),
            password: Some("hunter2".into()),
            source: CredentialSource::Secret("wt".into()),
        };
        let shown = format!("{c:?}");
        for secret in ["tok-secret", "alice", "hunter2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn values_are_trimmed_and_blank_means_missing() {
        let c = Credentials {
            token: Some(" tok\n".into()),
            username: Some("  ".into()),
            password: None,
            source: CredentialSource::CommandLine,
        };
        assert_eq!(c.token(), Some("tok"));
        assert_eq!(c.username(), None);
        assert_eq!(c.password(), None);
    }

    #[test]
    fn hints_name_the_place_to_fix() {
        let mut c = Credentials {
            source: CredentialSource::Secret("em".into()),
            ..Credentials::default()
        };
        assert_eq!(c.token_hint(), "the `token` key of Secret em");
        assert_eq!(
            c.missing_hint("key `token`"),
            "Secret em has no non-empty key `token`"
        );
        c.source = CredentialSource::CommandLine;
        assert_eq!(c.token_hint(), "--token (or CARBONSHIFT_EM_TOKEN)");
        assert_eq!(
            c.missing_hint("keys `username` and `password`"),
            "pass --username and --password or set CARBONSHIFT_WATTTIME_USERNAME and CARBONSHIFT_WATTTIME_PASSWORD"
        );
        c.source = CredentialSource::Unspecified;
        assert_eq!(
            c.login_hint(),
            "the `username` and `password` keys of the Secret in spec.credentialsSecretRef"
        );
    }
}
