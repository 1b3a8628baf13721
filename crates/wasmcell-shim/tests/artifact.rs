//! A CNCF Wasm OCI artifact, converted as `wasmcell image convert` does
//! (`wasmcell_image::read_artifact`), runs with `ctr run` through the shim.
mod common;

use common::{assert_clean, containerd, run};
use wasmcell_test_guests as guests;

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
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Hello from a wasmcell guest!\n"),
        "{out:?}"
    );
    assert_clean(&c);
}
