//! Loads the embedded Mixtral tokenizer (or a `.model` file) once and encodes one short text,
//! printing the milliseconds of each: a harness for `perf` and callgrind, not a benchmark of
//! record (that is `benchmarks/bench_peers.py --startup`, side by side with the peers).
//!
//! cargo run --release -p bpetok --example load_speed -- [MODEL]

use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1);
    let start = Instant::now();
    let tok = match &path {
        Some(path) => match bpetok::Tokenizer::from_file(path) {
            Ok(tok) => tok,
            Err(err) => {
                eprintln!("cannot load {path}: {err}");
                std::process::exit(1);
            }
        },
        None => bpetok::Tokenizer::mixtral_8x7b(),
    };
    let loaded = start.elapsed();
    let ids = tok.encode(
        "Hello, world! Grüße, 日本語のテキスト. fn main() { return 42; }",
        true,
        false,
    );
    let first = start.elapsed() - loaded;
    println!(
        "load {:.3} ms, first call {:.3} ms ({} ids)",
        loaded.as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3,
        ids.len()
    );
}
