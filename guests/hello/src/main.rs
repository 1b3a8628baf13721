//! The demo guest: greets, and names its arguments.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        println!("Hello from a wasmcell guest!");
    } else {
        println!("Hello from a wasmcell guest! args: {}", args.join(" "));
    }
}
