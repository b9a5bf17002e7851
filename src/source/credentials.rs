//! Credentials for a repository, read from the data of the Secret that `spec.secretRef` names.
//! The controller reads the Secret; this module only knows its keys.

use std::collections::BTreeMap;

/// What a Secret may hold, by key: `username` + `password` (HTTPS basic or token),
/// `bearerToken`, `ca.crt` (PEM), `identity` (SSH private key) with optional `passphrase`, and
/// `known_hosts` (required with `identity`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub basic: Option<(String, String)>,
    pub bearer_token: Option<String>,
    pub ca_pem: Option<Vec<u8>>,
    pub ssh: Option<SshCredentials>,
}

/// An SSH client key and the host keys it may talk to.
#[derive(Clone, PartialEq, Eq)]
pub struct SshCredentials {
    pub identity: String,
    pub passphrase: Option<String>,
    pub known_hosts: String,
}

/// Why a Secret cannot be used as credentials.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("key {0:?} is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("has `{present}` but not `{missing}`")]
    Incomplete {
        present: &'static str,
        missing: &'static str,
    },
    #[error("has `identity` but no `known_hosts`; SSH needs the server's host keys")]
    MissingKnownHosts,
    #[error("has none of `username`/`password`, `bearerToken`, `ca.crt` or `identity`")]
    Empty,
}

// Secrets hold secrets: never print them, not even in debug logs.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("basic", &self.basic.as_ref().map(|(user, _)| user))
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "***"))
            .field("ca_pem", &self.ca_pem.is_some())
            .field("ssh", &self.ssh.is_some())
            .finish()
    }
}

impl Credentials {
    /// Reads credentials from a Secret (its `data`; the keys are described on the type).
    pub fn from_secret(
        secret: k8s_openapi::api::core::v1::Secret,
    ) -> Result<Self, CredentialsError> {
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.0))
            .collect();
        Self::from_secret_data(&data)
    }

    /// Reads credentials from a Secret's `data`.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Self, CredentialsError> {
        let text = |key: &'static str| -> Result<Option<String>, CredentialsError> {
            data.get(key)
                .map(|bytes| {
                    String::from_utf8(bytes.clone()).map_err(|_| CredentialsError::NotUtf8(key))
                })
                .transpose()
        };
        let basic = match (text("username")?, text("password")?) {
            (Some(user), Some(password)) => Some((user, password)),
            (Some(_), None) => return Err(incomplete("username", "password")),
            (None, Some(_)) => return Err(incomplete("password", "username")),
            (None, None) => None,
        };
        let ssh = match (text("identity")?, text("known_hosts")?) {
            (Some(identity), Some(known_hosts)) => Some(SshCredentials {
                identity,
                passphrase: text("passphrase")?,
                known_hosts,
            }),
            (Some(_), None) => return Err(CredentialsError::MissingKnownHosts),
            (None, _) => None,
        };
        let credentials = Self {
            basic,
            bearer_token: text("bearerToken")?,
            ca_pem: data.get("ca.crt").cloned(),
            ssh,
        };
        if credentials == Self::default() {
            return Err(CredentialsError::Empty);
        }
        Ok(credentials)
    }
}

fn incomplete(present: &'static str, missing: &'static str) -> CredentialsError {
    CredentialsError::Incomplete { present, missing }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn reads_basic_auth_bearer_ca_and_ssh() {
        let basic = Credentials::from_secret_data(&data(&[("username", "u"), ("password", "p")]));
        assert_eq!(basic.unwrap().basic, Some(("u".into(), "p".into())));
        let bearer = Credentials::from_secret_data(&data(&[("bearerToken", "t")])).unwrap();
        assert_eq!(bearer.bearer_token.as_deref(), Some("t"));
        let ca = Credentials::from_secret_data(&data(&[("ca.crt", "PEM")])).unwrap();
        assert_eq!(ca.ca_pem.as_deref(), Some(&b"PEM"[..]));
        let ssh =
            Credentials::from_secret_data(&data(&[("identity", "KEY"), ("known_hosts", "h k v")]));
        let ssh = ssh.unwrap().ssh.unwrap();
        assert_eq!((ssh.identity.as_str(), ssh.passphrase), ("KEY", None));
    }

    #[test]
    fn rejects_incomplete_secrets_with_the_missing_key() {
        let only_user = Credentials::from_secret_data(&data(&[("username", "u")]));
        assert_eq!(only_user, Err(incomplete("username", "password")));
        let no_hosts = Credentials::from_secret_data(&data(&[("identity", "KEY")]));
        assert_eq!(no_hosts, Err(CredentialsError::MissingKnownHosts));
        assert_eq!(
            Credentials::from_secret_data(&data(&[])),
            Err(CredentialsError::Empty)
        );
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let credentials = Credentials::from_secret_data(&data(&[
            ("username", "user"),
            ("password", "hunter2"),
            ("bearerToken", "tok3n"),
        ]))
        .unwrap();
        let printed = format!("{credentials:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("tok3n"),
            "{printed}"
        );
    }
}
