//! The small probe: every command of the library, nothing more.
fn main() {
    probe::run(|_| false);
}
