//! `engine.fs` behaviour the loop and the validators rely on: atomic multi-file writes
//! with pre/post images, idempotent re-apply after a crash, permissions kept, binary
//! content by reference, bounded reads, and the diff validators use to see what changed.

mod support;

use std::os::unix::fs::{PermissionsExt, symlink};

use mtx_store::ArtifactMeta;
use mtx_toolbus::OpStatus;
use mtx_toolbus::fs_engine::check_params_shape;
use mtx_types::sha256_hex;
use serde_json::json;
use support::*;

#[test]
fn write_files_creates_and_modifies_and_records_pre_and_post_images() {
    let fx = fixture(&[]);
    fx.write("src/lib.rs", "old\n");
    let op = write_op(
        json!([
            {"path": "src/lib.rs", "content": "new\n", "expected_pre_sha256": sha256_hex(b"old\n")},
            {"path": "src/deep/new.rs", "content": "fn x() {}\n"},
        ]),
        &["src/lib.rs"],
        &["src/deep/new.rs"],
    );
    let r = run_ok(&fx, op);
    assert_eq!(r.status, OpStatus::Succeeded);
    assert_eq!(fx.read("src/lib.rs").as_deref(), Some("new\n"));
    assert_eq!(fx.read("src/deep/new.rs").as_deref(), Some("fn x() {}\n"));
    let report = r.report.clone().unwrap();
    assert_eq!(report["files"][0]["action"], "modified");
    assert_eq!(report["files"][0]["pre_sha256"], sha256_hex(b"old\n"));
    assert_eq!(report["files"][0]["post_sha256"], sha256_hex(b"new\n"));
    assert_eq!(report["files"][1]["action"], "created");
    assert!(report["files"][1]["pre_sha256"].is_null());
    let stored: serde_json::Value = serde_json::from_slice(&fx.store().get(&r.outputs[0]).unwrap()).unwrap();
    assert_eq!(stored, report, "the full report is an output artifact");
    // No temp files are left behind.
    let names: Vec<String> = std::fs::read_dir(fx.ws.path().join("src"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("mtx-tmp")), "{names:?}");
}

#[test]
fn reapplying_the_same_writes_is_a_no_op_success() {
    let fx = fixture(&[]);
    fx.write("a.txt", "v1");
    let files = json!([
        {"path": "a.txt", "content": "v2", "expected_pre_sha256": sha256_hex(b"v1")},
        {"path": "b.txt", "content": "new"},
    ]);
    run_ok(&fx, write_op(files.clone(), &["a.txt"], &["b.txt"]));
    let r = run_ok(&fx, write_op(files, &["a.txt"], &["b.txt"]));
    assert_eq!(r.status, OpStatus::Succeeded);
    assert_eq!(r.report.as_ref().unwrap()["files"][0]["action"], "unchanged");
    assert_eq!(r.report.as_ref().unwrap()["files"][1]["action"], "unchanged");
    assert_eq!(fx.read("a.txt").as_deref(), Some("v2"));
}

#[test]
fn reapply_after_a_crash_midway_finishes_only_the_missing_files() {
    let fx = fixture(&[]);
    // The crash left a.txt at its post-image and b.txt at its pre-image.
    fx.write("a.txt", "a2");
    fx.write("b.txt", "b1");
    let files = json!([
        {"path": "a.txt", "content": "a2", "expected_pre_sha256": sha256_hex(b"a1")},
        {"path": "b.txt", "content": "b2", "expected_pre_sha256": sha256_hex(b"b1")},
    ]);
    let r = run_ok(&fx, write_op(files, &["a.txt", "b.txt"], &[]));
    let files = &r.report.as_ref().unwrap()["files"];
    assert_eq!(
        (files[0]["action"].as_str(), files[1]["action"].as_str()),
        (Some("unchanged"), Some("modified"))
    );
    assert_eq!(fx.read("b.txt").as_deref(), Some("b2"));
}

#[test]
fn modify_keeps_the_file_mode() {
    let fx = fixture(&[]);
    fx.write("run.sh", "echo 1");
    let p = fx.ws.path().join("run.sh");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o750)).unwrap();
    run_ok(&fx, write_op(json!([{"path": "run.sh", "content": "echo 2"}]), &["run.sh"], &[]));
    assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o750);
}

#[test]
fn binary_content_travels_by_reference() {
    let fx = fixture(&[]);
    let bytes: Vec<u8> = (0..=255u8).cycle().take(50_000).collect();
    let h = fx.store().put(&bytes, ArtifactMeta { kind: "edit".into(), ..ArtifactMeta::default() }).unwrap();
    let mut op = write_op(json!([{"path": "blob.bin", "content_ref": h}]), &[], &["blob.bin"]);
    op.inputs = vec![mtx_toolbus::InputRef::Artifact(h.clone())];
    let r = run_ok(&fx, op);
    assert_eq!(std::fs::read(fx.ws.path().join("blob.bin")).unwrap(), bytes);
    assert_eq!(r.provenance.input_hashes, vec![h.sha256.clone(), h.sha256]);
}

