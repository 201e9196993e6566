//! The cassette format `mtx.cassette@1` and its lookup.
//!
//! An entry is found by `prompt_hash` when the entry has one (the prompt must be the one
//! recorded), otherwise by `(mt_id, level, iteration)`. Must never answer with text that is
//! not in the cassette.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::bindings::mtx::plugin::types::{
    FinishReason, ModelError, ModelProfile, ModelRequest, ModelResponse, TokenUsage,
};

pub const SCHEMA_VERSION: &str = "mtx.cassette@1";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cassette {
    schema_version: String,
    models: BTreeMap<String, ModelEntry>,
    entries: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    context_window: u32,
    #[serde(default)]
    tokenizer_id: Option<String>,
    #[serde(default)]
    max_vram_mb: u32,
    #[serde(default)]
    max_ram_mb: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    mt_id: String,
    level: u32,
    iteration: u32,
    #[serde(default)]
    prompt_hash: Option<String>,
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    error: Option<RecordedError>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Usage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordedError {
    kind: String,
    message: String,
}

impl Cassette {
    pub fn parse(text: &str) -> Result<Cassette, ModelError> {
        let c: Cassette = serde_json::from_str(text)
            .map_err(|e| ModelError::Fatal(format!("cassette is not valid: {e}")))?;
        if c.schema_version != SCHEMA_VERSION {
            return Err(ModelError::Fatal(format!(
                "cassette schema_version is {:?}; backend-replay reads {SCHEMA_VERSION:?}",
                c.schema_version
            )));
        }
        for (i, e) in c.entries.iter().enumerate() {
            if e.response.is_none() && e.error.is_none() {
                return Err(ModelError::Fatal(format!("cassette entry {i} has neither response nor error")));
            }
            if let Some(err) = &e.error
                && !matches!(
                    err.kind.as_str(),
                    "timeout" | "transient" | "context_overflow" | "fatal" | "denied"
                )
            {
                return Err(ModelError::Fatal(format!(
                    "cassette entry {i} has unknown error kind {:?}",
                    err.kind
                )));
            }
        }
        Ok(c)
    }

    pub fn describe(&self, model_id: &str) -> Result<ModelProfile, ModelError> {
        let m = self
            .models
            .get(model_id)
            .ok_or_else(|| ModelError::Fatal(format!("model {model_id} is not in the cassette's models")))?;
        Ok(ModelProfile {
            model_id: model_id.to_string(),
            context_window: m.context_window,
            tokenizer_id: m.tokenizer_id.clone(),
            max_vram_mb: m.max_vram_mb,
            max_ram_mb: m.max_ram_mb,
        })
    }

    pub fn complete(&self, req: &ModelRequest) -> Result<ModelResponse, ModelError> {
        self.describe(&req.model_id)?;
        let key_matches =
            |e: &Entry| e.mt_id == req.mt_id && e.level == req.level && e.iteration == req.iteration;
        let hash_matches =
            |e: &Entry| e.prompt_hash.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(&req.prompt_hash));
        // A hashed entry answers only its own prompt; among those the one recorded for this
        // key wins, so a prompt repeated across iterations still replays in order.
        let entry = self
            .entries
            .iter()
            .find(|e| hash_matches(e) && key_matches(e))
            .or_else(|| self.entries.iter().find(|e| hash_matches(e)))
            .or_else(|| self.entries.iter().find(|e| e.prompt_hash.is_none() && key_matches(e)))
            .ok_or_else(|| {
                ModelError::Fatal(format!(
                    "no cassette entry for {} level {} iteration {} (prompt sha256 {})",
                    req.mt_id, req.level, req.iteration, req.prompt_hash
                ))
            })?;
        if let Some(err) = &entry.error {
            let m = err.message.clone();
            return Err(match err.kind.as_str() {
                "timeout" => ModelError::Timeout(m),
                "transient" => ModelError::Transient(m),
                "context_overflow" => ModelError::ContextOverflow(m),
                "denied" => ModelError::Denied(m),
                _ => ModelError::Fatal(m),
            });
        }
        let text = entry.response.clone().unwrap_or_default();
        // Recorded usage when present, else the bytes/4 estimate (documented in the README).
        let (prompt_tokens, completion_tokens) = match &entry.usage {
            Some(u) => (u.prompt_tokens, u.completion_tokens),
            None => (estimate(&req.prompt), estimate(&text)),
        };
        let finish_reason = match entry.finish_reason.as_deref() {
            None | Some("stop") => FinishReason::Stop,
            Some("length") => FinishReason::Length,
            Some(_) => FinishReason::Other,
        };
        Ok(ModelResponse {
            text,
            usage: TokenUsage {
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens.saturating_add(completion_tokens),
            },
            finish_reason,
        })
    }
}

