//! The edit protocol mtx teaches the model, and its resolution against the workspace.
//!
//! Two block kinds, each on its own lines:
//!
//! ```text
//! <file path="src/lib.rs">          whole-file block (the default; small models produce
//! ...complete new content...         it reliably). The content may be wrapped in one
//! </file>                            backtick / tilde fence, which is stripped; a trailing
//!                                    newline is ensured.
//! <edit path="src/lib.rs">
//! <<<<<<< SEARCH                     search/replace block: the SEARCH text must occur
//! old lines                          exactly once in the current file.
//! =======
//! new lines
//! >>>>>>> REPLACE
//! </edit>
//! ```
//!
//! Blocks inside a fenced code section of the response do not count (a model quoting the
//! protocol must not edit anything); they are reported as [`EditProblem::IgnoredInFence`].
//! A whole-file block ends at the first line that is exactly `</file>`, so a file whose
//! content contains such a line cannot be written with this protocol. Line-number
//! prefixes (`  12 | `) copied from the FILES section are removed when every non-empty
//! line of a content carries one.
//!
//! This module only parses and computes the intended writes. It must never write to the
//! workspace: the Tool Bus applies [`FileWrite`]s and re-checks them.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::types::{MicroTaskDefinition, sha256_hex};
use crate::workspace::{WorkspaceReader, check_relative_path, normalize_path, path_in_entries};

/// One edit the model proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposedEdit {
    pub path: String,
    pub kind: EditKind,
}

/// What a [`ProposedEdit`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EditKind {
    WholeFile { content: String },
    SearchReplace { search: String, replace: String },
}

/// Why an edit block was dropped or could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum EditProblem {
    #[error("edit path {path:?} refused: {reason}")]
    BadPath { path: String, reason: String },
    #[error("<{tag}> block for {path:?} has no closing tag")]
    Unclosed { tag: String, path: String },
    #[error("<{tag}> block opening line has no path attribute")]
    MissingPath { tag: String },
    #[error("edit block for {path:?} is malformed: {detail}")]
    MalformedEditBlock { path: String, detail: String },
    #[error("<{tag}> block inside a fenced code section ignored")]
    IgnoredInFence { tag: String },
    #[error("search text for {path:?} is empty")]
    EmptySearch { path: String },
    #[error("search text for {path:?} not found in the current file")]
    SearchNotFound { path: String },
    #[error("search text for {path:?} occurs {count} times, it must occur exactly once")]
    SearchAmbiguous { path: String, count: usize },
    #[error("search/replace on {path:?} but the file does not exist")]
    SearchOnMissingFile { path: String },
    #[error("file {path:?} is not valid UTF-8, search/replace cannot apply")]
    NotUtf8 { path: String },
    #[error("file {path:?} is listed to modify but does not exist")]
    ModifyTargetMissing { path: String },
    #[error("file {path:?} is listed to create but already exists and was not created by this MT")]
    CreateTargetExists { path: String },
}

/// The edits found in one model response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedEdits {
    pub edits: Vec<ProposedEdit>,
    pub problems: Vec<EditProblem>,
}

/// A write the Tool Bus should apply: full new content of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileWrite {
    pub path: String,
    pub content: String,
    /// SHA-256 of the file bytes the edits were computed against; `None` for a new file.
    /// The Tool Bus refuses the write if the file changed in between.
    pub expected_pre_sha256: Option<String>,
}

/// What the host allows beyond the MT's own file lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct EditRules<'a> {
    /// Paths no edit may touch (test oracles the MT does not own); scope-matched (14.2.5).
    pub protected_files: &'a [String],
    /// Files of `files.create` that an earlier iteration of this MT created; they may be
    /// written again.
    pub created_by_this_mt: &'a [String],
}

/// The outcome of [`resolve_edits`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedEdits {
    /// One write per path, in order of first appearance.
    pub writes: Vec<FileWrite>,
    /// Paths refused for scope (outside modify/create, read-only, or protected).
    pub scope_violations: Vec<String>,
    /// Parse problems followed by resolution problems.
    pub problems: Vec<EditProblem>,
}

/// A workspace read failed while resolving edits.
#[derive(Debug, thiserror::Error)]
#[error("could not read workspace file {path:?} to resolve edits")]
pub struct ResolveError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegionKind {
    Fence,
    FileBlock,
    EditBlock,
}

