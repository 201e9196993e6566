//! The 5.11 score and the `auto` / `alternate` / `none` choice.
//!
//! Scores are summed in tenths as integers and converted once, so equal scores compare
//! equal and ties fall to the `lora_id` order as the spec requires. Must never pick a
//! LoRA whose base model differs from the level's model.

use crate::bindings::mtx::plugin::types::{
    LoraInfo, LoraScore, LoraSelection, LoraSelectionInput, LoraSelectorMode, PluginError,
};
use crate::rfc3339;

/// "Within the last 7 days" of the recorded `now`.
const RECENT_SECS: i64 = 7 * 86_400;
/// `pass_at_1` strictly above this earns the bonus.
const PASS_AT_ONE_THRESHOLD: f64 = 0.7;

pub fn select(input: &LoraSelectionInput) -> Result<LoraSelection, PluginError> {
    if input.mode == LoraSelectorMode::None {
        return Ok(LoraSelection {
            lora_id: None,
            scores: vec![],
            rationale: "selector none: no LoRA".into(),
        });
    }
    let now = rfc3339::parse(&input.now).map_err(|e| PluginError::InvalidInput(format!("now: {e}")))?;
    let available: Vec<&LoraInfo> =
        input.registry.iter().filter(|l| l.base_model_id == input.model_id).collect();
    if available.is_empty() {
        return Ok(LoraSelection {
            lora_id: None,
            scores: vec![],
            rationale: format!("no LoRA in the registry has base model {}", input.model_id),
        });
    }
    let (candidates, note): (Vec<&LoraInfo>, String) = match (input.mode, input.previous_lora_id.as_deref()) {
        (LoraSelectorMode::Alternate, Some(previous)) => {
            let others: Vec<&LoraInfo> =
                available.iter().copied().filter(|l| l.lora_id != previous).collect();
            if others.is_empty() {
                let reused = available.iter().copied().filter(|l| l.lora_id == previous).collect();
                (reused, format!("alternate: {previous} is the only LoRA for {}, reused", input.model_id))
            } else {
                (others, format!("alternate: excluding previous LoRA {previous}"))
            }
        }
        (LoraSelectorMode::Alternate, None) => (available, "alternate: no previous LoRA, scoring all".into()),
        _ => (available, "auto".into()),
    };
    let mut scored = Vec::with_capacity(candidates.len());
    for lora in candidates {
        scored.push((score_tenths(lora, &input.task_tags, now)?, lora.lora_id.clone()));
    }
    // Highest score first; equal scores by lora_id ascending.
    scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let (best_score, best_id) = scored[0].clone();
    let scores: Vec<LoraScore> = scored
        .into_iter()
        .map(|(tenths, id)| LoraScore { lora_id: id, score: tenths as f64 / 10.0 })
        .collect();
    let rationale = format!(
        "{note}; picked {best_id} with score {:.1} of {} candidate(s) for tags [{}] on {}",
        best_score as f64 / 10.0,
        scores.len(),
        input.task_tags.join(", "),
        input.model_id
    );
    Ok(LoraSelection { lora_id: Some(best_id), scores, rationale })
}

