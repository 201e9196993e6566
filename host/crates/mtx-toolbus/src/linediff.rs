//! Line-level difference of two texts, for `engine.fs` / `diff`: which lines of the new
//! text are added or changed, and which lines of the old text went away.
//!
//! A longest-common-subsequence table over the middle that differs (common prefix and
//! suffix trimmed first). When that middle is too large for the table, every line in it
//! is reported as changed: an over-report, never an under-report. This module must never
//! read files; it works on slices.

/// Largest LCS table (cells) before falling back to reporting the whole middle.
const MAX_CELLS: usize = 16 * 1024 * 1024;

/// 1-based line numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineChanges {
    /// Lines of the new text that are not in the common subsequence.
    pub added: Vec<usize>,
    /// Lines of the old text that are not in the common subsequence.
    pub removed: Vec<usize>,
}

pub fn changed_lines(old: &[&str], new: &[&str]) -> LineChanges {
    let prefix = old.iter().zip(new.iter()).take_while(|(a, b)| a == b).count();
    let max_suffix = old.len().min(new.len()) - prefix;
    let suffix = old.iter().rev().zip(new.iter().rev()).take(max_suffix).take_while(|(a, b)| a == b).count();
    let a = &old[prefix..old.len() - suffix];
    let b = &new[prefix..new.len() - suffix];
    let mut out = LineChanges::default();
    if a.is_empty() || b.is_empty() || (a.len() + 1).saturating_mul(b.len() + 1) > MAX_CELLS {
        out.removed = (1..=a.len()).map(|i| prefix + i).collect();
        out.added = (1..=b.len()).map(|i| prefix + i).collect();
        return out;
    }
    let (n, m) = (a.len(), b.len());
    // table[i][j] = LCS length of a[i..] and b[j..], row-major with stride m + 1.
    let w = m + 1;
    let mut table = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            table[i * w + j] = if a[i] == b[j] {
                table[(i + 1) * w + j + 1] + 1
            } else {
                table[(i + 1) * w + j].max(table[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] {
            i += 1;
            j += 1;
        } else if table[(i + 1) * w + j] >= table[i * w + j + 1] {
            out.removed.push(prefix + i + 1);
            i += 1;
        } else {
            out.added.push(prefix + j + 1);
            j += 1;
        }
    }
    out.removed.extend((i..n).map(|k| prefix + k + 1));
    out.added.extend((j..m).map(|k| prefix + k + 1));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_inserted_changed_and_removed_lines() {
        let old = ["a", "b", "c", "d"];
        let new = ["a", "B", "c", "x", "d", "e"];
        let ch = changed_lines(&old, &new);
        assert_eq!(ch.added, vec![2, 4, 6]);
        assert_eq!(ch.removed, vec![2]);
    }

    #[test]
    fn identical_and_empty_inputs() {
        assert_eq!(changed_lines(&["a"], &["a"]), LineChanges::default());
        assert_eq!(changed_lines(&[], &["a", "b"]).added, vec![1, 2]);
        assert_eq!(changed_lines(&["a", "b"], &[]).removed, vec![1, 2]);
    }
}
