//! Packing and encoding runs end to end ([`PackSession`], [`encode_to`]): byte identity with the
//! outputs of the command line as it was before these runs moved into the core (hashes recorded
//! in `tests/data/recorded/expected.json`, or below with the command that made them), every
//! option bound and its message, and what a failed run leaves behind (nothing partial).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use bpetok::data::error::{DataError, OptionsError};
use bpetok::data::input::{Compression, InputFormat, InputSpec, ReadOptions, Utf8Errors};
use bpetok::data::pipeline::{Counters, EncodeOptions};
use bpetok::data::shard::{
    check_tokenizer, hash_file, tokenizer_sha256, verify_dir, verify_dir_with, Manifest,
    ShardError, TokenizerInfo, ViolationKind,
};
use bpetok::data::{encode_to, IdsOutput, PackConfig, PackSession};
use bpetok::Tokenizer;
use tempfile::TempDir;

/// The folder the recorded outputs were made in (their input paths are relative to it).
fn recorded() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/recorded")
}

/// An input as the command line gives it: read from the recorded folder, named (and recorded
/// in the manifest) by its path relative to it.
fn spec(relative: &str) -> InputSpec {
    let format = if relative.contains(".jsonl") {
        InputFormat::Jsonl
    } else {
        InputFormat::Text
    };
    let compression = if relative.ends_with(".gz") {
        Compression::Gzip
    } else if relative.ends_with(".zst") {
        Compression::Zstd
    } else {
        Compression::None
    };
    InputSpec {
        path: Some(recorded().join(relative)),
        name: relative.to_owned(),
        format,
        compression: Some(compression),
        size: None,
        range: None,
    }
}

fn specs(relative: &[&str]) -> Vec<InputSpec> {
    relative.iter().map(|r| spec(r)).collect()
}

/// A file of our own, named by its full path.
fn file_spec(path: &Path, format: InputFormat) -> InputSpec {
    InputSpec {
        path: Some(path.to_path_buf()),
        name: path.display().to_string(),
        format,
        compression: Some(Compression::None),
        size: None,
        range: None,
    }
}

fn no_tick() -> Result<(), DataError> {
    Ok(())
}

fn sha256_of(path: &Path) -> String {
    hash_file(path).unwrap().sha256
}

fn expected() -> serde_json::Value {
    serde_json::from_slice(&fs::read(recorded().join("expected.json")).unwrap()).unwrap()
}

/// Every file of `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn pack(config: PackConfig, inputs: &[&str], out: &Path) -> bpetok::data::PackReport {
    let tok = Tokenizer::mixtral_8x7b();
    let mut session = PackSession::create(&tok, out, config, specs(inputs)).unwrap();
    let counters = Counters::default();
    session.run(&counters, no_tick).unwrap();
    session.finish().unwrap()
}

/// Every file of `dir` has the hash `expected.json` records under `key/NAME`, and it records no
/// file of `key` that is missing.
fn assert_recorded(dir: &Path, key: &str) {
    let expected = expected();
    let expected = expected.as_object().unwrap();
    let prefix = format!("{key}/");
    let mut want: Vec<&String> = expected.keys().filter(|k| k.starts_with(&prefix)).collect();
    want.sort();
    let have: Vec<String> = files(dir).iter().map(|n| format!("{prefix}{n}")).collect();
    assert_eq!(have.iter().collect::<Vec<_>>(), want);
    for name in files(dir) {
        assert_eq!(
            sha256_of(&dir.join(&name)),
            expected[&format!("{prefix}{name}")].as_str().unwrap(),
            "{key}/{name}"
        );
    }
}

#[test]
fn pack_lines_is_byte_identical_to_the_recorded_output() {
    // `pack lines.txt corpus/b.txt --lines --errors replace -o p3 --seq-len 64 --window 0
    //  --no-bos --pack-buffer 7 --seed 3 --pad-id 5`
    let root = TempDir::new().unwrap();
    let out = root.path().join("p3");
    let mut config = PackConfig::new(64, 0);
    config.read.lines = true;
    config.read.errors = Utf8Errors::Replace;
    config.add_bos = false;
    config.pack.pack_buffer = 7;
    config.pack.seed = 3;
    config.pad_id = Some(5);
    let report = pack(config, &["lines.txt", "corpus/b.txt"], &out);
    assert_recorded(&out, "p3");
    assert_eq!(report.output, out);
    assert_eq!(report.input_bytes, 9018 + 9086);
    assert_eq!(report.manifest.inputs[0].path, "lines.txt");
}

