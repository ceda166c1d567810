//! [`verify_dir`]: checks a finished shard directory against every invariant of
//! `docs/shard-format.md` and `docs/packing.md`, from the manifest and the `.npy` files alone, and
//! reports every violation it finds (not just the first) with its file, sample and segment row.
//!
//! Memory: one shard's three files at a time, plus the cross-directory document state: for each
//! document whose latest chunk seen is a full `seq_len` chunk (so more chunks of it may follow)
//! about 64 bytes (where its targets must resume, where that chunk was, a 128-bit hash of its last
//! `overlap_tokens` tokens); and one bit per document id up to the largest seen, marking the
//! documents that have ended (a chunk shorter than `seq_len` is always a document's last), to
//! catch a document that appears again. A document that ends with a full chunk stays in the first
//! set until the end, so that set is bounded by the documents with an open chunk chain.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

use super::manifest::{is_sha256_hex, sha256_hex};
use super::npy::{self, NpyView};
use super::{
    is_plain_file_name, shard_name, FileDigest, Manifest, ShardEntry, ShardFile, TokenDtype,
    FORMAT, FORMAT_VERSION, MANIFEST_FILE,
};

/// Violations listed in a [`VerifyError`]; past this many only their number is kept.
const MAX_LISTED: usize = 1000;

/// What kind of rule a [`Violation`] breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViolationKind {
    /// `manifest.json` is missing, does not parse, is of another format or version, or
    /// contradicts itself (options, names, paths, hashes' form, totals).
    Manifest,
    /// A file the manifest lists cannot be read.
    MissingFile,
    /// A file's size differs from the manifest's.
    FileSize,
    /// A file's SHA-256 differs from the manifest's.
    Checksum,
    /// An array's `.npy` header, dtype, shape or data length is not as documented.
    ArrayFormat,
    /// `sample_index` does not start at 0, decreases, or does not end at the number of rows.
    SampleIndex,
    /// A sample's segments do not tile `[0, seq_len)` in order with lengths of at least 1.
    Tiling,
    /// A padding segment is not last, not alone, has a context or `doc_start`, or holds a token
    /// other than `pad_id`.
    Padding,
    /// A segment row holds an impossible value (a negative `doc_id` other than -1, a negative
    /// `doc_start`).
    Segment,
    /// A segment's `context` is not below its length, is not 0 on a document's first chunk, or
    /// is not `overlap_tokens` on a later chunk.
    Context,
    /// A token id is not below the vocabulary size.
    TokenRange,
    /// A count in the manifest differs from the arrays' (per shard or in total).
    Counts,
    /// A document's targets are not covered exactly once from position 1 on: its first chunk does
    /// not start at 0, a chunk leaves a gap or overlaps, or the document appears after its end.
    Coverage,
    /// A document's chunks are not in document order in later and later samples.
    Order,
    /// A chunk's context tokens are not the tokens its previous chunk ended with.
    ContextTokens,
    /// A check could not be done because of an earlier violation (named in the message).
    Unchecked,
    /// The manifest's tokenizer is not the one given to [`verify_dir_with`].
    Tokenizer,
}

/// One broken rule, where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    /// The file at fault, relative to the directory.
    pub file: String,
    /// The sample's index within its shard, when one sample is at fault.
    pub sample: Option<u64>,
    /// The segment's row in the shard's `segments` file, when one segment is at fault.
    pub segment: Option<u64>,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(s) = self.sample {
            write!(f, ", sample {s}")?;
        }
        if let Some(g) = self.segment {
            write!(f, ", segment row {g}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A directory that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub shards: u64,
    pub samples: u64,
    pub segments: u64,
    /// Distinct documents seen in the shards.
    pub documents: u64,
    /// Bytes read and hashed (manifest included).
    pub bytes: u64,
    /// The most documents with an open chunk chain held at once (see the module's memory note).
    pub peak_open_documents: u64,
}

/// A directory that failed: every violation found (up to [`MAX_LISTED`], then only counted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    pub dir: PathBuf,
    pub violations: Vec<Violation>,
    /// Violations found but not listed.
    pub omitted: u64,
}

impl VerifyError {
    /// All violations found, listed or not.
    pub fn count(&self) -> u64 {
        self.violations.len() as u64 + self.omitted
    }

    pub fn has(&self, kind: ViolationKind) -> bool {
        self.violations.iter().any(|v| v.kind == kind)
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 20;
        write!(
            f,
            "{} is not a valid shard directory: {} violation{}",
            self.dir.display(),
            self.count(),
            if self.count() == 1 { "" } else { "s" }
        )?;
        for v in self.violations.iter().take(SHOWN) {
            write!(f, "\n  {v}")?;
        }
        let rest = self.count() - self.violations.len().min(SHOWN) as u64;
        if rest > 0 {
            write!(f, "\n  ... and {rest} more")?;
        }
        Ok(())
    }
}

impl std::error::Error for VerifyError {}

#[derive(Default)]
struct Violations {
    listed: Vec<Violation>,
    omitted: u64,
}

impl Violations {
    fn add(
        &mut self,
        kind: ViolationKind,
        file: &str,
        sample: Option<u64>,
        segment: Option<u64>,
        message: String,
    ) {
        if self.listed.len() < MAX_LISTED {
            self.listed.push(Violation {
                kind,
                file: file.to_string(),
                sample,
                segment,
                message,
            });
        } else {
            self.omitted += 1;
        }
    }

    fn manifest(&mut self, message: String) {
        self.add(ViolationKind::Manifest, MANIFEST_FILE, None, None, message);
    }

