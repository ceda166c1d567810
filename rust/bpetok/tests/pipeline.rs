//! `bpetok::data::input` (documents from JSONL and text, plain, gzip, zstd) and `bpetok::data::pipeline`
//! (read, encode on threads, consume in order). `tests/input.rs` pins the reader's rules one by
//! one; these tests pin what the pipeline relies on.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bpetok::data::input::{
    read_documents, Compression, InputError, InputFormat, InputSpec, ReadOptions, Utf8Errors,
};
use bpetok::data::pipeline::{encode_inputs, Counters, EncodeOptions, Event};
use bpetok::Tokenizer;
use sha2::{Digest, Sha256};

fn spec(path: &Path, format: InputFormat, compression: Compression) -> InputSpec {
    InputSpec {
        path: Some(path.to_path_buf()),
        name: path.display().to_string(),
        format,
        compression: Some(compression),
        size: None,
        range: None,
    }
}

fn compress(data: &[u8], compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            // Two members, as `cat a.gz b.gz` makes.
            let (a, b) = data.split_at(data.len() / 2);
            let mut out = Vec::new();
            for part in [a, b] {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(part).unwrap();
                out.extend(enc.finish().unwrap());
            }
            out
        }
        Compression::Zstd => {
            // Two frames.
            let (a, b) = data.split_at(data.len() / 2);
            let mut out = zstd::encode_all(a, 1).unwrap();
            out.extend(zstd::encode_all(b, 1).unwrap());
            out
        }
    }
}

fn read_all(
    input: &InputSpec,
    opts: &ReadOptions,
) -> Result<(Vec<String>, String, u64), InputError> {
    let mut docs = Vec::new();
    let progress = AtomicU64::new(0);
    let summary = read_documents(input, opts, &progress, |t| {
        docs.push(t);
        Ok::<(), InputError>(())
    })?;
    assert_eq!(progress.load(Ordering::Relaxed), summary.size);
    assert_eq!(summary.documents, docs.len() as u64);
    Ok((docs, summary.sha256, summary.size))
}

fn jsonl(texts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in texts {
        out.extend(serde_json::to_vec(&serde_json::json!({ "id": 1, "text": t })).unwrap());
        out.push(b'\n');
    }
    out
}

#[test]
fn jsonl_in_every_compression_gives_the_documents_size_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let texts = [
        "first",
        "",
        "é 日本 😀",
        "line\nbreak \"quoted\" \\ tab\t",
        "last",
    ];
    let body = jsonl(&texts);
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let raw = compress(&body, compression);
        let path = dir.path().join(format!("in-{}.jsonl", compression.name()));
        std::fs::write(&path, &raw).unwrap();
        let (docs, sha, size) = read_all(
            &spec(&path, InputFormat::Jsonl, compression),
            &ReadOptions::default(),
        )
        .unwrap();
        assert_eq!(docs, texts);
        assert_eq!(size, raw.len() as u64);
        assert_eq!(sha, format!("{:x}", Sha256::digest(&raw)));
        // stdin-style detection from the magic bytes reads the same.
        let mut detected = spec(&path, InputFormat::Jsonl, compression);
        detected.compression = None;
        assert_eq!(
            read_all(&detected, &ReadOptions::default()).unwrap().0,
            texts
        );
    }
}

