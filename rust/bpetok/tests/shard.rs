//! Shard directories against docs/shard-format.md: packer output written by `ShardWriter` passes
//! `verify_dir` and reads back as the same samples through an independent `.npy` reader; output is
//! byte-identical across runs; a dropped writer leaves no manifest; every kind of corruption is a
//! reported violation, not a panic; large vocabularies get `uint32` tokens; `inspect_dir` adds up.
//!
//! Set `BPETOK_KEEP_SHARDS=DIR` to keep a sample output in DIR (for checking it with numpy).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use bpetok::data::pack::{
    pack_documents, PackOptions, PackStats, Packer, Sample, Segment, SplitMix64,
};
use bpetok::data::shard::{
    hash_file, inspect_dir, shard_name, verify_dir, HashingReader, InputFile, InputOptions,
    Manifest, ManifestInfo, ShardEntry, ShardError, ShardWriter, ShardWriterOptions, TokenDtype,
    TokenizerInfo, VerifyError, ViolationKind,
};
use npyz::WriterBuilder;
use proptest::prelude::*;
use tempfile::TempDir;

/// Random documents: lengths from `lengths`, token ids uniform below `vocab` (seeded).
fn random_documents(seed: u64, lengths: &[usize], vocab: u32) -> Vec<Vec<u32>> {
    let mut rng = SplitMix64::new(seed);
    lengths
        .iter()
        .map(|&n| (0..n).map(|_| rng.below(u64::from(vocab)) as u32).collect())
        .collect()
}

fn random_lengths(seed: u64, count: usize, max: usize) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed ^ 0xABCD);
    (0..count)
        .map(|_| rng.below(max as u64 + 1) as usize)
        .collect()
}

fn tokenizer(vocab_size: u64) -> TokenizerInfo {
    TokenizerInfo {
        sha256: "ab".repeat(32),
        vocab_size,
        bos_id: Some(1),
        eos_id: Some(2),
    }
}

/// Packs `docs` with `opts` straight into a shard directory, as the command line will.
fn write_dir(
    dir: &Path,
    docs: &[Vec<u32>],
    opts: &PackOptions,
    vocab_size: u64,
    samples_per_shard: usize,
) -> Manifest {
    let mut writer = ShardWriter::create(
        dir,
        ShardWriterOptions {
            samples_per_shard,
            ..ShardWriterOptions::new(vocab_size, opts.seq_len, opts.pad_id)
        },
    )
    .unwrap();
    let mut packer = Packer::new(opts.clone()).unwrap();
    for (doc_id, tokens) in docs.iter().enumerate() {
        packer
            .push_document(doc_id as u64, tokens, |s| writer.write_sample(&s))
            .unwrap();
    }
    let stats = packer.finish(|s| writer.write_sample(&s)).unwrap();
    let input = InputFile {
        path: "corpus/a.jsonl".to_string(),
        size: 1234,
        sha256: "cd".repeat(32),
        documents: docs.len() as u64,
        skipped_records: None,
        range: None,
    };
    writer
        .finish(info(opts, vocab_size, vec![input], stats))
        .unwrap()
}

fn info(
    opts: &PackOptions,
    vocab_size: u64,
    inputs: Vec<InputFile>,
    stats: PackStats,
) -> ManifestInfo {
    ManifestInfo {
        tokenizer: tokenizer(vocab_size),
        pack: opts.clone(),
        bos: true,
        eos: true,
        input_options: InputOptions::default(),
        inputs,
        stats,
        chat: None,
        partition_size: None,
    }
}

fn read_manifest(dir: &Path) -> Manifest {
    Manifest::from_json(&fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn save_manifest(dir: &Path, manifest: &Manifest) {
    fs::write(dir.join("manifest.json"), manifest.to_json()).unwrap();
}

/// A shard read back with npyz's reader (not the verifier's), as samples.
fn read_shard(dir: &Path, entry: &ShardEntry, dtype: TokenDtype) -> Vec<Sample> {
    let tokens_bytes = fs::read(dir.join(&entry.files.tokens.path)).unwrap();
    let tokens_npy = npyz::NpyFile::new(&tokens_bytes[..]).unwrap();
    let shape = tokens_npy.shape().to_vec();
    assert_eq!(
        tokens_npy.header().dtype().descr().trim_matches('\''),
        dtype.descr()
    );
    let tokens: Vec<u32> = match dtype {
        TokenDtype::Uint16 => tokens_npy
            .into_vec::<u16>()
            .unwrap()
            .into_iter()
            .map(u32::from)
            .collect(),
        TokenDtype::Uint32 => tokens_npy.into_vec::<u32>().unwrap(),
    };
    let read_i64 = |path: &str| -> (Vec<u64>, Vec<i64>) {
        let bytes = fs::read(dir.join(path)).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(npy.header().dtype().descr().trim_matches('\''), "<i8");
        (npy.shape().to_vec(), npy.into_vec::<i64>().unwrap())
    };
    let (seg_shape, rows) = read_i64(&entry.files.segments.path);
    let (index_shape, index) = read_i64(&entry.files.sample_index.path);
    let (s, l) = (shape[0] as usize, shape[1] as usize);
    assert_eq!(seg_shape, vec![rows.len() as u64 / 5, 5]);
    assert_eq!(index_shape, vec![s as u64 + 1]);
    (0..s)
        .map(|i| Sample {
            tokens: tokens[i * l..(i + 1) * l].to_vec(),
            segments: (index[i] as usize..index[i + 1] as usize)
                .map(|r| {
                    let row = &rows[r * 5..r * 5 + 5];
                    Segment {
                        doc_id: (row[3] >= 0).then_some(row[3] as u64),
                        doc_start: row[4] as u64,
                        len: row[1] as u32,
                        context: row[2] as u32,
                    }
                })
                .collect(),
            loss_mask: None,
        })
        .collect()
}

/// Rewrites a shard's three files from samples (as a buggy writer might have), without touching
/// the manifest. Segment starts are the running sums of the lengths.
fn write_shard(dir: &Path, entry: &ShardEntry, dtype: TokenDtype, samples: &[Sample]) {
    let l = samples[0].tokens.len() as u64;
    let mut rows = Vec::new();
    let mut index = vec![0i64];
    for s in samples {
        let mut at = 0i64;
        for seg in &s.segments {
            rows.extend([
                at,
                i64::from(seg.len),
                i64::from(seg.context),
                seg.doc_id.map_or(-1, |d| d as i64),
                seg.doc_start as i64,
            ]);
            at += i64::from(seg.len);
        }
        index.push(rows.len() as i64 / 5);
    }
    let tokens: Vec<u32> = samples.iter().flat_map(|s| s.tokens.clone()).collect();
    let path = dir.join(&entry.files.tokens.path);
    let shape = [samples.len() as u64, l];
    match dtype {
        TokenDtype::Uint16 => {
            let t: Vec<u16> = tokens.iter().map(|&t| t as u16).collect();
            write_npy(&path, &shape, &t);
        }
        TokenDtype::Uint32 => write_npy(&path, &shape, &tokens),
    }
    write_npy(
        &dir.join(&entry.files.segments.path),
        &[rows.len() as u64 / 5, 5],
        &rows,
    );
    write_npy(
        &dir.join(&entry.files.sample_index.path),
        &[index.len() as u64],
        &index,
    );
}

fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], data: &[T]) {
    let mut out = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut out)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
    fs::write(path, out).unwrap();
}