    fn is_empty(&self) -> bool {
        self.listed.is_empty() && self.omitted == 0
    }

    fn into_error(self, dir: &Path) -> VerifyError {
        VerifyError {
            dir: dir.to_path_buf(),
            violations: self.listed,
            omitted: self.omitted,
        }
    }
}

/// What the arrays are checked against, from a manifest that is usable enough.
struct Layout {
    seq_len: usize,
    dtype: TokenDtype,
    vocab_size: u64,
    pad_id: u32,
    /// Context of every chunk after a document's first; `None` if the options make it unknowable.
    overlap: Option<usize>,
    documents: u64,
    /// Conversations (`options.chat`): every shard has a loss mask.
    masked: bool,
}

/// Counts recomputed from the arrays.
#[derive(Default)]
struct Counted {
    samples: u64,
    segments: u64,
    padding_tokens: u64,
    context_tokens: u64,
    target_tokens: u64,
    bytes: u64,
    /// False once a shard could not be checked, so the totals cannot be compared.
    complete: bool,
}

/// Checks the shard directory `dir` (see the module doc and `docs/shard-format.md`). `Ok` only if
/// every check passes; otherwise every violation found, each with its file and, where it applies,
/// the sample (within its shard) and segment row.
pub fn verify_dir(dir: impl AsRef<Path>) -> Result<VerifyReport, VerifyError> {
    verify_dir_with(dir, None)
}

/// [`verify_dir`], and with a tokenizer, also that the shards were made by it (the manifest's
/// `tokenizer.sha256` and `vocab_size`, see [`super::check_tokenizer`]): a
/// [`ViolationKind::Tokenizer`] if not.
pub fn verify_dir_with(
    dir: impl AsRef<Path>,
    tokenizer: Option<&crate::Tokenizer>,
) -> Result<VerifyReport, VerifyError> {
    let dir = dir.as_ref();
    let mut v = Violations::default();
    let mut counted = Counted {
        complete: true,
        ..Counted::default()
    };
    let Some(manifest) = load_manifest(dir, &mut v, &mut counted) else {
        return Err(v.into_error(dir));
    };
    if let Some(partitions) = &manifest.partitions {
        return verify_partitioned(dir, &manifest, partitions, tokenizer, counted.bytes);
    }
    if let Some(tok) = tokenizer {
        if let Err(e) = super::check_tokenizer(&manifest.tokenizer, tok) {
            v.add(
                ViolationKind::Tokenizer,
                MANIFEST_FILE,
                None,
                None,
                e.to_string(),
            );
        }
    }
    let Some(layout) = check_manifest(&manifest, &mut v) else {
        return Err(v.into_error(dir));
    };
    let mut documents = Documents::new(&layout);
    let mut ordinal = 0u64;
    for (index, shard) in manifest.shards.iter().enumerate() {
        check_shard(
            dir,
            index,
            shard,
            &layout,
            &mut documents,
            &mut ordinal,
            &mut counted,
            &mut v,
        );
    }
    compare_totals(&manifest, &counted, &documents, &mut v);
    if v.is_empty() {
        Ok(VerifyReport {
            shards: manifest.shards.len() as u64,
            samples: counted.samples,
            segments: counted.segments,
            documents: documents.seen,
            bytes: counted.bytes,
            peak_open_documents: documents.peak_open as u64,
        })
    } else {
        Err(v.into_error(dir))
    }
}

fn load_manifest(dir: &Path, v: &mut Violations, counted: &mut Counted) -> Option<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let what = if dir.join(super::RESUME_FILE).is_file() {
                "the directory has no manifest.json: a packing run was interrupted there \
                 (resume.json); `bpetok pack --resume` with the same inputs and options \
                 finishes it"
            } else if dir.is_dir() {
                "the directory has no manifest.json: the output is unfinished (its writer \
                 stopped before finishing) or this is not a shard directory"
            } else {
                "the directory does not exist"
            };
            v.add(
                ViolationKind::MissingFile,
                MANIFEST_FILE,
                None,
                None,
                what.to_string(),
            );
            return None;
        }
        Err(e) => {
            v.add(
                ViolationKind::MissingFile,
                MANIFEST_FILE,
                None,
                None,
                format!("cannot be read: {e}"),
            );
            return None;
        }
    };
    counted.bytes += bytes.len() as u64;
    let value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(value) => value,
        Err(e) => {
            v.manifest(format!("is not valid JSON: {e}"));
            return None;
        }
    };
    // The format and its version first: a structure error means little for another format.
    let checks = [
        (
            "format",
            serde_json::Value::from(FORMAT),
            format!("expected {FORMAT:?}: not a bpetok shard directory"),
        ),
        (
            "format_version",
            serde_json::Value::from(FORMAT_VERSION),
            format!("but this verifier knows version {FORMAT_VERSION}"),
        ),
    ];
    for (key, want, why) in checks {
        let found = value.get(key);
        if found != Some(&want) {
            let found = found.map_or("missing".to_string(), |f| f.to_string());
            v.manifest(format!("\"{key}\" is {found}, {why}"));
            return None;
        }
    }
    match serde_json::from_value(value) {
        Ok(m) => Some(m),
        Err(e) => {
            v.manifest(format!("does not have the documented structure: {e}"));
            None
        }
    }
}

