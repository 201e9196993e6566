//! Properties of scope matching that hold for any input (MTX-SPEC 14.2.5, MT-VAL-005).

use mtx_wp::path_in_scope;
use proptest::prelude::*;

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,6}".prop_map(|s| s),
        Just("..".to_string()),
        Just(".".to_string()),
        Just("**".to_string()),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..6).prop_map(|segs| segs.join("/"))
}

proptest! {
    #[test]
    fn a_candidate_that_climbs_is_never_in_scope(p in path(), scope in prop::collection::vec(path(), 0..4)) {
        if p.split('/').any(|s| s == "..") {
            prop_assert!(!path_in_scope(&p, &scope));
        }
    }

    #[test]
    fn an_absolute_candidate_is_never_in_scope(p in path(), scope in prop::collection::vec(path(), 0..4)) {
        let absolute = format!("/{p}");
        prop_assert!(!path_in_scope(&absolute, &scope));
    }

    #[test]
    fn a_bare_double_star_scope_admits_nothing(p in path()) {
        prop_assert!(!path_in_scope(&p, &["**".to_string()]));
    }

    #[test]
    fn a_directory_entry_admits_its_descendants(dir in "[a-z]{1,6}(/[a-z]{1,6}){0,2}", rest in "[a-z]{1,6}(/[a-z]{1,6}){0,2}") {
        let scope = vec![format!("{dir}/")];
        let inside = format!("{dir}/{rest}");
        let sibling = format!("{dir}x/{rest}");
        prop_assert!(path_in_scope(&inside, &scope));
        // A sibling that merely shares the prefix text is outside.
        prop_assert!(!path_in_scope(&sibling, &scope));
    }
}
