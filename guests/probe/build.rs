//! Generates the code and data that make `probe-big` real-sized: `FUNCTIONS` distinct
//! functions (each a few rounds of mixing with its own constants) reached through one table, and
//! `DATA_BYTES` of pseudo-random data they are run over. Deterministic: the same bytes on every
//! build.
use std::fmt::Write as _;
use std::path::PathBuf;

const FUNCTIONS: u64 = 2400;
const DATA_BYTES: usize = 900 * 1024;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let data: Vec<u8> = (0..DATA_BYTES / 8).flat_map(|_| next().to_le_bytes()).collect();
    std::fs::write(out.join("bulk.bin"), &data).expect("write bulk.bin");

    let mut code = String::new();
    for i in 0..FUNCTIONS {
        let (a, b, c) = (next(), next() | 1, next());
        let r = 1 + next() % 63;
        writeln!(
            code,
            "#[inline(never)] fn f{i}(x: u64) -> u64 {{ let mut y = x ^ {a:#x}; \
             y = y.rotate_left({r}).wrapping_mul({b:#x}); \
             if y & 1 == 0 {{ y ^= {c:#x}; }} else {{ y = y.wrapping_add({c:#x}); }} \
             y ^ (y >> 29) }}"
        )
        .expect("write to a string");
    }
    code.push_str("static FUNCTIONS: &[fn(u64) -> u64] = &[");
    for i in 0..FUNCTIONS {
        write!(code, "f{i},").expect("write to a string");
    }
    code.push_str("];\n");
    code.push_str(
        "static DATA: &[u8] = include_bytes!(concat!(env!(\"OUT_DIR\"), \"/bulk.bin\"));\n\
         pub fn checksum() -> u64 {\n\
             let mut acc = 0u64;\n\
             for (i, chunk) in DATA.chunks(8).enumerate() {\n\
                 let mut word = [0u8; 8];\n\
                 word[..chunk.len()].copy_from_slice(chunk);\n\
                 let f = FUNCTIONS[i % FUNCTIONS.len()];\n\
                 acc = f(acc ^ u64::from_le_bytes(word));\n\
             }\n\
             acc\n\
         }\n",
    );
    std::fs::write(out.join("bulk.rs"), code).expect("write bulk.rs");
    println!("cargo:rerun-if-changed=build.rs");
}
