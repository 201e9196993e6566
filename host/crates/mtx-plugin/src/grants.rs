//! Capability grants a run config may give a plugin (MTX-SPEC 10.10) and their parsing.
//!
//! A plugin gets nothing that is not listed here: no inherited environment, arguments,
//! stdio, network or files. Grants are parsed strictly; an unknown capability string is
//! an error that names it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// One capability granted to a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grant {
    /// `fs.read:<dir>`: the directory is preopened read-only.
    FsRead(PathBuf),
    /// `fs.write:<dir>`: the directory is preopened read-write.
    FsWrite(PathBuf),
    /// `net.http:<host>[:<port>]`: outgoing HTTP to that host (and port, if given).
    NetHttp { host: String, port: Option<u16> },
    /// `env:<NAME>`: the host's value of the variable is passed through.
    Env(String),
    /// `secrets.use:<id>`: the secret is exposed as `MTX_SECRET_<ID>`.
    SecretsUse(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error(
        "unknown capability `{0}` (expected fs.read:<dir>, fs.write:<dir>, net.http:<host>[:<port>], env:<NAME> or secrets.use:<id>)"
    )]
    Unknown(String),
    #[error("capability `{0}` needs a scope after the colon")]
    MissingScope(String),
    #[error("capability `{capability}`: {reason}")]
    BadScope { capability: String, reason: String },
}

impl FromStr for Grant {
    type Err = GrantError;

    fn from_str(s: &str) -> Result<Self, GrantError> {
        let (axis, scope) = s.split_once(':').ok_or_else(|| match s {
            "fs.read" | "fs.write" | "net.http" | "env" | "secrets.use" => {
                GrantError::MissingScope(s.to_owned())
            }
            _ => GrantError::Unknown(s.to_owned()),
        })?;
        if scope.is_empty() {
            return Err(GrantError::MissingScope(s.to_owned()));
        }
        let bad = |reason: &str| GrantError::BadScope { capability: s.to_owned(), reason: reason.to_owned() };
        match axis {
            "fs.read" | "fs.write" => {
                let path = PathBuf::from(scope);
                if !path.is_absolute() {
                    return Err(bad("the directory must be an absolute path"));
                }
                Ok(if axis == "fs.read" { Grant::FsRead(path) } else { Grant::FsWrite(path) })
            }
            "net.http" => {
                let (host, port) = match scope.rsplit_once(':') {
                    Some((h, p)) if !h.contains(']') || h.ends_with(']') => (
                        h,
                        Some(p.parse::<u16>().map_err(|_| bad("the port must be a number from 0 to 65535"))?),
                    ),
                    _ => (scope, None),
                };
                if host.is_empty() || host.contains('/') || host.contains('*') {
                    return Err(bad("the host must be a plain host name or IP address"));
                }
                Ok(Grant::NetHttp { host: host.to_ascii_lowercase(), port })
            }
            "env" => {
                if !scope.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(bad("an environment variable name may hold only letters, digits and `_`"));
                }
                Ok(Grant::Env(scope.to_owned()))
            }
            "secrets.use" => {
                if !scope.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    return Err(bad("a secret id may hold only letters, digits, `_` and `-`"));
                }
                Ok(Grant::SecretsUse(scope.to_owned()))
            }
            _ => Err(GrantError::Unknown(s.to_owned())),
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::FsRead(p) => write!(f, "fs.read:{}", p.display()),
            Grant::FsWrite(p) => write!(f, "fs.write:{}", p.display()),
            Grant::NetHttp { host, port: Some(port) } => write!(f, "net.http:{host}:{port}"),
            Grant::NetHttp { host, port: None } => write!(f, "net.http:{host}"),
            Grant::Env(name) => write!(f, "env:{name}"),
            Grant::SecretsUse(id) => write!(f, "secrets.use:{id}"),
        }
    }
}

/// The environment variable a granted secret appears under inside the plugin.
pub fn secret_env_name(id: &str) -> String {
    format!("MTX_SECRET_{}", id.to_ascii_uppercase().replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use crate::*;

    #[test]
    fn parses_every_axis() {
        assert_eq!("fs.read:/data".parse(), Ok(Grant::FsRead("/data".into())));
        assert_eq!("fs.write:/out".parse(), Ok(Grant::FsWrite("/out".into())));
        assert_eq!(
            "net.http:127.0.0.1:8080".parse(),
            Ok(Grant::NetHttp { host: "127.0.0.1".into(), port: Some(8080) })
        );
        assert_eq!(
            "net.http:Api.Example.com".parse(),
            Ok(Grant::NetHttp { host: "api.example.com".into(), port: None })
        );
        assert_eq!("env:OPENAI_API_KEY".parse(), Ok(Grant::Env("OPENAI_API_KEY".into())));
        assert_eq!("secrets.use:openai".parse(), Ok(Grant::SecretsUse("openai".into())));
    }

    #[test]
    fn refuses_unknown_and_malformed_capabilities_by_name() {
        assert_eq!("proc.exec:sh".parse::<Grant>(), Err(GrantError::Unknown("proc.exec:sh".into())));
        assert_eq!("fs.read".parse::<Grant>(), Err(GrantError::MissingScope("fs.read".into())));
        assert!(matches!("fs.read:relative/dir".parse::<Grant>(), Err(GrantError::BadScope { .. })));
        assert!(matches!("net.http:*.example.com".parse::<Grant>(), Err(GrantError::BadScope { .. })));
        assert!(matches!("net.http:host:99999".parse::<Grant>(), Err(GrantError::BadScope { .. })));
        assert!(matches!("env:A=B".parse::<Grant>(), Err(GrantError::BadScope { .. })));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "fs.read:/a",
            "fs.write:/b",
            "net.http:localhost:11434",
            "net.http:example.com",
            "env:X",
            "secrets.use:k",
        ] {
            assert_eq!(s.parse::<Grant>().unwrap().to_string(), s);
        }
    }
}