/// Checks the manifest on its own; returns what the arrays are checked against, or `None` when
/// the manifest is too broken for that (no usable `seq_len` or token dtype).
fn check_manifest(m: &Manifest, v: &mut Violations) -> Option<Layout> {
    let o = &m.options;
    let t = &m.tokenizer;
    if !is_sha256_hex(&t.sha256) {
        v.manifest(format!(
            "tokenizer.sha256 {:?} is not 64 lowercase hex digits",
            t.sha256
        ));
    }
    let expected_dtype = TokenDtype::for_vocab_size(t.vocab_size);
    match expected_dtype {
        None => v.manifest(format!(
            "tokenizer.vocab_size {} is not between 1 and 2^32",
            t.vocab_size
        )),
        Some(d) if d != m.token_dtype => v.manifest(format!(
            "token_dtype is {}, but a vocabulary of {} pieces needs {}",
            m.token_dtype.name(),
            t.vocab_size,
            d.name()
        )),
        Some(_) => {}
    }
    for (name, id) in [("bos_id", t.bos_id), ("eos_id", t.eos_id)] {
        if let Some(id) = id {
            if u64::from(id) >= t.vocab_size {
                v.manifest(format!(
                    "tokenizer.{name} {id} is not below vocab_size {}",
                    t.vocab_size
                ));
            }
        }
    }

    let seq_len_ok = o.seq_len >= 2 && o.seq_len <= i32::MAX as u64;
    if !seq_len_ok {
        v.manifest(format!(
            "options.seq_len {} is not between 2 and 2147483647",
            o.seq_len
        ));
    }
    let default_overlap = if o.window > 0 && o.window < o.seq_len {
        o.window
    } else {
        0
    };
    let overlap = o.overlap.unwrap_or(default_overlap).max(1);
    if let Some(requested) = o.overlap {
        if requested >= o.seq_len {
            v.manifest(format!(
                "options.overlap {requested} is not below seq_len {}",
                o.seq_len
            ));
        }
    }
    if o.overlap_tokens != overlap {
        v.manifest(format!(
            "options.overlap_tokens is {}, but overlap {} with window {} and seq_len {} gives {overlap}",
            o.overlap_tokens,
            o.overlap.map_or("null".to_string(), |x| x.to_string()),
            o.window,
            o.seq_len
        ));
    }
    if o.pack_buffer == 0 {
        v.manifest("options.pack_buffer is 0".to_string());
    }
    if o.samples_per_shard == 0 {
        v.manifest("options.samples_per_shard is 0".to_string());
    }
    if u64::from(o.pad_id) >= t.vocab_size {
        v.manifest(format!(
            "options.pad_id {} is not below vocab_size {}",
            o.pad_id, t.vocab_size
        ));
    }

    for (k, input) in m.inputs.iter().enumerate() {
        if !is_sha256_hex(&input.sha256) {
            v.manifest(format!(
                "inputs[{k}] ({}): sha256 {:?} is not 64 lowercase hex digits",
                input.path, input.sha256
            ));
        }
    }
    let totals = &m.totals;
    if !m.inputs.is_empty() {
        let documents: u64 = m.inputs.iter().map(|i| i.documents).sum();
        if documents != totals.documents {
            v.add(
                ViolationKind::Counts,
                MANIFEST_FILE,
                None,
                None,
                format!(
                    "the inputs contribute {documents} documents, totals.documents is {}",
                    totals.documents
                ),
            );
        }
    }
    let non_empty = totals.documents.checked_sub(totals.empty_documents);
    match non_empty {
        None => v.add(
            ViolationKind::Counts,
            MANIFEST_FILE,
            None,
            None,
            format!(
                "totals.empty_documents {} exceeds totals.documents {}",
                totals.empty_documents, totals.documents
            ),
        ),
        Some(non_empty) => {
            if totals.documents_split > non_empty {
                v.add(
                    ViolationKind::Counts,
                    MANIFEST_FILE,
                    None,
                    None,
                    format!(
                        "totals.documents_split {} exceeds the {non_empty} documents with tokens",
                        totals.documents_split
                    ),
                );
            }
            // Every position but 0 of every document with tokens is a target exactly once (with a
            // loss mask, at most once).
            let targets_ok = match totals.document_tokens.checked_sub(non_empty) {
                Some(most) if o.chat.is_some() => totals.target_tokens <= most,
                most => most == Some(totals.target_tokens),
            };
            if !targets_ok {
                v.add(
                    ViolationKind::Counts,
                    MANIFEST_FILE,
                    None,
                    None,
                    format!(
                        "totals.target_tokens is {}, but {} document tokens in {non_empty} \
                         documents with tokens have one target per token but the first \
                         (at most, with a loss mask): {}",
                        totals.target_tokens,
                        totals.document_tokens,
                        totals
                            .document_tokens
                            .checked_sub(non_empty)
                            .map_or("fewer than none".to_string(), |n| n.to_string())
                    ),
                );
            }
        }
    }

    // Each document token is in the shards once as a non-context token; the rest of every
    // sample is context repeats and padding.
    let sample_tokens = totals.samples.checked_mul(o.seq_len);
    let parts = totals
        .document_tokens
        .checked_add(totals.context_tokens)
        .and_then(|n| n.checked_add(totals.padding_tokens));
    if sample_tokens.is_none() || sample_tokens != parts {
        v.add(
            ViolationKind::Counts,
            MANIFEST_FILE,
            None,
            None,
            format!(
                "totals: {} samples of seq_len {} do not hold exactly document_tokens {} + \
                 context_tokens {} + padding_tokens {}",
                totals.samples,
                o.seq_len,
                totals.document_tokens,
                totals.context_tokens,
                totals.padding_tokens
            ),
        );
    }

    // u128: a manifest's counts are any u64s, and their sum is reported, not overflowed.
    let mut sums = [0u128; 3];
    let last = m.shards.len().saturating_sub(1);
    for (i, shard) in m.shards.iter().enumerate() {
        let expected = shard_name(i);
        if shard.name != expected {
            v.manifest(format!(
                "shards[{i}].name is {:?}, expected {expected:?}",
                shard.name
            ));
        }
        for (file, digest) in shard_files(shard) {
            let want = file.file_name(&expected);
            if digest.path != want {
                v.manifest(format!(
                    "shards[{i}].files: path {:?}, expected {want:?}",
                    digest.path
                ));
            }
            if !is_sha256_hex(&digest.sha256) {
                v.manifest(format!(
                    "shards[{i}].files: {}'s sha256 {:?} is not 64 lowercase hex digits",
                    digest.path, digest.sha256
                ));
            }
        }
        if shard.tokens != shard.samples.saturating_mul(o.seq_len) {
            v.add(
                ViolationKind::Counts,
                MANIFEST_FILE,
                None,
                None,
                format!(
                    "{}: tokens is {}, but {} samples of seq_len {} make {}",
                    shard.name,
                    shard.tokens,
                    shard.samples,
                    o.seq_len,
                    shard.samples.saturating_mul(o.seq_len)
                ),
            );
        }
        let full = i < last && shard.samples != o.samples_per_shard;
        if full || shard.samples == 0 || shard.samples > o.samples_per_shard {
            v.add(
                ViolationKind::Counts,
                MANIFEST_FILE,
                None,
                None,
                format!(
                    "{}: {} samples, but every shard holds samples_per_shard ({}) samples, the \
                     last between 1 and that",
                    shard.name, shard.samples, o.samples_per_shard
                ),
            );
        }
        sums[0] += u128::from(shard.samples);
        sums[1] += u128::from(shard.padding_tokens);
        sums[2] += u128::from(shard.context_tokens);
    }
    for (name, sum, total) in [
        ("samples", sums[0], totals.samples),
        ("padding_tokens", sums[1], totals.padding_tokens),
        ("context_tokens", sums[2], totals.context_tokens),
    ] {
        if sum != u128::from(total) {
            v.add(
                ViolationKind::Counts,
                MANIFEST_FILE,
                None,
                None,
                format!("the shards' {name} add up to {sum}, totals.{name} is {total}"),
            );
        }
    }

    if !seq_len_ok {
        return None;
    }
    let seq_len = o.seq_len as usize;
    Some(Layout {
        seq_len,
        dtype: m.token_dtype,
        vocab_size: t.vocab_size,
        pad_id: o.pad_id,
        overlap: (overlap < o.seq_len).then_some(overlap as usize),
        documents: totals.documents,
        masked: o.chat.is_some(),
    })
}

