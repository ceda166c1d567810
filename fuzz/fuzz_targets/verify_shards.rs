//! `verify_dir` and the shard readers (`read_manifest`, `inspect_dir`) on damaged shard
//! directories. A small valid directory is built once per process; each input damages one file
//! of a fresh copy, in one of three ways:
//! - bytes of a file changed, inserted, removed or cut off, the manifest left as it was: verify
//!   must fail, and for an array file name that file with a size or checksum violation;
//! - the same for an array file, with the manifest's size and SHA-256 updated to match: verify
//!   either fails or passes, and if it passes, the independent reading of `shard_check` must find
//!   every invariant of docs/shard-format.md intact;
//! - one value of the manifest's JSON replaced (by a number, a negative, a string, null, a bool,
//!   an empty list) or its key removed: verify either fails, or the manifest still says the same
//!   about the arrays (dtype, sequence length, padding id, overlap, vocabulary size, shards,
//!   totals), the only fields verify cannot check against anything being provenance and options
//!   that only change the order of samples.
//!
//! Raw damage to the manifest must fail or leave it meaning the same. Nothing may panic.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bpetok::data::pack::{PackOptions, Packer, SplitMix64};
use bpetok::data::shard::{
    hash_file, inspect_dir, read_manifest, verify_dir, verify_dir_with, InputFile, InputOptions,
    Manifest, ManifestInfo, ShardWriter, ShardWriterOptions, TokenizerInfo, ViolationKind,
};
use bpetok::Tokenizer;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

struct Valid {
    _dir: tempfile::TempDir,
    /// (file name, bytes) of every file, the manifest first.
    files: Vec<(String, Vec<u8>)>,
    manifest: Manifest,
}

/// Token ids are drawn below this; the manifest names the Mixtral tokenizer (32,000 pieces).
const VOCAB: u64 = 1000;

fn tokenizer() -> &'static Tokenizer {
    &bpetok_fuzz::tokenizers()[0].1
}

/// 14 documents of 0 to 40 tokens, L = 16, W = 8 (overlap 8), 5 samples per shard.
fn valid() -> &'static Valid {
    static VALID: OnceLock<Valid> = OnceLock::new();
    VALID.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let opts = PackOptions {
            pack_buffer: 6,
            seed: 3,
            pad_id: 2,
            ..PackOptions::new(16, 8)
        };
        let mut writer = ShardWriter::create(
            dir.path(),
            ShardWriterOptions {
                samples_per_shard: 5,
                ..ShardWriterOptions::new(tokenizer().vocab_size() as u64, 16, 2)
            },
        )
        .unwrap();
        let mut rng = SplitMix64::new(7);
        let mut packer = Packer::new(opts.clone()).unwrap();
        let count = 14;
        for doc_id in 0..count {
            let n = rng.below(41) as usize;
            let tokens: Vec<u32> = (0..n).map(|_| rng.below(VOCAB) as u32).collect();
            packer
                .push_document(doc_id, &tokens, |s| writer.write_sample(&s))
                .unwrap();
        }
        let stats = packer.finish(|s| writer.write_sample(&s)).unwrap();
        let info = ManifestInfo {
            tokenizer: TokenizerInfo::of(tokenizer()),
            pack: opts,
            bos: true,
            eos: true,
            input_options: InputOptions::default(),
            inputs: vec![InputFile {
                path: "a.jsonl".into(),
                size: 99,
                sha256: "cd".repeat(32),
                documents: count,
                skipped_records: None,
                range: None,
            }],
            stats,
            chat: None,
            partition_size: None,
        };
        let manifest = writer.finish(info).unwrap();
        verify_dir_with(dir.path(), Some(tokenizer())).expect("the valid directory verifies");
        // JSON edits re-serialize the manifest (keys sorted): that alone must still verify, or
        // every edit would fail for the wrong reason.
        let path = dir.path().join("manifest.json");
        let original = std::fs::read(&path).unwrap();
        let value: Value = serde_json::from_slice(&original).unwrap();
        std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
        verify_dir(dir.path()).expect("the re-serialized manifest verifies");
        std::fs::write(&path, original).unwrap();
        let mut names = vec!["manifest.json".to_string()];
        for shard in &manifest.shards {
            let f = &shard.files;
            names.extend([
                f.tokens.path.clone(),
                f.segments.path.clone(),
                f.sample_index.path.clone(),
            ]);
        }
        let files = names
            .into_iter()
            .map(|n| {
                let bytes = std::fs::read(dir.path().join(&n)).unwrap();
                (n, bytes)
            })
            .collect();
        Valid {
            _dir: dir,
            files,
            manifest,
        }
    })
}

/// Byte damage: up to 6 edits (overwrite, insert, remove a range, cut off, append).
fn damage(u: &mut Unstructured<'_>, bytes: &mut Vec<u8>) -> Result<()> {
    for _ in 0..u.int_in_range(1..=6)? {
        let at = u.choose_index(bytes.len() + 1)?;
        match u.int_in_range(0..=4)? {
            0 if at < bytes.len() => bytes[at] = u.arbitrary()?,
            1 => bytes.insert(at, u.arbitrary()?),
            2 => {
                let n = u.int_in_range(1..=16)?;
                bytes.drain(at..(at + n).min(bytes.len()));
            }
            3 => bytes.truncate(at),
            _ => {
                let n = u.int_in_range(1..=8)?;
                bytes.extend_from_slice(u.bytes(n)?);
            }
        }
    }
    Ok(())
}

