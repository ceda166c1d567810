//! Encodes NUL-separated documents from a file with the embedded Mixtral tokenizer and prints
//! single-thread MB/s: a harness for profilers (perf, callgrind), not a benchmark of record
//! (that is benchmarks/bench_encode.py, side by side with the peers).
//!
//! cargo run --release -p bpetok --example encode_speed -- FILE [REPEATS]

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: encode_speed FILE [REPEATS]  (documents separated by NUL bytes)");
        std::process::exit(2);
    };
    let repeats: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(3);
    let data = match std::fs::read(&path) {
        Ok(data) => data,
        Err(err) => {
            eprintln!("cannot read {path}: {err}");
            std::process::exit(1);
        }
    };
    let docs: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let tok = bpetok::Tokenizer::mixtral_8x7b();
    for _ in 0..repeats {
        let start = Instant::now();
        let mut tokens = 0usize;
        for doc in &docs {
            tokens += tok.encode_bytes(doc, false, false).len();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{} docs, {:.1} MB, {tokens} tokens: {:.1} MB/s",
            docs.len(),
            data.len() as f64 / 1e6,
            data.len() as f64 / 1e6 / secs
        );
    }
}
