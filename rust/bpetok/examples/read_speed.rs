//! Times `bpetok::data::input::read_documents` alone on the files given (JSONL by default, `--text`
//! for whole-file text): what reading, decompressing, hashing and parsing cost per MB, apart
//! from encoding. `cargo run --release --example read_speed -- FILE...`
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use bpetok::data::input::{
    read_documents, Compression, InputError, InputFormat, InputSpec, ReadOptions,
};

fn main() {
    let mut format = InputFormat::Jsonl;
    let mut paths = Vec::new();
    for arg in std::env::args().skip(1) {
        if arg == "--text" {
            format = InputFormat::Text;
        } else {
            paths.push(arg);
        }
    }
    let progress = AtomicU64::new(0);
    let start = Instant::now();
    let (mut docs, mut bytes, mut text) = (0u64, 0u64, 0usize);
    for path in paths {
        let compression = if path.ends_with(".gz") {
            Compression::Gzip
        } else if path.ends_with(".zst") {
            Compression::Zstd
        } else {
            Compression::None
        };
        let spec = InputSpec {
            path: Some(path.clone().into()),
            name: path,
            format,
            compression: Some(compression),
        };
        let summary = read_documents(&spec, &ReadOptions::default(), None, &progress, |t| {
            text += t.len();
            Ok::<(), InputError>(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        docs += summary.documents;
        bytes += summary.size;
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "{docs} documents, {:.1} MB read, {:.1} MB of text in {s:.3} s: {:.0} MB/s of input",
        bytes as f64 / 1e6,
        text as f64 / 1e6,
        bytes as f64 / 1e6 / s
    );
}
