fn main() {
    std::process::exit(wasmcell_oci::main());
}