#[test]
fn write_files_tool_call_is_a_write_with_an_idempotency_key() {
    let fx = fixture(&[]);
    let op = write_op(json!([{"path": "x.txt", "content": "x"}]), &[], &["x.txt"]);
    let id = op.op_id.clone();
    run_ok(&fx, op);
    let call = fx.obs.tool_calls().into_iter().find(|c| c["tool_call_id"] == id).unwrap();
    assert_eq!(call["side_effect"], "WRITE");
    assert_eq!(call["idempotency"], "IDEMPOTENT_WITH_KEY");
    assert_eq!(call["idempotency_key"], call["args_hash"]);
    assert_eq!(call["resources_touched"]["files"], json!(["x.txt"]));
}

#[test]
fn read_files_returns_content_artifacts_and_bounds_each_file() {
    let fx = fixture(&[]);
    fx.write("src/a.rs", "0123456789");
    fx.write("src/b.rs", "short");
    // A symlink that stays inside the workspace may be read.
    symlink(fx.ws.path().join("src/b.rs"), fx.ws.path().join("src/link.rs")).unwrap();
    let mut op = read_op(&["src/a.rs", "src/link.rs"]);
    op.params["max_bytes_per_file"] = 4.into();
    let r = run_ok(&fx, op);
    let report = r.report.clone().unwrap();
    assert_eq!(report["files"][0]["truncated"], true);
    assert_eq!(report["files"][1]["truncated"], true);
    assert_eq!(fx.store().get(&r.outputs[1]).unwrap(), b"0123");
    assert_eq!(fx.store().get(&r.outputs[2]).unwrap(), b"shor");
}

#[test]
fn read_files_refuses_a_symlink_to_outside() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    let fx = fixture(&[]);
    symlink(outside.path().join("secret"), fx.ws.path().join("peek")).unwrap();
    assert_denied(&fx, read_op(&["peek"]), "G-INTEGRITY", "SBOX_FS_ESCAPE_DETECTED");
}

#[test]
fn diff_reports_created_modified_and_deleted_files_with_line_numbers() {
    let fx = fixture(&[]);
    let old = "a\nb\nc\n";
    let h = fx
        .store()
        .put(old.as_bytes(), ArtifactMeta { kind: "baseline".into(), ..ArtifactMeta::default() })
        .unwrap();
    fx.write("src/a.rs", "a\nB\nc\nd\n");
    fx.write("src/new.rs", "x\ny\n");
    fx.write("src/same.rs", "same");
    let op = diff_op(json!([
        {"path": "src/a.rs", "sha256": sha256_hex(old.as_bytes()), "content_ref": h},
        {"path": "src/new.rs", "sha256": null},
        {"path": "src/gone.rs", "sha256": sha256_hex(b"was here")},
        {"path": "src/same.rs", "sha256": sha256_hex(b"same")},
    ]));
    let r = run_ok(&fx, op);
    let changed = r.report.as_ref().unwrap()["changed"].as_array().unwrap().clone();
    assert_eq!(changed.len(), 3, "unchanged files are not reported");
    assert_eq!(changed[0]["status"], "modified");
    assert_eq!(changed[0]["added_lines"], json!([2, 4]));
    assert_eq!(changed[0]["removed_lines"], json!([2]));
    assert_eq!(changed[1]["status"], "created");
    assert_eq!(changed[1]["added_lines"], json!([1, 2]));
    assert_eq!(changed[2]["status"], "deleted");
}

#[test]
fn params_shape_rules() {
    assert!(
        check_params_shape("write_files", &json!({"files": [], "scope": {"modify": [], "create": []}}))
            .is_err()
    );
    assert!(
        check_params_shape(
            "write_files",
            &json!({"files": [{"path": "a", "content": "x", "content_ref": {}}], "scope": {"modify": [], "create": []}})
        )
        .is_err(),
        "content and content_ref are exclusive"
    );
    assert!(
        check_params_shape(
            "write_files",
            &json!({"files": [{"path": "a", "content": "x"}], "scope": {"modify": []}})
        )
        .is_err(),
        "both scope lists are required"
    );
    assert!(
        check_params_shape(
            "write_files",
            &json!({"files": [{"path": "a", "content": "x"}], "scope": {"modify": [], "create": ["a"]}})
        )
        .is_ok()
    );
    assert!(check_params_shape("read_files", &json!({"paths": [1]})).is_err());
    assert!(check_params_shape("diff", &json!({"baseline": [{"path": "a", "sha256": 3}]})).is_err());
}
