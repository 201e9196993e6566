//! The completion signal protocol (MTX-SPEC 6.1-6.4): finds the model's `<mt_complete>` or
//! `<blocked>` block, decides whether a claim is well-formed, and checks its evidence
//! against the workspace.
//!
//! Deliberate change from the spec (\[D\] 6.2 rule 2 accepted blocks inside fenced code):
//! mtx ignores completion and blocked tags that sit inside a fenced code section (opened by
//! three or more backticks or tildes) or inside an edit block (`<file>` / `<edit>`, see [`crate::edits`]). A model quoting
//! the template, or writing a file whose text contains the tags, must never look like a
//! claim. Such tags add the warning `signal_in_quoted_text_ignored`.
//!
//! Other choices this module makes where the grammar is loose: tag names are matched
//! case-insensitively (ABNF literals are), the `MT_ID:` and `EVIDENCE:` lines may come in
//! either order, evidence lines are the `-` lines after `EVIDENCE:`, and curly double
//! quotes around a criterion are accepted.
//!
//! The parser never executes or evaluates anything it finds, and nothing it returns is
//! trusted: a claim only starts validation.

use std::ops::Range;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::edits::quoted_spans;
use crate::types::{CompletionEvidence, CompletionSignal, DoneVerification, MicroTaskDefinition};
use crate::workspace::{WorkspaceReader, normalize_path, path_in_entries, text_lines};

/// A block larger than this is malformed (6.2 rule 7).
pub const MAX_SIGNAL_BLOCK_BYTES: usize = 16 * 1024;

/// Warning codes the parser writes into `parse_warnings`.
pub mod warning {
    pub const CONTRADICTORY_SIGNAL: &str = "contradictory_signal";
    pub const MULTIPLE_SIGNALS: &str = "multiple_signals";
    pub const PLACEHOLDER_IN_SIGNAL: &str = "placeholder_in_signal";
    pub const MT_ID_MISMATCH: &str = "mt_id_mismatch";
    pub const MISSING_MT_ID: &str = "missing_mt_id";
    pub const MISSING_EVIDENCE: &str = "missing_evidence";
    pub const UNPARSEABLE_EVIDENCE_LINE: &str = "unparseable_evidence_line";
    pub const UNCLOSED_COMPLETION_BLOCK: &str = "unclosed_completion_block";
    pub const UNCLOSED_BLOCKED_BLOCK: &str = "unclosed_blocked_block";
    pub const SIGNAL_TOO_LARGE: &str = "signal_too_large";
    pub const SIGNAL_IN_QUOTED_TEXT_IGNORED: &str = "signal_in_quoted_text_ignored";
}

/// A parsed `path:start-end` evidence location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceLocation {
    pub path: String,
    pub start: u64,
    pub end: u64,
}

fn location_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^(?P<path>[^:\s]+):(?P<start>[0-9]+)(?:-(?P<end>[0-9]+))?$").unwrap())
}

fn placeholder_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\{[A-Za-z_][A-Za-z0-9_]*\}").unwrap())
}

/// Template words of the spec and of mtx's own prompt: `{word}` with one of these names
/// is an unfilled placeholder anywhere in a block.
const TEMPLATE_WORDS: [&str; 12] = [
    "mt_id",
    "file",
    "path",
    "start",
    "end",
    "line",
    "criterion",
    "description",
    "location",
    "evidence",
    "reason",
    "need",
];
/// Literal fragments of the block template mtx renders into SYSTEM RULES.
const TEMPLATE_FRAGMENTS: [&str; 4] =
    ["<done criterion>", "path/to/file.rs", ":START-END", "<what would unblock it>"];

/// 6.3 rule 4. A `{name}` placeholder counts when it sits in the MT_ID value or in an
/// evidence location, or when its name is a template word (`{criterion_1}` included);
/// elsewhere braces are ordinary text, because a criterion may quote a Rust format
/// string such as `"{value}"`. Fragments of mtx's own template always count.
fn has_placeholder(body: &str, claimed_mt_id: Option<&str>) -> bool {
    if TEMPLATE_FRAGMENTS.iter().any(|f| body.contains(f)) {
        return true;
    }
    if claimed_mt_id.is_some_and(|id| placeholder_regex().is_match(id)) {
        return true;
    }
    let in_location = body
        .lines()
        .filter_map(parse_evidence_line)
        .any(|e| placeholder_regex().is_match(&e.evidence_location));
    if in_location {
        return true;
    }
    placeholder_regex().find_iter(body).any(|m| {
        let name = m.as_str().trim_matches(|c| c == '{' || c == '}').to_ascii_lowercase();
        let base = name.trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches('_');
        TEMPLATE_WORDS.contains(&base)
    })
}