fn shard_files(shard: &ShardEntry) -> impl Iterator<Item = (ShardFile, &FileDigest)> {
    [
        (ShardFile::Tokens, &shard.files.tokens),
        (ShardFile::Segments, &shard.files.segments),
        (ShardFile::SampleIndex, &shard.files.sample_index),
    ]
    .into_iter()
    .chain(
        shard
            .files
            .loss_mask
            .iter()
            .map(|d| (ShardFile::LossMask, d)),
    )
}

/// Reads a listed file and checks its size and hash; `None` if it cannot be read at all.
fn read_listed(
    dir: &Path,
    digest: &FileDigest,
    counted: &mut Counted,
    v: &mut Violations,
) -> Option<Vec<u8>> {
    if !is_plain_file_name(&digest.path) {
        v.manifest(format!(
            "file path {:?} is not a plain file name inside the directory",
            digest.path
        ));
        return None;
    }
    let bytes = match fs::read(dir.join(&digest.path)) {
        Ok(b) => b,
        Err(e) => {
            let message = if e.kind() == io::ErrorKind::NotFound {
                "is listed in the manifest but does not exist".to_string()
            } else {
                format!("cannot be read: {e}")
            };
            v.add(
                ViolationKind::MissingFile,
                &digest.path,
                None,
                None,
                message,
            );
            return None;
        }
    };
    counted.bytes += bytes.len() as u64;
    if bytes.len() as u64 != digest.size {
        v.add(
            ViolationKind::FileSize,
            &digest.path,
            None,
            None,
            format!(
                "is {} bytes, the manifest says {}",
                bytes.len(),
                digest.size
            ),
        );
    }
    let sha256 = sha256_hex(&bytes);
    if sha256 != digest.sha256 {
        v.add(
            ViolationKind::Checksum,
            &digest.path,
            None,
            None,
            format!("SHA-256 is {sha256}, the manifest says {}", digest.sha256),
        );
    }
    Some(bytes)
}