#[test]
fn pack_overlap_is_byte_identical_to_the_recorded_output() {
    // `pack corpus/a.jsonl -o p4 --seq-len 512 --window 4096 --overlap 100 --no-eos`
    let root = TempDir::new().unwrap();
    let out = root.path().join("p4");
    let mut config = PackConfig::new(512, 4096);
    config.pack.overlap = Some(100);
    config.add_eos = false;
    pack(config, &["corpus/a.jsonl"], &out);
    assert_recorded(&out, "p4");
}

/// `pack corpus/a.jsonl corpus/b.txt corpus/sub/c.jsonl.gz corpus/sub/d.jsonl.zst -o p5
/// --seq-len 256 --window 128 --samples-per-shard 16 --threads 1`, run with the command line of
/// commit 6214f1f (PyPackWriter + cli.run_pack) in tests/data/recorded: the manifest's SHA-256.
/// The manifest holds every shard file's size and SHA-256, and `verify_dir` checks them.
const P5_MANIFEST_SHA256: &str = "0844e3f332e70a7fdbe7ea91daf363fd66bd094336a565ee650c8c27b5cdd39c";
const P5_INPUTS: [&str; 4] = [
    "corpus/a.jsonl",
    "corpus/b.txt",
    "corpus/sub/c.jsonl.gz",
    "corpus/sub/d.jsonl.zst",
];

#[test]
fn pack_over_compressed_inputs_is_byte_identical_whatever_the_threads() {
    for threads in [1, 2] {
        let root = TempDir::new().unwrap();
        let out = root.path().join("p5");
        let mut config = PackConfig::new(256, 128);
        config.samples_per_shard = 16;
        config.threads = threads;
        let report = pack(config, &P5_INPUTS, &out);
        assert_eq!(
            sha256_of(&out.join("manifest.json")),
            P5_MANIFEST_SHA256,
            "threads {threads}"
        );
        let verified = verify_dir(&out).unwrap();
        assert_eq!(verified.shards, 24);
        assert_eq!(report.manifest.shards.len(), 24);
        let tokens = report.sample_tokens() as f64;
        let t = &report.manifest.totals;
        assert_eq!(report.padding_share(), t.padding_tokens as f64 / tokens);
        assert_eq!(report.context_share(), t.context_tokens as f64 / tokens);
        assert!(report.padding_share() > 0.0 && report.padding_share() < 1.0);
    }
}

#[test]
fn document_ids_continue_over_the_inputs() {
    let tok = Tokenizer::mixtral_8x7b();
    let root = TempDir::new().unwrap();
    let out = root.path().join("p5");
    let mut config = PackConfig::new(256, 128);
    config.samples_per_shard = 16;
    let mut session = PackSession::create(&tok, &out, config, specs(&P5_INPUTS)).unwrap();
    let counters = Counters::default();
    session.run(&counters, no_tick).unwrap();
    assert!(session.documents() > 0);
    let report = session.finish().unwrap();
    assert_eq!(report.manifest.inputs.len(), 4);
    assert_eq!(sha256_of(&out.join("manifest.json")), P5_MANIFEST_SHA256);
    assert!(
        !out.join("resume.json").exists(),
        "a finished run leaves no resume.json"
    );
}

#[test]
fn the_manifest_records_the_typed_input_options_and_reads_old_ones() {
    let root = TempDir::new().unwrap();
    let out = root.path().join("p");
    let report = pack(PackConfig::new(64, 0), &["corpus/b.txt"], &out);
    let text = fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(
        text.contains(
            "\"input\": {\n      \"errors\": \"strict\",\n      \"field\": \"text\",\n      \
             \"input_format\": \"auto\",\n      \"lines\": false\n    }"
        ),
        "{text}"
    );
    assert_eq!(
        report.manifest.tokenizer.sha256,
        tokenizer_sha256(&Tokenizer::mixtral_8x7b())
    );
    // A manifest of before the options were typed, with an empty (or partial) object: still read.
    let old = text.replace(
        "{\n      \"errors\": \"strict\",\n      \"field\": \"text\",\n      \
         \"input_format\": \"auto\",\n      \"lines\": false\n    }",
        "{}",
    );
    assert_ne!(old, text);
    let manifest = Manifest::from_json(old.as_bytes()).unwrap();
    assert_eq!(manifest.options.input, report.manifest.options.input);
    fs::write(out.join("manifest.json"), old).unwrap();
    verify_dir(&out).unwrap();
    let partial = text.replace("\"errors\": \"strict\",\n", "");
    assert!(Manifest::from_json(partial.as_bytes()).is_ok());
}

