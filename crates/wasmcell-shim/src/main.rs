fn main() {
    std::process::exit(wasmcell_shim::main());
}
