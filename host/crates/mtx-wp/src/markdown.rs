//! The markdown Work Packet grammar (MTX-SPEC 14.2).
//!
//! Real packets are hand-edited and drift; the parser recovers where the grammar allows
//! and records every recovery in `WorkPacket::warnings`. It reads only the sections that
//! carry inputs and must never treat history sections (14.2.8) or fenced content as
//! fields.

use std::sync::LazyLock;

use regex::Regex;

use crate::error::WpError;
use crate::packet::{Bootstrap, ClauseRow, RiskMapEntry, SourceKind, WorkPacket};
use crate::paths::{looks_like_path, normalise_path, normalise_paths};

/// Section name that matches no section: search the whole document (minus history).
const WHOLE: &str = "\0";

/// Append-only history sections that are never inputs (14.2.8).
const IGNORED_SECTIONS: [&str; 4] = ["VALIDATION", "STATUS_HANDOFF", "EVIDENCE", "VALIDATION_REPORTS"];

static PROJECTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^<!--\s*[A-Z_]*GENERATED_PROJECTION\b(.*?)(?:-->)?\s*$").unwrap());
static TITLE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)^#\s+Task Packet:\s*(\S+)").unwrap());
static HEADING: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(#{1,6})\s+(.*?)\s*$").unwrap());
static FENCE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(\s*)(```|~~~)").unwrap());
static HTML_COMMENT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<!--.*?(-->|$)").unwrap());
// Indented bullets; a single tab counts as indentation too.
static ITEM: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(?:\s{2,}|\t)[-*]\s+(.+?)\s*$").unwrap());
static ANY_BULLET: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*[-*]\s+(.+?)\s*$").unwrap());
static TOP_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^-\s*(?:\*\*)?[A-Z][A-Z0-9_ ()/.-]*(?:\*\*)?\s*:\s*$").unwrap());
// A stray label ends DONE_MEANS: an UPPER_SNAKE key with a colon (`- PRIMITIVES_EXPOSED:`),
// or any all-caps key with nothing after the colon (`- NOTES:`). `- DB: x` stays a bullet.
static STRAY_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^-\s*(?:\*\*)?([A-Z][A-Z0-9]*_[A-Z0-9_]*|[A-Z][A-Z0-9]+)(?:\*\*)?\s*:(\s*$)?").unwrap()
});
static RISK: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"^"(.*)"\s*->\s*"(.*)"$"#).unwrap());

/// One line of the document with its fence status.
struct Line<'a> {
    text: &'a str,
    /// Inside a fenced block, or a fence delimiter itself.
    fenced: bool,
}

/// A `##` section: upper-cased name without its parenthetical suffix, and its line range.
struct Section {
    name: String,
    start: usize,
    end: usize,
}

/// The parsed document: lines, sections, warnings.
struct Doc<'a> {
    lines: Vec<Line<'a>>,
    sections: Vec<Section>,
}

fn section_name(raw: &str) -> String {
    let name = match raw.find('(') {
        Some(i) => &raw[..i],
        None => raw,
    };
    // `## LINEAGE_AUDIT (ALL VERSIONS) [CX-580E]`: a bracketed tag after the name is a suffix too.
    let name = match name.find('[') {
        Some(i) => &name[..i],
        None => name,
    };
    name.trim().to_uppercase()
}

impl<'a> Doc<'a> {
    fn new(text: &'a str) -> Self {
        let mut lines = Vec::new();
        let mut open: Option<String> = None;
        for text in text.lines() {
            let fence = FENCE.captures(text).map(|c| c[2].to_string());
            match (&open, fence) {
                (None, Some(f)) => {
                    open = Some(f);
                    lines.push(Line { text, fenced: true });
                }
                (Some(o), Some(f)) if *o == f => {
                    open = None;
                    lines.push(Line { text, fenced: true });
                }
                (Some(_), _) => lines.push(Line { text, fenced: true }),
                (None, None) => lines.push(Line { text, fenced: false }),
            }
        }
        let mut sections: Vec<Section> = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if line.fenced {
                continue;
            }
            if let Some(c) = HEADING.captures(line.text)
                && c[1].len() <= 2
            {
                if let Some(last) = sections.last_mut() {
                    last.end = i;
                }
                let name = if c[1].len() == 2 { section_name(&c[2]) } else { String::new() };
                sections.push(Section { name, start: i + 1, end: lines.len() });
            }
        }
        Doc { lines, sections }
    }

    /// Line ranges to search for a field of `section`: that section when present,
    /// otherwise the whole document minus the ignored history sections (legacy packets).
    fn ranges(&self, section: &str) -> Vec<(usize, usize)> {
        let found: Vec<(usize, usize)> =
            self.sections.iter().filter(|s| s.name == section).map(|s| (s.start, s.end)).collect();
        if !found.is_empty() {
            return found;
        }
        let mut out = Vec::new();
        let mut cursor = 0;
        for s in &self.sections {
            if IGNORED_SECTIONS.contains(&s.name.as_str()) {
                out.push((cursor, s.start.saturating_sub(1)));
                cursor = s.end;
            }
        }
        out.push((cursor, self.lines.len()));
        out
    }

    fn open_lines(&self, ranges: &[(usize, usize)]) -> impl Iterator<Item = (usize, &str)> {
        ranges
            .iter()
            .flat_map(|&(a, b)| a..b)
            .filter(|&i| !self.lines[i].fenced)
            .map(|i| (i, self.lines[i].text))
    }
}