/// The error `PackSession::create` gives for `config`; the output directory must not be made.
fn create_error(config: PackConfig) -> OptionsError {
    let tok = Tokenizer::mixtral_8x7b();
    let root = TempDir::new().unwrap();
    let out = root.path().join("out");
    let err = PackSession::create(&tok, &out, config, vec![])
        .err()
        .expect("refused");
    assert!(!out.exists(), "an option error created {}", out.display());
    assert_eq!(err.kind(), "invalid_option");
    match err {
        DataError::Options(e) => {
            assert_eq!(err_text(&e), format!("{}: {}", e.option, e.problem));
            e
        }
        other => panic!("expected an option error, got {other:?}"),
    }
}

fn err_text(e: &OptionsError) -> String {
    e.to_string()
}

#[test]
fn every_option_bound_is_checked_with_its_value_bound_and_reason() {
    let with = |f: &dyn Fn(&mut PackConfig)| {
        let mut c = PackConfig::new(4096, 4096);
        f(&mut c);
        c
    };
    let cases: Vec<(PackConfig, &str, &str)> = vec![
        (
            PackConfig::new(1, 0),
            "seq_len",
            "seq_len: 1 is too small: a sample needs at least 2 tokens, since the first token of \
             a segment is never a target",
        ),
        (
            PackConfig::new(1_000_000_000, 0),
            "seq_len",
            "seq_len: 1000000000 is more than the 1048576 tokens a sample may hold (attention \
             kernels take segment offsets as int32, and packing holds many samples of this \
             length in memory)",
        ),
        (
            PackConfig::new(usize::MAX, 0),
            "seq_len",
            "seq_len: 18446744073709551615 is more than the 1048576 tokens",
        ),
        (
            PackConfig::new(4096, 1 << 32),
            "window",
            "window: 4294967296 is more than 4294967295, the largest window attention kernels \
             take",
        ),
        (
            with(&|c| c.pack.overlap = Some(4096)),
            "overlap",
            "overlap: 4096 is not below the sample length 4096: a chunk after a document's first \
             would be all context and hold no target (at most 4095 fits)",
        ),
        (
            with(&|c| c.pack.pack_buffer = 0),
            "pack_buffer",
            "pack_buffer: 0 is too small: the packer must hold at least one chunk",
        ),
        (
            with(&|c| c.pack.pack_buffer = (1 << 20) + 1),
            "pack_buffer",
            "pack_buffer: 1048577 is more than the 1048576 chunks the packer may hold",
        ),
        (
            with(&|c| {
                c.pack.seq_len = 1 << 20;
                c.pack.pack_buffer = 1025;
            }),
            "pack_buffer",
            "pack_buffer: 1025 chunks of up to 1048576 tokens is 1074790400 tokens, more than the \
             1073741824 tokens (4 GiB) the packer may hold in memory; at most 1024 chunks fit at \
             this sample length",
        ),
        (
            with(&|c| c.samples_per_shard = 0),
            "samples_per_shard",
            "samples_per_shard: 0 is too small: a shard holds at least one sample",
        ),
        (
            with(&|c| {
                c.pack.seq_len = 2;
                c.pack.window = 0;
                c.samples_per_shard = (1 << 24) + 1;
            }),
            "samples_per_shard",
            "samples_per_shard: 16777217 is more than the 16777216 samples a shard may hold",
        ),
        (
            with(&|c| c.samples_per_shard = 1 << 20),
            "samples_per_shard",
            "samples_per_shard: 1048576 samples of 4096 tokens is 4294967296 tokens, more than \
             the 2147483648 tokens a shard may hold (a shard is one file, read and hashed \
             whole); at most 524288 samples fit at this sample length",
        ),
        (
            with(&|c| c.pad_id = Some(32000)),
            "pad_id",
            "pad_id: 32000 is not an id of the vocabulary of 32000 pieces (ids 0 to 31999)",
        ),
    ];
    for (config, option, message) in cases {
        let err = create_error(config);
        assert_eq!(err.option, option, "{err}");
        assert!(
            err.to_string().starts_with(message),
            "{err}\n  wanted: {message}"
        );
        for flag in ["--", "set ", "use "] {
            assert!(!err.to_string().contains(flag), "{err}");
        }
    }
    // The bounds themselves are allowed.
    let tok = Tokenizer::mixtral_8x7b();
    let root = TempDir::new().unwrap();
    let fine = [
        PackConfig::new(2, 0),
        with(&|c| {
            // At the longest samples the default buffer and shard size are above their
            // token bounds: both must be lowered too.
            c.pack.seq_len = 1 << 20;
            c.pack.pack_buffer = 1024;
            c.samples_per_shard = 2048;
        }),
        with(&|c| c.pack.window = u32::MAX as usize),
        with(&|c| c.pack.overlap = Some(4095)),
        with(&|c| c.pack.pack_buffer = 1 << 18),
        with(&|c| c.samples_per_shard = 1 << 19),
        with(&|c| c.pad_id = Some(31999)),
    ];
    for (k, config) in fine.into_iter().enumerate() {
        let out = root.path().join(k.to_string());
        let session = PackSession::create(&tok, &out, config, vec![]).unwrap();
        drop(session);
        assert!(!out.exists(), "an unused output directory is removed");
    }
}