#[test]
fn jsonl_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    let run = |body: &[u8], errors: Utf8Errors| {
        std::fs::write(&path, body).unwrap();
        let opts = ReadOptions {
            errors,
            ..ReadOptions::default()
        };
        read_all(&spec(&path, InputFormat::Jsonl, Compression::None), &opts).map(|r| r.0)
    };
    let strict = Utf8Errors::Strict;
    // BOM, CRLF, blank lines (Python's whitespace, U+001C included), repeated keys (last wins).
    let body = b"\xef\xbb\xbf{\"text\": \"a\"}\r\n\r\n \t\n\x1c\n{\"text\": 1, \"text\": \"b\"}";
    assert_eq!(run(body, strict).unwrap(), ["a", "b"]);
    // A key with a lone surrogate escape is still a key (Python accepts it).
    let odd_key = br#"{"\ud800": 1, "text": "k"}"#;
    assert_eq!(run(odd_key, strict).unwrap(), ["k"]);
    // Surrogate pairs join; a lone one is an error, or U+FFFD.
    let pair = br#"{"text": "\ud83d\ude00"}"#;
    assert_eq!(run(pair, strict).unwrap(), ["😀"]);
    let lone = br#"{"text": "a\ud800b\udc00"}"#;
    let err = run(lone, strict).unwrap_err().to_string();
    assert!(err.ends_with(
        "in.jsonl:1: lone surrogate U+D800 in the text (a JSON \\u escape that is half of a \
         pair)"
    ));
    assert_eq!(
        run(lone, Utf8Errors::Replace).unwrap(),
        ["a\u{FFFD}b\u{FFFD}"]
    );
    // Invalid UTF-8: file, line and column, or U+FFFD per maximal invalid sequence.
    let bad = b"{\"text\": \"ok\"}\n{\"text\": \"a\xe2\x82b\xff\"}\n";
    let err = run(bad, strict).unwrap_err().to_string();
    assert!(
        err.contains("in.jsonl:2: invalid UTF-8 (byte 0xe2 at column 12)"),
        "{err}"
    );
    assert_eq!(
        run(bad, Utf8Errors::Replace).unwrap(),
        ["ok", "a\u{FFFD}b\u{FFFD}"]
    );
    // What is not a document is an error naming the line.
    for (body, message) in [
        (
            &b"{\"text\": \"a\"}\n[1]\n"[..],
            "in.jsonl:2: expected a JSON object, got an array",
        ),
        (
            b"{\"a\": 1, \"b\": 2}",
            "in.jsonl:1: record has no field 'text' (its fields: 'a', 'b')",
        ),
        (
            b"{\"text\": null}",
            "in.jsonl:1: field 'text' is null, not a string",
        ),
        (
            b"{\"text\": [\"a\"]}",
            "in.jsonl:1: field 'text' is an array, not a string",
        ),
        (b"{\"text\": \"a\tb\"}", "in.jsonl:1: invalid JSON"),
        (b"{\"text\": \"a\"} {}", "in.jsonl:1: invalid JSON"),
        (b"{\"text\"", "in.jsonl:1: invalid JSON"),
        (b"[1, 2", "in.jsonl:1: invalid JSON"),
        (
            b"{\"text\": 1} x",
            "in.jsonl:1: invalid JSON: Extra data (column 13)",
        ),
    ] {
        let err = run(body, strict).unwrap_err().to_string();
        assert!(err.contains(message), "{err:?} lacks {message:?}");
    }
}

#[test]
fn text_files_whole_and_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.txt");
    let body = b"\xef\xbb\xbfone\r\n\ntwo\nthree";
    std::fs::write(&path, body).unwrap();
    let input = spec(&path, InputFormat::Text, Compression::None);
    let whole = read_all(&input, &ReadOptions::default()).unwrap().0;
    assert_eq!(whole, ["one\r\n\ntwo\nthree"]);
    let lines = ReadOptions {
        lines: true,
        ..ReadOptions::default()
    };
    assert_eq!(read_all(&input, &lines).unwrap().0, ["one", "two", "three"]);
    // An empty file (or a BOM alone) is no document.
    std::fs::write(&path, b"").unwrap();
    assert!(read_all(&input, &ReadOptions::default())
        .unwrap()
        .0
        .is_empty());
    std::fs::write(&path, b"ok\nok\nab\xffc\n").unwrap();
    let err = read_all(&input, &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("in.txt:3: invalid UTF-8 (byte 0xff at column 3)"),
        "{err}"
    );
}

#[test]
fn truncated_gzip_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl.gz");
    let texts: Vec<String> = (0..3000)
        .map(|i| format!("document {i} ").repeat(10))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let raw = compress(&jsonl(&refs), Compression::Gzip);
    std::fs::write(&path, &raw[..raw.len() - 100]).unwrap();
    let err = read_all(
        &spec(&path, InputFormat::Jsonl, Compression::Gzip),
        &ReadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot read (gzip)"), "{err}");
    assert!(err.starts_with(&format!("{}:", path.display())), "{err}");
}