fn label_pattern(key: &str) -> String {
    format!(r"(?i)^\s*-\s*(?:\*\*)?{}(?::\*\*|\*\*:|:)", regex::escape(key))
}

/// Removes HTML comments from a value, recording the removal.
fn strip_comments(value: &str, field: &str, warnings: &mut Vec<String>) -> String {
    if value.contains("<!--") {
        warnings.push(format!("{field}: removed HTML comment after the value"));
        HTML_COMMENT.replace_all(value, "").trim().to_string()
    } else {
        value.trim().to_string()
    }
}

/// Single-value field (14.2.3): first match wins.
fn single(doc: &Doc<'_>, section: &str, key: &str, warnings: &mut Vec<String>) -> Option<String> {
    let re = Regex::new(&format!(r"{}\s*(.+?)\s*$", label_pattern(key))).unwrap();
    for (_, text) in doc.open_lines(&doc.ranges(section)) {
        if let Some(c) = re.captures(text) {
            let value = strip_comments(&c[1], key, warnings);
            if text.contains("**") {
                // Bold forms (`- **Status:** Done`) are accepted but not canonical.
                warnings.push(format!("{key}: read bold label form"));
            }
            if !value.is_empty() {
                return Some(value);
            }
        }
    }
    None
}

fn is_none_marker(v: &str) -> bool {
    let v = v.trim().trim_end_matches('.');
    v.eq_ignore_ascii_case("NONE") || v.eq_ignore_ascii_case("N/A")
}