/// Parses an evidence location (6.2 rule 10): backticks removed, trimmed, `path:line` or
/// `path:start-end`. `None` when it does not match or a number overflows.
pub fn parse_location(text: &str) -> Option<EvidenceLocation> {
    let cleaned: String = text.chars().filter(|c| *c != '`').collect();
    let caps = location_regex().captures(cleaned.trim())?;
    let start: u64 = caps["start"].parse().ok()?;
    let end: u64 = match caps.name("end") {
        Some(e) => e.as_str().parse().ok()?,
        None => start,
    };
    Some(EvidenceLocation { path: caps["path"].to_string(), start, end })
}

const ARROWS: [&str; 3] = ["->", "=>", "\u{2192}"];

fn strip_arrow(s: &str) -> Option<&str> {
    ARROWS.iter().find_map(|a| s.strip_prefix(a))
}

fn find_arrow(s: &str) -> Option<(usize, usize)> {
    ARROWS.iter().filter_map(|a| s.find(a).map(|i| (i, a.len()))).min()
}

/// Parses one evidence line (6.2 rule 10). `None` when it is not parseable.
pub fn parse_evidence_line(line: &str) -> Option<CompletionEvidence> {
    let rest = line.trim().strip_prefix('-')?.trim();
    let (criterion, after) = if let Some(q) = rest.strip_prefix('"').or_else(|| rest.strip_prefix('\u{201C}'))
    {
        // `\"` inside the quotes is an escaped quote (models quote code that way).
        let close = q
            .char_indices()
            .find(|(i, c)| (*c == '"' || *c == '\u{201D}') && !q[..*i].ends_with('\\'))
            .map(|(i, _)| i)?;
        let closing_len = q[close..].chars().next()?.len_utf8();
        (
            q[..close].replace("\\\"", "\"").trim().to_string(),
            strip_arrow(q[close + closing_len..].trim_start())?,
        )
    } else {
        let (at, len) = find_arrow(rest)?;
        (rest[..at].trim().to_string(), &rest[at + len..])
    };
    if criterion.is_empty() {
        return None;
    }
    let location_text: String = after.chars().filter(|c| *c != '`').collect();
    let location_text = location_text.trim().to_string();
    parse_location(&location_text)?;
    Some(CompletionEvidence { criterion, evidence_location: location_text })
}

/// Occurrences of a tag (ASCII case-insensitive) outside the quoted spans.
struct TagHits {
    live: Vec<usize>,
    quoted: usize,
}

fn find_tag(lower: &str, tag: &str, quoted: &[Range<usize>]) -> TagHits {
    let mut hits = TagHits { live: Vec::new(), quoted: 0 };
    for (at, _) in lower.match_indices(tag) {
        if quoted.iter().any(|r| r.contains(&at)) {
            hits.quoted += 1;
        } else {
            hits.live.push(at);
        }
    }
    hits
}

/// A block found in the response: the first opening tag and the first closing tag after it.
struct FoundBlock {
    /// From the start of the opening tag to the end of the closing tag.
    raw: Range<usize>,
    body: Range<usize>,
    /// More opening tags after this block.
    further: bool,
}

enum BlockSearch {
    Absent,
    Unclosed,
    Found(FoundBlock),
}

fn find_block(lower: &str, open: &str, close: &str, quoted: &[Range<usize>]) -> (BlockSearch, usize) {
    let opens = find_tag(lower, open, quoted);
    let closes = find_tag(lower, close, quoted);
    let ignored = opens.quoted;
    let Some(&start) = opens.live.first() else {
        return (BlockSearch::Absent, ignored);
    };
    let Some(&end) = closes.live.iter().find(|c| **c > start) else {
        return (BlockSearch::Unclosed, ignored);
    };
    let raw = start..end + close.len();
    let further = opens.live.iter().any(|o| *o >= raw.end);
    (BlockSearch::Found(FoundBlock { raw, body: start + open.len()..end, further }), ignored)
}

/// Lines of a block body: `\r` removed, trimmed.
fn block_lines(body: &str) -> Vec<&str> {
    body.split('\n').map(|l| l.trim_matches(|c: char| c == '\r' || c.is_whitespace())).collect()
}

/// `Some(value)` if `line` is `KEY: value` for `key` (case-insensitive, trimmed).
fn key_value<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    let (k, v) = line.split_once(':')?;
    k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
}

fn push_warning(warnings: &mut Vec<String>, w: &str) {
    if !warnings.iter().any(|x| x == w) {
        warnings.push(w.to_string());
    }
}

