//! `wasmcell image convert`: a CNCF Wasm OCI artifact (layout directory or tar) becomes the
//! image `wasmcell image build` makes. (Running the converted image through containerd and the
//! shim is tested in `crates/wasmcell-shim/tests/artifact.rs`, where the shim is built.)
mod common;

use std::path::Path;

use wasmcell_test_guests as guests;
use wasmcell_testing::wasm_artifact;

fn image(args: &[&str], paths: &[&Path]) -> common::Output {
    let mut cmd = common::wasmcell();
    cmd.arg("image").args(args).args(paths);
    common::run(cmd)
}

#[test]
fn converts_to_the_image_build_makes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hello = std::fs::read(guests::HELLO_P1).expect("read guest");
    let layout = wasm_artifact(&dir.path().join("artifact"), "wasip1", &hello);
    let artifact_tar = dir.path().join("artifact.tar");
    layout.write_tar(&artifact_tar);

    let built = image(
        &["build", "-t", "hello:v1", "-o"],
        &[&dir.path().join("built.tar"), Path::new(guests::HELLO_P1)],
    );
    assert_eq!(built.code, 0, "{built:?}");
    for (source, out) in [
        (layout.dir(), "from-dir.tar"),
        (&artifact_tar, "from-tar.tar"),
    ] {
        let out = dir.path().join(out);
        let converted = image(&["convert", "-o"], &[&out, source, Path::new("hello:v1")]);
        assert_eq!(converted.code, 0, "{converted:?}");
        assert_eq!(
            converted.stdout, built.stdout,
            "same reference and manifest digest"
        );
        assert!(out.metadata().expect("archive").len() > 1000);
    }

    let oci_dir = dir.path().join("layout");
    let converted = image(
        &["convert", "--oci-dir"],
        &[&oci_dir, layout.dir(), Path::new("hello:v1")],
    );
    assert_eq!(converted.stdout, built.stdout, "{converted:?}");
    assert!(oci_dir.join("index.json").exists());
}

#[test]
fn a_damaged_artifact_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = wasm_artifact(dir.path(), "wasip1", b"\0asm\x01\0\0\0");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).expect("index"))
            .expect("index json");
    let manifest = index["manifests"][0]["digest"].as_str().expect("digest");
    std::fs::write(layout.blob_path(manifest), b"{}").expect("damage the manifest");

    let out = dir.path().join("x.tar");
    let converted = image(&["convert", "-o"], &[&out, dir.path(), Path::new("x")]);
    assert_eq!(converted.code, 1, "{converted:?}");
    assert!(
        converted.stderr.contains(&format!(
            "wasmcell: blob {manifest} in {} is 2 bytes, its descriptor says",
            dir.path().display()
        )),
        "{converted:?}"
    );
    assert!(!out.exists());
}