/// List field (14.2.4): label line then indented bullets; heading fallback; `NONE`.
fn list(doc: &Doc<'_>, section: &str, label: &str, warnings: &mut Vec<String>) -> Option<Vec<String>> {
    let ranges = doc.ranges(section);
    let label_re = Regex::new(&format!(r"{}\s*(.*?)\s*$", label_pattern(label))).unwrap();
    let mut in_range: Vec<usize> = ranges.iter().flat_map(|&(a, b)| a..b).collect();
    in_range.dedup();
    for (pos, &i) in in_range.iter().enumerate() {
        let line = &doc.lines[i];
        if line.fenced {
            continue;
        }
        let Some(c) = label_re.captures(line.text) else { continue };
        let rest = strip_comments(&c[1], label, warnings);
        if is_none_marker(&rest) {
            return Some(Vec::new());
        }
        if !rest.is_empty() {
            // `- LABEL: a, b` on one line: the value is the list.
            warnings.push(format!("{label}: read inline value as a list"));
            return Some(rest.split(", ").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
        }
        let mut items = Vec::new();
        for &j in &in_range[pos + 1..] {
            let l = &doc.lines[j];
            if l.fenced {
                continue;
            }
            let t = l.text;
            if t.trim().is_empty() || t.trim_start().starts_with("<!--") {
                continue;
            }
            if HEADING.is_match(t) || TOP_LABEL.is_match(t) || t.starts_with('-') || t.starts_with('*') {
                break;
            }
            match ITEM.captures(t) {
                Some(c) => items.push(strip_comments(&c[1], label, warnings)),
                None => {
                    warnings.push(format!("{label}: list ended at unexpected line {:?}", t.trim()));
                    break;
                }
            }
        }
        if items.len() == 1 && is_none_marker(&items[0]) {
            return Some(Vec::new());
        }
        return Some(items);
    }
    heading_list(doc, label, warnings)
}

/// Heading fallback: the bullets under `#{2,6} LABEL` up to the next heading, stopping at
/// a stray `- UPPER_CASE:` label (the DONE_MEANS quirk).
fn heading_list(doc: &Doc<'_>, label: &str, warnings: &mut Vec<String>) -> Option<Vec<String>> {
    let re = Regex::new(&format!(r"(?i)^#{{2,6}}\s+{}\b", regex::escape(label))).unwrap();
    let start = doc.lines.iter().position(|l| !l.fenced && re.is_match(l.text))?;
    let mut items = Vec::new();
    for l in &doc.lines[start + 1..] {
        if l.fenced {
            continue;
        }
        if HEADING.is_match(l.text) {
            break;
        }
        if let Some(c) = STRAY_LABEL.captures(l.text)
            && (c[1].contains('_') || c.get(2).is_some())
        {
            warnings.push(format!("{label}: stopped at stray label {}", &c[1]));
            break;
        }
        if let Some(c) = ANY_BULLET.captures(l.text) {
            items.push(strip_comments(&c[1], label, warnings));
        }
    }
    if items.len() == 1 && is_none_marker(&items[0]) {
        items.clear();
    }
    Some(items)
}

/// Command lines of the first fenced block after a `### LABEL` heading or a `- LABEL:`
/// line (TEST_PLAN, RUN_COMMANDS); `#` comments and blank lines dropped, indentation
/// normalised. Without a fence, the bullets under the label are the commands.
fn commands(doc: &Doc<'_>, label: &str, warnings: &mut Vec<String>) -> Option<Vec<String>> {
    let heading = Regex::new(&format!(r"(?i)^#{{2,6}}\s+{}\b", regex::escape(label))).unwrap();
    let label_line = Regex::new(&format!(r"{}\s*$", label_pattern(label))).unwrap();
    let start = doc
        .lines
        .iter()
        .position(|l| !l.fenced && (heading.is_match(l.text) || label_line.is_match(l.text)))?;
    let mut out = Vec::new();
    let mut in_fence = false;
    let mut fence_indent = 0;
    let mut saw_fence = false;
    let mut reindented = 0;
    for l in &doc.lines[start + 1..] {
        if !l.fenced {
            if saw_fence {
                break;
            }
            if HEADING.is_match(l.text) || (TOP_LABEL.is_match(l.text) && !label_line.is_match(l.text)) {
                break;
            }
            continue;
        }
        if let Some(c) = FENCE.captures(l.text) {
            if !in_fence {
                in_fence = true;
                saw_fence = true;
                fence_indent = c[1].len();
                continue;
            }
            if l.text.trim_start().trim_start_matches(['`', '~']).trim().is_empty() {
                break;
            }
        }
        let raw = l.text;
        let indent = raw.len() - raw.trim_start().len();
        let cmd = raw.trim();
        if cmd.is_empty() || cmd.starts_with('#') {
            continue;
        }
        if indent != fence_indent {
            reindented += 1;
        }
        out.push(cmd.to_string());
    }
    if reindented > 0 {
        warnings
            .push(format!("{label}: normalised indentation of {reindented} command line(s) in the fence"));
    }
    if !saw_fence {
        let items = list(doc, WHOLE, label, warnings).unwrap_or_default();
        let items: Vec<String> = items.into_iter().map(|s| s.replace('`', "").trim().to_string()).collect();
        if !items.is_empty() {
            warnings.push(format!("{label}: no fenced block, read the bullets as commands"));
        }
        return Some(items);
    }
    Some(out)
}

/// Splits a structured row `KEY: v | KEY: v` (14.2.7).
pub fn parse_row(item: &str) -> Vec<(String, String)> {
    item.split(" | ")
        .filter_map(|cell| {
            let (k, v) = cell.split_once(':')?;
            Some((k.trim().to_uppercase(), v.trim().to_string()))
        })
        .collect()
}

fn cell<'r>(row: &'r [(String, String)], key: &str) -> Option<&'r str> {
    row.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn split_multi(v: &str) -> Vec<String> {
    let sep = if v.contains("; ") { "; " } else { ", " };
    v.split(sep).map(|s| s.trim().to_string()).filter(|s| !s.is_empty() && !is_none_marker(s)).collect()
}

