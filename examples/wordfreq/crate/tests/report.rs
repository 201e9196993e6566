use wordfreq::Report;

fn report(total: usize, distinct: usize, top: &[(&str, usize)]) -> Report {
    Report {
        total_words: total,
        distinct_words: distinct,
        top: top.iter().map(|(w, c)| (w.to_string(), *c)).collect(),
    }
}

#[test]
fn report_aligns_words_and_counts() {
    let r = report(9, 6, &[("the", 3), ("cat", 2), ("mouse", 1)]);
    assert_eq!(r.to_string(), "words: 9 (6 distinct)\n1. the    3\n2. cat    2\n3. mouse  1");
}

#[test]
fn report_with_no_words_is_only_the_header() {
    assert_eq!(report(0, 0, &[]).to_string(), "words: 0 (0 distinct)");
}

#[test]
fn report_numbers_ranks_from_one() {
    let r = report(2, 1, &[("echo", 2)]);
    assert_eq!(r.to_string(), "words: 2 (1 distinct)\n1. echo  2");
}