/// Parses a model response for the completion protocol of MTX-SPEC 6.1-6.3 (with the
/// quoted-text change described in the module docs). `mt_id` is the current MT.
pub fn parse_completion(response: &str, mt_id: &str) -> CompletionSignal {
    let mut signal = CompletionSignal::default();
    let mut warnings = Vec::new();
    let quoted = quoted_spans(response);
    // ASCII lowercasing keeps byte offsets, so hits in `lower` index `response` directly.
    let lower = response.to_ascii_lowercase();

    let (complete, ignored_c) = find_block(&lower, "<mt_complete>", "</mt_complete>", &quoted);
    let (blocked, ignored_b) = find_block(&lower, "<blocked>", "</blocked>", &quoted);
    if ignored_c + ignored_b > 0 {
        push_warning(&mut warnings, warning::SIGNAL_IN_QUOTED_TEXT_IGNORED);
    }

    let mut complete_raw = None;
    match complete {
        BlockSearch::Absent => {}
        BlockSearch::Unclosed => {
            signal.malformed = true;
            push_warning(&mut warnings, warning::UNCLOSED_COMPLETION_BLOCK);
        }
        BlockSearch::Found(block) => {
            if block.further {
                push_warning(&mut warnings, warning::MULTIPLE_SIGNALS);
            }
            if block.raw.len() > MAX_SIGNAL_BLOCK_BYTES {
                signal.malformed = true;
                push_warning(&mut warnings, warning::SIGNAL_TOO_LARGE);
            } else {
                complete_raw = Some(response[block.raw.clone()].to_string());
                parse_complete_body(&response[block.body], mt_id, &mut signal, &mut warnings);
            }
        }
    }

    let mut blocked_raw = None;
    match blocked {
        BlockSearch::Absent => {}
        BlockSearch::Unclosed => push_warning(&mut warnings, warning::UNCLOSED_BLOCKED_BLOCK),
        BlockSearch::Found(block) => {
            if block.further {
                push_warning(&mut warnings, warning::MULTIPLE_SIGNALS);
            }
            if block.raw.len() > MAX_SIGNAL_BLOCK_BYTES {
                push_warning(&mut warnings, warning::SIGNAL_TOO_LARGE);
            } else {
                blocked_raw = Some(response[block.raw.clone()].to_string());
                parse_blocked_body(&response[block.body], &mut signal);
            }
        }
    }

    if complete_raw.is_some() && blocked_raw.is_some() {
        push_warning(&mut warnings, warning::CONTRADICTORY_SIGNAL);
    }
    signal.raw_block = complete_raw.or(blocked_raw);
    signal.parse_warnings = warnings;
    signal
}

fn parse_complete_body(body: &str, mt_id: &str, signal: &mut CompletionSignal, warnings: &mut Vec<String>) {
    let lines = block_lines(body);
    let mut well_formed = true;

    let claimed = lines.iter().find_map(|l| key_value(l, "MT_ID"));
    signal.claimed_mt_id = claimed.map(str::to_string);
    match claimed {
        None => {
            well_formed = false;
            push_warning(warnings, warning::MISSING_MT_ID);
        }
        Some(id) if id != mt_id => {
            well_formed = false;
            push_warning(warnings, warning::MT_ID_MISMATCH);
        }
        Some(_) => {}
    }

    if has_placeholder(body, claimed) {
        well_formed = false;
        push_warning(warnings, warning::PLACEHOLDER_IN_SIGNAL);
    }

    let mut evidence = Vec::new();
    match lines.iter().position(|l| key_value(l, "EVIDENCE").is_some()) {
        None => {
            well_formed = false;
            push_warning(warnings, warning::MISSING_EVIDENCE);
        }
        Some(at) => {
            for line in &lines[at + 1..] {
                if line.is_empty() || key_value(line, "MT_ID").is_some() {
                    continue;
                }
                match parse_evidence_line(line) {
                    Some(e) => evidence.push(e),
                    None => push_warning(warnings, warning::UNPARSEABLE_EVIDENCE_LINE),
                }
            }
            if evidence.is_empty() {
                well_formed = false;
                push_warning(warnings, warning::MISSING_EVIDENCE);
            }
        }
    }
    signal.evidence = (!evidence.is_empty()).then_some(evidence);
    signal.claimed_complete = well_formed;
    signal.malformed = !well_formed;
}

fn parse_blocked_body(body: &str, signal: &mut CompletionSignal) {
    let lines = block_lines(body);
    signal.blocked = true;
    signal.blocked_reason = Some(
        lines
            .iter()
            .find_map(|l| key_value(l, "REASON"))
            .map(str::to_string)
            .unwrap_or_else(|| body.trim().to_string()),
    );
    signal.blocked_need = lines.iter().find_map(|l| key_value(l, "NEED")).map(str::to_string);
}