fn clause_rows(doc: &Doc<'_>, warnings: &mut Vec<String>) -> Vec<ClauseRow> {
    let mut rows: Vec<ClauseRow> = Vec::new();
    let sources = [
        ("CLAUSE_CLOSURE_MATRIX", "CODE_SURFACES", "TESTS"),
        ("CLAUSE_PROOF_PLAN", "EXPECTED_CODE_SURFACES", "EXPECTED_TESTS"),
    ];
    for (section, surfaces_key, tests_key) in sources {
        if !doc.sections.iter().any(|s| s.name == section) {
            continue;
        }
        let items = list(doc, section, "CLAUSE_ROWS", warnings).unwrap_or_default();
        for item in items {
            let row = parse_row(&item);
            let Some(clause) = cell(&row, "CLAUSE") else {
                warnings.push(format!("{section}: skipped a row without CLAUSE: {item:?}"));
                continue;
            };
            if rows.iter().any(|r| r.clause == clause) {
                continue;
            }
            let surfaces: Vec<String> = cell(&row, surfaces_key).map(split_multi).unwrap_or_default();
            rows.push(ClauseRow {
                clause: clause.to_string(),
                code_surfaces: normalise_paths(&surfaces, &format!("{section}.{surfaces_key}"), warnings),
                tests: cell(&row, tests_key).map(split_multi).unwrap_or_default(),
            });
        }
    }
    rows
}

/// YAML front matter keys at the top of a file, if any (`---` ... `---`).
pub(crate) fn front_matter(text: &str) -> Vec<(String, String)> {
    let mut lines = text.trim_start_matches('\u{feff}').lines();
    if lines.next().map(str::trim) != Some("---") {
        return Vec::new();
    }
    let mut out = Vec::new();
    for l in lines {
        if l.trim() == "---" {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            out.push((k.trim().to_string(), v.trim().trim_matches(['"', '\'']).to_string()));
        }
    }
    out
}

/// Single-value lookup across the whole document outside fences, for refusal markers.
pub(crate) fn any_field(text: &str, key: &str) -> Option<String> {
    let doc = Doc::new(text);
    let mut scratch = Vec::new();
    single(&doc, WHOLE, key, &mut scratch)
}

