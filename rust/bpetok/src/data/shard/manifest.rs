//! `manifest.json`: its structure (field order is the serialisation order, as the format
//! prescribes) and the streaming SHA-256 helpers that fill in file sizes and hashes.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::TokenDtype;

/// The whole manifest. Field order here is the key order in the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`super::FORMAT`].
    pub format: String,
    /// Always [`super::FORMAT_VERSION`] for what this module writes.
    pub format_version: u64,
    pub tokenizer: TokenizerInfo,
    pub options: ManifestOptions,
    pub token_dtype: TokenDtype,
    pub inputs: Vec<InputFile>,
    /// A partitioned run (`options.partition_size`): its partitions in order, each a complete
    /// shard directory of its own (`docs/distributed.md`). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<PartitionEntry>>,
    pub shards: Vec<ShardEntry>,
    pub totals: Totals,
}

/// One partition of a partitioned run: the subdirectory that holds it, and how many of the
/// manifest's `inputs` and `shards` (the next ones, in order) are its.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionEntry {
    /// `part-NNNNN`, the partition's index counted from 0.
    pub name: String,
    pub inputs: u64,
    pub shards: u64,
    pub documents: u64,
    pub samples: u64,
}

/// Which tokenizer made the ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerInfo {
    /// Lowercase hex SHA-256 of the model file (see [`hash_file`]).
    pub sha256: String,
    pub vocab_size: u64,
    /// `null` when the model has no BOS piece.
    pub bos_id: Option<u32>,
    /// `null` when the model has no EOS piece.
    pub eos_id: Option<u32>,
}

/// Every option that changes the output, as used (after defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestOptions {
    pub seq_len: u64,
    pub window: u64,
    /// The overlap asked for; `null` for the default.
    pub overlap: Option<u64>,
    /// The overlap applied: `max(1, overlap or its default)` (docs/packing.md).
    pub overlap_tokens: u64,
    pub pack_buffer: u64,
    pub seed: u64,
    /// Whether documents got a BOS token.
    pub bos: bool,
    /// Whether documents got an EOS token.
    pub eos: bool,
    pub pad_id: u32,
    pub samples_per_shard: u64,
    /// `bpetok pack --partition-size`: the inputs were cut into partitions of about this many
    /// bytes, each packed alone (`docs/distributed.md`). Absent for a run packed as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_size: Option<u64>,
    /// How the inputs were read.
    pub input: InputOptions,
    /// Conversations (`bpetok pack --chat`): the instruct format and which tokens are targets.
    /// Absent for documents of text, so their manifests are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatOptions>,
}

/// How conversations were encoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatOptions {
    /// `v1`, `v2` or `v3`.
    pub format: String,
    /// `assistant` or `all`.
    pub train_on: String,
}

impl ManifestOptions {
    /// The options of a run as the manifest records them: the packer's (after defaults), BOS and
    /// EOS, samples per shard and the input options.
    pub fn new(
        pack: &crate::data::pack::PackOptions,
        bos: bool,
        eos: bool,
        samples_per_shard: usize,
        input: InputOptions,
    ) -> Self {
        ManifestOptions {
            seq_len: pack.seq_len as u64,
            window: pack.window as u64,
            overlap: pack.overlap.map(|o| o as u64),
            overlap_tokens: pack.overlap_tokens() as u64,
            pack_buffer: pack.pack_buffer as u64,
            seed: pack.seed,
            bos,
            eos,
            pad_id: pack.pad_id,
            samples_per_shard: samples_per_shard as u64,
            partition_size: None,
            input,
            chat: None,
        }
    }
}

/// The input-reading options of a run, as the manifest records them (keys in this order, which
/// is alphabetical, as the format has always written them). A manifest from before these were
/// fixed may lack some (`{}`): they read as the defaults, and unknown keys are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InputOptions {
    /// What invalid UTF-8 did: `strict` (an error) or `replace` (U+FFFD).
    pub errors: String,
    /// The JSONL field that holds the text.
    pub field: String,
    /// The input format asked for: `auto` (from each file's name), `jsonl`, `text` or `parquet`.
    pub input_format: String,
    /// Text inputs: one document per line instead of one per file.
    pub lines: bool,
    /// Bad records were counted and passed over instead of stopping the run (written only when
    /// set, so manifests of runs without it are unchanged).
    #[serde(skip_serializing_if = "is_false")]
    pub skip_bad_records: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