#[derive(Debug, Clone)]
pub(crate) struct Region {
    pub kind: RegionKind,
    /// Whole region, opening line to the end of the closing line (or end of text).
    pub span: Range<usize>,
    /// Between the end of the opening line and the start of the closing line.
    pub body: Range<usize>,
    pub path: Option<String>,
    pub closed: bool,
    /// For fences: tags of edit blocks seen inside (reported, never applied).
    pub quoted_tags: Vec<String>,
}

/// Lines of `text` with their byte ranges (the range includes the line ending).
fn lines_with_offsets(text: &str) -> impl Iterator<Item = (Range<usize>, &str)> {
    let mut start = 0;
    text.split_inclusive('\n').map(move |l| {
        let r = start..start + l.len();
        start += l.len();
        (r, l)
    })
}

/// `Some((char, run))` if `line` opens or closes a code fence.
fn fence_marker(line: &str) -> Option<(char, usize)> {
    let t = line.trim_start();
    let c = t.chars().next()?;
    if c != '`' && c != '~' {
        return None;
    }
    let run = t.chars().take_while(|x| *x == c).count();
    // CommonMark: a backtick fence's info string cannot contain a backtick, so a line
    // like "```cargo test``` runs the tests" is prose, not a fence.
    if c == '`' && t[run..].contains('`') {
        return None;
    }
    (run >= 3).then_some((c, run))
}

fn closes_fence(line: &str, c: char, run: usize) -> bool {
    let t = line.trim();
    let n = t.chars().take_while(|x| *x == c).count();
    n >= run && t[n * c.len_utf8()..].trim().is_empty()
}

/// An opening `<file ...>` / `<edit ...>` tag at the start of a line.
struct OpenTag {
    kind: RegionKind,
    tag: &'static str,
    path: Option<String>,
    /// Byte offset in the line just after the tag's `>`.
    end: usize,
}

/// If `line` starts with a `<file ...>` or `<edit ...>` tag, the tag. Content may follow
/// the tag on the same line (`<file path="a">x</file>` is a one-line block).
fn block_open(line: &str) -> Option<OpenTag> {
    let lead = line.len() - line.trim_start().len();
    let t = line.trim();
    let lower = t.to_ascii_lowercase();
    let (kind, tag) = if lower.starts_with("<file ") || lower.starts_with("<file>") {
        (RegionKind::FileBlock, "file")
    } else if lower.starts_with("<edit ") || lower.starts_with("<edit>") {
        (RegionKind::EditBlock, "edit")
    } else {
        return None;
    };
    let path = path_attr(t);
    // The tag ends at the first `>` after the quoted path (a path may not hold `>` then).
    let search_from = path.as_ref().map_or(0, |p| lower.find("path=").unwrap_or(0) + 7 + p.len());
    let close = search_from + t.get(search_from..)?.find('>')?;
    Some(OpenTag { kind, tag, path, end: lead + close + 1 })
}

fn path_attr(open_line: &str) -> Option<String> {
    let lower = open_line.to_ascii_lowercase();
    let at = lower.find("path=")?;
    let rest = &open_line[at + 5..];
    let quote = rest.chars().next()?;
    if quote != '"' && quote != '\'' {
        return None;
    }
    let inner = &rest[1..];
    let end = inner.find(quote)?;
    Some(inner[..end].to_string())
}

fn closes_block(line: &str, kind: RegionKind) -> bool {
    let t = line.trim().to_ascii_lowercase();
    match kind {
        RegionKind::FileBlock => t == "</file>",
        RegionKind::EditBlock => t == "</edit>",
        RegionKind::Fence => false,
    }
}

