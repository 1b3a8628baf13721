fn main() {
    std::process::exit(wasmcell_cli::main());
}