#[test]
fn the_padding_id_defaults_to_eos() {
    let tok = Tokenizer::mixtral_8x7b();
    let (pack, writer) = PackConfig::new(64, 0).validate(&tok).unwrap();
    assert_eq!(pack.pad_id, 2);
    assert_eq!(writer.pad_id, 2);
    let mut config = PackConfig::new(64, 0);
    config.pad_id = Some(7);
    assert_eq!(config.validate(&tok).unwrap().0.pad_id, 7);
}

#[test]
fn a_failed_run_removes_the_directory_it_created_when_it_is_empty() {
    let tok = Tokenizer::mixtral_8x7b();
    let root = TempDir::new().unwrap();
    let bad = root.path().join("bad.jsonl");
    fs::write(&bad, "{\"text\": \"fine\"}\nnot json\n").unwrap();
    let out = root.path().join("new").join("out");
    let mut session = PackSession::create(
        &tok,
        &out,
        PackConfig::new(64, 0),
        vec![file_spec(&bad, InputFormat::Jsonl)],
    )
    .unwrap();
    assert!(out.is_dir());
    let err = session.run(&Counters::default(), no_tick).unwrap_err();
    assert_eq!(err.kind(), "invalid_json");
    assert!(err.to_string().contains("bad.jsonl"), "{err}");
    // The session refuses from now on.
    assert_eq!(session.finish().unwrap_err().kind(), "failed");
    assert!(!out.exists(), "the empty directory it created is gone");
    assert!(
        root.path().join("new").is_dir(),
        "only the directory itself is removed"
    );

    // Stopped by `tick`: the same.
    let big = root.path().join("big.txt");
    fs::write(&big, "word ".repeat(200_000)).unwrap();
    let mut session = PackSession::create(
        &tok,
        &out,
        PackConfig::new(64, 0),
        vec![file_spec(&big, InputFormat::Text)],
    )
    .unwrap();
    let err = session
        .run(&Counters::default(), || Err(DataError::Stopped))
        .unwrap_err();
    assert_eq!(err.kind(), "stopped");
    drop(session);
    assert!(!out.exists());

    // A directory that was there stays, empty or not.
    let existing = root.path().join("existing");
    fs::create_dir(&existing).unwrap();
    let session = PackSession::create(&tok, &existing, PackConfig::new(64, 0), vec![]).unwrap();
    drop(session);
    assert!(existing.is_dir());

    // A run that wrote shards before failing keeps them (and no manifest).
    let mut config = PackConfig::new(64, 0);
    config.samples_per_shard = 1;
    config.pack.pack_buffer = 1;
    let mut session = PackSession::create(&tok, &out, config, specs(&["corpus/b.txt"])).unwrap();
    let counters = Counters::default();
    session.run(&counters, no_tick).unwrap();
    assert!(counters.documents.load(Ordering::Relaxed) == 1);
    drop(session);
    assert!(out.is_dir());
    let names = files(&out);
    assert!(!names.contains(&"manifest.json".to_string()));
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("shard-") || n == "resume.json"),
        "{names:?}"
    );
}

#[test]
fn an_output_path_that_is_a_file_is_refused() {
    let tok = Tokenizer::mixtral_8x7b();
    let root = TempDir::new().unwrap();
    let file = root.path().join("out");
    fs::write(&file, "mine").unwrap();
    let err = PackSession::create(&tok, &file, PackConfig::new(64, 0), vec![])
        .err()
        .unwrap();
    assert_eq!(err.kind(), "not_a_directory");
    assert_eq!(
        err.to_string(),
        format!("{} exists and is not a directory", file.display())
    );
    assert_eq!(fs::read(&file).unwrap(), b"mine");
}