/// Splits a response into fenced sections and edit blocks, in order. Everything not in a
/// region is free text. An unclosed region runs to the end of the text (conservative: an
/// unclosed fence or file block may hold anything).
pub(crate) fn scan_regions(text: &str) -> Vec<Region> {
    let mut regions = Vec::new();
    let mut lines = lines_with_offsets(text).peekable();
    while let Some((range, line)) = lines.next() {
        if let Some((c, run)) = fence_marker(line) {
            let mut region = Region {
                kind: RegionKind::Fence,
                span: range.start..text.len(),
                body: range.end..text.len(),
                path: None,
                closed: false,
                quoted_tags: Vec::new(),
            };
            for (r, l) in lines.by_ref() {
                if closes_fence(l, c, run) {
                    region.span.end = r.end;
                    region.body.end = r.start;
                    region.closed = true;
                    break;
                }
                if let Some(open) = block_open(l) {
                    region.quoted_tags.push(open.tag.to_string());
                }
            }
            regions.push(region);
        } else if let Some(open) = block_open(line) {
            let kind = open.kind;
            let rest = &line[open.end..];
            let rest_start = range.start + open.end;
            let mut region = Region {
                kind,
                span: range.start..text.len(),
                body: range.end..text.len(),
                path: open.path,
                closed: false,
                quoted_tags: Vec::new(),
            };
            if !rest.trim().is_empty() {
                let close_tag = if kind == RegionKind::FileBlock { "</file>" } else { "</edit>" };
                let trimmed = rest.trim_end();
                if trimmed.to_ascii_lowercase().ends_with(close_tag) {
                    region.span.end = range.end;
                    region.body = rest_start..rest_start + trimmed.len() - close_tag.len();
                    region.closed = true;
                    regions.push(region);
                    continue;
                }
                region.body.start = rest_start;
            }
            for (r, l) in lines.by_ref() {
                if closes_block(l, kind) {
                    region.span.end = r.end;
                    region.body.end = r.start;
                    region.closed = true;
                    break;
                }
            }
            regions.push(region);
        }
    }
    regions
}

/// Byte ranges of every `<file>` / `<edit>` block (outside fences) in `response`, so the
/// completion parser can ignore tags inside them.
pub fn edit_block_spans(response: &str) -> Vec<Range<usize>> {
    scan_regions(response).into_iter().filter(|r| r.kind != RegionKind::Fence).map(|r| r.span).collect()
}

/// Byte ranges of fenced code sections and edit blocks: the parts of a response whose
/// text is quoted material, never a signal.
pub(crate) fn quoted_spans(response: &str) -> Vec<Range<usize>> {
    scan_regions(response).into_iter().map(|r| r.span).collect()
}

/// Validates and normalises an edit path: a leading `./` is tolerated, anything that
/// could leave the workspace is refused.
fn clean_edit_path(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    let p = trimmed.strip_prefix("./").unwrap_or(trimmed);
    check_relative_path(p).map_err(str::to_string)?;
    if p.ends_with('/') || p.split('/').any(|s| s.is_empty() || s == ".") {
        return Err("not a plain file path".to_string());
    }
    Ok(p.to_string())
}

fn body_lines(text: &str, body: &Range<usize>) -> Vec<String> {
    crate::workspace::text_lines(&text[body.clone()]).into_iter().map(str::to_string).collect()
}

/// Parses every edit block of a model response.
pub fn parse_edits(response: &str) -> ParsedEdits {
    let mut out = ParsedEdits::default();
    for region in scan_regions(response) {
        let tag = match region.kind {
            RegionKind::Fence => {
                for tag in region.quoted_tags {
                    out.problems.push(EditProblem::IgnoredInFence { tag });
                }
                continue;
            }
            RegionKind::FileBlock => "file",
            RegionKind::EditBlock => "edit",
        };
        let Some(raw_path) = region.path.clone() else {
            out.problems.push(EditProblem::MissingPath { tag: tag.to_string() });
            continue;
        };
        let path = match clean_edit_path(&raw_path) {
            Ok(p) => p,
            Err(reason) => {
                out.problems.push(EditProblem::BadPath { path: raw_path, reason });
                continue;
            }
        };
        if !region.closed {
            out.problems.push(EditProblem::Unclosed { tag: tag.to_string(), path });
            continue;
        }
        let lines = body_lines(response, &region.body);
        match region.kind {
            RegionKind::FileBlock => out
                .edits
                .push(ProposedEdit { path, kind: EditKind::WholeFile { content: file_content(lines) } }),
            RegionKind::EditBlock => match search_replace_pairs(&lines) {
                Ok(pairs) => out.edits.extend(pairs.into_iter().map(|(search, replace)| ProposedEdit {
                    path: path.clone(),
                    kind: EditKind::SearchReplace { search, replace },
                })),
                Err(detail) => out.problems.push(EditProblem::MalformedEditBlock { path, detail }),
            },
            RegionKind::Fence => unreachable!("fences handled above"),
        }
    }
    out
}