/// What is wrong with one evidence line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EvidenceProblemKind {
    /// The location does not parse (only possible for hand-built signals).
    Unparseable,
    /// The path is not in files.read / modify / create.
    OutOfScope,
    /// The file does not exist.
    MissingFile,
    /// The file could not be read.
    Unreadable { error: String },
    /// Not `1 <= start <= end <= line_count`.
    RangeOutOfBounds { line_count: u64 },
    /// Every cited line is blank.
    BlankRange,
    /// Fewer valid lines than `evidence_required` criteria (criterion and location empty).
    TooFewValidLines { required: usize, valid: usize },
    /// No completion was claimed, so there is nothing to verify.
    NoClaim,
}

/// One failed evidence check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceProblem {
    pub criterion: String,
    pub location: String,
    pub kind: EvidenceProblemKind,
}

/// The result of [`verify_evidence`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceCheck {
    /// `evidence_verified` of 6.4 item 6.
    pub verified: bool,
    pub problems: Vec<EvidenceProblem>,
    /// Some evidence pointed outside the MT's files (failure category `scope_violation`).
    pub scope_violation: bool,
    /// Cited in-scope paths that do not exist (a hint for `hallucination_api`).
    pub missing_references: Vec<String>,
    /// Non-failing findings, e.g. `criterion_not_matched:<index>` (6.4 item 4).
    pub warnings: Vec<String>,
}