fn estimate(text: &str) -> u32 {
    u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11";

    fn cassette() -> Cassette {
        Cassette::parse(&format!(
            r#"{{
              "schema_version": "mtx.cassette@1",
              "models": {{"qwen2.5-coder:7b": {{"context_window": 8192, "tokenizer_id": null}},
                         "big": {{"context_window": 32768, "tokenizer_id": "qwen2", "max_vram_mb": 20000, "max_ram_mb": 1000}}}},
              "entries": [
                {{"mt_id": "MT-001", "level": 0, "iteration": 1, "prompt_hash": null, "response": "first",
                  "usage": {{"prompt_tokens": 100, "completion_tokens": 5}}, "finish_reason": "stop", "error": null}},
                {{"mt_id": "MT-001", "level": 0, "iteration": 2, "prompt_hash": "{HASH}", "response": "hashed",
                  "usage": {{"prompt_tokens": 10, "completion_tokens": 2}}, "finish_reason": "length", "error": null}},
                {{"mt_id": "MT-001", "level": 0, "iteration": 3, "response": null,
                  "error": {{"kind": "timeout", "message": "recorded timeout"}}}},
                {{"mt_id": "MT-002", "level": 1, "iteration": 1, "response": "no usage here"}}
              ]
            }}"#
        ))
        .unwrap()
    }

    fn request(mt: &str, level: u32, iteration: u32, hash: &str) -> ModelRequest {
        ModelRequest {
            model_id: "qwen2.5-coder:7b".into(),
            lora_id: None,
            prompt: "12345678".into(),
            prompt_hash: hash.into(),
            max_tokens: 100,
            context_window: 8192,
            temperature: 0.0,
            seed: Some(1),
            timeout_ms: 1000,
            mt_id: mt.into(),
            level,
            iteration,
            attempt: 1,
        }
    }

    #[test]
    fn plays_the_entry_for_the_key() {
        let r = cassette().complete(&request("MT-001", 0, 1, "ff")).unwrap();
        assert_eq!(r.text, "first");
        assert_eq!((r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens), (100, 5, 105));
        assert_eq!(r.finish_reason, FinishReason::Stop);
    }

    #[test]
    fn hashed_entries_answer_only_their_prompt() {
        let c = cassette();
        let r = c.complete(&request("MT-009", 4, 9, &HASH.to_uppercase())).unwrap();
        assert_eq!((r.text.as_str(), r.finish_reason), ("hashed", FinishReason::Length));
        let e = c.complete(&request("MT-001", 0, 2, "bb")).unwrap_err();
        assert_eq!(
            e,
            ModelError::Fatal("no cassette entry for MT-001 level 0 iteration 2 (prompt sha256 bb)".into())
        );
    }

    #[test]
    fn recorded_errors_come_back_typed() {
        let e = cassette().complete(&request("MT-001", 0, 3, "x")).unwrap_err();
        assert_eq!(e, ModelError::Timeout("recorded timeout".into()));
    }

    #[test]
    fn missing_usage_is_estimated_from_bytes() {
        let mut req = request("MT-002", 1, 1, "x");
        req.prompt = "a".repeat(40);
        let r = cassette().complete(&req).unwrap();
        assert_eq!((r.usage.prompt_tokens, r.usage.completion_tokens), (10, 4));
    }

    #[test]
    fn a_missing_entry_is_a_fatal_error_never_text() {
        let e = cassette().complete(&request("MT-001", 0, 7, "cafe")).unwrap_err();
        assert_eq!(
            e,
            ModelError::Fatal("no cassette entry for MT-001 level 0 iteration 7 (prompt sha256 cafe)".into())
        );
    }

    #[test]
    fn describes_only_known_models() {
        let c = cassette();
        let p = c.describe("big").unwrap();
        assert_eq!(
            (p.context_window, p.tokenizer_id.as_deref(), p.max_vram_mb, p.max_ram_mb),
            (32768, Some("qwen2"), 20000, 1000)
        );
        assert!(matches!(c.describe("gpt-4o"), Err(ModelError::Fatal(m)) if m.contains("gpt-4o")));
        let mut req = request("MT-001", 0, 1, "x");
        req.model_id = "gpt-4o".into();
        assert!(c.complete(&req).is_err());
    }

    /// The example of the README, kept as a fixture so the documented format stays valid.
    #[test]
    fn the_documented_example_plays() {
        let c = Cassette::parse(include_str!("../tests/fixtures/example.cassette.json")).unwrap();
        assert_eq!(c.describe("qwen2.5-coder:14b").unwrap().context_window, 16384);
        let first = c.complete(&request("MT-001", 0, 1, "x")).unwrap();
        assert_eq!(first.usage.total_tokens, 1240);
        assert!(
            matches!(c.complete(&request("MT-001", 0, 2, "x")), Err(ModelError::Transient(m)) if m == "recorded 503")
        );
        let done = c.complete(&request("MT-001", 1, 1, "x")).unwrap();
        assert!(done.text.starts_with("<mt_complete>"));
        assert_eq!(done.finish_reason, FinishReason::Stop);
    }

    #[test]
    fn bad_cassettes_are_refused() {
        for bad in [
            "not json",
            r#"{"schema_version": "mtx.cassette@2", "models": {}, "entries": []}"#,
            r#"{"schema_version": "mtx.cassette@1", "models": {}, "entries": [{"mt_id": "MT-001", "level": 0, "iteration": 1}]}"#,
            r#"{"schema_version": "mtx.cassette@1", "models": {}, "entries": [{"mt_id": "MT-001", "level": 0, "iteration": 1, "respons": "typo"}]}"#,
            r#"{"schema_version": "mtx.cassette@1", "models": {}, "entries": [{"mt_id": "MT-001", "level": 0, "iteration": 1, "error": {"kind": "oops", "message": ""}}]}"#,
        ] {
            assert!(matches!(Cassette::parse(bad), Err(ModelError::Fatal(_))), "{bad}");
        }
    }
}
