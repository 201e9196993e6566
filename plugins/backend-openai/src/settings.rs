//! The plugin's configuration (the `config` table of its run-config entry), parsed and checked once
//! per call. Every key error names the key; must never guess a server address.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::bindings::mtx::plugin::types::{ModelError, ModelProfile};

/// How a chosen LoRA reaches the server.
#[derive(Debug, Clone, PartialEq)]
pub enum AdapterStyle {
    /// The adapter is addressed by name in the `model` field (vLLM, LoRAX, Ollama tags):
    /// `lora_model_template` with `{model}` and `{lora}` replaced (default `{lora}`).
    ModelName { template: String },
    /// llama.cpp server: the base model in `model`, the adapter by index in `lora`.
    LlamaCpp { lora_ids: BTreeMap<String, u32> },
    /// The server takes no adapters; a request with a LoRA is refused.
    None,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub context_window: u32,
    #[serde(default)]
    pub tokenizer_id: Option<String>,
    #[serde(default)]
    pub max_vram_mb: u32,
    #[serde(default)]
    pub max_ram_mb: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub base_url: String,
    pub adapter_style: AdapterStyle,
    pub models: BTreeMap<String, ModelSpec>,
    /// `model_names`: model id -> the name the server knows it by (default: the id).
    pub model_names: BTreeMap<String, String>,
    pub api_key_env: Option<String>,
}

fn bad(key: &str, why: impl std::fmt::Display) -> ModelError {
    ModelError::Fatal(format!("backend-openai config key {key}: {why}"))
}

fn json_map<T: for<'de> Deserialize<'de>>(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
) -> Result<BTreeMap<String, T>, ModelError> {
    match get(key) {
        None => Ok(BTreeMap::new()),
        Some(text) => {
            serde_json::from_str(&text).map_err(|e| bad(key, format!("not a valid JSON object: {e}")))
        }
    }
}

impl Settings {
    pub fn from_config(get: impl Fn(&str) -> Option<String>) -> Result<Settings, ModelError> {
        let base_url =
            get("base_url").ok_or_else(|| bad("base_url", "missing (e.g. http://127.0.0.1:11434/v1)"))?;
        crate::request::split_url(&base_url).map_err(|e| bad("base_url", e))?;
        let adapter_style = match get("adapter_style").as_deref().unwrap_or("model-name") {
            "model-name" => AdapterStyle::ModelName {
                template: get("lora_model_template").unwrap_or_else(|| "{lora}".into()),
            },
            "llama-cpp" => AdapterStyle::LlamaCpp { lora_ids: json_map(&get, "lora_ids")? },
            "none" => AdapterStyle::None,
            other => {
                return Err(bad("adapter_style", format!("{other:?} is not model-name, llama-cpp or none")));
            }
        };
        let api_key_env = get("api_key_env").filter(|s| !s.trim().is_empty());
        Ok(Settings {
            base_url,
            adapter_style,
            models: json_map(&get, "models")?,
            model_names: json_map(&get, "model_names")?,
            api_key_env,
        })
    }

    pub fn describe(&self, model_id: &str) -> Result<ModelProfile, ModelError> {
        let m = self.models.get(model_id).ok_or_else(|| {
            ModelError::Fatal(format!("model {model_id} is not in backend-openai's `models` config"))
        })?;
        Ok(ModelProfile {
            model_id: model_id.into(),
            context_window: m.context_window,
            tokenizer_id: m.tokenizer_id.clone(),
            max_vram_mb: m.max_vram_mb,
            max_ram_mb: m.max_ram_mb,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn parses_a_full_config() {
        let s = Settings::from_config(cfg(&[
            ("base_url", "http://127.0.0.1:8080/v1"),
            ("adapter_style", "llama-cpp"),
            ("lora_ids", r#"{"rust-lora": 0, "py-lora": 1}"#),
            ("models", r#"{"qwen2.5-coder:7b": {"context_window": 8192, "tokenizer_id": "qwen2", "max_vram_mb": 6000, "max_ram_mb": 512}}"#),
            ("api_key_env", "OPENAI_API_KEY"),
        ]))
        .unwrap();
        assert_eq!(
            s.adapter_style,
            AdapterStyle::LlamaCpp { lora_ids: [("py-lora".into(), 1), ("rust-lora".into(), 0)].into() }
        );
        let p = s.describe("qwen2.5-coder:7b").unwrap();
        assert_eq!((p.context_window, p.max_vram_mb, p.max_ram_mb), (8192, 6000, 512));
        assert_eq!(s.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert!(matches!(s.describe("gpt-4o"), Err(ModelError::Fatal(m)) if m.contains("gpt-4o")));
    }

    #[test]
    fn defaults_to_model_name_style() {
        let s = Settings::from_config(cfg(&[("base_url", "http://localhost:11434/v1")])).unwrap();
        assert_eq!(s.adapter_style, AdapterStyle::ModelName { template: "{lora}".into() });
        assert!(s.models.is_empty());
    }

    #[test]
    fn bad_config_names_the_key() {
        for (pairs, key) in [
            (&[][..], "base_url"),
            (&[("base_url", "ftp://x")][..], "base_url"),
            (&[("base_url", "http://x"), ("adapter_style", "magic")][..], "adapter_style"),
            (&[("base_url", "http://x"), ("models", "[1]")][..], "models"),
        ] {
            let e = Settings::from_config(cfg(pairs)).unwrap_err();
            assert!(matches!(&e, ModelError::Fatal(m) if m.contains(key)), "{e:?}");
        }
    }
}
