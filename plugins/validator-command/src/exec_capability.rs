//! The `proc.exec` capability a command needs (MTX-SPEC 10.10.5): the first shell word,
//! quote-aware, its basename, a trailing `.exe` removed.
//!
//! Must never fall back to the bare `proc.exec` axis: no derivable tool name means the
//! command is not submitted at all.

/// Characters that end a word outside quotes besides whitespace: shell operators.
const OPERATORS: &[char] = &[';', '&', '|', '<', '>', '(', ')'];

/// `cargo test x` -> `Some("cargo")`; `"/usr/bin/py thon" -c 1` -> `Some("py thon")`.
pub fn tool_name(command: &str) -> Option<String> {
    let word = first_word(command)?;
    let base = word.rsplit(['/', '\\']).next().unwrap_or(&word);
    let base = match base.len().checked_sub(4) {
        Some(cut) if base.is_char_boundary(cut) && base[cut..].eq_ignore_ascii_case(".exe") => &base[..cut],
        _ => base,
    };
    (!base.is_empty()).then(|| base.to_string())
}

/// The capability id for a command, or `None` when no tool name can be derived.
pub fn capability(command: &str) -> Option<String> {
    tool_name(command).map(|t| format!("proc.exec:{t}"))
}

/// The first word with quotes and backslash escapes resolved, as a POSIX shell reads it.
fn first_word(command: &str) -> Option<String> {
    let mut chars = command.trim_start().chars().peekable();
    let mut word = String::new();
    let mut started = false;
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() || OPERATORS.contains(&c) => break,
            '\'' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(q) => word.push(q),
                        None => return None, // unterminated quote
                    }
                }
            }
            '"' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => word.push(e),
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => return None,
                        },
                        Some(q) => word.push(q),
                        None => return None,
                    }
                }
            }
            '\\' => {
                started = true;
                word.push(chars.next()?);
            }
            c => {
                started = true;
                word.push(c);
            }
        }
    }
    (started && !word.is_empty()).then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_the_tool_from_the_first_word() {
        assert_eq!(capability("cargo test x").as_deref(), Some("proc.exec:cargo"));
        assert_eq!(capability("  /usr/bin/python3 -m pytest").as_deref(), Some("proc.exec:python3"));
        assert_eq!(capability("\"C:\\tools\\node.EXE\" x.js").as_deref(), Some("proc.exec:node"));
        assert_eq!(capability("make&&rm -rf /").as_deref(), Some("proc.exec:make"));
        assert_eq!(capability("cargo;ls").as_deref(), Some("proc.exec:cargo"));
    }

    #[test]
    fn quotes_and_escapes_are_resolved() {
        assert_eq!(tool_name("'my tool' arg").as_deref(), Some("my tool"));
        assert_eq!(tool_name("\"./bin/ru\"st\\ c arg").as_deref(), Some("rust c"));
        assert_eq!(tool_name("\"a\\\"b\"").as_deref(), Some("a\"b"));
    }

    #[test]
    fn no_tool_name_means_none() {
        for bad in ["", "   ", "''", "'unterminated", "dir/", "| cat", ".exe"] {
            assert_eq!(capability(bad), None, "{bad:?}");
        }
    }
}