fn normalize_text(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn criterion_matches(required: &str, quoted: &str) -> bool {
    let (a, b) = (normalize_text(required), normalize_text(quoted));
    !a.is_empty() && !b.is_empty() && (a == b || a.contains(&b) || b.contains(&a))
}

/// Verifies the evidence of a claim (MTX-SPEC 6.4 items 1-4 and 6) against the workspace
/// after edits were applied.
///
/// Every evidence line must be valid (in scope, existing file, range inside the file, not
/// only blank lines): an invalid line fails verification even when enough other lines are
/// valid, because a citation of a file that does not exist is exactly the gaming 12.3
/// scenario 1 describes. A criterion text that matches no evidence line is only a warning.
pub fn verify_evidence(
    signal: &CompletionSignal,
    mt: &MicroTaskDefinition,
    reader: &dyn WorkspaceReader,
) -> EvidenceCheck {
    let mut check = EvidenceCheck::default();
    if !signal.claimed_complete {
        check.problems.push(EvidenceProblem {
            criterion: String::new(),
            location: String::new(),
            kind: EvidenceProblemKind::NoClaim,
        });
        return check;
    }
    let in_scope: Vec<String> = mt
        .files
        .read
        .iter()
        .chain(&mt.files.modify)
        .chain(&mt.files.create)
        .map(|p| normalize_path(p))
        .collect();
    let evidence = signal.evidence.as_deref().unwrap_or(&[]);
    let mut valid = 0usize;
    for e in evidence {
        let problem = |kind| EvidenceProblem {
            criterion: e.criterion.clone(),
            location: e.evidence_location.clone(),
            kind,
        };
        let Some(loc) = parse_location(&e.evidence_location) else {
            check.problems.push(problem(EvidenceProblemKind::Unparseable));
            continue;
        };
        let path = normalize_path(&loc.path);
        if path.is_empty() || !path_in_entries(&path, &in_scope) {
            check.scope_violation = true;
            check.problems.push(problem(EvidenceProblemKind::OutOfScope));
            continue;
        }
        let bytes = match reader.read(&path) {
            Ok(Some(b)) => b,
            Ok(None) => {
                if !check.missing_references.contains(&path) {
                    check.missing_references.push(path.clone());
                }
                check.problems.push(problem(EvidenceProblemKind::MissingFile));
                continue;
            }
            Err(err) => {
                check.problems.push(problem(EvidenceProblemKind::Unreadable { error: err.to_string() }));
                continue;
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        let lines = text_lines(&text);
        let line_count = lines.len() as u64;
        if loc.start < 1 || loc.start > loc.end || loc.end > line_count {
            check.problems.push(problem(EvidenceProblemKind::RangeOutOfBounds { line_count }));
            continue;
        }
        if lines[(loc.start - 1) as usize..loc.end as usize].iter().all(|l| l.trim().is_empty()) {
            check.problems.push(problem(EvidenceProblemKind::BlankRange));
            continue;
        }
        valid += 1;
    }
    let required: Vec<&str> = mt
        .done
        .iter()
        .filter(|d| d.verification == DoneVerification::EvidenceRequired)
        .map(|d| d.description.as_str())
        .collect();
    // A claim needs at least one valid line even without evidence_required criteria (6.3).
    let needed = required.len().max(1);
    if valid < needed {
        check.problems.push(EvidenceProblem {
            criterion: String::new(),
            location: String::new(),
            kind: EvidenceProblemKind::TooFewValidLines { required: needed, valid },
        });
    }
    for (i, criterion) in mt.done.iter().enumerate() {
        if criterion.verification == DoneVerification::EvidenceRequired
            && !evidence.iter().any(|e| criterion_matches(&criterion.description, &e.criterion))
        {
            check.warnings.push(format!("criterion_not_matched:{i}"));
        }
    }
    check.verified = check.problems.is_empty();
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::mt_with_files;
    use crate::workspace::MemReader;

    fn block(id: &str, lines: &[&str]) -> String {
        format!("<mt_complete>\nMT_ID: {id}\nEVIDENCE:\n{}\n</mt_complete>", lines.join("\n"))
    }

    const LINE: &str = "- \"parse_config returns the parsed value\" -> src/a.rs:1-3";

    #[test]
    fn well_formed_block_is_a_claim() {
        let s = parse_completion(&format!("Done.\n{}\n", block("MT-001", &[LINE])), "MT-001");
        assert!(s.claimed_complete);
        assert!(!s.malformed && !s.blocked);
        assert_eq!(s.claimed_mt_id.as_deref(), Some("MT-001"));
        let ev = s.evidence.unwrap();
        assert_eq!(ev[0].criterion, "parse_config returns the parsed value");
        assert_eq!(ev[0].evidence_location, "src/a.rs:1-3");
        assert!(s.raw_block.unwrap().starts_with("<mt_complete>"));
        assert!(s.parse_warnings.is_empty());
    }

    #[test]
    fn crlf_line_ends_are_accepted() {
        let text = block("MT-001", &[LINE]).replace('\n', "\r\n");
        let s = parse_completion(&text, "MT-001");
        assert!(s.claimed_complete, "{:?}", s.parse_warnings);
        assert_eq!(s.evidence.unwrap()[0].evidence_location, "src/a.rs:1-3");
    }

    #[test]
    fn key_names_and_tags_are_case_insensitive() {
        let text = format!("<MT_COMPLETE>\n  mt_id: MT-001  \n evidence:\n {LINE}\n</Mt_Complete>");
        assert!(parse_completion(&text, "MT-001").claimed_complete);
    }

    #[test]
    fn all_arrows_backticks_and_single_lines_parse() {
        for line in [
            "- \"c\" -> src/a.rs:4",
            "- \"c\" => src/a.rs:4-4",
            "- \"c\" \u{2192} `src/a.rs:4`",
            "- c -> src/a.rs:4",
            "- \u{201C}c\u{201D} -> src/a.rs:4",
        ] {
            let e = parse_evidence_line(line).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(e.criterion, "c");
            let loc = parse_location(&e.evidence_location).unwrap();
            assert_eq!((loc.path.as_str(), loc.start, loc.end), ("src/a.rs", 4, 4));
        }
        for bad in
            ["\"c\" -> a.rs:1", "- \"c\" a.rs:1", "- \"c\" -> a.rs", "- \"c\" -> a b.rs:1", "- -> a.rs:1"]
        {
            assert!(parse_evidence_line(bad).is_none(), "{bad}");
        }
        assert!(parse_location("a.rs:99999999999999999999999").is_none());
    }

    #[test]
    fn yes_between_tags_is_malformed_not_a_claim() {
        let s = parse_completion("<mt_complete>yes</mt_complete>", "MT-001");
        assert!(!s.claimed_complete && s.malformed);
        assert!(s.parse_warnings.contains(&"missing_mt_id".to_string()));
        assert!(s.parse_warnings.contains(&"missing_evidence".to_string()));
    }

    #[test]
    fn mt_id_mismatch_is_malformed() {
        let s = parse_completion(&block("MT-002", &[LINE]), "MT-001");
        assert!(!s.claimed_complete && s.malformed);
        assert_eq!(s.parse_warnings, vec!["mt_id_mismatch"]);
        assert_eq!(s.claimed_mt_id.as_deref(), Some("MT-002"));
    }

    #[test]
    fn evidence_without_parseable_line_is_malformed() {
        let s = parse_completion(&block("MT-001", &["- \"c\" -> somewhere"]), "MT-001");
        assert!(!s.claimed_complete && s.malformed);
        assert!(s.parse_warnings.contains(&"unparseable_evidence_line".to_string()));
        assert!(s.parse_warnings.contains(&"missing_evidence".to_string()));
    }

    #[test]
    fn one_bad_line_among_good_ones_is_only_a_warning() {
        let s = parse_completion(&block("MT-001", &[LINE, "- nonsense"]), "MT-001");
        assert!(s.claimed_complete);
        assert_eq!(s.parse_warnings, vec!["unparseable_evidence_line"]);
    }

    #[test]
    fn placeholders_are_malformed() {
        for text in [
            block("{mt_id}", &[LINE]),
            block("MT-001", &["- \"{criterion_1}\" -> {file}:1-2"]),
            block("MT-001", &[LINE, "- \"{criterion_2}\" -> src/a.rs:1"]),
        ] {
            let s = parse_completion(&text, "MT-001");
            assert!(!s.claimed_complete && s.malformed, "{text}");
            assert!(s.parse_warnings.contains(&"placeholder_in_signal".to_string()), "{text}");
        }
    }

    #[test]
    fn braces_in_a_criterion_are_not_placeholders() {
        let s = parse_completion(
            &block("MT-001", &["- \"Display prints \\\"{value}\\\" via format!\" -> src/a.rs:1-3"]),
            "MT-001",
        );
        assert!(s.claimed_complete, "{:?}", s.parse_warnings);
        assert_eq!(s.evidence.unwrap()[0].criterion, "Display prints \"{value}\" via format!");
        let s = parse_completion(&block("MT-001", &["- \"uses {value}\" -> src/a.rs:1-3"]), "MT-001");
        assert!(s.claimed_complete, "{:?}", s.parse_warnings);
        let s = parse_completion(&block("MT-001", &["- \"c\" -> {src}:1-3"]), "MT-001");
        assert!(s.malformed, "a placeholder in the location always counts");
    }

    #[test]
    fn the_prompt_template_copied_verbatim_is_malformed() {
        let s = parse_completion(&block("MT-001", &["- \"<done criterion>\" -> src/a.rs:1-3"]), "MT-001");
        assert!(s.malformed);
        assert_eq!(s.parse_warnings, vec!["placeholder_in_signal"]);
    }

    #[test]
    fn tags_inside_fences_do_not_count() {
        for fence in ["```", "~~~", "````text"] {
            let close = if fence.starts_with('~') {
                "~~~"
            } else if fence.starts_with("````") {
                "````"
            } else {
                "```"
            };
            let text = format!("Template:\n{fence}\n{}\n{close}\nstill working", block("MT-001", &[LINE]));
            let s = parse_completion(&text, "MT-001");
            assert!(!s.claimed_complete && !s.malformed, "{fence}");
            assert_eq!(s.parse_warnings, vec!["signal_in_quoted_text_ignored"]);
        }
        let text = "```\n<blocked>\nREASON: x\nNEED: y\n</blocked>\n```\n";
        assert!(!parse_completion(text, "MT-001").blocked);
    }

    #[test]
    fn tags_inside_edit_blocks_do_not_count() {
        let text = format!("<file path=\"docs/t.md\">\n{}\n</file>\n", block("MT-001", &[LINE]));
        let s = parse_completion(&text, "MT-001");
        assert!(!s.claimed_complete);
        let text = format!(
            "<edit path=\"a.md\">\n<<<<<<< SEARCH\nx\n=======\n{}\n>>>>>>> REPLACE\n</edit>\n",
            block("MT-001", &[LINE])
        );
        assert!(!parse_completion(&text, "MT-001").claimed_complete);
    }

    #[test]
    fn a_real_block_after_a_quoted_one_counts() {
        let text = format!(
            "```\n{}\n```\n{}\n",
            block("MT-001", &["- \"x\" -> {file}:1"]),
            block("MT-001", &[LINE])
        );
        let s = parse_completion(&text, "MT-001");
        assert!(s.claimed_complete, "{:?}", s.parse_warnings);
        assert!(s.parse_warnings.contains(&"signal_in_quoted_text_ignored".to_string()));
    }

    #[test]
    fn blocked_block_fills_reason_and_need() {
        let s = parse_completion(
            "<blocked>\r\nREASON: need the schema\r\nneed: read access to db.rs\r\n</blocked>",
            "MT-001",
        );
        assert!(s.blocked && !s.claimed_complete && !s.malformed);
        assert_eq!(s.blocked_reason.as_deref(), Some("need the schema"));
        assert_eq!(s.blocked_need.as_deref(), Some("read access to db.rs"));
        assert!(s.raw_block.unwrap().starts_with("<blocked>"));
    }

    #[test]
    fn blocked_without_reason_uses_whole_block_and_unclosed_is_not_blocked() {
        let s = parse_completion("<blocked>\n  cannot continue  \n</blocked>", "MT-001");
        assert_eq!(s.blocked_reason.as_deref(), Some("cannot continue"));
        let s = parse_completion("<blocked>\nREASON: x\n", "MT-001");
        assert!(!s.blocked);
        assert_eq!(s.parse_warnings, vec!["unclosed_blocked_block"]);
    }

    #[test]
    fn neither_block_means_still_working() {
        let s = parse_completion("I am still editing the file.", "MT-001");
        assert_eq!(s, CompletionSignal::default());
    }

    #[test]
    fn both_blocks_are_contradictory_and_both_parsed() {
        let text = format!("{}\n<blocked>\nREASON: r\nNEED: n\n</blocked>", block("MT-001", &[LINE]));
        let s = parse_completion(&text, "MT-001");
        assert!(s.claimed_complete && s.blocked);
        assert!(s.parse_warnings.contains(&"contradictory_signal".to_string()));
        assert!(s.raw_block.unwrap().starts_with("<mt_complete>"), "raw_block prefers the completion block");
    }

    #[test]
    fn first_block_wins_and_further_blocks_warn() {
        let text = format!("{}\n{}", block("MT-001", &[LINE]), block("MT-009", &[LINE]));
        let s = parse_completion(&text, "MT-001");
        assert!(s.claimed_complete);
        assert_eq!(s.parse_warnings, vec!["multiple_signals"]);
        let text = format!("{}\n{}", block("MT-009", &[LINE]), block("MT-001", &[LINE]));
        assert!(!parse_completion(&text, "MT-001").claimed_complete, "only the first block counts");
    }

    #[test]
    fn unclosed_completion_block_is_malformed() {
        let s = parse_completion("<mt_complete>\nMT_ID: MT-001\nEVIDENCE:\n- \"c\" -> a.rs:1\n", "MT-001");
        assert!(!s.claimed_complete && s.malformed);
        assert_eq!(s.parse_warnings, vec!["unclosed_completion_block"]);
    }

    #[test]
    fn oversized_block_is_malformed() {
        let many: Vec<String> =
            (0..600).map(|i| format!("- \"criterion number {i}\" -> src/a.rs:1-3")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let text = block("MT-001", &refs);
        assert!(text.len() > MAX_SIGNAL_BLOCK_BYTES);
        let s = parse_completion(&text, "MT-001");
        assert!(!s.claimed_complete && s.malformed);
        assert_eq!(s.parse_warnings, vec!["signal_too_large"]);
    }

    fn claim(lines: &[&str]) -> CompletionSignal {
        let s = parse_completion(&block("MT-001", lines), "MT-001");
        assert!(s.claimed_complete, "{:?}", s.parse_warnings);
        s
    }

    fn workspace() -> MemReader {
        MemReader::new([("src/a.rs", "fn parse_config() {\n    1\n}\n\n\n"), ("README.md", "readme\n")])
    }

    #[test]
    fn valid_evidence_verifies() {
        let mt = mt_with_files(&["README.md"], &["src/a.rs"], &[]);
        let c = verify_evidence(&claim(&[LINE]), &mt, &workspace());
        assert!(c.verified, "{:?}", c.problems);
        assert!(c.warnings.is_empty() && !c.scope_violation);
    }

    #[test]
    fn evidence_pointing_at_a_missing_file_fails() {
        let mt = mt_with_files(&[], &["src/a.rs"], &["src/new.rs"]);
        let c = verify_evidence(
            &claim(&["- \"parse_config returns the parsed value\" -> src/new.rs:1"]),
            &mt,
            &workspace(),
        );
        assert!(!c.verified);
        assert_eq!(c.problems[0].kind, EvidenceProblemKind::MissingFile);
        assert_eq!(c.missing_references, vec!["src/new.rs"]);
    }

    #[test]
    fn evidence_beyond_eof_or_reversed_fails() {
        let mt = mt_with_files(&[], &["src/a.rs"], &[]);
        for loc in ["src/a.rs:4-9", "src/a.rs:6", "src/a.rs:0-1", "src/a.rs:3-2"] {
            let line = format!("- \"parse_config returns the parsed value\" -> {loc}");
            let c = verify_evidence(&claim(&[&line]), &mt, &workspace());
            assert!(!c.verified, "{loc}");
            assert_eq!(c.problems[0].kind, EvidenceProblemKind::RangeOutOfBounds { line_count: 5 }, "{loc}");
        }
    }

    #[test]
    fn evidence_outside_scope_is_a_scope_violation() {
        let mt = mt_with_files(&[], &["src/a.rs"], &[]);
        let c = verify_evidence(
            &claim(&["- \"parse_config returns the parsed value\" -> README.md:1"]),
            &mt,
            &workspace(),
        );
        assert!(!c.verified && c.scope_violation);
        assert_eq!(c.problems[0].kind, EvidenceProblemKind::OutOfScope);
    }

    #[test]
    fn evidence_path_climbing_out_of_a_listed_dir_is_out_of_scope() {
        let mt = mt_with_files(&["src/**"], &[], &[]);
        let c = verify_evidence(
            &claim(&["- \"parse_config returns the parsed value\" -> src/../README.md:1"]),
            &mt,
            &workspace(),
        );
        assert!(c.scope_violation && !c.verified);
    }

    #[test]
    fn evidence_on_blank_lines_fails() {
        let mt = mt_with_files(&[], &["src/a.rs"], &[]);
        let c = verify_evidence(
            &claim(&["- \"parse_config returns the parsed value\" -> src/a.rs:4-5"]),
            &mt,
            &workspace(),
        );
        assert_eq!(c.problems[0].kind, EvidenceProblemKind::BlankRange);
        assert!(!c.verified);
    }

    #[test]
    fn too_few_valid_lines_fails_and_text_mismatch_only_warns() {
        let mut mt = mt_with_files(&[], &["src/a.rs"], &[]);
        mt.done[0].verification = DoneVerification::EvidenceRequired;
        let c = verify_evidence(&claim(&["- \"something else\" -> src/a.rs:1"]), &mt, &workspace());
        assert!(!c.verified);
        assert_eq!(c.problems[0].kind, EvidenceProblemKind::TooFewValidLines { required: 2, valid: 1 });
        assert_eq!(c.warnings, vec!["criterion_not_matched:0", "criterion_not_matched:1"]);

        let c = verify_evidence(
            &claim(&["- \"other\" -> src/a.rs:1", "- \"more\" -> `./src/a.rs:2`"]),
            &mt,
            &workspace(),
        );
        assert!(c.verified, "text mismatch alone is a warning: {:?}", c.problems);
        assert_eq!(c.warnings.len(), 2);
    }

    #[test]
    fn no_claim_is_never_verified() {
        let mt = mt_with_files(&[], &["src/a.rs"], &[]);
        let c = verify_evidence(&CompletionSignal::default(), &mt, &workspace());
        assert!(!c.verified);
        assert_eq!(c.problems[0].kind, EvidenceProblemKind::NoClaim);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics_and_only_claims_the_current_mt(text in "\\PC{0,300}") {
            let s = parse_completion(&text, "MT-001");
            if s.claimed_complete {
                proptest::prop_assert_eq!(s.claimed_mt_id.as_deref(), Some("MT-001"));
            }
        }

        #[test]
        fn rendered_blocks_parse_back_to_their_evidence(
            items in proptest::collection::vec(
                ("[A-Za-z][A-Za-z0-9 ()_.,-]{0,40}", "[a-z][a-z0-9_/]{0,20}\\.rs", 1u64..100_000, 0u64..50),
                1..8,
            ),
            arrow in 0usize..3,
            crlf in proptest::bool::ANY,
        ) {
            let arrows = ["->", "=>", "\u{2192}"];
            let lines: Vec<String> = items
                .iter()
                .map(|(c, p, start, len)| format!("- \"{c}\" {} {p}:{start}-{}", arrows[arrow], start + len))
                .collect();
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let mut text = block("MT-001", &refs);
            if crlf {
                text = text.replace('\n', "\r\n");
            }
            let s = parse_completion(&text, "MT-001");
            proptest::prop_assert!(s.claimed_complete, "{:?}", s.parse_warnings);
            let ev = s.evidence.unwrap();
            proptest::prop_assert_eq!(ev.len(), items.len());
            for (e, (c, p, start, len)) in ev.iter().zip(&items) {
                proptest::prop_assert_eq!(&e.criterion, c.trim());
                let loc = parse_location(&e.evidence_location).unwrap();
                proptest::prop_assert_eq!((&loc.path, loc.start, loc.end), (p, *start, start + len));
            }
        }

        #[test]
        fn crlf_and_lf_parse_the_same(start in 1u32..500, len in 0u32..50) {
            let line = format!("- \"c\" -> src/a.rs:{}-{}", start, start + len);
            let lf = block("MT-001", &[&line]);
            let a = parse_completion(&lf, "MT-001");
            let mut b = parse_completion(&lf.replace('\n', "\r\n"), "MT-001");
            b.raw_block = a.raw_block.clone();
            proptest::prop_assert_eq!(a, b);
        }
    }
}
