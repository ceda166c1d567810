//! Shard directories: the on-disk form of packed samples that `docs/shard-format.md` specifies.
//! This module owns writing a directory ([`ShardWriter`]), its manifest ([`Manifest`], with the
//! streaming SHA-256 helpers that fill it), checking a finished directory against every invariant
//! of the format ([`verify_dir`]), and summarising one ([`inspect_dir`]).
//!
//! A shard is three `.npy` files (version 1.0 headers, little-endian): the tokens `[S, L]`, the
//! segment rows `[G, 5]` and the sample index `[S + 1]`. `manifest.json` is written last; a
//! directory without it is unfinished.

mod inspect;
mod manifest;
mod npy;
mod resume;
mod verify;
mod writer;

use serde::{Deserialize, Serialize};

pub use inspect::{check_dir_tokenizer, inspect_dir, read_manifest, LengthBucket, Summary};
pub use manifest::{
    hash_file, tokenizer_sha256, ChatOptions, FileDigest, FileHash, HashingReader, InputFile,
    InputOptions, Manifest, ManifestOptions, PartitionEntry, ShardEntry, ShardFiles, TokenizerInfo,
    Totals,
};
pub use resume::{input_stats, Checkpoint, InputStat, Position, WriterTotals, RESUME_FORMAT};
pub use verify::{
    verify_dir, verify_dir_with, VerifyError, VerifyReport, Violation, ViolationKind,
};
pub use writer::{
    check_pad_id, ManifestInfo, ShardError, ShardWriter, ShardWriterOptions,
    DEFAULT_SAMPLES_PER_SHARD, MAX_SAMPLES_PER_SHARD, MAX_SHARD_TOKENS,
};
pub(crate) use writer::{sync_dir, write_atomically};

/// Checks that `tok` is the tokenizer a manifest records (`info`): the same model file (SHA-256)
/// and vocabulary size. A mismatch names both hashes (first 12 hex digits) and both sizes.
pub fn check_tokenizer(info: &TokenizerInfo, tok: &crate::Tokenizer) -> Result<(), ShardError> {
    let sha256 = tokenizer_sha256(tok);
    let vocab_size = tok.vocab_size() as u64;
    if info.sha256 == sha256 && info.vocab_size == vocab_size {
        return Ok(());
    }
    Err(ShardError::TokenizerMismatch {
        manifest_sha256: info.sha256.clone(),
        manifest_vocab_size: info.vocab_size,
        tokenizer_sha256: sha256,
        tokenizer_vocab_size: vocab_size,
    })
}

/// The value of the manifest's `format` field.
pub const FORMAT: &str = "bpetok-shards";

/// The value of the manifest's `format_version` field that this module writes and checks.
pub const FORMAT_VERSION: u64 = 1;

/// The manifest's file name inside a shard directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The file of an unfinished packing run that `bpetok pack --resume` continues from
/// ([`Checkpoint`]); removed once the manifest is written.
pub const RESUME_FILE: &str = "resume.json";

/// Columns of a `*.segments.npy` row, in order.
pub const SEGMENT_COLUMNS: [&str; 5] = ["start", "length", "context", "doc_id", "doc_start"];

/// The unsigned dtype of `*.tokens.npy`: the smallest that holds every id of the vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    /// `<u2`, for vocabularies of at most 65,536 pieces.
    Uint16,
    /// `<u4`, for larger vocabularies (up to 2^32 pieces).
    Uint32,
}

impl TokenDtype {
    /// `uint16` or `uint32`, by [`crate::tokenizer::id_bytes_for_vocab`]; `None` for an empty
    /// vocabulary or one with more than 2^32 pieces.
    pub fn for_vocab_size(vocab_size: u64) -> Option<Self> {
        match crate::tokenizer::id_bytes_for_vocab(vocab_size)? {
            2 => Some(TokenDtype::Uint16),
            _ => Some(TokenDtype::Uint32),
        }
    }

    /// The NumPy type string of the array (`<u2` or `<u4`).
    pub fn descr(self) -> &'static str {
        match self {
            TokenDtype::Uint16 => "<u2",
            TokenDtype::Uint32 => "<u4",
        }
    }

    /// The manifest's name for it (`uint16` or `uint32`).
    pub fn name(self) -> &'static str {
        match self {
            TokenDtype::Uint16 => "uint16",
            TokenDtype::Uint32 => "uint32",
        }
    }

    /// Bytes per token.
    pub fn size(self) -> usize {
        match self {
            TokenDtype::Uint16 => 2,
            TokenDtype::Uint32 => 4,
        }
    }
}

/// The three arrays of a shard, as the suffixes after its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShardFile {
    Tokens,
    Segments,
    SampleIndex,
    /// Only in outputs of conversations (`bpetok pack --chat`).
    LossMask,
}

impl ShardFile {
    pub(crate) const ALL: [ShardFile; 4] = [
        ShardFile::Tokens,
        ShardFile::Segments,
        ShardFile::SampleIndex,
        ShardFile::LossMask,
    ];

    pub(crate) fn suffix(self) -> &'static str {
        match self {
            ShardFile::Tokens => ".tokens.npy",
            ShardFile::Segments => ".segments.npy",
            ShardFile::SampleIndex => ".sample_index.npy",
            ShardFile::LossMask => ".loss_mask.npy",
        }
    }

    pub(crate) fn file_name(self, shard_name: &str) -> String {
        format!("{shard_name}{}", self.suffix())
    }
}

/// `shard-NNNNN`: the name of the shard with this index (five digits, more past 99,999).
pub fn shard_name(index: usize) -> String {
    format!("shard-{index:05}")
}

/// Whether `name` is a final shard file name: `shard-` and five or more digits, then one of the
/// three suffixes.
pub(crate) fn is_shard_file_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("shard-") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits >= 5 && ShardFile::ALL.iter().any(|f| &rest[digits..] == f.suffix())
}

/// The temporary name a final file is written under before it is renamed into place.
pub(crate) fn temporary_name(final_name: &str) -> String {
    format!(".{final_name}.tmp")
}

/// Whether `name` is a temporary of this module: a shard file's, the manifest's or the resume
/// file's.
pub(crate) fn is_temporary_name(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .is_some_and(|n| n == MANIFEST_FILE || n == RESUME_FILE || is_shard_file_name(n))
}

/// Whether a manifest path is a plain file name inside the directory (no separator, not `.` or
/// `..`), so nothing outside the directory is ever read or removed.
/// Whether `path` may be listed in a manifest: a plain file name, or in a partitioned run's
/// manifest `part-NNNNN/` and a plain file name.
pub(crate) fn is_listed_path(path: &str, partitioned: bool) -> bool {
    if partitioned {
        if let Some((part, rest)) = path.split_once('/') {
            return crate::data::partition::is_partition_dir_name(part) && is_plain_file_name(rest);
        }
    }
    is_plain_file_name(path)
}

pub(crate) fn is_plain_file_name(path: &str) -> bool {
    !path.is_empty()
        && path != "."
        && path != ".."
        && !path.contains('/')
        && !path.contains('\\')
        && !path.contains('\0')
}
