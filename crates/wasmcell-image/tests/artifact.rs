//! `read_artifact` on CNCF Wasm OCI artifacts written by hand (`wasmcell_testing::ArtifactLayout`):
//! layout directories and tars, nested indexes, and the damage it must refuse.

use serde_json::json;
use wasmcell_image::{read_artifact, ImageSpec};
use wasmcell_testing::{wasm_artifact, ArtifactLayout};

/// The smallest core module: the header alone.
const MODULE: &[u8] = b"\0asm\x01\0\0\0";

#[test]
fn reads_a_layout_directory_and_a_tar_of_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = wasm_artifact(&dir.path().join("layout"), "wasip1", MODULE);
    let tar = dir.path().join("layout.tar");
    layout.write_tar(&tar);

    for path in [layout.dir(), tar.as_path()] {
        let artifact = read_artifact(path).expect("read artifact");
        assert_eq!(artifact.module.bytes().expect("bytes"), MODULE);
        assert_eq!(artifact.media_type, "application/wasm");
        assert_eq!(artifact.os, "wasip1");
        assert!(artifact.manifest_digest.starts_with("sha256:"));
    }
}

#[test]
fn the_converted_image_is_the_one_image_build_makes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = wasm_artifact(&dir.path().join("layout"), "wasip2", MODULE);
    let module = dir.path().join("m.wasm");
    std::fs::write(&module, MODULE).expect("write module");
    let reference = "docker.io/library/t:1";

    let converted = read_artifact(layout.dir())
        .expect("read artifact")
        .to_image(reference)
        .expect("convert");
    let built = ImageSpec::new(&module, reference).build().expect("build");
    assert_eq!(converted.manifest_digest(), built.manifest_digest());
    assert_eq!(converted.reference(), reference);
}

#[test]
fn a_nested_index_gives_its_wasm_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = ArtifactLayout::new(dir.path());
    let mut linux = layout.json_blob(
        "application/vnd.oci.image.manifest.v1+json",
        &json!({ "schemaVersion": 2, "config": layout.blob("application/vnd.oci.image.config.v1+json", b"{}"), "layers": [] }),
    );
    linux["platform"] = json!({ "architecture": "amd64", "os": "linux" });
    let wasm = layout.wasm_manifest("wasip2", MODULE);
    let wasm_digest = wasm["digest"].clone();
    let nested = layout.json_blob(
        "application/vnd.oci.image.index.v1+json",
        &json!({ "schemaVersion": 2, "manifests": [linux, wasm] }),
    );
    layout.write_index(vec![nested]);

    let artifact = read_artifact(dir.path()).expect("read artifact");
    assert_eq!(json!(artifact.manifest_digest), wasm_digest);
    assert_eq!(artifact.os, "wasip2");
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = ArtifactLayout::new(dir.path());
    let layer = layout.blob("application/wasm", MODULE);
    let digest = layer["digest"].as_str().expect("digest").to_string();
    let manifest = layout.manifest("wasip1", vec![layer]);
    layout.write_index(vec![manifest]);

    // Same size, other bytes.
    std::fs::write(layout.blob_path(&digest), b"\0asm\x01\0\0\x01").expect("damage");
    let err = read_artifact(dir.path()).expect_err("bad digest");
    assert!(
        err.to_string().contains(&format!(
            "blob {digest} in {} does not match its digest",
            dir.path().display()
        )),
        "{err}"
    );

    // Longer than the descriptor says.
    std::fs::write(layout.blob_path(&digest), b"\0asm\x01\0\0\0\0").expect("damage");
    let err = read_artifact(dir.path()).expect_err("bad size");
    assert!(err.to_string().contains("its descriptor says 8"), "{err}");
}

#[test]
fn a_manifest_without_a_wasm_layer_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = ArtifactLayout::new(dir.path());
    let layer = layout.blob("application/vnd.oci.image.layer.v1.tar", MODULE);
    let manifest = layout.manifest("wasip1", vec![layer]);
    let digest = manifest["digest"].as_str().expect("digest").to_string();
    layout.write_index(vec![manifest]);

    let err = read_artifact(dir.path()).expect_err("no wasm layer");
    assert!(
        err.to_string().contains(&format!(
            "manifest {digest} in {} has no wasm layer",
            dir.path().display()
        )),
        "{err}"
    );
}

#[test]
fn refuses_what_is_not_a_wasm_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = read_artifact(dir.path()).expect_err("empty dir");
    assert!(
        err.to_string()
            .contains("is not an oci image layout: it has no oci-layout"),
        "{err}"
    );

    let layout = ArtifactLayout::new(dir.path());
    let err = read_artifact(dir.path()).expect_err("no index");
    assert!(err.to_string().contains("it has no index.json"), "{err}");

    std::fs::write(dir.path().join("index.json"), "{").expect("write");
    let err = read_artifact(dir.path()).expect_err("bad index");
    assert!(
        err.to_string().contains("invalid index index.json in"),
        "{err}"
    );

    let a = layout.wasm_manifest("wasip1", MODULE);
    let mut b = a.clone();
    b["platform"]["architecture"] = json!("amd64");
    let mut c = b.clone();
    c["platform"]["os"] = json!("windows");
    layout.write_index(vec![b, c]);
    let err = read_artifact(dir.path()).expect_err("no wasm entry");
    assert!(
        err.to_string()
            .contains("no manifest for architecture wasm in index.json"),
        "{err}"
    );

    let not_wasm = layout.blob("application/wasm", b"hello");
    let manifest = layout.manifest("wasip1", vec![not_wasm]);
    layout.write_index(vec![manifest]);
    let err = read_artifact(dir.path()).expect_err("layer not wasm");
    assert!(err.to_string().contains("is not a wasm module"), "{err}");
}
