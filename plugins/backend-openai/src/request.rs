//! Builds the chat-completions request: URL parts, headers and the JSON body.
//!
//! Pure: the API key is passed in by the caller. Must never put anything from the model's
//! previous output into the request other than the prompt the host compiled.

use serde_json::{Value, json};

use crate::bindings::mtx::plugin::types::{ModelError, ModelRequest};
use crate::settings::{AdapterStyle, Settings};

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Everything the transport needs for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCall {
    pub scheme: Scheme,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
}

/// `http://127.0.0.1:11434/v1` -> (Http, `127.0.0.1:11434`, `/v1`).
pub fn split_url(url: &str) -> Result<(Scheme, String, String), String> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else {
        return Err(format!("{url:?} must start with http:// or https://"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains(['?', '#', '@', ' ']) {
        return Err(format!("{url:?} has no usable host"));
    }
    if path.contains(['?', '#']) {
        return Err(format!("{url:?} must not carry a query or fragment"));
    }
    Ok((scheme, authority.to_string(), path.trim_end_matches('/').to_string()))
}

/// The model name and the llama.cpp `lora` list for a request.
fn model_and_adapter(settings: &Settings, req: &ModelRequest) -> Result<(String, Option<Value>), ModelError> {
    let base = settings.model_names.get(&req.model_id).cloned().unwrap_or_else(|| req.model_id.clone());
    let Some(lora) = req.lora_id.as_deref() else {
        return Ok((base, None));
    };
    match &settings.adapter_style {
        AdapterStyle::ModelName { template } => {
            Ok((template.replace("{model}", &base).replace("{lora}", lora), None))
        }
        AdapterStyle::LlamaCpp { lora_ids } => {
            let id = lora_ids.get(lora).ok_or_else(|| {
                ModelError::Fatal(format!("LoRA {lora} has no index in backend-openai's `lora_ids` config"))
            })?;
            Ok((base, Some(json!([{ "id": id, "scale": 1.0 }]))))
        }
        AdapterStyle::None => Err(ModelError::Fatal(format!(
            "LoRA {lora} was requested but backend-openai's adapter_style is none"
        ))),
    }
}

/// f32 -> a short decimal, so `0.2` is sent as `0.2`, not `0.20000000298023224`.
fn temperature(t: f32) -> Value {
    let rounded = (f64::from(t) * 1_000_000.0).round() / 1_000_000.0;
    json!(rounded)
}

pub fn build(settings: &Settings, req: &ModelRequest, api_key: Option<&str>) -> Result<HttpCall, ModelError> {
    let (scheme, authority, prefix) = split_url(&settings.base_url).map_err(ModelError::Fatal)?;
    let (model, lora) = model_and_adapter(settings, req)?;
    let mut body = json!({
        "model": model,
        "messages": [{ "role": "user", "content": req.prompt }],
        "max_tokens": req.max_tokens,
        "temperature": temperature(req.temperature),
        "stream": false,
    });
    if let Some(seed) = req.seed {
        body["seed"] = json!(seed);
    }
    if let Some(lora) = lora {
        body["lora"] = lora;
    }
    let mut headers = vec![
        ("content-type".to_string(), b"application/json".to_vec()),
        ("accept".to_string(), b"application/json".to_vec()),
    ];
    if let Some(key) = api_key {
        headers.push(("authorization".to_string(), format!("Bearer {key}").into_bytes()));
    }
    Ok(HttpCall {
        scheme,
        authority,
        path: format!("{prefix}/chat/completions"),
        headers,
        body: body.to_string().into_bytes(),
        timeout_ms: req.timeout_ms,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn request(lora: Option<&str>) -> ModelRequest {
        ModelRequest {
            model_id: "qwen2.5-coder:7b".into(),
            lora_id: lora.map(String::from),
            prompt: "fix the bug".into(),
            prompt_hash: "00".into(),
            max_tokens: 512,
            context_window: 8192,
            temperature: 0.2,
            seed: Some(42),
            timeout_ms: 60_000,
            mt_id: "MT-001".into(),
            level: 0,
            iteration: 1,
            attempt: 1,
        }
    }

    fn settings(style: AdapterStyle) -> Settings {
        Settings {
            base_url: "http://127.0.0.1:11434/v1/".into(),
            adapter_style: style,
            models: Default::default(),
            model_names: Default::default(),
            api_key_env: None,
        }
    }

    fn body(call: &HttpCall) -> Value {
        serde_json::from_slice(&call.body).unwrap()
    }

    #[test]
    fn builds_the_chat_completions_call() {
        let call = build(&settings(AdapterStyle::None), &request(None), None).unwrap();
        assert_eq!(
            (call.scheme, call.authority.as_str(), call.path.as_str()),
            (Scheme::Http, "127.0.0.1:11434", "/v1/chat/completions")
        );
        assert_eq!(
            body(&call),
            json!({"model": "qwen2.5-coder:7b", "messages": [{"role": "user", "content": "fix the bug"}],
                   "max_tokens": 512, "temperature": 0.2, "seed": 42, "stream": false})
        );
        assert_eq!(call.timeout_ms, 60_000);
        assert!(!call.headers.iter().any(|(k, _)| k == "authorization"));
    }

    #[test]
    fn no_seed_no_seed_field_and_api_key_is_a_bearer_header() {
        let mut r = request(None);
        r.seed = None;
        let call = build(&settings(AdapterStyle::None), &r, Some("sk-test")).unwrap();
        assert!(body(&call).get("seed").is_none());
        assert!(call.headers.contains(&("authorization".into(), b"Bearer sk-test".to_vec())));
    }

    #[test]
    fn model_name_style_puts_the_adapter_in_model() {
        let s = settings(AdapterStyle::ModelName { template: "{lora}".into() });
        assert_eq!(body(&build(&s, &request(Some("rust-lora")), None).unwrap())["model"], "rust-lora");
        let s = settings(AdapterStyle::ModelName { template: "{model}:{lora}".into() });
        assert_eq!(
            body(&build(&s, &request(Some("rust-lora")), None).unwrap())["model"],
            "qwen2.5-coder:7b:rust-lora"
        );
        assert_eq!(body(&build(&s, &request(None), None).unwrap())["model"], "qwen2.5-coder:7b");
    }

    #[test]
    fn llama_cpp_style_sends_the_adapter_index() {
        let s = settings(AdapterStyle::LlamaCpp { lora_ids: [("rust-lora".into(), 3)].into() });
        let b = body(&build(&s, &request(Some("rust-lora")), None).unwrap());
        assert_eq!(b["model"], "qwen2.5-coder:7b");
        assert_eq!(b["lora"], json!([{"id": 3, "scale": 1.0}]));
        assert!(
            matches!(build(&s, &request(Some("other")), None), Err(ModelError::Fatal(m)) if m.contains("other"))
        );
    }

    #[test]
    fn served_model_names_are_mapped() {
        let mut s = settings(AdapterStyle::None);
        s.model_names.insert("qwen2.5-coder:7b".into(), "Qwen/Qwen2.5-Coder-7B-Instruct".into());
        assert_eq!(
            body(&build(&s, &request(None), None).unwrap())["model"],
            "Qwen/Qwen2.5-Coder-7B-Instruct"
        );
        assert!(matches!(build(&s, &request(Some("x")), None), Err(ModelError::Fatal(_))));
    }

    #[test]
    fn urls_split_and_bad_urls_are_refused() {
        assert_eq!(
            split_url("https://api.example/v1").unwrap(),
            (Scheme::Https, "api.example".into(), "/v1".into())
        );
        assert_eq!(split_url("http://h:1").unwrap(), (Scheme::Http, "h:1".into(), String::new()));
        for bad in ["h:1/v1", "http:///v1", "http://h/v1?x=1", "http://u@h/v1"] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }
}