/// Sets every listed file's size and hash in the manifest to the file's current ones, so that
/// only the semantic checks can catch an edit.
fn rehash(dir: &Path) {
    let mut manifest = read_manifest(dir);
    for shard in &mut manifest.shards {
        for digest in [
            &mut shard.files.tokens,
            &mut shard.files.segments,
            &mut shard.files.sample_index,
        ] {
            let hash = hash_file(dir.join(&digest.path)).unwrap();
            digest.size = hash.size;
            digest.sha256 = hash.sha256;
        }
    }
    save_manifest(dir, &manifest);
}

fn copy_dir(from: &Path) -> TempDir {
    let to = TempDir::new().unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
    }
    to
}

fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn expect_violation(dir: &Path, kind: ViolationKind) -> VerifyError {
    let err = verify_dir(dir).expect_err("the edit must be caught");
    assert!(err.has(kind), "expected a {kind:?} violation, got:\n{err}");
    err
}

/// A reference output for the corruption tests: L = 16, W = 4 (overlap 4), 3 samples per shard,
/// documents up to 60 tokens, so there are split documents, context tokens, padding and several
/// shards.
struct Reference {
    dir: TempDir,
    manifest: Manifest,
    opts: PackOptions,
}

fn reference() -> Reference {
    let opts = PackOptions {
        pack_buffer: 8,
        seed: 3,
        pad_id: 5,
        ..PackOptions::new(16, 4)
    };
    let docs = random_documents(11, &random_lengths(11, 40, 60), 1000);
    let dir = TempDir::new().unwrap();
    let manifest = write_dir(dir.path(), &docs, &opts, 1000, 3);
    assert!(manifest.shards.len() >= 4);
    assert!(manifest.totals.documents_split > 0 && manifest.totals.padding_tokens > 0);
    if let Err(e) = verify_dir(dir.path()) {
        panic!("the reference output must be valid: {e}");
    }
    Reference {
        dir,
        manifest,
        opts,
    }
}