/// Parses an array and checks its header against `descr`, `shape` (`None` = any length) and the
/// data length; `None` (with violations) if it is unusable.
fn open_array<'a>(
    bytes: &'a [u8],
    file: &str,
    descr: &str,
    shape: &[Option<u64>],
    item_size: usize,
    v: &mut Violations,
) -> Option<(NpyView<'a>, Vec<u64>)> {
    let view = match npy::parse(bytes) {
        Ok(view) => view,
        Err(e) => {
            v.add(ViolationKind::ArrayFormat, file, None, None, e);
            return None;
        }
    };
    match view.expect(descr, shape, item_size) {
        Ok(shape) => Some((view, shape)),
        Err(problems) => {
            for p in problems {
                v.add(ViolationKind::ArrayFormat, file, None, None, p);
            }
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_shard(
    dir: &Path,
    shard_index: usize,
    shard: &ShardEntry,
    layout: &Layout,
    documents: &mut Documents,
    ordinal: &mut u64,
    counted: &mut Counted,
    v: &mut Violations,
) {
    let l = layout.seq_len;
    let item = layout.dtype.size();
    let tokens_file = shard.files.tokens.path.as_str();
    let segments_file = shard.files.segments.path.as_str();
    let index_file = shard.files.sample_index.path.as_str();

    let tokens_bytes = read_listed(dir, &shard.files.tokens, counted, v);
    let segments_bytes = read_listed(dir, &shard.files.segments, counted, v);
    let index_bytes = read_listed(dir, &shard.files.sample_index, counted, v);
    let mask_bytes = match (&shard.files.loss_mask, layout.masked) {
        (Some(digest), true) => read_listed(dir, digest, counted, v),
        (None, false) => None,
        (None, true) => {
            v.manifest(format!(
                "{}: options.chat is set, so every shard has a loss_mask file, and this one has \
                 none",
                shard.name
            ));
            None
        }
        (Some(digest), false) => {
            v.manifest(format!(
                "{}: lists the loss mask {}, but options.chat is not set",
                shard.name, digest.path
            ));
            None
        }
    };

    let tokens = tokens_bytes.as_deref().and_then(|b| {
        open_array(
            b,
            tokens_file,
            layout.dtype.descr(),
            &[None, Some(l as u64)],
            item,
            v,
        )
    });
    let segments = segments_bytes
        .as_deref()
        .and_then(|b| open_array(b, segments_file, "<i8", &[None, Some(5)], 8, v));
    let sample_index = index_bytes
        .as_deref()
        .and_then(|b| open_array(b, index_file, "<i8", &[None], 8, v));
    let loss_mask = mask_bytes.as_deref().and_then(|b| {
        let file = shard
            .files
            .loss_mask
            .as_ref()
            .map_or("", |d| d.path.as_str());
        open_array(b, file, "|b1", &[None, Some(l as u64)], 1, v)
    });
    let mask_ok = match (&loss_mask, layout.masked, &tokens) {
        (Some((_, mask_shape)), true, Some((_, tokens_shape))) if mask_shape != tokens_shape => {
            let file = shard
                .files
                .loss_mask
                .as_ref()
                .map_or("", |d| d.path.as_str());
            v.add(
                ViolationKind::ArrayFormat,
                file,
                None,
                None,
                format!("has shape {mask_shape:?}, but the tokens have {tokens_shape:?}"),
            );
            false
        }
        (None, true, _) => false,
        _ => true,
    };
    let (
        Some((tokens, tokens_shape)),
        Some((segments, segments_shape)),
        Some((sample_index, _)),
        true,
    ) = (tokens, segments, sample_index, mask_ok)
    else {
        give_up(
            &shard.name,
            "one of its files is missing or unreadable",
            documents,
            counted,
            v,
        );
        return;
    };

    let samples = tokens_shape[0];
    let rows_count = segments_shape[0];
    let index = npy::decode_i64(sample_index.data);
    if index.len() as u64 != samples + 1 {
        v.add(
            ViolationKind::SampleIndex,
            index_file,
            None,
            None,
            format!(
                "has {} entries, but the tokens hold {samples} samples, so it needs {}",
                index.len(),
                samples + 1
            ),
        );
        give_up(
            &shard.name,
            "its sample index does not fit its tokens",
            documents,
            counted,
            v,
        );
        return;
    }
    for (name, got, listed) in [
        ("samples", samples, shard.samples),
        ("segments", rows_count, shard.segments),
    ] {
        if got != listed {
            v.add(
                ViolationKind::Counts,
                MANIFEST_FILE,
                None,
                None,
                format!(
                    "{}: {name} is {listed}, but its arrays hold {got}",
                    shard.name
                ),
            );
        }
    }

    // The sample index must be usable before any sample can be read.
    let mut index_ok = true;
    if index[0] != 0 {
        v.add(
            ViolationKind::SampleIndex,
            index_file,
            Some(0),
            None,
            format!("starts at {}, not 0", index[0]),
        );
        index_ok = false;
    }
    for i in 0..samples as usize {
        if index[i + 1] < index[i] {
            v.add(
                ViolationKind::SampleIndex,
                index_file,
                Some(i as u64),
                None,
                format!(
                    "decreases from {} to {} after sample {i}",
                    index[i],
                    index[i + 1]
                ),
            );
            index_ok = false;
        }
    }
    if index[samples as usize] != rows_count as i64 {
        v.add(
            ViolationKind::SampleIndex,
            index_file,
            None,
            None,
            format!(
                "ends at {}, but the segments file has {rows_count} rows",
                index[samples as usize]
            ),
        );
        index_ok = false;
    }
    if !index_ok || index.iter().any(|&x| x < 0 || x as u64 > rows_count) {
        give_up(
            &shard.name,
            "its sample index is broken",
            documents,
            counted,
            v,
        );
        return;
    }

    let rows = npy::decode_i64(segments.data);
    let mask_file = shard
        .files
        .loss_mask
        .as_ref()
        .map_or("", |d| d.path.as_str());
    let mask_data = loss_mask.as_ref().map(|(view, _)| view.data);
    if let Some(data) = mask_data {
        if let Some(p) = data.iter().position(|&b| b > 1) {
            v.add(
                ViolationKind::ArrayFormat,
                mask_file,
                Some((p / l) as u64),
                None,
                format!(
                    "holds the byte {} at position {}, which is not a bool (0 or 1)",
                    data[p],
                    p % l
                ),
            );
        }
    }
    // With a loss mask, a chunk's tokens and their mask bits go into the document checks
    // together (`id | mask << 31`; ids are below 2^31), so a chunk's context must repeat both.
    let mut marked = Vec::with_capacity(l);
    let mut sample_tokens = Vec::with_capacity(l);
    let row_bytes = l * item;
    let (mut padding, mut context) = (0u64, 0u64);
    for i in 0..samples as usize {
        npy::decode_tokens_into(
            &tokens.data[i * row_bytes..(i + 1) * row_bytes],
            item,
            &mut sample_tokens,
        );
        let sample = i as u64;
        let out_of_range: Vec<usize> = sample_tokens
            .iter()
            .enumerate()
            .filter(|&(_, &t)| u64::from(t) >= layout.vocab_size)
            .map(|(p, _)| p)
            .collect();
        if let Some(&p) = out_of_range.first() {
            v.add(
                ViolationKind::TokenRange,
                tokens_file,
                Some(sample),
                None,
                format!(
                    "{} token ids are not below vocab_size {}; the first at position {p} is {}",
                    out_of_range.len(),
                    layout.vocab_size,
                    sample_tokens[p]
                ),
            );
        }

        let (lo, hi) = (index[i] as usize, index[i + 1] as usize);
        if lo == hi {
            v.add(
                ViolationKind::Tiling,
                segments_file,
                Some(sample),
                None,
                "the sample has no segments".to_string(),
            );
        }
        let mut at = 0i64;
        let mut padding_seen = false;
        for r in lo..hi {
            let row = &rows[r * 5..r * 5 + 5];
            let (start, len, ctx, doc, doc_start) = (row[0], row[1], row[2], row[3], row[4]);
            let mut report =
                |kind, message| v.add(kind, segments_file, Some(sample), Some(r as u64), message);
            if padding_seen {
                report(
                    ViolationKind::Padding,
                    "a segment follows the sample's padding segment; padding must be the last \
                     segment and there is at most one"
                        .to_string(),
                );
            }
            let mut usable = true;
            if start != at {
                report(
                    ViolationKind::Tiling,
                    format!("starts at {start}, but the previous segments end at {at}"),
                );
                usable = false;
            }
            if len < 1 {
                report(ViolationKind::Tiling, format!("has length {len}, below 1"));
                usable = false;
            }
            let end = start.checked_add(len);
            match end {
                Some(end) if start >= 0 && end <= l as i64 => {}
                _ => {
                    report(
                        ViolationKind::Tiling,
                        format!("covers [{start}, {start} + {len}), outside the sample's [0, {l})"),
                    );
                    usable = false;
                }
            }
            at = end.unwrap_or(i64::MAX).max(at);
            let span = || start as usize..(start + len) as usize;

            if doc == -1 {
                padding_seen = true;
                if ctx != 0 || doc_start != 0 {
                    report(
                        ViolationKind::Padding,
                        format!(
                            "padding has context {ctx} and doc_start {doc_start}; both must be 0"
                        ),
                    );
                }
                if usable {
                    padding += len as u64;
                    if let Some(data) = mask_data {
                        let row = &data[i * l..(i + 1) * l];
                        if let Some(p) = span().find(|&p| row[p] != 0) {
                            report(
                                ViolationKind::Padding,
                                format!("the loss mask is set on padding token {p}"),
                            );
                        }
                    }
                    let bad: Vec<usize> = span()
                        .filter(|&p| sample_tokens[p] != layout.pad_id)
                        .collect();
                    if let Some(&p) = bad.first() {
                        report(
                            ViolationKind::Padding,
                            format!(
                                "{} padding tokens are not pad_id {}; the first at position {p} \
                                 is {}",
                                bad.len(),
                                layout.pad_id,
                                sample_tokens[p]
                            ),
                        );
                    }
                }
                continue;
            }
            if doc < -1 {
                report(
                    ViolationKind::Segment,
                    format!("doc_id {doc} is negative but not -1 (padding)"),
                );
                continue;
            }
            if doc_start < 0 {
                report(
                    ViolationKind::Segment,
                    format!("doc_start {doc_start} is negative"),
                );
                usable = false;
            }
            if ctx < 0 || ctx >= len {
                report(
                    ViolationKind::Context,
                    format!(
                        "context {ctx} is not in [0, length {len}): a chunk has at least one \
                         target"
                    ),
                );
                usable = false;
            } else {
                context += ctx as u64;
                counted.target_tokens += match mask_data {
                    None => (len - ctx.max(1)) as u64,
                    Some(data) if usable => {
                        let row = &data[i * l..(i + 1) * l];
                        let first = start + ctx.max(1);
                        row[first as usize..(start + len) as usize]
                            .iter()
                            .filter(|&&b| b == 1)
                            .count() as u64
                    }
                    Some(_) => 0,
                };
            }
            if usable {
                let chunk = Chunk {
                    doc: doc as u64,
                    doc_start: doc_start as u64,
                    len: len as usize,
                    context: ctx as usize,
                };
                let chunk_tokens = match mask_data {
                    None => &sample_tokens[span()],
                    Some(data) => {
                        let row = &data[i * l..(i + 1) * l];
                        marked.clear();
                        marked.extend(
                            span().map(|p| sample_tokens[p] | (u32::from(row[p] == 1) << 31)),
                        );
                        &marked[..]
                    }
                };
                documents.chunk(
                    &chunk,
                    chunk_tokens,
                    *ordinal,
                    (shard_index, sample),
                    &mut report,
                );
            }
        }
        if at != l as i64 && lo < hi {
            v.add(
                ViolationKind::Tiling,
                segments_file,
                Some(sample),
                None,
                format!("the segments cover [0, {at}), not the sample's [0, {l})"),
            );
        }
        *ordinal += 1;
    }

    for (name, got, listed) in [
        ("padding_tokens", padding, shard.padding_tokens),
        ("context_tokens", context, shard.context_tokens),
    ] {
        if got != listed {
            v.add(
                ViolationKind::Counts,
                MANIFEST_FILE,
                None,
                None,
                format!(
                    "{}: {name} is {listed}, but its segments hold {got}",
                    shard.name
                ),
            );
        }
    }
    counted.samples += samples;
    counted.segments += rows_count;
    counted.padding_tokens += padding;
    counted.context_tokens += context;
}

/// A shard that cannot be read: its counts are unknown, and every document check after it would
/// report chunks as missing, so document checks stop here.
fn give_up(
    shard: &str,
    why: &str,
    documents: &mut Documents,
    counted: &mut Counted,
    v: &mut Violations,
) {
    counted.complete = false;
    if documents.enabled {
        documents.enabled = false;
        v.add(
            ViolationKind::Unchecked,
            MANIFEST_FILE,
            None,
            None,
            format!(
                "{shard} could not be checked ({why}), so the document checks (coverage, order, \
                 context tokens) stop there and the totals are not compared"
            ),
        );
    }
}

fn compare_totals(m: &Manifest, counted: &Counted, documents: &Documents, v: &mut Violations) {
    if !counted.complete {
        return;
    }
    let t = &m.totals;
    let mut checks = vec![
        ("samples", counted.samples, t.samples),
        ("padding_tokens", counted.padding_tokens, t.padding_tokens),
        ("context_tokens", counted.context_tokens, t.context_tokens),
        ("target_tokens", counted.target_tokens, t.target_tokens),
    ];
    if documents.enabled {
        checks.extend([
            (
                "documents - empty_documents",
                documents.seen,
                t.documents.saturating_sub(t.empty_documents),
            ),
            ("documents_split", documents.split, t.documents_split),
            ("document_tokens", documents.tokens, t.document_tokens),
        ]);
    }
    for (name, got, listed) in checks {
        if got != listed {
            v.add(
                ViolationKind::Counts,
                MANIFEST_FILE,
                None,
                None,
                format!("totals: {name} is {listed}, but the shards hold {got}"),
            );
        }
    }
}

/// A document segment as the checks need it.
struct Chunk {
    doc: u64,
    doc_start: u64,
    len: usize,
    context: usize,
}

/// A document whose latest chunk is a full `seq_len` chunk, so more may follow.
struct OpenChain {
    /// Document position where the next chunk's targets must begin.
    next_target: u64,
    /// Global sample number (over all shards in order) of the latest chunk.
    ordinal: u64,
    /// Where the latest chunk is: shard index and sample within it, for messages.
    shard: u32,
    sample: u64,
    /// SHA-256 (first 128 bits) of the latest chunk's last `overlap` tokens as little-endian u32.
    tail: [u8; 16],
    chunks: u64,
}

/// The cross-directory document checks (module doc: memory).
struct Documents {
    enabled: bool,
    seq_len: usize,
    overlap: Option<usize>,
    limit: u64,
    open: FxHashMap<u64, OpenChain>,
    /// One bit per document id: set once the document has ended.
    ended: Vec<u64>,
    peak_open: usize,
    seen: u64,
    split: u64,
    tokens: u64,
}

fn tail_hash(tokens: &[u32]) -> [u8; 16] {
    let mut h = Sha256::new();
    for t in tokens {
        h.update(t.to_le_bytes());
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

impl Documents {
    fn new(layout: &Layout) -> Self {
        Documents {
            enabled: true,
            seq_len: layout.seq_len,
            overlap: layout.overlap,
            limit: layout.documents,
            open: FxHashMap::default(),
            ended: Vec::new(),
            peak_open: 0,
            seen: 0,
            split: 0,
            tokens: 0,
        }
    }

    fn has_ended(&self, doc: u64) -> bool {
        self.ended
            .get((doc / 64) as usize)
            .is_some_and(|w| w & (1 << (doc % 64)) != 0)
    }

    fn mark_ended(&mut self, doc: u64) {
        let word = (doc / 64) as usize;
        if self.ended.len() <= word {
            self.ended.resize(word + 1, 0);
        }
        self.ended[word] |= 1 << (doc % 64);
    }

    /// One document segment, in file order. `tokens` are the segment's tokens; `at` is its
    /// shard index and sample for messages.
    fn chunk(
        &mut self,
        c: &Chunk,
        tokens: &[u32],
        ordinal: u64,
        at: (usize, u64),
        report: &mut impl FnMut(ViolationKind, String),
    ) {
        if !self.enabled {
            return;
        }
        let doc = c.doc;
        if doc >= self.limit {
            report(
                ViolationKind::Coverage,
                format!("doc_id {doc} is not below totals.documents {}", self.limit),
            );
            return;
        }
        self.tokens += (c.len - c.context) as u64;
        if self.has_ended(doc) {
            report(
                ViolationKind::Coverage,
                format!(
                    "document {doc} appears again after its last chunk (a chunk shorter than \
                     seq_len {} ends a document): a duplicate or out-of-order chunk",
                    self.seq_len
                ),
            );
            return;
        }
        match self.open.get(&doc) {
            None => {
                self.seen += 1;
                if c.doc_start != 0 {
                    report(
                        ViolationKind::Coverage,
                        format!(
                            "the first chunk of document {doc} in file order starts at {}, not \
                             0: an earlier chunk is missing or comes later",
                            c.doc_start
                        ),
                    );
                }
                if c.context != 0 {
                    report(
                        ViolationKind::Context,
                        format!(
                            "the first chunk of document {doc} has context {}, expected 0",
                            c.context
                        ),
                    );
                }
            }
            Some(prev) => {
                let previous =
                    format!("{} sample {}", shard_name(prev.shard as usize), prev.sample);
                if ordinal <= prev.ordinal {
                    report(
                        ViolationKind::Order,
                        format!(
                            "document {doc} has two chunks in one sample (the other one ends at \
                             position {})",
                            prev.next_target
                        ),
                    );
                }
                let first_target = c.doc_start + c.context as u64;
                if first_target != prev.next_target {
                    let what = if first_target < prev.next_target {
                        format!(
                            "overlaps its previous chunk ({previous}): positions {} to {} would \
                             be targets twice",
                            first_target.max(1),
                            prev.next_target - 1
                        )
                    } else {
                        format!(
                            "leaves a gap after its previous chunk ({previous}): positions {} to \
                             {} are never targets",
                            prev.next_target,
                            first_target - 1
                        )
                    };
                    report(
                        ViolationKind::Coverage,
                        format!(
                            "the chunk of document {doc} at doc_start {} with context {} {what}",
                            c.doc_start, c.context
                        ),
                    );
                }
                match self.overlap {
                    Some(o) if c.context != o => report(
                        ViolationKind::Context,
                        format!(
                            "a later chunk of document {doc} has context {}, but overlap_tokens \
                             is {o}",
                            c.context
                        ),
                    ),
                    Some(o) if tail_hash(&tokens[..o]) != prev.tail => report(
                        ViolationKind::ContextTokens,
                        format!(
                            "the {o} context tokens of this chunk of document {doc} differ from \
                             the last {o} tokens of its previous chunk ({previous})"
                        ),
                    ),
                    _ => {}
                }
                if prev.chunks == 1 {
                    self.split += 1;
                }
            }
        }

        if c.len == self.seq_len {
            let chunks = self.open.get(&doc).map_or(0, |p| p.chunks) + 1;
            let tail = match self.overlap {
                Some(o) => tail_hash(&tokens[c.len - o..]),
                None => [0; 16],
            };
            self.open.insert(
                doc,
                OpenChain {
                    next_target: c.doc_start + c.len as u64,
                    ordinal,
                    shard: at.0 as u32,
                    sample: at.1,
                    tail,
                    chunks,
                },
            );
            self.peak_open = self.peak_open.max(self.open.len());
        } else {
            self.open.remove(&doc);
            self.mark_ended(doc);
        }
    }
}

/// A partitioned run's directory (`partitions` in the manifest): each partition is checked as a
/// shard directory of its own, and the manifest must be exactly what its partitions' manifests
/// make ([`crate::data::partition::merge_manifests`]).
fn verify_partitioned(
    dir: &Path,
    manifest: &Manifest,
    partitions: &[super::PartitionEntry],
    tokenizer: Option<&crate::Tokenizer>,
    manifest_bytes: u64,
) -> Result<VerifyReport, VerifyError> {
    let mut v = Violations::default();
    let mut report = VerifyReport {
        shards: 0,
        samples: 0,
        segments: 0,
        documents: 0,
        bytes: manifest_bytes,
        peak_open_documents: 0,
    };
    let mut parts = Vec::new();
    for (i, entry) in partitions.iter().enumerate() {
        let expected = crate::data::partition::partition_name(i);
        if entry.name != expected {
            v.manifest(format!(
                "partitions[{i}].name is {:?}, expected {expected:?}",
                entry.name
            ));
            continue;
        }
        let sub = dir.join(&entry.name);
        match verify_dir_with(&sub, tokenizer) {
            Ok(r) => {
                report.shards += r.shards;
                report.samples += r.samples;
                report.segments += r.segments;
                report.documents += r.documents;
                report.bytes += r.bytes;
                report.peak_open_documents = report.peak_open_documents.max(r.peak_open_documents);
            }
            Err(e) => {
                for violation in e.violations {
                    let file = format!("{}/{}", entry.name, violation.file);
                    v.add(
                        violation.kind,
                        &file,
                        violation.sample,
                        violation.segment,
                        violation.message,
                    );
                }
                v.omitted += e.omitted;
            }
        }
        match fs::read(sub.join(MANIFEST_FILE))
            .ok()
            .and_then(|b| Manifest::from_json(&b).ok())
        {
            Some(m) => parts.push((entry.name.clone(), m)),
            None => v.manifest(format!("partition {} has no readable manifest", entry.name)),
        }
    }
    if parts.len() == partitions.len() {
        match crate::data::partition::merge_manifests(&parts) {
            Err(why) => v.manifest(why),
            Ok(merged) => {
                let fields: [(&str, bool); 7] = [
                    (
                        "format",
                        merged.format == manifest.format
                            && merged.format_version == manifest.format_version,
                    ),
                    ("tokenizer", merged.tokenizer == manifest.tokenizer),
                    ("options", merged.options == manifest.options),
                    ("inputs", merged.inputs == manifest.inputs),
                    ("partitions", merged.partitions == manifest.partitions),
                    ("shards", merged.shards == manifest.shards),
                    ("totals", merged.totals == manifest.totals),
                ];
                for (field, same) in fields {
                    if !same {
                        v.manifest(format!(
                            "{field} is not what the partitions' manifests make together"
                        ));
                    }
                }
                if merged.token_dtype != manifest.token_dtype {
                    v.manifest("token_dtype is not the partitions' one".to_owned());
                }
            }
        }
        if manifest.options.partition_size.is_none() {
            v.manifest("a manifest with partitions has no options.partition_size".to_owned());
        }
    }
    if v.is_empty() {
        Ok(report)
    } else {
        Err(v.into_error(dir))
    }
}
