//! Encodes NUL-separated documents from a file with the embedded Mixtral tokenizer and prints
//! single-thread MB/s: a harness for profilers (perf, callgrind), not a benchmark of record
//! (that is benchmarks/bench_encode.py, side by side with the peers).
//!
//! cargo run --release -p bpetok --example encode_speed -- FILE [REPEATS [THREADS]]

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!(
            "usage: encode_speed FILE [REPEATS [THREADS]]  (documents separated by NUL bytes)"
        );
        std::process::exit(2);
    };
    let repeats: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(3);
    // With THREADS > 1, each repeat is one `encode_batch` on that many threads.
    let threads: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(1);
    let data = match std::fs::read(&path) {
        Ok(data) => data,
        Err(err) => {
            eprintln!("cannot read {path}: {err}");
            std::process::exit(1);
        }
    };
    // Validated once, as a Python `str` or a parsed JSON string arrives.
    let docs: Vec<&str> = data
        .split(|&b| b == 0)
        .map(|doc| std::str::from_utf8(doc).expect("documents must be UTF-8"))
        .collect();
    let start = Instant::now();
    let tok = bpetok::Tokenizer::mixtral_8x7b();
    let loaded = start.elapsed();
    let first = tok.encode(docs[0], false, false).len();
    eprintln!(
        "load {:.2} ms, first document ({first} tokens) {:.2} ms",
        loaded.as_secs_f64() * 1e3,
        (start.elapsed() - loaded).as_secs_f64() * 1e3
    );
    for _ in 0..repeats {
        let start = Instant::now();
        let mut tokens = 0usize;
        if threads > 1 {
            let batch = tok.encode_batch(&docs, false, false, threads);
            tokens = batch.iter().map(Vec::len).sum();
        } else {
            for doc in &docs {
                tokens += tok.encode(doc, false, false).len();
            }
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