/// `Some(rest)` if `line` carries the `  12 | ` prefix the FILES section shows.
fn strip_line_number(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let rest = t[digits..].strip_prefix(" |")?;
    if rest.is_empty() { Some(rest) } else { rest.strip_prefix(' ') }
}

/// Small models often copy the line-number prefixes of the FILES section into their
/// edits. When every non-empty line carries one, they are removed; a single unprefixed
/// line means the text is taken as written.
fn strip_copied_line_numbers(lines: Vec<String>) -> Vec<String> {
    let non_empty: Vec<&String> = lines.iter().filter(|l| !l.trim().is_empty()).collect();
    if non_empty.is_empty() || !non_empty.iter().all(|l| strip_line_number(l).is_some()) {
        return lines;
    }
    lines.iter().map(|l| strip_line_number(l).unwrap_or("").to_string()).collect()
}

/// Content of a whole-file block: one wrapping fence stripped, copied line-number
/// prefixes removed, trailing newline ensured.
fn file_content(lines: Vec<String>) -> String {
    let mut lines = lines;
    while lines.last().is_some_and(|l| l.trim().is_empty()) && lines.len() > 1 {
        lines.pop();
    }
    if lines.len() >= 2
        && let Some((c, run)) = fence_marker(&lines[0])
        && closes_fence(&lines[lines.len() - 1], c, run)
    {
        lines.pop();
        lines.remove(0);
    }
    let lines = strip_copied_line_numbers(lines);
    if lines.is_empty() || (lines.len() == 1 && lines[0].is_empty()) {
        return String::new();
    }
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

fn is_marker(line: &str, ch: char, word: &str) -> bool {
    let t = line.trim();
    let n = t.chars().take_while(|c| *c == ch).count();
    n >= 5 && t[n..].trim() == word
}

/// The (search, replace) pairs of an edit block body.
fn search_replace_pairs(lines: &[String]) -> Result<Vec<(String, String)>, String> {
    enum State {
        Outside,
        Search(Vec<String>),
        Replace(Vec<String>, Vec<String>),
    }
    let mut pairs = Vec::new();
    let mut state = State::Outside;
    for line in lines {
        state = match state {
            State::Outside => {
                if is_marker(line, '<', "SEARCH") {
                    State::Search(Vec::new())
                } else if line.trim().is_empty() || fence_marker(line).is_some() {
                    State::Outside
                } else {
                    return Err("text outside a SEARCH/REPLACE pair".to_string());
                }
            }
            State::Search(mut s) => {
                if is_marker(line, '=', "") {
                    State::Replace(s, Vec::new())
                } else {
                    s.push(line.clone());
                    State::Search(s)
                }
            }
            State::Replace(s, mut r) => {
                if is_marker(line, '>', "REPLACE") {
                    pairs.push((
                        strip_copied_line_numbers(s).join("\n"),
                        strip_copied_line_numbers(r).join("\n"),
                    ));
                    State::Outside
                } else {
                    r.push(line.clone());
                    State::Replace(s, r)
                }
            }
        };
    }
    if !matches!(state, State::Outside) {
        return Err("SEARCH/REPLACE pair not terminated".to_string());
    }
    if pairs.is_empty() {
        return Err("no SEARCH/REPLACE pair".to_string());
    }
    Ok(pairs)
}

enum Target {
    Modify,
    Create,
}

/// Applies the parsed edits to the current workspace contents and classifies every path
/// against the MT's file lists.
///
/// Rules: a protected path, a read-only path or any path outside `files.modify` and
/// `files.create` is a scope violation and never becomes a write; a `modify` path must
/// exist; a `create` path must not exist unless this MT created it earlier. Edits to one
/// path apply in order; if any of them fails, no write is produced for that path (a
/// half-applied set of search/replace edits would leave the file in a state nobody
/// proposed).
pub fn resolve_edits(
    parsed: &ParsedEdits,
    mt: &MicroTaskDefinition,
    reader: &dyn WorkspaceReader,
    rules: &EditRules<'_>,
) -> Result<ResolvedEdits, ResolveError> {
    let mut out = ResolvedEdits { problems: parsed.problems.clone(), ..Default::default() };
    let mut paths: Vec<&str> = Vec::new();
    for e in &parsed.edits {
        if !paths.contains(&e.path.as_str()) {
            paths.push(&e.path);
        }
    }
    for path in paths {
        let norm = normalize_path(path);
        if path_in_entries(&norm, rules.protected_files) {
            out.scope_violations.push(norm);
            continue;
        }
        let current = match reader.read(&norm) {
            Ok(c) => c,
            // The reader refuses paths that resolve outside the workspace (symlinks):
            // that is a scope violation of this edit, not a failure of the whole response.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                out.scope_violations.push(norm);
                continue;
            }
            Err(source) => return Err(ResolveError { path: norm, source }),
        };
        let target = if path_in_entries(&norm, &mt.files.modify) && current.is_some() {
            Target::Modify
        } else if path_in_entries(&norm, &mt.files.create) {
            Target::Create
        } else if path_in_entries(&norm, &mt.files.modify) {
            out.problems.push(EditProblem::ModifyTargetMissing { path: norm });
            continue;
        } else {
            out.scope_violations.push(norm);
            continue;
        };
        if matches!(target, Target::Create)
            && current.is_some()
            && !rules.created_by_this_mt.iter().any(|c| normalize_path(c) == norm)
        {
            out.problems.push(EditProblem::CreateTargetExists { path: norm });
            continue;
        }
        let expected_pre_sha256 = current.as_deref().map(sha256_hex);
        match apply_edits(&norm, current.as_deref(), parsed.edits.iter().filter(|e| e.path == path)) {
            Ok(content) => out.writes.push(FileWrite { path: norm, content, expected_pre_sha256 }),
            Err(problem) => out.problems.push(problem),
        }
    }
    Ok(out)
}

