//! Maps an HTTP status and body from a chat-completions server to a model response or a
//! typed model error (timeout / transient / context-overflow / fatal).
//!
//! Classifies by status code first and reads the error text only to tell a context-length
//! refusal from other 400s, because servers word that refusal differently. Must never
//! turn an error response into model text.

use serde_json::Value;

use crate::bindings::mtx::plugin::types::{FinishReason, ModelError, ModelResponse, TokenUsage};

/// How servers say the prompt did not fit (OpenAI, vLLM, llama.cpp, Ollama, LoRAX).
const CONTEXT_WORDING: &[&str] = &[
    "context length",
    "context_length",
    "maximum context",
    "context window",
    "exceeds the available context",
    "exceed_context_size",
    "too many tokens",
    "prompt is too long",
    "input is too long",
    "tokens exceeds",
];

/// The answer plus whether token usage had to be estimated.
#[derive(Debug)]
pub struct Parsed {
    pub response: ModelResponse,
    pub usage_estimated: bool,
}

/// At most this much of an error body is quoted in an error message.
const QUOTE_CHARS: usize = 300;

fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    // Prefer the server's own message when the body is an OpenAI-style error object.
    let msg = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            let e = &v["error"];
            e["message"]
                .as_str()
                .or(e.as_str())
                .or(v["message"].as_str())
                .or(v["detail"].as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| text.trim().to_string());
    msg.chars().take(QUOTE_CHARS).collect()
}

fn estimate(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(4)).unwrap_or(u32::MAX)
}

pub fn map(status: u16, body: &[u8], prompt_bytes: usize) -> Result<Parsed, ModelError> {
    if !(200..300).contains(&status) {
        let msg = format!("HTTP {status}: {}", quote(body));
        let lower = msg.to_lowercase();
        return Err(match status {
            408 => ModelError::Timeout(msg),
            429 | 500..=599 => ModelError::Transient(msg),
            400 | 413 | 422 if CONTEXT_WORDING.iter().any(|w| lower.contains(w)) => {
                ModelError::ContextOverflow(msg)
            }
            _ => ModelError::Fatal(msg),
        });
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ModelError::Fatal(format!("response body is not JSON: {e}: {}", quote(body))))?;
    let choice = v["choices"]
        .get(0)
        .ok_or_else(|| ModelError::Fatal(format!("response has no choices: {}", quote(body))))?;
    let text = choice["message"]["content"].as_str().or(choice["text"].as_str()).unwrap_or("").to_string();
    let finish_reason = match choice["finish_reason"].as_str() {
        Some("stop") | Some("eos") | None => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some(_) => FinishReason::Other,
    };
    if finish_reason == FinishReason::Length && text.trim().is_empty() {
        return Err(ModelError::ContextOverflow(
            "the model stopped at its length limit without producing any text".into(),
        ));
    }
    let usage = &v["usage"];
    let counts = (usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64());
    let (usage, usage_estimated) = match counts {
        (Some(p), Some(c)) => {
            let p = u32::try_from(p).unwrap_or(u32::MAX);
            let c = u32::try_from(c).unwrap_or(u32::MAX);
            (TokenUsage { prompt_tokens: p, completion_tokens: c, total_tokens: p.saturating_add(c) }, false)
        }
        _ => {
            let (p, c) = (estimate(prompt_bytes), estimate(text.len()));
            (TokenUsage { prompt_tokens: p, completion_tokens: c, total_tokens: p.saturating_add(c) }, true)
        }
    };
    Ok(Parsed { response: ModelResponse { text, usage, finish_reason }, usage_estimated })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_body(content: &str, finish: &str, usage: bool) -> Vec<u8> {
        let mut v = serde_json::json!({
            "id": "x", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}]
        });
        if usage {
            v["usage"] =
                serde_json::json!({"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150});
        }
        v.to_string().into_bytes()
    }

    #[test]
    fn a_completion_with_usage() {
        let p = map(200, &ok_body("done", "stop", true), 10).unwrap();
        assert_eq!(p.response.text, "done");
        assert_eq!(p.response.finish_reason, FinishReason::Stop);
        assert_eq!(
            (
                p.response.usage.prompt_tokens,
                p.response.usage.completion_tokens,
                p.response.usage.total_tokens
            ),
            (120, 30, 150)
        );
        assert!(!p.usage_estimated);
    }

    #[test]
    fn missing_usage_is_estimated_and_flagged() {
        let p = map(200, &ok_body("12345678", "length", false), 40).unwrap();
        assert_eq!((p.response.usage.prompt_tokens, p.response.usage.completion_tokens), (10, 2));
        assert_eq!(p.response.finish_reason, FinishReason::Length);
        assert!(p.usage_estimated);
    }

    #[test]
    fn length_stop_with_no_text_is_context_overflow() {
        assert!(matches!(map(200, &ok_body("", "length", true), 1), Err(ModelError::ContextOverflow(_))));
    }

    #[test]
    fn status_codes_map_to_kinds() {
        assert!(
            matches!(map(429, b"{\"error\":{\"message\":\"slow down\"}}", 0), Err(ModelError::Transient(m)) if m == "HTTP 429: slow down")
        );
        assert!(matches!(map(503, b"loading model", 0), Err(ModelError::Transient(_))));
        assert!(matches!(map(408, b"", 0), Err(ModelError::Timeout(_))));
        assert!(
            matches!(map(404, b"{\"error\":\"model 'x' not found\"}", 0), Err(ModelError::Fatal(m)) if m.contains("not found"))
        );
        assert!(matches!(map(401, b"", 0), Err(ModelError::Fatal(_))));
        assert!(matches!(
            map(400, b"{\"error\":{\"message\":\"bad temperature\"}}", 0),
            Err(ModelError::Fatal(_))
        ));
    }

    #[test]
    fn context_length_refusals_are_context_overflow() {
        for body in [
            &b"{\"error\":{\"message\":\"This model's maximum context length is 8192 tokens\"}}"[..],
            b"{\"error\":{\"code\":400,\"message\":\"the request exceeds the available context size\",\"type\":\"exceed_context_size_error\"}}",
            b"{\"object\":\"error\",\"message\":\"Input is too long for requested model\"}",
        ] {
            assert!(matches!(map(400, body, 0), Err(ModelError::ContextOverflow(_))), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn malformed_success_bodies_are_fatal() {
        assert!(matches!(map(200, b"<html>", 0), Err(ModelError::Fatal(_))));
        assert!(
            matches!(map(200, b"{\"choices\": []}", 0), Err(ModelError::Fatal(m)) if m.contains("no choices"))
        );
    }
}