#[test]
fn a_directory_with_an_output_is_refused_without_flag_names() {
    let tok = Tokenizer::mixtral_8x7b();
    let root = TempDir::new().unwrap();
    let out = root.path().join("p");
    pack(PackConfig::new(64, 0), &["corpus/b.txt"], &out);
    let err = PackSession::create(&tok, &out, PackConfig::new(64, 0), vec![])
        .err()
        .unwrap();
    assert_eq!(err.kind(), "directory_in_use");
    assert_eq!(
        err.to_string(),
        format!(
            "{} already holds a shard output (manifest.json)",
            out.display()
        )
    );
    let mut config = PackConfig::new(64, 0);
    config.overwrite = true;
    PackSession::create(&tok, &out, config, vec![]).unwrap();
}

#[test]
fn a_tokenizer_mismatch_names_both_hashes_and_sizes() {
    let tok = Tokenizer::mixtral_8x7b();
    let mine = TokenizerInfo::of(&tok);
    check_tokenizer(&mine, &tok).unwrap();
    let theirs = TokenizerInfo {
        sha256: "0123456789ab".repeat(5) + "cdef",
        vocab_size: 32768,
        ..mine.clone()
    };
    let err = check_tokenizer(&theirs, &tok).unwrap_err();
    assert_eq!(err.kind(), "tokenizer_mismatch");
    assert_eq!(
        err.to_string(),
        format!(
            "the shards were made by another tokenizer: theirs has sha256 0123456789ab... and \
             32768 pieces, this one {}... and 32000 pieces",
            &mine.sha256[..12]
        )
    );
    assert!(matches!(err, ShardError::TokenizerMismatch { .. }));

    // verify_dir_with: a violation of its own kind; verify_dir does not look.
    let root = TempDir::new().unwrap();
    let out = root.path().join("p");
    pack(PackConfig::new(64, 0), &["corpus/b.txt"], &out);
    verify_dir_with(&out, Some(&tok)).unwrap();
    let path = out.join("manifest.json");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace(&mine.sha256, &theirs.sha256)).unwrap();
    verify_dir(&out).unwrap();
    let err = verify_dir_with(&out, Some(&tok)).unwrap_err();
    assert!(err.has(ViolationKind::Tokenizer), "{err}");
    assert_eq!(err.count(), 1, "{err}");
}

fn encode(
    inputs: &[InputSpec],
    read: &ReadOptions,
    add_bos: bool,
    add_eos: bool,
    format: IdsOutput,
    output: Option<&Path>,
) -> Result<bpetok::data::EncodeReport, DataError> {
    let tok = Tokenizer::mixtral_8x7b();
    let encode = EncodeOptions {
        add_bos,
        add_eos,
        threads: 2,
        skip_records: 0,
    };
    encode_to(
        &tok,
        inputs,
        read,
        encode,
        format,
        output,
        &Counters::default(),
        no_tick,
    )
}

#[test]
fn encode_jsonl_is_byte_identical_to_the_command_line() {
    let root = TempDir::new().unwrap();
    // `encode lines.txt --lines --errors replace -o e3.jsonl` (tests/data/recorded/expected.json)
    let out = root.path().join("e3.jsonl");
    let read = ReadOptions {
        lines: true,
        errors: Utf8Errors::Replace,
        ..ReadOptions::default()
    };
    let report = encode(
        &specs(&["lines.txt"]),
        &read,
        false,
        false,
        IdsOutput::Jsonl,
        Some(&out),
    )
    .unwrap();
    assert_eq!(sha256_of(&out), expected()["e3.jsonl"].as_str().unwrap());
    assert_eq!(report.documents, 27);
    assert_eq!(report.input_bytes, 9018);
    let text = fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 27);
    assert!(text.starts_with("{\"ids\": ["), "{text}");

    // `encode corpus/a.jsonl corpus/b.txt corpus/sub/c.jsonl.gz corpus/sub/d.jsonl.zst
    //  -o e1.jsonl --bos`, with the command line of commit 6214f1f.
    let out = root.path().join("e1.jsonl");
    let report = encode(
        &specs(&P5_INPUTS),
        &ReadOptions::default(),
        true,
        false,
        IdsOutput::Jsonl,
        Some(&out),
    )
    .unwrap();
    assert_eq!(
        sha256_of(&out),
        "c284bfdd6864afec6196d7081137fc4fdbb9c402348c2d3d2ea208234c7f980b"
    );
    assert_eq!(report.inputs.len(), 4);
    assert_eq!(files(root.path()), ["e1.jsonl", "e3.jsonl"]);
}

