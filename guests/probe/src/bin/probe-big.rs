//! The probe with generated code and data linked in, over 1 MiB like a real module: the
//! same commands, plus `bulk`, which runs every generated function over the data and prints
//! one checksum (so none of it is dead code).
mod bulk {
    include!(concat!(env!("OUT_DIR"), "/bulk.rs"));
}

fn main() {
    probe::run(|cmd| match cmd {
        "bulk" => {
            println!("bulk {:016x}", bulk::checksum());
            true
        }
        _ => false,
    });
}
