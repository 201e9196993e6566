//! A printable summary of the word counts of one text.

use std::fmt;

/// How many words a text has, how many of them are distinct, and its most frequent words
/// (as returned by [`crate::top_words`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub total_words: usize,
    pub distinct_words: usize,
    pub top: Vec<(String, usize)>,
}

/// Renders the report as text:
///
/// ```text
/// words: 9 (6 distinct)
/// 1. the    3
/// 2. cat    2
/// 3. mouse  1
/// ```
///
/// The header line comes first. Each top word follows on its own line: its rank from 1, a
/// dot and a space, the word left-aligned and padded to the longest top word, two spaces,
/// the count. There is no newline after the last line.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "words: {}", self.total_words)
    }
}