/// Parses a markdown packet. `source_kind` says whether it is a modern `packet.md` or a
/// legacy `<WP_ID>.md`.
pub fn parse_markdown(text: &str, source_kind: SourceKind) -> Result<WorkPacket, WpError> {
    let mut warnings = Vec::new();
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => {
            warnings.push("stripped UTF-8 BOM".to_string());
            rest
        }
        None => text,
    };
    let doc = Doc::new(text);
    let mut wp = WorkPacket { source_kind: Some(source_kind), ..WorkPacket::default() };

    wp.projection = projection_keys(text);

    let title_id =
        doc.lines.iter().filter(|l| !l.fenced).find_map(|l| TITLE.captures(l.text).map(|c| c[1].to_string()));
    let meta_id = single(&doc, "METADATA", "WP_ID", &mut warnings);
    wp.wp_id = match (meta_id, title_id.clone()) {
        (Some(m), Some(t)) if m != t => {
            warnings.push(format!("wp_id: METADATA WP_ID {m} differs from title {t}; using METADATA"));
            m
        }
        (Some(m), _) => m,
        (None, Some(t)) => {
            warnings.push("wp_id: no METADATA WP_ID, read it from the title".to_string());
            t
        }
        (None, None) => return Err(WpError::MissingField { field: "wp_id".into() }),
    };
    wp.title = title_id.map(|t| format!("Task Packet: {t}")).unwrap_or_else(|| wp.wp_id.clone());

    wp.what = single(&doc, "SCOPE", "What", &mut warnings).unwrap_or_default();
    wp.why = single(&doc, "SCOPE", "Why", &mut warnings).unwrap_or_default();
    let raw_scope = list(&doc, "SCOPE", "IN_SCOPE_PATHS", &mut warnings).unwrap_or_default();
    wp.in_scope_paths = normalise_paths(&raw_scope, "IN_SCOPE_PATHS", &mut warnings);
    let raw_out = list(&doc, "SCOPE", "OUT_OF_SCOPE", &mut warnings).unwrap_or_default();
    wp.out_of_scope = out_of_scope(&raw_out, &mut warnings);
    if let Some(v) = single(&doc, "SCOPE", "TOUCHED_FILE_BUDGET", &mut warnings) {
        match v.parse::<u32>() {
            Ok(n) => wp.touched_file_budget = Some(n),
            Err(_) => warnings.push(format!("TOUCHED_FILE_BUDGET: ignored non-integer value {v:?}")),
        }
    }
    wp.broad_tool_allowlist =
        single(&doc, "SCOPE", "BROAD_TOOL_ALLOWLIST", &mut warnings).map(|s| s.to_uppercase());

    wp.test_plan = commands(&doc, "TEST_PLAN", &mut warnings).unwrap_or_default();
    wp.done_means = heading_list(&doc, "DONE_MEANS", &mut warnings)
        .or_else(|| list(&doc, "QUALITY_GATE", "DONE_MEANS", &mut warnings))
        .unwrap_or_default();

    for key in ["SPEC_BASELINE", "SPEC_TARGET", "SPEC_ANCHOR_PRIMARY", "SPEC_ANCHOR"] {
        if let Some(v) = single(&doc, "AUTHORITY", key, &mut warnings) {
            wp.spec_anchors.push(v);
        }
    }

    wp.risk_tier = single(&doc, "METADATA", "RISK_TIER", &mut warnings).map(|s| s.to_uppercase());
    wp.status = single(&doc, "METADATA", "Status", &mut warnings);

    wp.implementation_order =
        list(&doc, "CODER_HANDOFF_BRIEF", "IMPLEMENTATION_ORDER", &mut warnings).unwrap_or_default();
    wp.clause_rows = clause_rows(&doc, &mut warnings);

    let files = list(&doc, "BOOTSTRAP", "FILES_TO_OPEN", &mut warnings).unwrap_or_default();
    let search = list(&doc, "BOOTSTRAP", "SEARCH_TERMS", &mut warnings).unwrap_or_default();
    let risk = list(&doc, "BOOTSTRAP", "RISK_MAP", &mut warnings).unwrap_or_default();
    wp.bootstrap = Bootstrap {
        files_to_open: normalise_paths(&files, "FILES_TO_OPEN", &mut warnings),
        search_terms: search.iter().flat_map(|s| s.split(", ")).map(|s| s.trim().to_string()).collect(),
        run_commands: commands(&doc, "RUN_COMMANDS", &mut warnings).unwrap_or_default(),
        risk_map: risk
            .iter()
            .filter_map(|r| match RISK.captures(r) {
                Some(c) => Some(RiskMapEntry { risk: c[1].to_string(), consequence: c[2].to_string() }),
                None => {
                    warnings.push(format!("RISK_MAP: skipped entry not of the form \"x\" -> \"y\": {r:?}"));
                    None
                }
            })
            .collect(),
    };
    wp.description = wp.full_description();
    wp.warnings = warnings;
    Ok(wp)
}

