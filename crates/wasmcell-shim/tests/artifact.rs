//! CNCF Wasm OCI artifacts (a raw `application/wasm` layer, config
//! `application/vnd.wasm.config.v0+json`) through the shim:
//! - run directly from containerd's content store: as the container's image (what CRI does
//!   from containerd 1.6.25 / 1.7.7 on: an empty snapshot, the image named on the container),
//!   or named by the annotation `wasmcell.dev/image` (for `ctr run --rootfs`, as ctr cannot
//!   unpack such an image);
//! - converted as `wasmcell image convert` does (`wasmcell_image::read_artifact`) and run with
//!   `ctr run`.
mod common;

use std::path::PathBuf;

use common::{assert_clean, containerd, import_artifact, run, run_artifact, RUNTIME};
use wasmcell_test_guests as guests;
use wasmcell_testing::{Containerd, CtrOutput};

const HELLO: &str = "Hello from a wasmcell guest!\n";

/// `ctr run --rm` of the artifact `image` named by annotation, in normal mode.
fn run_annotated(c: &Containerd, image: &str, id: &str, args: &[&str]) -> CtrOutput {
    run_artifact(c, RUNTIME, image, id, args)
}

#[test]
fn an_artifact_named_by_annotation_runs_from_the_content_store() {
    let c = containerd();
    let core = "docker.io/library/hello-artifact:p1";
    import_artifact(&c, guests::HELLO_P1, "wasip1", core);
    let component = "docker.io/library/hello-artifact:p2";
    import_artifact(&c, guests::HELLO_P2, "wasip2", component);

    // No args: argv is the image reference alone.
    let out = run_annotated(&c, core, "artifact-core", &[]);
    assert_eq!((out.code, out.stdout.as_str()), (0, HELLO), "{out:?}");
    let out = run_annotated(&c, component, "artifact-component", &[]);
    assert_eq!((out.code, out.stdout.as_str()), (0, HELLO), "{out:?}");

    // Args are the guest's argv, whatever argv[0] says.
    let out = run_annotated(&c, core, "artifact-args", &["hello", "one", "two"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Hello from a wasmcell guest! args: one two\n"),
        "{out:?}"
    );
    assert_clean(&c);
}

/// The blob of `digest` in `c`'s content store.
fn blob_path(c: &Containerd, digest: &str) -> PathBuf {
    c.root_dir()
        .join("io.containerd.content.v1.content/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Flip the last byte of blob `digest` (same size, other content).
fn damage_blob(c: &Containerd, digest: &str) {
    let blob = blob_path(c, digest);
    let mut bytes = std::fs::read(&blob).expect("read the layer blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, &bytes).expect("damage the layer blob");
}

/// A copy of `module` with a custom section of its own, so that its layer is one this node
/// has never read (the node's content index outlives each test's containerd).
fn unique_module(c: &Containerd, module: &str, name: &str) -> PathBuf {
    let mut bytes = std::fs::read(module).expect("read guest");
    let stamp = format!(
        "{}-{}-{name}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let section_name = b"wasmcell-test";
    let mut section = vec![section_name.len() as u8];
    section.extend_from_slice(section_name);
    section.extend_from_slice(stamp.as_bytes());
    bytes.push(0); // custom section
    bytes.push(u8::try_from(section.len()).expect("short section"));
    bytes.extend_from_slice(&section);
    let path = c.dir().join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).expect("write module");
    path
}

#[test]
fn a_warm_start_of_an_artifact_reads_no_layer() {
    let c = containerd();
    let reference = "docker.io/library/hello-artifact:warm";
    let module = unique_module(&c, guests::HELLO_P1, "warm");
    let layer = import_artifact(&c, &module.display().to_string(), "wasip1", reference);
    let out = run_annotated(&c, reference, "first", &[]);
    assert_eq!((out.code, out.stdout.as_str()), (0, HELLO), "{out:?}");

    // The first start labelled the layer with its module's kind and BLAKE3 digest.
    let listed = c.run_ctr(&["content", "ls"]);
    let line = listed
        .stdout
        .lines()
        .find(|l| l.starts_with(&layer))
        .unwrap_or_else(|| panic!("layer {layer} not listed: {listed:?}"));
    assert!(line.contains("dev.wasmcell.module=core:"), "{line}");

    // Damaged now, the layer is not read again: its compiled code (of the content that was
    // checked against the digest) is found through the node's content index.
    damage_blob(&c, &layer);
    let out = run_annotated(&c, reference, "warm", &[]);
    assert_eq!((out.code, out.stdout.as_str()), (0, HELLO), "{out:?}");
    assert_clean(&c);
}

#[test]
fn a_missing_or_damaged_artifact_fails_at_create_naming_it() {
    let c = containerd();
    let out = run_annotated(&c, "docker.io/library/absent:1", "absent", &[]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("image docker.io/library/absent:1"),
        "{out:?}"
    );

    // Same length, other bytes: containerd serves it as it is; the shim refuses to run it.
    let reference = "docker.io/library/damaged:1";
    let module = unique_module(&c, guests::HELLO_P1, "damaged");
    let layer = import_artifact(&c, &module.display().to_string(), "wasip1", reference);
    damage_blob(&c, &layer);
    let out = run_annotated(&c, reference, "damaged", &[]);
    assert_ne!(out.code, 0, "{out:?}");
    for needle in [layer.as_str(), "does not match its digest", reference] {
        assert!(out.stderr.contains(needle), "missing {needle:?} in {out:?}");
    }
    assert_eq!(out.stdout, "", "{out:?}");
    assert_clean(&c);
}

#[test]
fn an_artifact_runs_as_the_containers_image_on_an_empty_snapshot() {
    let c = containerd();
    let reference = "docker.io/library/hello-artifact:cri";
    import_artifact(&c, guests::HELLO_P1, "wasip1", reference);

    // No args (no command in the pod spec, none in a Wasm config).
    let (status, out) =
        common::api::run_as_cri_does(&c, RUNTIME, reference, "cri-no-args", &[], || {});
    assert_eq!((status, out.as_str()), (0, HELLO));
    // A pod's command and args; `/app.wasm` is not in the empty rootfs.
    let (status, out) = common::api::run_as_cri_does(
        &c,
        RUNTIME,
        reference,
        "cri-args",
        &["/app.wasm", "x"],
        || {},
    );
    assert_eq!(
        (status, out.as_str()),
        (0, "Hello from a wasmcell guest! args: x\n")
    );
    assert_clean(&c);
}

#[test]
fn a_converted_artifact_runs() {
    let c = containerd();
    let hello = std::fs::read(guests::HELLO_P1).expect("read guest");
    let layout = wasmcell_testing::wasm_artifact(&c.dir().join("artifact"), "wasip1", &hello);
    let artifact_tar = c.dir().join("artifact.tar");
    layout.write_tar(&artifact_tar);

    let reference = "docker.io/library/hello-artifact:latest";
    let image = wasmcell_image::read_artifact(&artifact_tar)
        .expect("read artifact")
        .to_image(reference)
        .expect("convert");
    let tar = c.dir().join("converted.tar");
    image.write_archive(&tar).expect("write image archive");
    c.import(&tar);

    let out = run(&c, &[], reference, "artifact-1", &[]);
    assert_eq!((out.code, out.stdout.as_str()), (0, HELLO), "{out:?}");
    assert_clean(&c);
}

/// The label on a layer is only a hint: a forged one (any client of containerd can set it)
/// naming another module makes no start skip reading and checking the layer.
#[test]
fn a_forged_module_label_is_not_trusted() {
    let c = containerd();
    let reference = "docker.io/library/hello-artifact:forged";
    let module = unique_module(&c, guests::HELLO_P1, "forged");
    let layer = import_artifact(&c, &module.display().to_string(), "wasip1", reference);
    let forged = format!("dev.wasmcell.module=core:{}", "0".repeat(64));
    let out = c.run_ctr(&["content", "label", &layer, &forged]);
    assert!(out.success(), "{out:?}");
    let out = run_annotated(&c, reference, "forged", &[]);
    assert_eq!((out.code, out.stdout.as_str()), (0, HELLO), "{out:?}");
    assert_clean(&c);
}
