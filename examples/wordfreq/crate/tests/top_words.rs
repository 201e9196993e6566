use wordfreq::top_words;

fn owned(pairs: &[(&str, usize)]) -> Vec<(String, usize)> {
    pairs.iter().map(|(w, c)| (w.to_string(), *c)).collect()
}

#[test]
fn top_words_orders_by_count() {
    let text = "the cat saw the dog and the dog saw the cat run";
    assert_eq!(top_words(text, 3), owned(&[("the", 4), ("cat", 2), ("dog", 2)]));
}

#[test]
fn top_words_folds_case() {
    assert_eq!(top_words("Rust rust RUST trust", 2), owned(&[("rust", 3), ("trust", 1)]));
}

#[test]
fn top_words_strips_punctuation_but_keeps_inner_apostrophes_and_hyphens() {
    let text = "Stop. Don't stop! \"stop\" -- don't, well-known (well-known)";
    assert_eq!(top_words(text, 3), owned(&[("stop", 3), ("don't", 2), ("well-known", 2)]));
}

#[test]
fn top_words_breaks_ties_alphabetically() {
    assert_eq!(top_words("b a c b a c", 3), owned(&[("a", 2), ("b", 2), ("c", 2)]));
}

#[test]
fn top_words_returns_at_most_n_words() {
    assert_eq!(top_words("one two two", 10), owned(&[("two", 2), ("one", 1)]));
    assert_eq!(top_words("one two two", 0), owned(&[]));
    assert_eq!(top_words("  \n\t ", 3), owned(&[]));
}