fn apply_edits<'e>(
    path: &str,
    current: Option<&[u8]>,
    edits: impl Iterator<Item = &'e ProposedEdit>,
) -> Result<String, EditProblem> {
    let mut content: Option<String> = match current {
        None => None,
        Some(bytes) => std::str::from_utf8(bytes).ok().map(str::to_string),
    };
    let utf8_ok = current.is_none() || content.is_some();
    for edit in edits {
        match &edit.kind {
            EditKind::WholeFile { content: c } => content = Some(c.clone()),
            EditKind::SearchReplace { search, replace } => {
                let Some(text) = content.as_mut() else {
                    return Err(if utf8_ok {
                        EditProblem::SearchOnMissingFile { path: path.to_string() }
                    } else {
                        EditProblem::NotUtf8 { path: path.to_string() }
                    });
                };
                *text = apply_search_replace(path, text, search, replace)?;
            }
        }
    }
    content.ok_or_else(|| EditProblem::NotUtf8 { path: path.to_string() })
}

fn apply_search_replace(path: &str, text: &str, search: &str, replace: &str) -> Result<String, EditProblem> {
    if search.trim().is_empty() {
        return Err(EditProblem::EmptySearch { path: path.to_string() });
    }
    // Model text has `\n` line ends; a CRLF file is matched with the search converted, and
    // the replacement keeps the file's line ending.
    let (search, replace) = if text.contains("\r\n") && !text.contains(search) {
        (search.replace('\n', "\r\n"), replace.replace('\n', "\r\n"))
    } else {
        (search.to_string(), replace.to_string())
    };
    match text.matches(search.as_str()).count() {
        0 => Err(EditProblem::SearchNotFound { path: path.to_string() }),
        1 => Ok(text.replacen(search.as_str(), &replace, 1)),
        count => Err(EditProblem::SearchAmbiguous { path: path.to_string(), count }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::mt_with_files;
    use crate::workspace::MemReader;

    fn parse_one(resp: &str) -> ProposedEdit {
        let p = parse_edits(resp);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(p.edits.len(), 1);
        p.edits.into_iter().next().unwrap()
    }

    #[test]
    fn whole_file_block_is_parsed_with_trailing_newline() {
        let e = parse_one("Here:\n<file path=\"src/lib.rs\">\nfn a() {}\n</file>\ndone");
        assert_eq!(e.path, "src/lib.rs");
        assert_eq!(e.kind, EditKind::WholeFile { content: "fn a() {}\n".into() });
    }

    #[test]
    fn whole_file_block_strips_one_wrapping_fence_and_crlf() {
        let e = parse_one("<file path='src/a.rs'>\r\n```rust\r\nlet x = 1;\r\n```\r\n</file>\r\n");
        assert_eq!(e.kind, EditKind::WholeFile { content: "let x = 1;\n".into() });
    }

    #[test]
    fn copied_line_number_prefixes_are_removed() {
        let e = parse_one("<file path=\"a.rs\">\n   1 | fn a() {\n   2 |     1\n   3 |\n   4 | }\n</file>\n");
        assert_eq!(e.kind, EditKind::WholeFile { content: "fn a() {\n    1\n\n}\n".into() });
        let e = parse_one(
            "<edit path=\"a.rs\">\n<<<<<<< SEARCH\n  12 |     1\n=======\n    2\n>>>>>>> REPLACE\n</edit>\n",
        );
        assert_eq!(e.kind, EditKind::SearchReplace { search: "    1".into(), replace: "    2".into() });
        let e = parse_one("<file path=\"t.md\">\n1 | a table cell\nplain line\n</file>\n");
        assert_eq!(
            e.kind,
            EditKind::WholeFile { content: "1 | a table cell\nplain line\n".into() },
            "mixed text is kept"
        );
    }

    #[test]
    fn leading_dot_slash_is_tolerated() {
        assert_eq!(parse_one("<file path=\"./src/a.rs\">\nx\n</file>").path, "src/a.rs");
    }

    #[test]
    fn search_replace_blocks_are_parsed_pairwise() {
        let p = parse_edits(
            "<edit path=\"src/a.rs\">\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n\
             <<<<<<< SEARCH\na\nb\n=======\n>>>>>>> REPLACE\n</edit>\n",
        );
        assert!(p.problems.is_empty());
        assert_eq!(
            p.edits.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
            vec![
                EditKind::SearchReplace { search: "old".into(), replace: "new".into() },
                EditKind::SearchReplace { search: "a\nb".into(), replace: "".into() },
            ]
        );
    }

    #[test]
    fn malformed_edit_block_is_a_problem() {
        let p = parse_edits("<edit path=\"a.rs\">\n<<<<<<< SEARCH\nold\n</edit>\n");
        assert!(p.edits.is_empty());
        assert!(matches!(p.problems[0], EditProblem::MalformedEditBlock { .. }));
        let p = parse_edits("<edit path=\"a.rs\">\nstray text\n</edit>\n");
        assert!(matches!(p.problems[0], EditProblem::MalformedEditBlock { .. }));
    }

    #[test]
    fn bad_paths_are_dropped() {
        for bad in ["../x.rs", "/etc/passwd", "src\\a.rs", "", "a/../../b", "C:/x", "src/"] {
            let p = parse_edits(&format!("<file path=\"{bad}\">\nx\n</file>\n"));
            assert!(p.edits.is_empty(), "{bad}");
            assert!(matches!(p.problems[0], EditProblem::BadPath { .. }), "{bad}: {:?}", p.problems);
        }
        let p = parse_edits("<file path=\"a\0b\">\nx\n</file>\n");
        assert!(matches!(p.problems[0], EditProblem::BadPath { .. }));
        let p = parse_edits("<file>\nx\n</file>\n");
        assert!(matches!(p.problems[0], EditProblem::MissingPath { .. }));
    }

    #[test]
    fn blocks_inside_fences_do_not_count() {
        let p = parse_edits("Example:\n```\n<file path=\"src/a.rs\">\nx\n</file>\n```\n");
        assert!(p.edits.is_empty());
        assert_eq!(p.problems, vec![EditProblem::IgnoredInFence { tag: "file".into() }]);
        let p = parse_edits("~~~~\n<edit path=\"a\">\n~~~\n</edit>\n~~~~\n");
        assert!(p.edits.is_empty());
    }

    #[test]
    fn unclosed_block_is_a_problem_and_spans_to_the_end() {
        let text = "<file path=\"a.rs\">\nx\n<mt_complete>\n";
        let p = parse_edits(text);
        assert!(matches!(p.problems[0], EditProblem::Unclosed { .. }));
        assert_eq!(edit_block_spans(text), vec![0..text.len()]);
    }

    #[test]
    fn one_line_blocks_and_content_on_the_opening_line() {
        let text = "<file path=\"a.txt\">hello</file>\n<mt_complete>\n";
        let p = parse_edits(text);
        assert_eq!(p.edits[0].kind, EditKind::WholeFile { content: "hello\n".into() });
        assert_eq!(
            edit_block_spans(text),
            vec![0..text.find('\n').unwrap() + 1],
            "the block ends on its own line"
        );
        let p = parse_edits("<file path=\"a.txt\">first\nsecond\n</file>\n");
        assert_eq!(p.edits[0].kind, EditKind::WholeFile { content: "first\nsecond\n".into() });
    }

    #[test]
    fn inline_triple_backticks_are_not_a_fence() {
        let p = parse_edits("Run ```cargo test``` later\n<file path=\"a.rs\">\nx\n</file>\n");
        assert_eq!(p.edits.len(), 1, "backticks inside prose open nothing");
        let p = parse_edits("```cargo test``` runs it\n<file path=\"a.rs\">\nx\n</file>\n");
        assert_eq!(p.edits.len(), 1, "a backtick run with backticks after it does not open a fence");
    }

    #[test]
    fn permission_denied_read_is_a_scope_violation() {
        struct Denying;
        impl WorkspaceReader for Denying {
            fn read(&self, rel_path: &str) -> Result<Option<Vec<u8>>, std::io::Error> {
                Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, rel_path.to_string()))
            }
        }
        let mt = mt_with_files(&[], &["link.rs"], &[]);
        let r = resolve_edits(
            &parse_edits("<file path=\"link.rs\">\nx\n</file>\n"),
            &mt,
            &Denying,
            &rules(&[], &[]),
        )
        .unwrap();
        assert_eq!(r.scope_violations, vec!["link.rs"]);
        assert!(r.writes.is_empty());
    }

    #[test]
    fn edit_block_spans_cover_blocks_only() {
        let text = "a\n<file path=\"x\">\n1\n</file>\nb\n";
        let spans = edit_block_spans(text);
        assert_eq!(spans.len(), 1);
        assert_eq!(&text[spans[0].clone()], "<file path=\"x\">\n1\n</file>\n");
    }

    fn rules<'a>(protected: &'a [String], created: &'a [String]) -> EditRules<'a> {
        EditRules { protected_files: protected, created_by_this_mt: created }
    }

    #[test]
    fn resolve_applies_whole_file_and_search_replace() {
        let mt = mt_with_files(&["README.md"], &["src/a.rs"], &["src/new.rs"]);
        let reader = MemReader::new([("src/a.rs", "fn a() {\n    1\n}\n"), ("README.md", "r\n")]);
        let parsed = parse_edits(
            "<edit path=\"src/a.rs\">\n<<<<<<< SEARCH\n    1\n=======\n    2\n>>>>>>> REPLACE\n</edit>\n\
             <file path=\"src/new.rs\">\npub fn n() {}\n</file>\n",
        );
        let r = resolve_edits(&parsed, &mt, &reader, &rules(&[], &[])).unwrap();
        assert!(r.problems.is_empty() && r.scope_violations.is_empty(), "{r:?}");
        assert_eq!(r.writes.len(), 2);
        assert_eq!(r.writes[0].content, "fn a() {\n    2\n}\n");
        assert_eq!(
            r.writes[0].expected_pre_sha256.as_deref(),
            Some(sha256_hex(b"fn a() {\n    1\n}\n").as_str())
        );
        assert_eq!(r.writes[1].path, "src/new.rs");
        assert_eq!(r.writes[1].expected_pre_sha256, None);
    }

    #[test]
    fn resolve_refuses_out_of_scope_read_only_and_protected_paths() {
        let mt = mt_with_files(&["README.md"], &["src/a.rs", "tests/oracle.rs"], &[]);
        let reader = MemReader::new([("src/a.rs", "a\n"), ("README.md", "r\n"), ("tests/oracle.rs", "t\n")]);
        let parsed = parse_edits(
            "<file path=\"README.md\">\nx\n</file>\n<file path=\"src/other.rs\">\nx\n</file>\n\
             <file path=\"tests/oracle.rs\">\nx\n</file>\n<file path=\"src/a.rs\">\nb\n</file>\n",
        );
        let protected = vec!["tests/**".to_string()];
        let r = resolve_edits(&parsed, &mt, &reader, &rules(&protected, &[])).unwrap();
        assert_eq!(r.scope_violations, vec!["README.md", "src/other.rs", "tests/oracle.rs"]);
        assert_eq!(r.writes.iter().map(|w| w.path.as_str()).collect::<Vec<_>>(), vec!["src/a.rs"]);
    }

    #[test]
    fn resolve_checks_existence_rules_of_modify_and_create() {
        let mt = mt_with_files(&[], &["src/gone.rs"], &["src/new.rs"]);
        let reader = MemReader::new([("src/new.rs", "old\n")]);
        let parsed =
            parse_edits("<file path=\"src/gone.rs\">\nx\n</file>\n<file path=\"src/new.rs\">\ny\n</file>\n");
        let r = resolve_edits(&parsed, &mt, &reader, &rules(&[], &[])).unwrap();
        assert!(r.writes.is_empty());
        assert_eq!(
            r.problems,
            vec![
                EditProblem::ModifyTargetMissing { path: "src/gone.rs".into() },
                EditProblem::CreateTargetExists { path: "src/new.rs".into() },
            ]
        );
        let created = vec!["src/new.rs".to_string()];
        let r = resolve_edits(&parsed, &mt, &reader, &rules(&[], &created)).unwrap();
        assert_eq!(r.writes.len(), 1, "a file this MT created earlier may be rewritten");
    }

    #[test]
    fn search_must_match_exactly_once() {
        let mt = mt_with_files(&[], &["a.rs"], &[]);
        let reader = MemReader::new([("a.rs", "x\nx\ny\n")]);
        let sr = |s: &str| {
            format!("<edit path=\"a.rs\">\n<<<<<<< SEARCH\n{s}\n=======\nz\n>>>>>>> REPLACE\n</edit>\n")
        };
        let r = resolve_edits(&parse_edits(&sr("x")), &mt, &reader, &rules(&[], &[])).unwrap();
        assert_eq!(r.problems, vec![EditProblem::SearchAmbiguous { path: "a.rs".into(), count: 2 }]);
        let r = resolve_edits(&parse_edits(&sr("nope")), &mt, &reader, &rules(&[], &[])).unwrap();
        assert_eq!(r.problems, vec![EditProblem::SearchNotFound { path: "a.rs".into() }]);
        assert!(r.writes.is_empty());
        let r = resolve_edits(&parse_edits(&sr("y")), &mt, &reader, &rules(&[], &[])).unwrap();
        assert_eq!(r.writes[0].content, "x\nx\nz\n");
    }

    #[test]
    fn search_replace_keeps_crlf_files_crlf() {
        let mt = mt_with_files(&[], &["a.rs"], &[]);
        let reader = MemReader::new([("a.rs", "a\r\nb\r\nc\r\n")]);
        let parsed = parse_edits(
            "<edit path=\"a.rs\">\n<<<<<<< SEARCH\na\nb\n=======\nA\nB\n>>>>>>> REPLACE\n</edit>\n",
        );
        let r = resolve_edits(&parsed, &mt, &reader, &rules(&[], &[])).unwrap();
        assert_eq!(r.writes[0].content, "A\r\nB\r\nc\r\n");
    }

    #[test]
    fn one_failing_edit_drops_the_whole_path() {
        let mt = mt_with_files(&[], &["a.rs"], &[]);
        let reader = MemReader::new([("a.rs", "a\nb\n")]);
        let parsed = parse_edits(
            "<edit path=\"a.rs\">\n<<<<<<< SEARCH\na\n=======\nA\n>>>>>>> REPLACE\n\
             <<<<<<< SEARCH\nzzz\n=======\nZ\n>>>>>>> REPLACE\n</edit>\n",
        );
        let r = resolve_edits(&parsed, &mt, &reader, &rules(&[], &[])).unwrap();
        assert!(r.writes.is_empty());
        assert_eq!(r.problems.len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn returned_paths_are_always_safe(path in "\\PC{0,12}", body in "\\PC{0,60}") {
            let p = parse_edits(&format!("<file path=\"{path}\">\n{body}\n</file>\n"));
            for e in &p.edits {
                proptest::prop_assert!(check_relative_path(&e.path).is_ok(), "{:?}", e.path);
                proptest::prop_assert!(!e.path.split('/').any(|s| s == ".."));
            }
        }
    }
}