/// The 5.11 score in tenths.
fn score_tenths(lora: &LoraInfo, tags: &[String], now: rfc3339::Instant) -> Result<i64, PluginError> {
    let count = |list: &[String]| tags.iter().filter(|t| list.contains(t)).count() as i64;
    let mut tenths = 10 * count(&lora.trained_on_task_types) + 5 * count(&lora.specialization)
        - 5 * count(&lora.weak_on_task_types);
    if let Some(at) = lora.last_trained_at.as_deref() {
        let at = rfc3339::parse(at).map_err(|e| {
            PluginError::InvalidInput(format!("last-trained-at of LoRA {}: {e}", lora.lora_id))
        })?;
        // A training date after `now` is not "within the last 7 days".
        let age = now.secs - at.secs;
        if (0..=RECENT_SECS).contains(&age) && (age > 0 || at.nanos <= now.nanos) {
            tenths += 2;
        }
    }
    if lora.pass_at_one.is_some_and(|p| p > PASS_AT_ONE_THRESHOLD) {
        tenths += 3;
    }
    Ok(tenths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lora(
        id: &str,
        base: &str,
        trained: &[&str],
        spec: &[&str],
        weak: &[&str],
        at: Option<&str>,
        p: Option<f64>,
    ) -> LoraInfo {
        let v = |s: &[&str]| s.iter().map(|t| t.to_string()).collect();
        LoraInfo {
            lora_id: id.into(),
            lora_version: None,
            base_model_id: base.into(),
            trained_on_task_types: v(trained),
            specialization: v(spec),
            weak_on_task_types: v(weak),
            last_trained_at: at.map(String::from),
            pass_at_one: p,
            training_priority: None,
        }
    }

    const MODEL: &str = "qwen2.5-coder:7b";

    /// C-LORA-1: three LoRAs with known tags, dates and pass@1.
    fn c_lora_1(mode: LoraSelectorMode, previous: Option<&str>) -> LoraSelectionInput {
        LoraSelectionInput {
            mt_id: "MT-001".into(),
            task_tags: vec!["rust".into(), "async".into(), "parser".into()],
            level: 0,
            model_id: MODEL.into(),
            mode,
            registry: vec![
                // 1.0 (rust) + 1.0 (async) - 0.5 (weak parser) + 0.2 (3 days old) = 1.7
                lora(
                    "rust-async",
                    MODEL,
                    &["rust", "async"],
                    &[],
                    &["parser"],
                    Some("2026-11-20T12:00:00Z"),
                    Some(0.6),
                ),
                // 1.0 (rust) + 0.5 (parser) + 0.3 (pass@1 0.8) = 1.8; trained 30 days ago
                lora(
                    "rust-parser",
                    MODEL,
                    &["rust"],
                    &["parser"],
                    &[],
                    Some("2026-10-24T12:00:00Z"),
                    Some(0.8),
                ),
                // 1.0 (parser) + 0.5 (rust) + 0.2 (today) = 1.7: ties with rust-async
                lora(
                    "parser-gen",
                    MODEL,
                    &["parser"],
                    &["rust"],
                    &[],
                    Some("2026-11-23T11:00:00+00:00"),
                    Some(0.7),
                ),
                // A perfect match on another base model is never available.
                lora(
                    "big-one",
                    "qwen2.5-coder:14b",
                    &["rust", "async", "parser"],
                    &[],
                    &[],
                    None,
                    Some(0.99),
                ),
            ],
            previous_lora_id: previous.map(String::from),
            now: "2026-11-23T12:00:00Z".into(),
        }
    }

    fn pairs(s: &LoraSelection) -> Vec<(String, f64)> {
        s.scores.iter().map(|x| (x.lora_id.clone(), x.score)).collect()
    }

    #[test]
    fn c_lora_1_auto_scores_and_winner() {
        let s = select(&c_lora_1(LoraSelectorMode::Auto, None)).unwrap();
        assert_eq!(s.lora_id.as_deref(), Some("rust-parser"));
        assert_eq!(
            pairs(&s),
            vec![("rust-parser".into(), 1.8), ("parser-gen".into(), 1.7), ("rust-async".into(), 1.7)]
        );
    }

    #[test]
    fn c_lora_1_alternate_excludes_previous_and_breaks_ties_by_id() {
        let s = select(&c_lora_1(LoraSelectorMode::Alternate, Some("rust-parser"))).unwrap();
        assert_eq!(s.lora_id.as_deref(), Some("parser-gen"));
        assert_eq!(pairs(&s), vec![("parser-gen".into(), 1.7), ("rust-async".into(), 1.7)]);
    }

    #[test]
    fn alternate_reuses_the_only_lora() {
        let mut i = c_lora_1(LoraSelectorMode::Alternate, Some("rust-async"));
        i.registry.retain(|l| l.lora_id == "rust-async");
        let s = select(&i).unwrap();
        assert_eq!(s.lora_id.as_deref(), Some("rust-async"));
        assert!(s.rationale.contains("reused"));
    }

    #[test]
    fn none_mode_and_no_available_lora_pick_nothing() {
        let s = select(&c_lora_1(LoraSelectorMode::None, None)).unwrap();
        assert_eq!((s.lora_id, s.scores.len()), (None, 0));
        let mut i = c_lora_1(LoraSelectorMode::Auto, None);
        i.model_id = "other".into();
        assert_eq!(select(&i).unwrap().lora_id, None);
    }

    #[test]
    fn the_best_score_wins_even_when_negative() {
        let mut i = c_lora_1(LoraSelectorMode::Auto, None);
        i.registry = vec![
            lora("b", MODEL, &[], &[], &["rust"], None, None),
            lora("a", MODEL, &[], &[], &["rust", "async"], None, None),
        ];
        let s = select(&i).unwrap();
        assert_eq!(s.lora_id.as_deref(), Some("b"));
        assert_eq!(pairs(&s), vec![("b".into(), -0.5), ("a".into(), -1.0)]);
    }

    #[test]
    fn recency_window_is_seven_days_back_from_now() {
        let now = rfc3339::parse("2026-11-23T12:00:00Z").unwrap();
        let at = |t: &str| score_tenths(&lora("x", MODEL, &[], &[], &[], Some(t), None), &[], now).unwrap();
        assert_eq!(at("2026-11-16T12:00:00Z"), 2);
        assert_eq!(at("2026-11-16T11:59:59Z"), 0);
        assert_eq!(at("2026-11-24T00:00:00Z"), 0, "a training date in the future is not recent");
    }

    #[test]
    fn bad_timestamps_are_refused() {
        let mut i = c_lora_1(LoraSelectorMode::Auto, None);
        i.now = "now".into();
        assert!(matches!(select(&i), Err(PluginError::InvalidInput(_))));
        let mut j = c_lora_1(LoraSelectorMode::Auto, None);
        j.registry[0].last_trained_at = Some("last week".into());
        assert!(matches!(select(&j), Err(PluginError::InvalidInput(m)) if m.contains("rust-async")));
    }
}
