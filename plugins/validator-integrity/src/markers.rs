//! Placeholder markers in a line of code: what 6.4 item 5 calls unfinished work.
//!
//! Upper-case `TODO`/`FIXME`/`XXX`/`TBD` count only as whole words, so identifiers such as
//! `todo_list` or `XXXL` never match; `implement me` counts in any case; `todo!(` and
//! `unimplemented!(` count as written. Must never match inside a longer word.

/// Markers that must stand as whole upper-case words.
const WORD_MARKERS: &[&str] = &["TODO", "FIXME", "XXX", "TBD"];
/// Markers matched as substrings, case-sensitively.
const MACRO_MARKERS: &[&str] = &["todo!(", "unimplemented!("];

/// The first marker on the line, if any.
pub fn find(line: &str, extra: &[String]) -> Option<String> {
    if let Some(m) = MACRO_MARKERS.iter().find(|m| line.contains(*m)) {
        return Some(m.trim_end_matches('(').to_string() + "()");
    }
    if line.to_lowercase().contains("implement me") {
        return Some("implement me".into());
    }
    for m in WORD_MARKERS {
        if has_word(line, m) {
            return Some((*m).to_string());
        }
    }
    extra.iter().find(|m| !m.is_empty() && line.contains(m.as_str())).cloned()
}

fn has_word(line: &str, word: &str) -> bool {
    let is_word_char = |c: char| c.is_alphanumeric() || c == '_';
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_markers_as_words() {
        assert_eq!(find("    // TODO: handle errors", &[]).as_deref(), Some("TODO"));
        assert_eq!(find("# FIXME(later)", &[]).as_deref(), Some("FIXME"));
        assert_eq!(find("x = 1  # XXX", &[]).as_deref(), Some("XXX"));
        assert_eq!(find("// TBD.", &[]).as_deref(), Some("TBD"));
        assert_eq!(find("    // Implement me", &[]).as_deref(), Some("implement me"));
        assert_eq!(find("    todo!()", &[]).as_deref(), Some("todo!()"));
        assert_eq!(find("    unimplemented!(\"later\")", &[]).as_deref(), Some("unimplemented!()"));
    }

    #[test]
    fn ignores_words_that_merely_contain_a_marker() {
        for ok in ["let todo_list = vec![];", "size XXXL", "TODOS", "fn my_todo() {}", "let tbd = 1;"] {
            assert_eq!(find(ok, &[]), None, "{ok}");
        }
    }

    #[test]
    fn extra_markers_from_config() {
        assert_eq!(
            find("raise NotImplementedError", &["NotImplementedError".into()]).as_deref(),
            Some("NotImplementedError")
        );
    }
}