#[test]
fn encode_megatron_is_byte_identical_to_the_command_line() {
    // `encode corpus/a.jsonl corpus/b.txt corpus/sub/c.jsonl.gz corpus/sub/d.jsonl.zst
    //  --format megatron --eos -o e2`, with the command line of commit 6214f1f.
    let root = TempDir::new().unwrap();
    let prefix = root.path().join("e2");
    let report = encode(
        &specs(&P5_INPUTS),
        &ReadOptions::default(),
        false,
        true,
        IdsOutput::Megatron,
        Some(&prefix),
    )
    .unwrap();
    assert_eq!(
        sha256_of(&root.path().join("e2.bin")),
        "4ae7a1cef95aa25c89a96fcbdd98f4e025cc44272fccbe3665ec35d2ad6bae3e"
    );
    assert_eq!(
        sha256_of(&root.path().join("e2.idx")),
        "684b12b49f4674e7c749cdb2f8d5afd46825600b2dcb1cc27f7480f47172fbf6"
    );
    assert_eq!(files(root.path()), ["e2.bin", "e2.idx"]);
    let bin = fs::metadata(root.path().join("e2.bin")).unwrap().len();
    assert_eq!(bin, 2 * report.tokens);
}

#[test]
fn megatron_needs_a_prefix_without_an_extension() {
    let root = TempDir::new().unwrap();
    let inputs = specs(&["corpus/b.txt"]);
    let read = ReadOptions::default();
    let err = encode(&inputs, &read, false, false, IdsOutput::Megatron, None).unwrap_err();
    assert_eq!(err.kind(), "invalid_option");
    assert!(
        err.to_string()
            .starts_with("output: Megatron-LM output needs a prefix"),
        "{err}"
    );
    for ext in ["bin", "idx"] {
        let path = root.path().join(format!("e2.{ext}"));
        let err = encode(
            &inputs,
            &read,
            false,
            false,
            IdsOutput::Megatron,
            Some(&path),
        )
        .unwrap_err();
        assert_eq!(err.kind(), "invalid_option");
        let stem = root.path().join("e2");
        assert!(
            err.to_string()
                .ends_with(&format!("the prefix is {}", stem.display())),
            "{err}"
        );
    }
    assert!(files(root.path()).is_empty());
}

#[test]
fn a_failed_encode_leaves_no_partial_output() {
    let root = TempDir::new().unwrap();
    let data = root.path().join("data");
    fs::create_dir(&data).unwrap();
    let bad = data.join("bad.jsonl");
    // Enough good documents first that output is written before the bad line is reached.
    let mut text = "{\"text\": \"a fine document of a few words\"}\n".repeat(200_000);
    text.push_str("not json\n");
    fs::write(&bad, text).unwrap();
    let inputs = [spec("corpus/b.txt"), file_spec(&bad, InputFormat::Jsonl)];
    let read = ReadOptions::default();
    let out_dir = root.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    for format in [IdsOutput::Jsonl, IdsOutput::Megatron] {
        let out = out_dir.join("ids");
        let err = encode(&inputs, &read, false, false, format, Some(&out)).unwrap_err();
        assert_eq!(err.kind(), "invalid_json", "{err}");
        assert!(
            files(&out_dir).is_empty(),
            "{format:?}: {:?}",
            files(&out_dir)
        );
    }
    // An old output under the name is untouched by a failed run.
    fs::write(out_dir.join("ids"), "old").unwrap();
    encode(
        &inputs,
        &read,
        false,
        false,
        IdsOutput::Jsonl,
        Some(&out_dir.join("ids")),
    )
    .unwrap_err();
    assert_eq!(fs::read(out_dir.join("ids")).unwrap(), b"old");
    assert_eq!(files(&out_dir), ["ids"]);
    // An output in a directory that does not exist: an output error naming the path.
    let missing = root.path().join("missing").join("ids.jsonl");
    let err = encode(
        &inputs[..1],
        &read,
        false,
        false,
        IdsOutput::Jsonl,
        Some(&missing),
    )
    .unwrap_err();
    assert_eq!(err.kind(), "output");
    assert!(
        err.to_string().starts_with(&missing.display().to_string()),
        "{err}"
    );
}