impl Default for InputOptions {
    /// The command line's defaults: `strict`, `text`, `auto`, one document per file, no
    /// skipping.
    fn default() -> Self {
        InputOptions {
            errors: "strict".to_owned(),
            field: "text".to_owned(),
            input_format: "auto".to_owned(),
            lines: false,
            skip_bad_records: false,
        }
    }
}

/// Lowercase hex SHA-256 of the tokenizer's model file (`tok.model_bytes()`): what the manifest's
/// `tokenizer.sha256` holds. The one place this is computed.
pub fn tokenizer_sha256(tok: &crate::Tokenizer) -> String {
    sha256_hex(tok.model_bytes())
}

impl TokenizerInfo {
    /// The manifest's record of `tok`: its model's SHA-256, vocabulary size, BOS and EOS ids.
    pub fn of(tok: &crate::Tokenizer) -> Self {
        TokenizerInfo {
            sha256: tokenizer_sha256(tok),
            vocab_size: tok.vocab_size() as u64,
            bos_id: tok.bos_id(),
            eos_id: tok.eos_id(),
        }
    }
}

/// One input file, in the order read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    /// The path as given (`-` for standard input).
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// Documents (records) it contributed, empty ones included.
    pub documents: u64,
    /// Records passed over as bad (`skip_bad_records`); absent when that was not asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_records: Option<u64>,
    /// A partition's part of the file (`{"bytes": [start, end]}` or `{"row_groups": [start,
    /// end]}`); then `size` and `sha256` are those of the bytes read. Absent for a whole file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<crate::data::input::InputRange>,
}

impl InputFile {
    pub fn new(path: impl Into<String>, hash: FileHash, documents: u64) -> Self {
        InputFile {
            path: path.into(),
            size: hash.size,
            sha256: hash.sha256,
            documents,
            skipped_records: None,
            range: None,
        }
    }
}

/// One shard: its counts and its three files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// `shard-NNNNN`, the shard's index counted from 0.
    pub name: String,
    pub samples: u64,
    /// Segment rows.
    pub segments: u64,
    /// `samples * seq_len`.
    pub tokens: u64,
    pub padding_tokens: u64,
    pub context_tokens: u64,
    pub files: ShardFiles,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardFiles {
    pub tokens: FileDigest,
    pub segments: FileDigest,
    pub sample_index: FileDigest,
    /// Outputs of conversations only (`options.chat`): which tokens may be targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_mask: Option<FileDigest>,
}

impl ShardFiles {
    /// Every file of the shard, the loss mask last when there is one.
    pub fn all(&self) -> impl Iterator<Item = &FileDigest> {
        [&self.tokens, &self.segments, &self.sample_index]
            .into_iter()
            .chain(self.loss_mask.as_ref())
    }
}

/// A file inside the directory: its path relative to the directory, size in bytes, SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Totals over the whole output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Documents read, empty ones included.
    pub documents: u64,
    /// Documents with no tokens (absent from the shards).
    pub empty_documents: u64,
    /// Documents cut into more than one chunk.
    pub documents_split: u64,
    /// Document tokens, each counted once (context repeats not included).
    pub document_tokens: u64,
    pub samples: u64,
    pub padding_tokens: u64,
    pub context_tokens: u64,
    pub target_tokens: u64,
}