fn case() -> impl Strategy<Value = (PackOptions, Vec<usize>, usize, u64, u64)> {
    (2usize..=40).prop_flat_map(|l| {
        let window = prop_oneof![Just(0), 1..l, Just(l), (l + 1)..=(2 * l)];
        let overlap = prop_oneof![3 => Just(None), 1 => (0..l).prop_map(Some)];
        let doc_len = prop_oneof![
            1 => Just(0usize),
            1 => Just(1usize),
            3 => 1..=l,
            3 => l..=(4 * l),
        ];
        (
            window,
            overlap,
            1usize..=12,
            prop::collection::vec(doc_len, 0..40),
            1usize..=6,
            any::<u64>(),
            prop_oneof![Just(300u64), Just(65_536), Just(70_000)],
        )
            .prop_map(
                move |(window, overlap, pack_buffer, lengths, per_shard, seed, vocab)| {
                    let opts = PackOptions {
                        seq_len: l,
                        window,
                        overlap,
                        pack_buffer,
                        seed,
                        pad_id: (seed % vocab) as u32,
                    };
                    (opts, lengths, per_shard, seed, vocab)
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the packer makes, written by the writer, verifies, and reads back (through npyz,
    /// not the verifier's reader) as exactly the packer's samples in order, with the manifest's
    /// counts equal to the packer's statistics.
    #[test]
    fn packer_output_verifies_and_reads_back(
        (opts, lengths, per_shard, seed, vocab) in case()
    ) {
        let docs = random_documents(seed, &lengths, vocab as u32);
        let dir = TempDir::new().unwrap();
        let manifest = write_dir(dir.path(), &docs, &opts, vocab, per_shard);
        let report = verify_dir(dir.path()).map_err(|e| TestCaseError::fail(e.to_string()))?;

        let expected = pack_documents(&opts, docs.iter().map(Vec::as_slice)).unwrap();
        let dtype = TokenDtype::for_vocab_size(vocab).unwrap();
        prop_assert_eq!(manifest.token_dtype, dtype);
        let mut read = Vec::new();
        for (i, shard) in manifest.shards.iter().enumerate() {
            prop_assert_eq!(&shard.name, &shard_name(i));
            let samples = read_shard(dir.path(), shard, dtype);
            prop_assert!(samples.len() <= per_shard && !samples.is_empty());
            if i + 1 < manifest.shards.len() {
                prop_assert_eq!(samples.len(), per_shard);
            }
            read.extend(samples);
        }
        prop_assert_eq!(&read, &expected);

        let t = manifest.totals;
        prop_assert_eq!(report.samples, expected.len() as u64);
        prop_assert_eq!(t.samples, expected.len() as u64);
        prop_assert_eq!(t.documents, docs.len() as u64);
        prop_assert_eq!(t.empty_documents, lengths.iter().filter(|&&n| n == 0).count() as u64);
        prop_assert_eq!(report.documents, t.documents - t.empty_documents);
        prop_assert_eq!(t.document_tokens, lengths.iter().sum::<usize>() as u64);
        prop_assert_eq!(
            t.documents_split,
            lengths.iter().filter(|&&n| n > opts.seq_len).count() as u64
        );
        let sum = |f: fn(&Sample) -> usize| expected.iter().map(f).sum::<usize>() as u64;
        prop_assert_eq!(t.padding_tokens, sum(Sample::padding_tokens));
        prop_assert_eq!(t.context_tokens, sum(Sample::context_tokens));
        prop_assert_eq!(t.target_tokens, sum(Sample::target_tokens));
        prop_assert_eq!(manifest.options.overlap_tokens, opts.overlap_tokens() as u64);
    }
}

#[test]
fn output_is_byte_identical_across_runs() {
    let opts = PackOptions {
        pack_buffer: 16,
        seed: 9,
        ..PackOptions::new(32, 8)
    };
    let docs = random_documents(5, &random_lengths(5, 200, 100), 32000);
    let (a, b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_dir(a.path(), &docs, &opts, 32000, 7);
    write_dir(b.path(), &docs, &opts, 32000, 7);
    let (fa, fb) = (files_of(a.path()), files_of(b.path()));
    assert!(fa.len() > 4);
    assert_eq!(fa, fb);
    // No temporaries, nothing but the manifest and the listed files.
    let manifest = read_manifest(a.path());
    let mut listed: Vec<String> = manifest
        .shards
        .iter()
        .flat_map(|s| {
            [
                s.files.tokens.path.clone(),
                s.files.segments.path.clone(),
                s.files.sample_index.path.clone(),
            ]
        })
        .collect();
    listed.push("manifest.json".to_string());
    listed.sort();
    assert_eq!(fa.keys().cloned().collect::<Vec<_>>(), listed);
}

#[test]
fn manifest_has_the_documented_keys_in_order() {
    let r = reference();
    let text = fs::read_to_string(r.dir.path().join("manifest.json")).unwrap();
    let keys = [
        "\"format\"",
        "\"format_version\"",
        "\"tokenizer\"",
        "\"sha256\"",
        "\"vocab_size\"",
        "\"bos_id\"",
        "\"eos_id\"",
        "\"options\"",
        "\"seq_len\"",
        "\"window\"",
        "\"overlap\"",
        "\"overlap_tokens\"",
        "\"pack_buffer\"",
        "\"seed\"",
        "\"bos\"",
        "\"eos\"",
        "\"pad_id\"",
        "\"samples_per_shard\"",
        "\"input\"",
        "\"token_dtype\"",
        "\"inputs\"",
        "\"shards\"",
        "\"totals\"",
    ];
    let mut at = 0;
    for key in keys {
        let found = text[at..]
            .find(key)
            .unwrap_or_else(|| panic!("{key} missing or out of order"));
        at += found + key.len();
    }
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["format"], "bpetok-shards");
    assert_eq!(value["format_version"], 1);
    assert_eq!(value["token_dtype"], "uint16");
    assert_eq!(value["options"]["overlap"], serde_json::Value::Null);
    assert_eq!(value["options"]["overlap_tokens"], 4);
    assert_eq!(value["options"]["input"]["field"], "text");
    let shard = &value["shards"][0];
    assert_eq!(shard["name"], "shard-00000");
    assert_eq!(shard["files"]["tokens"]["path"], "shard-00000.tokens.npy");
    assert_eq!(
        shard["files"]["segments"]["path"],
        "shard-00000.segments.npy"
    );
    assert_eq!(
        shard["files"]["sample_index"]["path"],
        "shard-00000.sample_index.npy"
    );
    // Sizes: a 128-byte version 1.0 header, then the data.
    let m = &r.manifest;
    let s0 = &m.shards[0];
    assert_eq!(s0.files.tokens.size, 128 + s0.samples * 16 * 2);
    assert_eq!(s0.files.segments.size, 128 + s0.segments * 40);
    assert_eq!(s0.files.sample_index.size, 128 + (s0.samples + 1) * 8);
    let tokens = fs::read(r.dir.path().join(&s0.files.tokens.path)).unwrap();
    assert_eq!(&tokens[..8], b"\x93NUMPY\x01\x00");
}

#[test]
fn a_dropped_writer_leaves_no_manifest_and_fails_verification() {
    let dir = TempDir::new().unwrap();
    let opts = PackOptions::new(8, 0);
    let docs = random_documents(1, &[5, 9, 30, 3, 8, 8, 2], 100);
    {
        let mut writer = ShardWriter::create(
            dir.path(),
            ShardWriterOptions {
                samples_per_shard: 2,
                ..ShardWriterOptions::new(100, 8, 0)
            },
        )
        .unwrap();
        for s in pack_documents(&opts, docs.iter().map(Vec::as_slice)).unwrap() {
            writer.write_sample(&s).unwrap();
        }
        assert!(!writer.shards().is_empty());
        // Dropped here, without finish.
    }
    let names: Vec<String> = files_of(dir.path()).into_keys().collect();
    assert!(!names.contains(&"manifest.json".to_string()));
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("shard-00000.")));

    let err = expect_violation(dir.path(), ViolationKind::MissingFile);
    assert!(err.to_string().contains("unfinished"), "{err}");

    // The leftover shards block a new write unless it overwrites.
    match ShardWriter::create(dir.path(), ShardWriterOptions::new(100, 8, 0)) {
        Err(ShardError::DirectoryInUse { .. }) => {}
        other => panic!("expected DirectoryInUse, got {:?}", other.err()),
    }
    let overwrite = ShardWriterOptions {
        overwrite: true,
        ..ShardWriterOptions::new(100, 8, 0)
    };
    ShardWriter::create(dir.path(), overwrite).unwrap();
}

#[test]
fn a_failed_shard_write_is_reported_and_stops_the_writer() {
    let root = TempDir::new().unwrap();
    let dir = root.path().join("out");
    let opts = PackOptions::new(8, 0);
    let docs = random_documents(3, &[5, 9, 30, 3, 8, 8, 2, 7, 7], 100);
    let samples = pack_documents(&opts, docs.iter().map(Vec::as_slice)).unwrap();
    assert!(samples.len() >= 3);
    let mut writer = ShardWriter::create(
        &dir,
        ShardWriterOptions {
            samples_per_shard: 1,
            ..ShardWriterOptions::new(100, 8, 0)
        },
    )
    .unwrap();
    // The directory goes away: the first shard's (background) write fails, and the failure comes
    // back from the next call at the latest; every later call fails too.
    fs::remove_dir(&dir).unwrap();
    let first = writer.write_sample(&samples[0]);
    let err = match first {
        Err(err) => err,
        Ok(()) => writer.write_sample(&samples[1]).unwrap_err(),
    };
    assert!(matches!(err, ShardError::Io { .. }), "{err}");
    assert!(matches!(
        writer.write_sample(&samples[2]),
        Err(ShardError::Failed)
    ));
    let stats = PackStats::default();
    assert!(writer.finish(info(&opts, 100, vec![], stats)).is_err());
    assert!(!dir.exists());
}

#[test]
fn a_failed_finish_leaves_no_manifest() {
    let dir = TempDir::new().unwrap();
    let opts = PackOptions::new(8, 0);
    let mut writer = ShardWriter::create(dir.path(), ShardWriterOptions::new(100, 8, 0)).unwrap();
    let samples = pack_documents(&opts, [&[1u32, 2, 3][..]]).unwrap();
    writer.write_sample(&samples[0]).unwrap();
    // Statistics of a packer whose samples were not all written.
    let stats = PackStats {
        samples: 2,
        ..PackStats::default()
    };
    match writer.finish(info(&opts, 100, vec![], stats)) {
        Err(ShardError::ManifestMismatch(m)) => assert!(m.contains("must be written"), "{m}"),
        other => panic!("expected ManifestMismatch, got {other:?}"),
    }
    assert!(!dir.path().join("manifest.json").exists());
    expect_violation(dir.path(), ViolationKind::MissingFile);
}

#[test]
fn an_existing_output_is_refused_unless_overwritten() {
    let r = reference();
    let dir = r.dir.path();
    fs::write(dir.join("notes.txt"), "mine").unwrap();
    fs::write(dir.join(".shard-00009.tokens.npy.tmp"), "stale").unwrap();
    let err = ShardWriter::create(dir, ShardWriterOptions::new(1000, 16, 5))
        .err()
        .expect("refused");
    // The message says what is there; how to replace it is the caller's to say (no flag, no
    // option name in the core's message).
    assert!(
        err.to_string()
            .contains("already holds a shard output (manifest.json)"),
        "{err}"
    );
    assert!(!err.to_string().contains("overwrite"), "{err}");
    assert!(matches!(err, ShardError::DirectoryInUse { .. }));
    assert_eq!(err.kind(), "directory_in_use");

    // Overwrite with a smaller output: the old manifest's files and the stale temporary go,
    // the foreign file stays.
    let docs = random_documents(2, &[3, 4, 5], 1000);
    let mut writer = ShardWriter::create(
        dir,
        ShardWriterOptions {
            overwrite: true,
            ..ShardWriterOptions::new(1000, 16, 5)
        },
    )
    .unwrap();
    let samples = pack_documents(&r.opts, docs.iter().map(Vec::as_slice)).unwrap();
    let mut packer = Packer::new(r.opts.clone()).unwrap();
    for (i, d) in docs.iter().enumerate() {
        packer
            .push_document(i as u64, d, |s| writer.write_sample(&s))
            .unwrap();
    }
    let stats = packer.finish(|s| writer.write_sample(&s)).unwrap();
    let manifest = writer.finish(info(&r.opts, 1000, vec![], stats)).unwrap();
    assert_eq!(manifest.shards.len(), 1);
    assert_eq!(manifest.totals.samples, samples.len() as u64);
    let mut names: Vec<String> = files_of(dir).into_keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "manifest.json",
            "notes.txt",
            "shard-00000.sample_index.npy",
            "shard-00000.segments.npy",
            "shard-00000.tokens.npy"
        ]
    );
    if let Err(e) = verify_dir(dir) {
        panic!("{e}");
    }
}

#[test]
fn writer_rejects_bad_options_and_samples() {
    let dir = TempDir::new().unwrap();
    for (opts, needle) in [
        (ShardWriterOptions::new(0, 8, 0), "vocab_size"),
        (ShardWriterOptions::new(100, 1, 0), "seq_len"),
        (ShardWriterOptions::new(100, 8, 100), "pad_id"),
        (
            ShardWriterOptions {
                samples_per_shard: 0,
                ..ShardWriterOptions::new(100, 8, 0)
            },
            "samples_per_shard",
        ),
    ] {
        let err = ShardWriter::create(dir.path(), opts)
            .err()
            .expect("invalid");
        assert!(err.to_string().contains(needle), "{err}");
    }

    let mut writer = ShardWriter::create(dir.path(), ShardWriterOptions::new(100, 4, 0)).unwrap();
    let doc = |len, context| Segment {
        doc_id: Some(0),
        doc_start: 0,
        len,
        context,
    };
    let pad = |len| Segment {
        doc_id: None,
        doc_start: 0,
        len,
        context: 0,
    };
    let bad = [
        (vec![1, 2, 3], vec![doc(3, 0)], "seq_len"),
        (vec![1, 2, 3, 4], vec![doc(3, 0)], "cover"),
        (vec![1, 2, 0, 0], vec![pad(2), doc(2, 0)], "not the last"),
        (vec![1, 2, 3, 3], vec![doc(2, 0), pad(2)], "pad_id"),
        (vec![1, 2, 3, 400], vec![doc(4, 0)], "vocab_size"),
        (vec![1, 2, 3, 4], vec![doc(4, 4)], "context"),
    ];
    for (tokens, segments, needle) in bad {
        let err = writer
            .write_sample(&Sample {
                tokens,
                segments,
                loss_mask: None,
            })
            .expect_err("invalid sample");
        assert!(
            matches!(err, ShardError::InvalidSample { sample: 0, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
    assert_eq!(writer.samples(), 0);
}

#[test]
fn large_vocabularies_get_uint32_tokens() {
    let vocab = 100_000u64;
    let opts = PackOptions {
        pad_id: 99_999,
        ..PackOptions::new(24, 6)
    };
    let docs = random_documents(4, &random_lengths(4, 30, 80), vocab as u32);
    assert!(docs.iter().flatten().any(|&t| t > 65_535));
    let dir = TempDir::new().unwrap();
    let manifest = write_dir(dir.path(), &docs, &opts, vocab, 4);
    assert_eq!(manifest.token_dtype, TokenDtype::Uint32);
    if let Err(e) = verify_dir(dir.path()) {
        panic!("{e}");
    }
    let bytes = fs::read(dir.path().join(&manifest.shards[0].files.tokens.path)).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.header().dtype().descr().trim_matches('\''), "<u4");
    let samples: Vec<Sample> = manifest
        .shards
        .iter()
        .flat_map(|s| read_shard(dir.path(), s, TokenDtype::Uint32))
        .collect();
    assert_eq!(
        samples,
        pack_documents(&opts, docs.iter().map(Vec::as_slice)).unwrap()
    );
    // The boundary: 65,536 pieces still fit uint16.
    assert_eq!(TokenDtype::for_vocab_size(65_536), Some(TokenDtype::Uint16));
    assert_eq!(TokenDtype::for_vocab_size(65_537), Some(TokenDtype::Uint32));
}

#[test]
fn an_empty_corpus_has_no_shards_and_verifies() {
    let dir = TempDir::new().unwrap();
    let manifest = write_dir(
        dir.path(),
        &[vec![], vec![]],
        &PackOptions::new(8, 0),
        50,
        4,
    );
    assert!(manifest.shards.is_empty());
    assert_eq!(manifest.totals.documents, 2);
    assert_eq!(manifest.totals.empty_documents, 2);
    if let Err(e) = verify_dir(dir.path()) {
        panic!("{e}");
    }
}

// ---- corruption: each edit is a reported violation, never a panic ----

#[test]
fn flipped_bytes_in_every_file_are_caught() {
    let r = reference();
    let s = &r.manifest.shards[1];
    for digest in [&s.files.tokens, &s.files.segments, &s.files.sample_index] {
        // A byte of the header's text, of the first data row, and the last byte.
        for at in [20usize, 130, digest.size as usize - 1] {
            let copy = copy_dir(r.dir.path());
            let path = copy.path().join(&digest.path);
            let mut bytes = fs::read(&path).unwrap();
            bytes[at] ^= 0x41;
            fs::write(&path, bytes).unwrap();
            let err = expect_violation(copy.path(), ViolationKind::Checksum);
            assert!(
                err.violations.iter().any(|v| v.file == digest.path),
                "{err}"
            );
        }
    }
    // The manifest itself: a flipped byte in a key makes it unparseable as the documented
    // structure; one in a hash makes a file's checksum disagree.
    let text = fs::read_to_string(r.dir.path().join("manifest.json")).unwrap();
    for (needle, kind) in [
        ("\"documents_split\"", ViolationKind::Manifest),
        (
            r.manifest.shards[0].files.segments.sha256.as_str(),
            ViolationKind::Checksum,
        ),
    ] {
        let copy = copy_dir(r.dir.path());
        let mut bytes = text.clone().into_bytes();
        let at = text.find(needle).unwrap() + 2;
        bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
        fs::write(copy.path().join("manifest.json"), bytes).unwrap();
        expect_violation(copy.path(), kind);
    }
}

#[test]
fn truncated_and_deleted_files_are_caught() {
    let r = reference();
    let s = &r.manifest.shards[2];
    for digest in [&s.files.tokens, &s.files.segments, &s.files.sample_index] {
        let copy = copy_dir(r.dir.path());
        let path = copy.path().join(&digest.path);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = expect_violation(copy.path(), ViolationKind::FileSize);
        assert!(err.has(ViolationKind::ArrayFormat), "{err}");
        // The shards after the broken one are still checked on their own.
        assert!(err.has(ViolationKind::Unchecked), "{err}");

        let copy = copy_dir(r.dir.path());
        fs::remove_file(copy.path().join(&digest.path)).unwrap();
        let err = expect_violation(copy.path(), ViolationKind::MissingFile);
        assert!(err.to_string().contains(&digest.path), "{err}");
    }
    // Truncated to nothing, and the manifest truncated.
    let copy = copy_dir(r.dir.path());
    fs::write(copy.path().join(&s.files.tokens.path), b"").unwrap();
    expect_violation(copy.path(), ViolationKind::ArrayFormat);
    let copy = copy_dir(r.dir.path());
    let text = fs::read(copy.path().join("manifest.json")).unwrap();
    fs::write(copy.path().join("manifest.json"), &text[..text.len() / 2]).unwrap();
    expect_violation(copy.path(), ViolationKind::Manifest);
}

#[test]
fn edited_manifest_counts_are_caught() {
    let r = reference();
    let edits: [fn(&mut Manifest); 9] = [
        |m| m.shards[0].samples += 1,
        // Counts whose sum over the shards passes u64::MAX (the verifier adds them without
        // overflowing, and reports them).
        |m| m.shards[1].samples = u64::MAX,
        |m| m.shards[0].padding_tokens = u64::MAX,
        |m| {
            m.shards[0].context_tokens = u64::MAX;
            m.shards[1].context_tokens = u64::MAX;
            m.totals.context_tokens = u64::MAX;
        },
        |m| m.shards[1].padding_tokens += 1,
        |m| m.shards[2].segments -= 1,
        |m| m.totals.document_tokens += 1,
        |m| m.totals.documents_split -= 1,
        |m| {
            m.totals.target_tokens += 1;
            m.totals.document_tokens += 1;
        },
    ];
    for edit in edits {
        let copy = copy_dir(r.dir.path());
        let mut m = r.manifest.clone();
        edit(&mut m);
        save_manifest(copy.path(), &m);
        expect_violation(copy.path(), ViolationKind::Counts);
    }
    // Options that contradict each other, and another format version.
    let copy = copy_dir(r.dir.path());
    let mut m = r.manifest.clone();
    m.options.overlap_tokens = 2;
    save_manifest(copy.path(), &m);
    expect_violation(copy.path(), ViolationKind::Manifest);
    let mut m = r.manifest.clone();
    m.format_version = 2;
    save_manifest(copy.path(), &m);
    let err = expect_violation(copy.path(), ViolationKind::Manifest);
    assert!(err.to_string().contains("version"), "{err}");
}

/// Loads shard `index` of the copy, lets `edit` change its samples, writes it back and rehashes,
/// so that only the invariant checks can see the edit.
fn edit_shard(r: &Reference, index: usize, edit: impl FnOnce(&mut Vec<Sample>)) -> TempDir {
    let copy = copy_dir(r.dir.path());
    let entry = &r.manifest.shards[index];
    let mut samples = read_shard(copy.path(), entry, TokenDtype::Uint16);
    edit(&mut samples);
    write_shard(copy.path(), entry, TokenDtype::Uint16, &samples);
    rehash(copy.path());
    copy
}

/// All samples of the reference with their (shard, sample) positions.
fn all_samples(r: &Reference) -> Vec<(usize, usize, Sample)> {
    r.manifest
        .shards
        .iter()
        .enumerate()
        .flat_map(|(k, s)| {
            read_shard(r.dir.path(), s, TokenDtype::Uint16)
                .into_iter()
                .enumerate()
                .map(move |(i, sample)| (k, i, sample))
        })
        .collect()
}

#[test]
fn swapped_doc_ids_are_caught() {
    let r = reference();
    // Two document segments in one shard with different doc_starts (swapping two whole
    // documents of equal length is undetectable without the source text).
    let samples = all_samples(&r);
    let (shard, a, b) = samples
        .iter()
        .flat_map(|(k, i, s)| {
            s.segments
                .iter()
                .enumerate()
                .map(move |(g, seg)| (*k, *i, g, *seg))
        })
        .filter(|(_, _, _, seg)| !seg.is_padding())
        .collect::<Vec<_>>()
        .windows(2)
        .find_map(|w| {
            let ((k1, i1, g1, s1), (k2, i2, g2, s2)) = (w[0], w[1]);
            (k1 == k2 && s1.doc_id != s2.doc_id && s1.doc_start != s2.doc_start).then_some((
                k1,
                (i1, g1),
                (i2, g2),
            ))
        })
        .expect("two such segments");
    let copy = edit_shard(&r, shard, |samples| {
        let da = samples[a.0].segments[a.1].doc_id;
        let db = samples[b.0].segments[b.1].doc_id;
        samples[a.0].segments[a.1].doc_id = db;
        samples[b.0].segments[b.1].doc_id = da;
    });
    let err = expect_violation(copy.path(), ViolationKind::Coverage);
    assert!(!err.has(ViolationKind::Checksum), "{err}");
}

#[test]
fn a_changed_context_token_is_caught() {
    let r = reference();
    let (shard, sample, offset) = all_samples(&r)
        .iter()
        .find_map(|(k, i, s)| {
            let mut at = 0;
            for seg in &s.segments {
                if seg.context > 0 {
                    return Some((*k, *i, at + seg.context as usize - 1));
                }
                at += seg.len as usize;
            }
            None
        })
        .expect("a continuation chunk");
    let copy = edit_shard(&r, shard, |samples| {
        let t = &mut samples[sample].tokens[offset];
        *t = (*t + 1) % 1000;
    });
    let err = expect_violation(copy.path(), ViolationKind::ContextTokens);
    let v = err
        .violations
        .iter()
        .find(|v| v.kind == ViolationKind::ContextTokens)
        .unwrap();
    assert_eq!(v.sample, Some(sample as u64));
    assert!(
        v.segment.is_some() && v.file.ends_with(".segments.npy"),
        "{v}"
    );
}

#[test]
fn a_dropped_segment_row_is_caught() {
    let r = reference();
    let (shard, sample) = all_samples(&r)
        .iter()
        .find(|(_, _, s)| s.segments.len() >= 2)
        .map(|(k, i, _)| (*k, *i))
        .unwrap();
    let copy = edit_shard(&r, shard, |samples| {
        samples[sample].segments.remove(0);
    });
    let err = expect_violation(copy.path(), ViolationKind::Tiling);
    assert!(err.has(ViolationKind::Counts), "{err}");
    assert!(
        err.violations
            .iter()
            .any(|v| v.kind == ViolationKind::Tiling && v.sample == Some(sample as u64)),
        "{err}"
    );

    // The row removed from the file alone, the sample index left as it was.
    let copy = copy_dir(r.dir.path());
    let entry = &r.manifest.shards[0];
    let path = copy.path().join(&entry.files.segments.path);
    let bytes = fs::read(&path).unwrap();
    let rows: Vec<i64> = npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap();
    write_npy(&path, &[rows.len() as u64 / 5 - 1, 5], &rows[5..]);
    rehash(copy.path());
    expect_violation(copy.path(), ViolationKind::SampleIndex);
}

#[test]
fn reordered_chunks_and_duplicates_are_caught() {
    let r = reference();
    let samples = all_samples(&r);
    // A later chunk of a document moved before its first: swap the two samples holding them
    // (chunks of split documents are in different samples by construction).
    let (doc, first, later) = samples
        .iter()
        .find_map(|(k, i, s)| {
            let seg = s.segments.iter().find(|g| g.doc_start > 0)?;
            let doc = seg.doc_id;
            let (k0, i0, _) = samples.iter().find(|(_, _, s0)| {
                s0.segments
                    .iter()
                    .any(|g| g.doc_id == doc && g.doc_start == 0)
            })?;
            (k0 == k).then_some((doc, *i0, *i))
        })
        .expect("a split document within one shard");
    let shard = samples
        .iter()
        .find(|(_, _, s)| s.segments.iter().any(|g| g.doc_id == doc))
        .unwrap()
        .0;
    let copy = edit_shard(&r, shard, |s| s.swap(first, later));
    let err = expect_violation(copy.path(), ViolationKind::Coverage);
    assert!(err.to_string().contains("not 0"), "{err}");

    // A sample duplicated over another: its documents appear twice.
    let copy = edit_shard(&r, 1, |s| s[1] = s[0].clone());
    expect_violation(copy.path(), ViolationKind::Coverage);
}

#[test]
fn bad_tokens_and_padding_are_caught() {
    let r = reference();
    let samples = all_samples(&r);
    let (shard, sample) = samples
        .iter()
        .find(|(_, _, s)| s.padding_tokens() > 0)
        .map(|(k, i, _)| (*k, *i))
        .unwrap();
    let copy = edit_shard(&r, shard, |s| {
        let last = s[sample].tokens.len() - 1;
        s[sample].tokens[last] = 6;
    });
    expect_violation(copy.path(), ViolationKind::Padding);
    let copy = edit_shard(&r, 0, |s| s[0].tokens[1] = 1000);
    let err = expect_violation(copy.path(), ViolationKind::TokenRange);
    assert!(err.to_string().contains("1000"), "{err}");
    // Padding moved to the front of a sample.
    let copy = edit_shard(&r, shard, |s| {
        let pad = s[sample].segments.pop().unwrap();
        s[sample].segments.insert(0, pad);
    });
    expect_violation(copy.path(), ViolationKind::Padding);
}

#[test]
fn many_violations_are_all_reported() {
    let r = reference();
    let copy = copy_dir(r.dir.path());
    for s in &r.manifest.shards {
        fs::remove_file(copy.path().join(&s.files.sample_index.path)).unwrap();
    }
    let err = verify_dir(copy.path()).unwrap_err();
    let missing = err
        .violations
        .iter()
        .filter(|v| v.kind == ViolationKind::MissingFile)
        .count();
    assert_eq!(missing, r.manifest.shards.len());
}

#[test]
fn inspect_adds_up() {
    let r = reference();
    let summary = inspect_dir(r.dir.path()).unwrap();
    let t = r.manifest.totals;
    assert_eq!(summary.totals, t);
    assert_eq!(summary.tokens, t.samples * 16);
    let segments: u64 = r.manifest.shards.iter().map(|s| s.segments).sum();
    assert_eq!(
        summary.document_segments + summary.padding_segments,
        segments
    );
    let bucketed: u64 = summary
        .segment_lengths
        .iter()
        .map(|b| b.document_segments + b.padding_segments)
        .sum();
    assert_eq!(bucketed, segments);
    let bounds: Vec<(u64, u64)> = summary
        .segment_lengths
        .iter()
        .map(|b| (b.min, b.max))
        .collect();
    assert_eq!(bounds, [(1, 1), (2, 3), (4, 7), (8, 15), (16, 16)]);
    let pct = 100.0 * t.padding_tokens as f64 / summary.tokens as f64;
    assert!((summary.padding_percent - pct).abs() < 1e-9);
    assert!((summary.padding_percent + summary.context_percent + summary.target_percent) < 100.0);
    let text = summary.to_string();
    assert!(text.contains("segment lengths"), "{text}");
    serde_json::to_string(&summary).unwrap();
}

/// A manifest whose sample count times `seq_len` passes 64 bits is an error naming the manifest
/// (a fuzz finding: `inspect_dir` multiplied them unchecked and panicked).
#[test]
fn inspect_refuses_totals_that_overflow() {
    let r = reference();
    let copy = copy_dir(r.dir.path());
    let mut manifest = read_manifest(copy.path());
    manifest.totals.samples = u64::MAX / 8;
    save_manifest(copy.path(), &manifest);
    let err = inspect_dir(copy.path()).unwrap_err().to_string();
    assert!(
        err.contains("manifest.json") && err.contains("run verify"),
        "{err}"
    );
    assert!(verify_dir(copy.path()).is_err());
}

#[test]
fn hashing_helpers_match_known_digests() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("abc");
    fs::write(&path, "abc").unwrap();
    let hash = hash_file(&path).unwrap();
    assert_eq!(hash.size, 3);
    assert_eq!(
        hash.sha256,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let mut reader = HashingReader::new(&b"abc"[..]);
    std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
    assert_eq!(reader.hash(), hash);
    let input = InputFile::new("abc", hash, 1);
    assert_eq!(input.size, 3);
}

/// With `BPETOK_KEEP_SHARDS=DIR`, writes a small output to DIR (`uint16` tokens) and one to
/// DIR-u32 (a 100,000-piece vocabulary), replacing what is there, for checking by hand with numpy;
/// otherwise does nothing.
#[test]
fn keep_an_output_for_numpy() {
    let Some(dir) = std::env::var_os("BPETOK_KEEP_SHARDS").map(PathBuf::from) else {
        return;
    };
    let mut u32_dir = dir.clone().into_os_string();
    u32_dir.push("-u32");
    for (vocab, dir) in [(32_000u32, dir), (100_000, PathBuf::from(u32_dir))] {
        let opts = PackOptions {
            pad_id: 2,
            ..PackOptions::new(16, 4)
        };
        let docs = random_documents(7, &random_lengths(7, 40, 50), vocab);
        let mut writer = ShardWriter::create(
            &dir,
            ShardWriterOptions {
                samples_per_shard: 8,
                overwrite: true,
                ..ShardWriterOptions::new(u64::from(vocab), 16, 2)
            },
        )
        .unwrap();
        let mut packer = Packer::new(opts.clone()).unwrap();
        for (i, d) in docs.iter().enumerate() {
            packer
                .push_document(i as u64, d, |s| writer.write_sample(&s))
                .unwrap();
        }
        let stats = packer.finish(|s| writer.write_sample(&s)).unwrap();
        writer
            .finish(info(&opts, u64::from(vocab), vec![], stats))
            .unwrap();
        if let Err(e) = verify_dir(&dir) {
            panic!("{e}");
        }
    }
}

#[test]
fn an_output_path_that_is_a_file_is_not_a_directory() {
    let root = TempDir::new().unwrap();
    let file = root.path().join("out");
    fs::write(&file, "mine").unwrap();
    let err = ShardWriter::create(&file, ShardWriterOptions::new(100, 8, 0))
        .err()
        .expect("refused");
    assert!(matches!(err, ShardError::NotADirectory { .. }), "{err}");
    assert_eq!(err.kind(), "not_a_directory");
    assert_eq!(
        err.to_string(),
        format!("{} exists and is not a directory", file.display())
    );
    assert_eq!(fs::read(&file).unwrap(), b"mine");
}

#[test]
fn a_writer_dropped_before_its_first_shard_removes_the_directory_it_created() {
    let root = TempDir::new().unwrap();
    let dir = root.path().join("out");
    let opts = PackOptions::new(8, 0);
    let samples = pack_documents(&opts, [&[1u32, 2, 3][..]]).unwrap();
    let mut writer = ShardWriter::create(&dir, ShardWriterOptions::new(100, 8, 0)).unwrap();
    writer.write_sample(&samples[0]).unwrap(); // buffered in a temporary, no shard yet
    assert!(dir.is_dir());
    drop(writer);
    assert!(!dir.exists());

    // A directory that was there is left, as are completed shards.
    fs::create_dir(&dir).unwrap();
    drop(ShardWriter::create(&dir, ShardWriterOptions::new(100, 8, 0)).unwrap());
    assert!(dir.is_dir());
    fs::remove_dir(&dir).unwrap();
    let mut writer = ShardWriter::create(
        &dir,
        ShardWriterOptions {
            samples_per_shard: 1,
            ..ShardWriterOptions::new(100, 8, 0)
        },
    )
    .unwrap();
    writer.write_sample(&samples[0]).unwrap();
    drop(writer);
    let names: Vec<String> = files_of(&dir).into_keys().collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn every_shard_error_has_a_kind_and_no_flag_in_its_message() {
    let options = ShardWriter::create("x", ShardWriterOptions::new(100, 8, 100))
        .err()
        .unwrap();
    assert_eq!(options.kind(), "invalid_option");
    assert_eq!(
        options.to_string(),
        "pad_id: 100 is not an id of the vocabulary of 100 pieces (ids 0 to 99)"
    );
    let errors = [
        (ShardError::Failed, "failed"),
        (
            ShardError::ManifestMismatch("m".into()),
            "manifest_mismatch",
        ),
        (
            ShardError::InvalidSample {
                sample: 0,
                reason: "r".into(),
            },
            "invalid_sample",
        ),
        (
            ShardError::UnreadableOldManifest {
                dir: "d".into(),
                reason: "r".into(),
            },
            "unreadable_old_manifest",
        ),
        (
            ShardError::Unreadable {
                path: "d".into(),
                reason: "r".into(),
            },
            "unreadable",
        ),
        (
            ShardError::Io {
                path: "d".into(),
                source: std::io::Error::other("e"),
            },
            "io",
        ),
    ];
    for (err, kind) in errors {
        assert_eq!(err.kind(), kind);
        let text = err.to_string();
        for hint in ["--", "overwrite", "drop the writer", "by hand"] {
            assert!(!text.contains(hint), "{text}");
        }
    }
}
