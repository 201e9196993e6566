//! Semantic version numbers (SemVer 2.0.0): parsing `MAJOR.MINOR.PATCH[-PRE][+BUILD]` and
//! ordering versions by precedence.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// One dot-separated identifier of a pre-release: `alpha`, `1`, `x-y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    /// Only ASCII digits, without a leading zero (`0` itself is fine).
    Numeric(u64),
    /// ASCII letters, digits and hyphens, with at least one non-digit.
    AlphaNumeric(String),
}

/// A parsed version. Equality and order follow SemVer precedence: build metadata is
/// ignored, so `1.0.0+a == 1.0.0+b`.
#[derive(Debug, Clone)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Vec<Identifier>,
    pub build: Vec<String>,
}

/// Why a text is not a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The part before `-` / `+` is not three dot-separated numbers.
    BadCore(String),
    /// A number, or a numeric pre-release identifier, has a leading zero.
    LeadingZero(String),
    /// A pre-release or build identifier is empty or holds a character outside
    /// `[0-9A-Za-z-]`.
    BadIdentifier(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::BadCore(s) => write!(f, "version core {s:?} is not MAJOR.MINOR.PATCH"),
            ParseError::LeadingZero(s) => write!(f, "number {s:?} has a leading zero"),
            ParseError::BadIdentifier(s) => write!(f, "identifier {s:?} is empty or has a bad character"),
        }
    }
}

impl std::error::Error for ParseError {}

fn number(s: &str) -> Result<u64, ParseError> {
    if s.len() > 1 && s.starts_with('0') {
        return Err(ParseError::LeadingZero(s.to_string()));
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadCore(s.to_string()));
    }
    s.parse().map_err(|_| ParseError::BadCore(s.to_string()))
}

impl FromStr for Version {
    type Err = ParseError;

    /// Parses `MAJOR.MINOR.PATCH`, an optional `-` and dot-separated pre-release
    /// identifiers, and an optional `+` and dot-separated build identifiers.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        // Pre-release and build identifiers are not read yet: everything after the core
        // is dropped.
        let core = s.split(['-', '+']).next().unwrap_or("");
        let parts: Vec<&str> = core.split('.').collect();
        let [major, minor, patch] = parts.as_slice() else {
            return Err(ParseError::BadCore(core.to_string()));
        };
        Ok(Version {
            major: number(major)?,
            minor: number(minor)?,
            patch: number(patch)?,
            pre: Vec::new(),
            build: Vec::new(),
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, id) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            match id {
                Identifier::Numeric(n) => write!(f, "{n}")?,
                Identifier::AlphaNumeric(s) => f.write_str(s)?,
            }
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build.join("."))?;
        }
        Ok(())
    }
}

impl Ord for Version {
    /// SemVer precedence (section 11 of SemVer 2.0.0).
    fn cmp(&self, other: &Self) -> Ordering {
        // Only the core is compared so far; pre-release precedence is missing.
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}
