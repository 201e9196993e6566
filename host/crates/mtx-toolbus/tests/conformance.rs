//! MTX-SPEC 10.8 / 10.9: every engine in the built-in registry declares its conformance
//! vectors, each vector names a test that exists in this crate's suites, and the shell
//! engine covers the nine vectors of 10.9 (one entry each).

use mtx_toolbus::Registry;

fn suite_source(suite: &str) -> String {
    let path = format!("{}/tests/{suite}.rs", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("suite {path} cannot be read: {e}"))
}

#[test]
fn every_declared_conformance_vector_is_a_test_of_this_crate() {
    let reg = Registry::builtin();
    for engine in &reg.engines {
        assert!(
            !engine.conformance_vectors.is_empty(),
            "{} declares no conformance vectors",
            engine.engine_id
        );
        for v in &engine.conformance_vectors {
            let (suite, name) = v.split_once("::").unwrap_or_else(|| panic!("vector {v} is not suite::test"));
            let src = suite_source(suite);
            let marker = format!("#[test]\nfn {name}(");
            assert!(src.contains(&marker), "{}: vector {v} names no test", engine.engine_id);
        }
    }
}

#[test]
fn the_shell_engine_declares_the_nine_vectors_of_10_9() {
    let reg = Registry::builtin();
    let shell = reg.engine("engine.shell").unwrap();
    assert_eq!(shell.conformance_vectors.len(), 9);
}