/// OUT_OF_SCOPE mixes paths and prose: path-like entries are normalised, prose is kept.
pub(crate) fn out_of_scope(raw: &[String], warnings: &mut Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for entry in raw {
        let value = if looks_like_path(entry) {
            let n = normalise_path(entry);
            for change in &n.changes {
                warnings.push(format!("OUT_OF_SCOPE: {:?}: {change}", entry.trim()));
            }
            match n.path {
                Some(p) => p,
                None => continue,
            }
        } else {
            let t = entry.trim().to_string();
            if is_none_marker(&t) {
                continue;
            }
            t
        };
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

/// Whether a `- KEY:` label line (any value, any label form) occurs outside fences.
pub(crate) fn has_label(text: &str, key: &str) -> bool {
    let doc = Doc::new(text);
    let re = Regex::new(&label_pattern(key)).unwrap();
    doc.lines.iter().any(|l| !l.fenced && re.is_match(l.text))
}

/// The keys of the generated-projection comment on the first line, if any.
pub(crate) fn projection_keys(text: &str) -> Vec<(String, String)> {
    let first = text.trim_start_matches('\u{feff}').lines().next().unwrap_or("");
    PROJECTION
        .captures(first)
        .map(|c| {
            c[1].split_whitespace()
                .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_on_pipes_then_first_colon() {
        let row = parse_row("CLAUSE: 1.2 a: b | TESTS: cargo test x; cargo test y");
        assert_eq!(row[0], ("CLAUSE".to_string(), "1.2 a: b".to_string()));
        assert_eq!(split_multi(&row[1].1), ["cargo test x", "cargo test y"]);
    }

    #[test]
    fn section_names_drop_suffixes() {
        assert_eq!(
            section_name("CLAUSE_CLOSURE_MATRIX (AUTHORITATIVE SNAPSHOT; MUTABLE)"),
            "CLAUSE_CLOSURE_MATRIX"
        );
        assert_eq!(section_name("Lineage_Audit (ALL VERSIONS) [CX-580E]"), "LINEAGE_AUDIT");
    }

    #[test]
    fn done_means_stops_only_at_label_lines() {
        let text = "## QUALITY_GATE\n### DONE_MEANS\n- DB: migrated\n- All good: yes\n- NOTES:\n  - x\n";
        let mut w = Vec::new();
        let items = heading_list(&Doc::new(text), "DONE_MEANS", &mut w).unwrap();
        assert_eq!(items, ["DB: migrated", "All good: yes"]);
        assert_eq!(w, ["DONE_MEANS: stopped at stray label NOTES"]);
    }

    #[test]
    fn front_matter_is_read() {
        let fm =
            front_matter("---\nfile_kind: draft_microtask_suite\nstatus: \"draft_non_executable\"\n---\n# x");
        assert_eq!(fm[0], ("file_kind".to_string(), "draft_microtask_suite".to_string()));
        assert_eq!(fm[1].1, "draft_non_executable");
    }
}
