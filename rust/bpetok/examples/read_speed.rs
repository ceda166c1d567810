//! Times `bpetok::data::input::read_documents` alone on the files given (their format and
//! compression from their names, as the command line tells them; `--text` forces whole-file text):
//! what reading, decompressing, hashing and parsing cost per MB, apart from encoding.
//! `--ids` reads ids-JSONL with `read_id_lists` instead.
//! `cargo run --release --example read_speed -- FILE...`
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use bpetok::data::input::{
    read_documents, read_id_lists, resolve_inputs, FormatChoice, InputError, ReadOptions,
    Utf8Errors,
};

fn main() {
    let mut choice = FormatChoice::Auto;
    let mut ids = false;
    let mut paths = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--text" => choice = FormatChoice::Text,
            "--ids" => ids = true,
            _ => paths.push(std::path::PathBuf::from(arg)),
        }
    }
    let specs = resolve_inputs(&paths, choice).unwrap_or_else(|e| panic!("{e}"));
    let progress = AtomicU64::new(0);
    let start = Instant::now();
    let (mut docs, mut bytes, mut text) = (0u64, 0u64, 0usize);
    for spec in specs {
        let summary = if ids {
            read_id_lists(&spec, "ids", Utf8Errors::Strict, &progress, |_, list| {
                text += list.len() * 8;
                Ok::<(), InputError>(())
            })
        } else {
            read_documents(&spec, &ReadOptions::default(), &progress, |t| {
                text += t.len();
                Ok::<(), InputError>(())
            })
        }
        .unwrap_or_else(|e| panic!("{e}"));
        docs += summary.documents;
        bytes += summary.size;
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "{docs} documents, {:.1} MB read, {:.1} MB of text (ids: 8 bytes each) in {s:.3} s: {:.0} MB/s of input",
        bytes as f64 / 1e6,
        text as f64 / 1e6,
        bytes as f64 / 1e6 / s
    );
}