/// Inputs of a few MB (many batches), documents of very different sizes.
fn corpus(dir: &Path) -> (Vec<InputSpec>, Vec<String>) {
    let mut all = Vec::new();
    let mut specs = Vec::new();
    let mut seed = 7u64;
    for (i, compression) in [Compression::None, Compression::Zstd, Compression::Gzip]
        .into_iter()
        .enumerate()
    {
        let texts: Vec<String> = (0..700)
            .map(|d| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let words = (seed >> 33) % 400;
                (0..words)
                    .map(|w| {
                        ["the", "quick", "日本語", "brown", "fox", "😀", "  ", "\n"]
                            [(w as usize + d) % 8]
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let path = dir.join(format!("part{i}.jsonl"));
        std::fs::write(&path, compress(&jsonl(&refs), compression)).unwrap();
        specs.push(spec(&path, InputFormat::Jsonl, compression));
        all.extend(texts);
    }
    (specs, all)
}

#[test]
fn pipeline_gives_every_document_in_order_whatever_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    let (specs, texts) = corpus(dir.path());
    let tok = Tokenizer::mixtral_8x7b();
    let want: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t, true, true)).collect();
    for threads in [1, 2, 3, 0] {
        let counters = Counters::default();
        let mut got = Vec::new();
        let mut ticks = 0;
        let summaries = encode_inputs(
            &tok,
            &specs,
            &ReadOptions::default(),
            EncodeOptions {
                add_bos: true,
                add_eos: true,
                threads,
                skip_records: 0,
            },
            &counters,
            |event| {
                if let Event::Document { ids, .. } = event {
                    got.push(ids);
                }
                Ok::<(), InputError>(())
            },
            || {
                ticks += 1;
                Ok(())
            },
        )
        .unwrap();
        assert!(got == want, "threads {threads}: ids differ");
        assert!(ticks >= 1);
        assert_eq!(summaries.len(), 3);
        assert_eq!(summaries.iter().map(|s| s.documents).sum::<u64>(), 2100);
        let size: u64 = summaries.iter().map(|s| s.size).sum();
        assert_eq!(counters.bytes_read.load(Ordering::Relaxed), size);
        assert_eq!(counters.documents.load(Ordering::Relaxed), 2100);
        let tokens: usize = want.iter().map(Vec::len).sum();
        assert_eq!(counters.tokens.load(Ordering::Relaxed), tokens as u64);
    }
}

#[test]
fn pipeline_stops_at_the_first_error_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let (mut specs, texts) = corpus(dir.path());
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, b"{\"text\": \"fine\"}\n{oops\n").unwrap();
    specs.insert(1, spec(&bad, InputFormat::Jsonl, Compression::None));
    let tok = Tokenizer::mixtral_8x7b();
    let encode = EncodeOptions {
        add_bos: false,
        add_eos: false,
        threads: 2,
        skip_records: 0,
    };
    // An input error: everything before it is consumed, then the error is returned.
    let mut consumed = 0;
    let err = encode_inputs(
        &tok,
        &specs,
        &ReadOptions::default(),
        encode,
        &Counters::default(),
        |event| {
            consumed += u64::from(matches!(event, Event::Document { .. }));
            Ok::<(), InputError>(())
        },
        || Ok(()),
    )
    .unwrap_err();
    assert_eq!(err.kind(), "invalid_json");
    assert!(
        err.to_string().contains("bad.jsonl:2: invalid JSON"),
        "{err}"
    );
    assert_eq!(consumed, 701);
    let _ = texts;

    // The consumer's error (or the tick's) stops the readers and encoders and comes back as is.
    #[derive(Debug, PartialEq)]
    enum Stop {
        Consumer,
        Tick,
        Input,
    }
    impl From<InputError> for Stop {
        fn from(_: InputError) -> Self {
            Stop::Input
        }
    }
    let mut n = 0;
    let result = encode_inputs(
        &tok,
        &specs[..1],
        &ReadOptions::default(),
        encode,
        &Counters::default(),
        |_| {
            n += 1;
            if n == 50 {
                Err(Stop::Consumer)
            } else {
                Ok(())
            }
        },
        || Ok(()),
    );
    assert_eq!(result.unwrap_err(), Stop::Consumer);
    let result = encode_inputs(
        &tok,
        &specs[..1],
        &ReadOptions::default(),
        encode,
        &Counters::default(),
        |_| Ok(()),
        || Err(Stop::Tick),
    );
    assert_eq!(result.unwrap_err(), Stop::Tick);
}