impl Totals {
    /// Field by field `self + other`, or the name of the first field whose sum passes
    /// `u64::MAX` (only edited manifests can say so). Every field is named here, so a new one
    /// cannot be left out of the sum.
    pub fn checked_add(&self, other: &Totals) -> Result<Totals, &'static str> {
        let Totals {
            documents,
            empty_documents,
            documents_split,
            document_tokens,
            samples,
            padding_tokens,
            context_tokens,
            target_tokens,
        } = *other;
        let add = |field: &'static str, a: u64, b: u64| a.checked_add(b).ok_or(field);
        Ok(Totals {
            documents: add("documents", self.documents, documents)?,
            empty_documents: add("empty_documents", self.empty_documents, empty_documents)?,
            documents_split: add("documents_split", self.documents_split, documents_split)?,
            document_tokens: add("document_tokens", self.document_tokens, document_tokens)?,
            samples: add("samples", self.samples, samples)?,
            padding_tokens: add("padding_tokens", self.padding_tokens, padding_tokens)?,
            context_tokens: add("context_tokens", self.context_tokens, context_tokens)?,
            target_tokens: add("target_tokens", self.target_tokens, target_tokens)?,
        })
    }
}

impl Manifest {
    /// The bytes of `manifest.json`: two-space indented JSON in field order, then a newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes =
            serde_json::to_vec_pretty(self).expect("a manifest always serialises to JSON");
        bytes.push(b'\n');
        bytes
    }

    /// Parses `manifest.json` bytes (no checks beyond the structure; [`super::verify_dir`] checks).
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }
}

/// Size and lowercase hex SHA-256 of some bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHash {
    pub size: u64,
    pub sha256: String,
}

/// Size and SHA-256 of a file, read as a stream (for inputs and for the model file).
pub fn hash_file(path: impl AsRef<Path>) -> io::Result<FileHash> {
    let mut reader = HashingReader::new(File::open(path)?);
    io::copy(&mut reader, &mut io::sink())?;
    Ok(reader.hash())
}

/// A reader that hashes what passes through it, so an input (standard input included) is
/// hashed while it is parsed, in one pass.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Size and SHA-256 of everything read so far.
    pub fn hash(&self) -> FileHash {
        FileHash {
            size: self.size,
            sha256: hex(&self.hasher.clone().finalize()),
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// A writer that hashes what passes through it (the shard files are hashed as they are written).
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    pub(crate) fn finish(self) -> (W, FileHash) {
        let hash = FileHash {
            size: self.size,
            sha256: hex(&self.hasher.finalize()),
        };
        (self.inner, hash)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// SHA-256 of `bytes` as lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Whether `s` looks like what this format writes for a hash: 64 lowercase hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::Totals;

    /// Sets one field of a `Totals`.
    type Setter = fn(&mut Totals);

    #[test]
    fn totals_add_field_by_field_and_name_the_field_that_overflows() {
        let one = |f: Setter| {
            let mut t = Totals::default();
            f(&mut t);
            t
        };
        let a = Totals {
            documents: 1,
            empty_documents: 2,
            documents_split: 3,
            document_tokens: 4,
            samples: 5,
            padding_tokens: 6,
            context_tokens: 7,
            target_tokens: 8,
        };
        let sum = a.checked_add(&a).unwrap();
        assert_eq!(
            [
                sum.documents,
                sum.empty_documents,
                sum.documents_split,
                sum.document_tokens,
                sum.samples,
                sum.padding_tokens,
                sum.context_tokens,
                sum.target_tokens
            ],
            [2, 4, 6, 8, 10, 12, 14, 16]
        );
        let fields: [(&str, Setter); 8] = [
            ("documents", |t| t.documents = u64::MAX),
            ("empty_documents", |t| t.empty_documents = u64::MAX),
            ("documents_split", |t| t.documents_split = u64::MAX),
            ("document_tokens", |t| t.document_tokens = u64::MAX),
            ("samples", |t| t.samples = u64::MAX),
            ("padding_tokens", |t| t.padding_tokens = u64::MAX),
            ("context_tokens", |t| t.context_tokens = u64::MAX),
            ("target_tokens", |t| t.target_tokens = u64::MAX),
        ];
        for (name, set) in fields {
            assert_eq!(one(set).checked_add(&a), Err(name));
        }
    }
}
