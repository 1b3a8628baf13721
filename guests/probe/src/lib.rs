//! A test guest that does one thing per command, so host tests can check what a guest can
//! and cannot do. Errors are printed as `error: <kind> (errno <n>)` and exit with status 1.
//!
//! Two binaries share these commands: `probe` (small) and `probe-big`, which also links
//! generated code and data (see `build.rs`) so that it is over 1 MiB, as real modules are.
use std::io::{Read, Write};
use std::time::Duration;

/// Run the command named by argv[1]; `extra` is asked first and returns true when it handled
/// the command.
pub fn run(extra: impl Fn(&str) -> bool) {
    let args: Vec<String> = std::env::args().collect();
    let cmd = args.get(1).map(String::as_str).unwrap_or("");
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    if extra(cmd) {
        return;
    }
    match cmd {
        "hello" => println!("Hello from a wasmcell guest!"),
        "getenv" => match std::env::var(arg(2)) {
            Ok(v) => println!("{}={v}", arg(2)),
            Err(_) => {
                println!("{} is not set", arg(2));
                std::process::exit(1);
            }
        },
        "args" => {
            for a in &args {
                println!("{a}");
            }
        }
        "env" => {
            let mut vars: Vec<_> = std::env::vars().collect();
            vars.sort();
            for (k, v) in vars {
                println!("{k}={v}");
            }
        }
        "open" => {
            // Open and read at most 16 bytes: safe on a device node or a huge file.
            let mut buf = [0u8; 16];
            match std::fs::File::open(arg(2)).and_then(|mut f| f.read(&mut buf)) {
                Ok(n) => println!("opened {}, read {n} bytes", arg(2)),
                Err(e) => fail(&e),
            }
        }
        "open-many" => {
            // Open arg(2) again and again, keeping every descriptor, until refused.
            let mut held = Vec::new();
            loop {
                match std::fs::File::open(arg(2)) {
                    Ok(f) => held.push(f),
                    Err(e) => {
                        println!("opened {} before: {e}", held.len());
                        std::process::exit(3);
                    }
                }
            }
        }
        "hold" => {
            // Open arg(2) arg(3) times and keep the files: busy for 50 ms (so the host sees
            // what it holds at an epoch tick), then asleep for arg(4) ms.
            let n: usize = arg(3).parse().unwrap_or(1);
            let held: Vec<_> = (0..n).map_while(|_| std::fs::File::open(arg(2)).ok()).collect();
            println!("holding {}", held.len());
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_millis(50) {
                std::hint::spin_loop();
            }
            std::thread::sleep(std::time::Duration::from_millis(arg(4).parse().unwrap_or(0)));
        }
        "read" => match std::fs::read_to_string(arg(2)) {
            Ok(text) => print!("{text}"),
            Err(e) => fail(&e),
        },
        "write" => match std::fs::write(arg(2), arg(3)) {
            Ok(()) => println!("wrote {}", arg(2)),
            Err(e) => fail(&e),
        },
        "ls" => match std::fs::read_dir(arg(2)) {
            Ok(entries) => {
                let mut names: Vec<_> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                for n in names {
                    println!("{n}");
                }
            }
            Err(e) => fail(&e),
        },
        "exit" => std::process::exit(arg(2).parse().unwrap_or(1)),
        "trap" => trap(),
        "alloc" => {
            let mib: usize = arg(2).parse().unwrap_or(1);
            let mut blocks = Vec::new();
            for i in 0..mib {
                blocks.push(vec![i as u8; 1 << 20]);
            }
            println!("allocated {} MiB", blocks.len());
        }
        "sleep" => {
            let ms: u64 = arg(2).parse().unwrap_or(1000);
            std::thread::sleep(Duration::from_millis(ms));
            println!("slept {ms} ms");
        }
        "spin" => {
            println!("spinning");
            let _ = std::io::stdout().flush();
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "cat" => {
            let mut input = String::new();
            match std::io::stdin().read_to_string(&mut input) {
                Ok(_) => print!("{input}"),
                Err(e) => fail(&e),
            }
        }
        "stderr" => eprintln!("{}", arg(2)),
        "serve" => {
            // Accept one TCP connection on 127.0.0.1:PORT and print the line it sends.
            let listener = match std::net::TcpListener::bind(("127.0.0.1", arg(2).parse().unwrap_or(0))) {
                Ok(l) => l,
                Err(e) => fail(&e),
            };
            println!("listening");
            let _ = std::io::stdout().flush();
            match listener.accept() {
                Ok((conn, _)) => {
                    let mut line = String::new();
                    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(conn), &mut line);
                    println!("got: {}", line.trim_end());
                }
                Err(e) => fail(&e),
            }
        }
        "connect" => match std::net::TcpStream::connect(arg(2)) {
            Ok(mut conn) => match conn.write_all(arg(3).as_bytes()) {
                Ok(()) => println!("sent"),
                Err(e) => fail(&e),
            },
            Err(e) => fail(&e),
        },
        _ => {
            eprintln!("probe: unknown command {cmd:?}");
            std::process::exit(2);
        }
    }
}

fn fail(e: &std::io::Error) -> ! {
    println!("error: {:?} (errno {})", e.kind(), e.raw_os_error().unwrap_or(-1));
    std::process::exit(1);
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    std::process::abort()
}
