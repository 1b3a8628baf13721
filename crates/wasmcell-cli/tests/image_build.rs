//! `wasmcell image build`: archives and OCI layouts that hold the module as the entrypoint.
mod common;

use wasmcell_test_guests as guests;

#[test]
fn builds_an_archive_and_a_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = dir.path().join("hello.tar");
    let layout = dir.path().join("layout");
    let mut cmd = common::wasmcell();
    cmd.args(["image", "build", "-t", "hello:v1", "-o"])
        .arg(&tar)
        .arg("--oci-dir")
        .arg(&layout)
        .arg(guests::HELLO_P1);
    let out = common::run(cmd);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.starts_with("docker.io/library/hello:v1 sha256:"),
        "{out:?}"
    );
    assert!(tar.metadata().expect("archive").len() > 1000);

    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("index json");
    let manifest = &index["manifests"][0];
    assert_eq!(
        manifest["annotations"]["io.containerd.image.name"],
        "docker.io/library/hello:v1"
    );
    let digest = manifest["digest"].as_str().expect("digest");
    let blob = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob).expect("manifest blob")).expect("json");
    assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(1));
}

#[test]
fn refuses_a_module_that_is_not_wasm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = common::wasmcell();
    cmd.args(["image", "build", "-t", "x", "-o"])
        .arg(dir.path().join("x.tar"))
        .arg("/bin/true");
    let out = common::run(cmd);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("/bin/true is not a wasm module"),
        "{out:?}"
    );
    assert!(!dir.path().join("x.tar").exists());
}
