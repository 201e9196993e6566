//! Common types of MTX-SPEC 3.0 and the hashing helpers every record uses.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// 64 lowercase hex characters of a SHA-256 digest.
pub type Sha256Hex = String;

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> Sha256Hex {
    hex::encode(Sha256::digest(bytes))
}

pub use crate::canonical::{canonical_json, canonical_json_value};

/// The current time as an RFC 3339 UTC string with millisecond precision.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// MTX-SPEC 3.0 ArtifactHandle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArtifactHandle {
    pub artifact_id: String,
    /// Relative to the artifact store root, `/` separators, no `..`.
    pub path: String,
    pub sha256: Sha256Hex,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl ArtifactHandle {
    /// Canonical string form `artifact:<artifact_id>:<path>`.
    pub fn canonical(&self) -> String {
        format!("artifact:{}:{}", self.artifact_id, self.path)
    }
}

/// MTX-SPEC 3.0 TokenUsage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical form is what every recorded hash was computed over: it must not
    /// change. Checked against the plain definition (sorted keys, `to_string` leaves).
    #[test]
    fn canonical_json_is_byte_identical_to_its_definition() {
        fn reference(value: &serde_json::Value, out: &mut String) {
            match value {
                serde_json::Value::Object(map) => {
                    let mut keys: Vec<&String> = map.keys().collect();
                    keys.sort();
                    out.push('{');
                    for (i, k) in keys.into_iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&serde_json::to_string(k).unwrap());
                        out.push(':');
                        reference(&map[k], out);
                    }
                    out.push('}');
                }
                serde_json::Value::Array(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        reference(item, out);
                    }
                    out.push(']');
                }
                other => out.push_str(&serde_json::to_string(other).unwrap()),
            }
        }
        let v = serde_json::json!({
            "z\u{e9}": "caf\u{e9} \"q\" \\ \n\t\u{1}",
            "a": [1.5, -0.0, 1e300, 12345678901234567890u64, -9, true, null, {"k": [], "j": {}}],
            "\u{1F600}": "emoji \u{1F600}",
            "M": {"b": [{"y": 1, "x": 2}], "a": "line\r\nbreak"},
        });
        let mut expected = String::new();
        reference(&v, &mut expected);
        assert_eq!(String::from_utf8(canonical_json(&v)).unwrap(), expected);
        assert_eq!(canonical_json_value(&v), canonical_json(&v));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v = serde_json::json!({"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": "x"}});
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":{"c":"x","d":[1,{"y":1,"z":0}]},"b":1}"#
        );
    }

    #[test]
    fn sha256_of_empty_input_is_the_known_digest() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
