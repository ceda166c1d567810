//! [`inspect_dir`]: a summary of a shard directory for people (`bpetok inspect`): totals,
//! padding, context and target percentages, and a histogram of segment lengths. It trusts the
//! manifest and reads only the segments files; [`super::verify_dir`] is what checks.

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;

use super::npy;
use super::writer::ShardError;
use super::{is_listed_path, Manifest, TokenDtype, Totals, MANIFEST_FILE};

/// Segments whose length is in `min..=max`. Buckets are powers of two: `[1, 1]`, `[2, 3]`,
/// `[4, 7]`, ..., the last ending at `seq_len`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LengthBucket {
    pub min: u64,
    pub max: u64,
    pub document_segments: u64,
    pub padding_segments: u64,
}

/// What `bpetok inspect` prints (as text through `Display`, or as JSON through serde).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub shards: u64,
    pub seq_len: u64,
    pub window: u64,
    pub overlap_tokens: u64,
    pub token_dtype: TokenDtype,
    pub totals: Totals,
    /// `samples * seq_len`.
    pub tokens: u64,
    /// Shares of `tokens`, in percent.
    pub padding_percent: f64,
    pub context_percent: f64,
    pub target_percent: f64,
    pub document_segments: u64,
    pub padding_segments: u64,
    pub segment_lengths: Vec<LengthBucket>,
}

fn unreadable(path: &Path, reason: impl Into<String>) -> ShardError {
    ShardError::Unreadable {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The `manifest.json` of a shard directory, parsed (not checked: see [`super::verify_dir`]).
pub fn read_manifest(dir: &Path) -> Result<Manifest, ShardError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = fs::read(&manifest_path).map_err(|source| match source.kind() {
        // Not a shard directory (or not a finished one): say so, rather than an OS error.
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => unreadable(
            dir,
            if dir.is_dir() {
                "it has no manifest.json (an unfinished run, or not a bpetok pack output)"
            } else if dir.exists() {
                "it is not a directory"
            } else {
                "no such directory"
            },
        ),
        _ => ShardError::Io {
            path: manifest_path.clone(),
            source,
        },
    })?;
    Manifest::from_json(&bytes).map_err(|e| unreadable(&manifest_path, e.to_string()))
}

/// Whether the shards of `dir` were packed with `tok` (its model's SHA-256 and vocabulary size
/// against the manifest's): decoding them with another tokenizer gives wrong text.
pub fn check_dir_tokenizer(
    dir: impl AsRef<Path>,
    tok: &crate::Tokenizer,
) -> Result<(), ShardError> {
    super::check_tokenizer(&read_manifest(dir.as_ref())?.tokenizer, tok)
}

/// Summarises the shard directory `dir` from its manifest and segments files.
pub fn inspect_dir(dir: impl AsRef<Path>) -> Result<Summary, ShardError> {
    let dir = dir.as_ref();
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest = read_manifest(dir)?;
    let seq_len = manifest.options.seq_len;
    if seq_len == 0 || seq_len > i32::MAX as u64 {
        return Err(unreadable(
            &manifest_path,
            format!("seq_len {seq_len} is out of range"),
        ));
    }

    let buckets = 64 - seq_len.leading_zeros() as usize;
    let mut lengths: Vec<LengthBucket> = (0..buckets)
        .map(|k| LengthBucket {
            min: 1 << k,
            max: ((1u64 << (k + 1)) - 1).min(seq_len),
            document_segments: 0,
            padding_segments: 0,
        })
        .collect();
    let (mut document_segments, mut padding_segments) = (0u64, 0u64);
    for shard in &manifest.shards {
        let name = &shard.files.segments.path;
        let path = dir.join(name);
        if !is_listed_path(name, manifest.partitions.is_some()) {
            return Err(unreadable(
                &path,
                "not a plain file name inside the directory",
            ));
        }
        let bytes = fs::read(&path).map_err(|source| ShardError::Io {
            path: path.clone(),
            source,
        })?;
        let view = npy::parse(&bytes).map_err(|e| unreadable(&path, e))?;
        view.expect("<i8", &[None, Some(5)], 8)
            .map_err(|problems| unreadable(&path, problems.join("; ")))?;
        for row in npy::decode_i64(view.data).chunks_exact(5) {
            let (len, doc) = (row[1], row[3]);
            if len < 1 || len as u64 > seq_len {
                return Err(unreadable(
                    &path,
                    format!("a segment has length {len}; run verify"),
                ));
            }
            let bucket = &mut lengths[63 - (len as u64).leading_zeros() as usize];
            if doc == -1 {
                bucket.padding_segments += 1;
                padding_segments += 1;
            } else {
                bucket.document_segments += 1;
                document_segments += 1;
            }
        }
    }

    let totals = manifest.totals;
    let tokens = totals.samples.checked_mul(seq_len).ok_or_else(|| {
        unreadable(
            &manifest_path,
            format!(
                "{} samples of {seq_len} tokens is more tokens than fit in 64 bits; run verify",
                totals.samples
            ),
        )
    })?;
    let percent = |n: u64| {
        if tokens == 0 {
            0.0
        } else {
            100.0 * n as f64 / tokens as f64
        }
    };
    Ok(Summary {
        shards: manifest.shards.len() as u64,
        seq_len,
        window: manifest.options.window,
        overlap_tokens: manifest.options.overlap_tokens,
        token_dtype: manifest.token_dtype,
        tokens,
        padding_percent: percent(totals.padding_tokens),
        context_percent: percent(totals.context_tokens),
        target_percent: percent(totals.target_tokens),
        document_segments,
        padding_segments,
        segment_lengths: lengths,
        totals,
    })
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        writeln!(
            f,
            "{} samples of {} tokens ({}) in {} shards: {} tokens",
            t.samples,
            self.seq_len,
            self.token_dtype.name(),
            self.shards,
            self.tokens
        )?;
        writeln!(
            f,
            "documents {} ({} empty, {} split), document tokens {}",
            t.documents, t.empty_documents, t.documents_split, t.document_tokens
        )?;
        writeln!(
            f,
            "targets {} ({:.2}%), context {} ({:.2}%, window {}, overlap {}), padding {} ({:.2}%)",
            t.target_tokens,
            self.target_percent,
            t.context_tokens,
            self.context_percent,
            self.window,
            self.overlap_tokens,
            t.padding_tokens,
            self.padding_percent
        )?;
        writeln!(
            f,
            "segment lengths ({} document, {} padding):",
            self.document_segments, self.padding_segments
        )?;
        let widest = self
            .segment_lengths
            .iter()
            .map(|b| b.document_segments + b.padding_segments)
            .max()
            .unwrap_or(0)
            .max(1);
        for b in &self.segment_lengths {
            let n = b.document_segments + b.padding_segments;
            let bar = "#".repeat((n * 40).div_ceil(widest) as usize);
            writeln!(
                f,
                "  {:>10}..={:<10} {:>10} doc {:>10} pad  {bar}",
                b.min, b.max, b.document_segments, b.padding_segments
            )?;
        }
        Ok(())
    }
}