/// Every (pointer, value) leaf of a JSON document, objects and arrays included.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(map) => map
            .iter()
            .for_each(|(k, x)| pointers(x, format!("{at}/{k}"), out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, x)| pointers(x, format!("{at}/{i}"), out)),
        _ => {}
    }
}

fn edit_json(u: &mut Unstructured<'_>, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    let mut all = Vec::new();
    pointers(&v, String::new(), &mut all);
    let target = all[1 + u.choose_index(all.len() - 1)?].clone();
    let (parent, key) = target.rsplit_once('/').unwrap();
    let replacement = match u.int_in_range(0..=7)? {
        0 => Value::from(u.int_in_range(0u64..=64)?),
        1 => Value::from(u.arbitrary::<u64>()?),
        2 => Value::from(-i64::from(u.int_in_range(1u8..=3)?)),
        3 => Value::from("shard-00000.tokens.npy"),
        4 => Value::Null,
        5 => Value::Bool(u.arbitrary()?),
        6 => {
            // The old value plus or minus one, where it is a number.
            match v.pointer(&target).and_then(Value::as_u64) {
                Some(n) if u.arbitrary()? => Value::from(n + 1),
                Some(n) => Value::from(n.saturating_sub(1)),
                None => Value::Array(Vec::new()),
            }
        }
        _ => {
            if let Some(Value::Object(map)) = v.pointer_mut(parent) {
                map.remove(key);
            }
            return Ok(serde_json::to_vec_pretty(&v).unwrap());
        }
    };
    if let Some(slot) = v.pointer_mut(&target) {
        *slot = replacement;
    }
    Ok(serde_json::to_vec_pretty(&v).unwrap())
}

/// What the manifest says about the arrays: everything verify must hold it to. The tokenizer's
/// hash and vocabulary size only when verify is given the tokenizer: without it, a larger
/// `vocab_size` (or another hash) is not detectable from the directory.
fn meaning(m: &Manifest, with_tokenizer: bool) -> impl PartialEq + std::fmt::Debug {
    (
        (m.format.clone(), m.format_version, m.token_dtype),
        with_tokenizer.then(|| (m.tokenizer.vocab_size, m.tokenizer.sha256.clone())),
        (
            m.options.seq_len,
            m.options.pad_id,
            m.options.overlap_tokens,
        ),
        m.shards.clone(),
        m.totals,
    )
}

fn work_dir() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        (dir, path)
    })
    .1
}

fn run(data: &[u8]) -> Result<()> {
    let valid = valid();
    let mut u = Unstructured::new(data);
    let which = u.choose_index(valid.files.len())?;
    let mode = u.int_in_range(0..=2)?;
    let dir = work_dir();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in &valid.files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let (name, original) = &valid.files[which];
    let is_manifest = which == 0;
    let mut bytes = original.clone();
    if mode == 2 && is_manifest {
        bytes = edit_json(&mut u, &bytes)?;
    } else {
        damage(&mut u, &mut bytes)?;
    }
    std::fs::write(dir.join(name), &bytes).unwrap();
    let rehashed = mode == 1 && !is_manifest;
    if rehashed {
        // The manifest updated to the damaged file's size and hash.
        let hash = hash_file(dir.join(name)).unwrap();
        let mut m = valid.manifest.clone();
        for shard in &mut m.shards {
            let f = &mut shard.files;
            for digest in [&mut f.tokens, &mut f.segments, &mut f.sample_index] {
                if &digest.path == name {
                    digest.size = hash.size;
                    digest.sha256 = hash.sha256.clone();
                }
            }
        }
        std::fs::write(dir.join("manifest.json"), m.to_json()).unwrap();
    }

    // The readers never panic, whatever they say.
    let _ = read_manifest(dir);
    let _ = inspect_dir(dir);
    let result = verify_dir(dir);
    let with_tokenizer = verify_dir_with(dir, Some(tokenizer()));
    if with_tokenizer.is_ok() {
        assert!(result.is_ok(), "passes with the tokenizer but not without");
    }
    if let Err(err) = &result {
        assert!(
            err.count() > 0 && !err.to_string().is_empty(),
            "an error without violations"
        );
        assert!(err
            .violations
            .iter()
            .all(|v| !v.message.is_empty() && !v.file.is_empty()));
    }
    if bytes == *original && !rehashed {
        assert!(
            result.is_ok(),
            "the intact directory fails: {:?}",
            result.err()
        );
        return Ok(());
    }
    if is_manifest {
        if result.is_ok() {
            let damaged = Manifest::from_json(&bytes).expect("a manifest that verifies parses");
            assert_eq!(
                meaning(&damaged, with_tokenizer.is_ok()),
                meaning(&valid.manifest, with_tokenizer.is_ok()),
                "verify passed a manifest that says something else"
            );
        }
    } else if rehashed {
        if result.is_ok() {
            if let Err(problem) = bpetok_fuzz::shard_check::check_dir(dir, &valid.manifest) {
                panic!("verify passed damaged {name}: {problem}");
            }
        }
    } else {
        let err = result.expect_err("verify passed a damaged file");
        assert!(
            err.violations.iter().any(|v| &v.file == name
                && matches!(v.kind, ViolationKind::FileSize | ViolationKind::Checksum)),
            "the damage to {name} is not named: {err}"
        );
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
