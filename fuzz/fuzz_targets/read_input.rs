//! The input reader on arbitrary bytes as JSONL, text (whole file or lines) and Parquet, plain,
//! gzip or zstd (forced, or detected from the first bytes), strict or replacing invalid UTF-8:
//! documents or an `InputError`, never a panic that escapes the reader. The first byte of the
//! input chooses the mode, the rest is the file. In one mode in two the file is compressed here
//! first (gzip or zstd), and the documents read must be exactly those of the plain file.
//!
//! The parquet crate panics on some malformed files; the reader catches those (`guarded` in
//! `input/parquet.rs`) and reports them as errors, which is its contract. So this target replaces
//! libFuzzer's abort-on-any-panic hook with one that records the message, and aborts only for a
//! panic that reaches it.
#![no_main]

use std::cell::RefCell;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicU64;
use std::sync::Once;

use bpetok::data::input::{
    read_documents, Compression, InputError, InputFormat, InputSpec, ReadOptions, Utf8Errors,
};
use libfuzzer_sys::fuzz_target;

/// Decompressed inputs larger than this are skipped: a zstd frame of a few bytes can declare
/// gigabytes, and a reader that holds a large document in memory is doing its job.
const MAX_DECOMPRESSED: u64 = 16 << 20;

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info.to_string();
            LAST_PANIC.with(|p| *p.borrow_mut() = message);
        }));
    });
}

/// Whether the payload decompresses (as `compression`) to more than the bound.
fn too_large(payload: &[u8], compression: Compression) -> bool {
    let reader: Box<dyn Read> = match compression {
        Compression::None => return false,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(payload)),
        Compression::Zstd => match zstd::stream::read::Decoder::new(payload) {
            Ok(d) => Box::new(d),
            Err(_) => return false,
        },
    };
    let mut sink = std::io::sink();
    matches!(std::io::copy(&mut reader.take(MAX_DECOMPRESSED + 1), &mut sink), Ok(n) if n > MAX_DECOMPRESSED)
}

fn detected(payload: &[u8]) -> Compression {
    if payload.starts_with(b"\x1f\x8b") {
        Compression::Gzip
    } else if payload.starts_with(b"\x28\xb5\x2f\xfd") {
        Compression::Zstd
    } else {
        Compression::None
    }
}

fn read(
    dir: &std::path::Path,
    bytes: &[u8],
    format: InputFormat,
    compression: Option<Compression>,
    opts: &ReadOptions,
) -> Result<Vec<String>, InputError> {
    let path = dir.join("input");
    std::fs::write(&path, bytes).expect("temp file");
    let spec = InputSpec {
        path: Some(path),
        name: "input".to_owned(),
        format,
        compression,
        size: Some(bytes.len() as u64),
        range: None,
    };
    let mut docs = Vec::new();
    let summary = read_documents(
        &spec,
        opts,
        &AtomicU64::new(0),
        |doc| -> Result<(), InputError> {
            docs.push(doc);
            Ok(())
        },
    )?;
    assert_eq!(
        summary.documents,
        docs.len() as u64,
        "summary counts documents"
    );
    assert_eq!(summary.size, bytes.len() as u64, "summary counts raw bytes");
    Ok(docs)
}

fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            let message = LAST_PANIC.with(|p| p.borrow().clone());
            eprintln!("bpetok-fuzz: panic escaped the reader ({what}): {message}");
            std::process::abort();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    install_hook();
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let format =
        [InputFormat::Jsonl, InputFormat::Text, InputFormat::Parquet][usize::from(mode % 3)];
    let compression = [
        None,
        Some(Compression::None),
        Some(Compression::Gzip),
        Some(Compression::Zstd),
    ][usize::from(mode >> 2 & 3)];
    let opts = ReadOptions {
        field: if mode & 0x40 != 0 {
            "text".into()
        } else {
            "t".into()
        },
        lines: mode & 0x10 != 0,
        errors: if mode & 0x20 != 0 {
            Utf8Errors::Replace
        } else {
            Utf8Errors::Strict
        },
        // Every bit of `mode` is taken: the payload's length picks it.
        skip_bad_records: payload.len() % 2 == 1,
        chat: None,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    if mode & 0x80 == 0 {
        // The bytes as they are.
        if too_large(payload, compression.unwrap_or_else(|| detected(payload))) {
            return;
        }
        let result = guarded("plain", || {
            read(dir.path(), payload, format, compression, &opts)
        });
        if let Err(err) = result {
            assert!(!err.to_string().is_empty());
            assert!(!err.kind().is_empty());
        }
    } else {
        // Compressed here first: the same documents (or the same error kind) as the plain bytes.
        if detected(payload) != Compression::None {
            return;
        }
        let zstd = mode & 0x04 != 0;
        let packed = if zstd {
            zstd::encode_all(payload, 3).expect("zstd")
        } else {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(payload).expect("gzip");
            gz.finish().expect("gzip")
        };
        let declared = if mode & 0x08 != 0 {
            None
        } else if zstd {
            Some(Compression::Zstd)
        } else {
            Some(Compression::Gzip)
        };
        let plain = guarded("plain", || {
            read(dir.path(), payload, format, Some(Compression::None), &opts)
        });
        let packed = guarded("compressed", || {
            read(dir.path(), &packed, format, declared, &opts)
        });
        match (plain, packed) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "compression changed the documents"),
            (Err(a), Err(b)) => assert_eq!(
                (a.kind(), a.location()),
                (b.kind(), b.location()),
                "{a} / {b}"
            ),
            (a, b) => panic!(
                "plain {:?} but compressed {:?}",
                a.map(|d| d.len()),
                b.map(|d| d.len())
            ),
        }
    }
});