#[test]
fn a_panic_in_the_consumer_comes_back_as_a_panic_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let (specs, _) = corpus(dir.path());
    let tok = Tokenizer::mixtral_8x7b();
    let mut n = 0;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        encode_inputs(
            &tok,
            &specs,
            &ReadOptions::default(),
            EncodeOptions {
                add_bos: false,
                add_eos: false,
                threads: 2,
                skip_records: 0,
            },
            &Counters::default(),
            |_| {
                n += 1;
                assert!(n < 10, "the consumer fails");
                Ok::<(), InputError>(())
            },
            || Ok(()),
        )
    }));
    assert!(result.is_err());
}

/// Events arrive in input order: each document with its input and record index, each record
/// passed over (`skip_bad_records`), each input's end after its last record; `skip_records`
/// passes over the first input's first records (read and hashed, not decoded).
#[test]
fn events_name_inputs_and_records_and_skip_what_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    std::fs::write(
        &a,
        "{\"text\": \"one\"}\n\n{oops\n{\"text\": 5}\n{\"other\": \"x\"}\n[1]\n{\"text\": \"two\"}\n",
    )
    .unwrap();
    std::fs::write(&b, "{\"text\": \"three\"}\nnull\n{\"text\": \"four\"}\n").unwrap();
    let specs = vec![
        spec(&a, InputFormat::Jsonl, Compression::None),
        spec(&b, InputFormat::Jsonl, Compression::None),
    ];
    let tok = Tokenizer::mixtral_8x7b();
    let read = ReadOptions {
        skip_bad_records: true,
        ..ReadOptions::default()
    };
    let run = |skip_records: u64, threads: usize| {
        let mut events = Vec::new();
        let summaries = encode_inputs(
            &tok,
            &specs,
            &read,
            EncodeOptions {
                add_bos: false,
                add_eos: false,
                threads,
                skip_records,
            },
            &Counters::default(),
            |event| {
                events.push(match event {
                    Event::Document {
                        ids, input, index, ..
                    } => {
                        format!("doc {input}:{index} {}", tok.decode(&ids).unwrap())
                    }
                    Event::Skipped {
                        input,
                        index,
                        error,
                    } => format!("skip {input}:{index} {}", error.kind()),
                    Event::InputEnd { input, summary } => format!(
                        "end {input} docs {} skipped {}",
                        summary.documents, summary.skipped_records
                    ),
                });
                Ok::<(), InputError>(())
            },
            || Ok(()),
        )
        .unwrap();
        (events, summaries)
    };
    for threads in [1, 2] {
        let (events, summaries) = run(0, threads);
        assert_eq!(
            events,
            [
                "doc 0:0 one",
                "skip 0:2 invalid_json",
                "skip 0:3 not_a_string",
                "skip 0:4 missing_field",
                "skip 0:5 not_an_object",
                "doc 0:6 two",
                "end 0 docs 2 skipped 4",
                "doc 1:0 three",
                "skip 1:1 not_an_object",
                "doc 1:2 four",
                "end 1 docs 2 skipped 1",
            ]
        );
        let whole = summaries[0].clone();
        // Passing over the first four records: the same file read and hashed, fewer records.
        let (events, summaries) = run(4, threads);
        assert_eq!(
            events[..3],
            [
                "skip 0:4 missing_field",
                "skip 0:5 not_an_object",
                "doc 0:6 two"
            ]
        );
        assert_eq!(events[3], "end 0 docs 1 skipped 2");
        assert_eq!(
            (summaries[0].size, &summaries[0].sha256),
            (whole.size, &whole.sha256)
        );
    }
    // Without skipping, the first bad record stops the run as before.
    let err = encode_inputs(
        &tok,
        &specs,
        &ReadOptions::default(),
        EncodeOptions {
            add_bos: false,
            add_eos: false,
            threads: 1,
            skip_records: 0,
        },
        &Counters::default(),
        |_| Ok::<(), InputError>(()),
        || Ok(()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("a.jsonl:3"), "{err}");
}
