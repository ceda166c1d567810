//! [`ShardWriter`]: streams each shard's tokens into its `.npy` under a temporary name as samples
//! come, and completes a full shard (final header, fsync, hash, rename, the two index files) on a
//! background thread while the next one fills; `manifest.json` is written last, so a directory
//! that has a manifest is complete and one without is visibly unfinished.

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::manifest::HashingWriter;
use super::npy::{self, LittleEndian};
use super::resume::WriterTotals;
use super::{
    is_plain_file_name, is_shard_file_name, is_temporary_name, shard_name, temporary_name,
    ChatOptions, FileDigest, InputFile, InputOptions, Manifest, ManifestOptions, ShardEntry,
    ShardFile, ShardFiles, TokenDtype, TokenizerInfo, Totals, FORMAT, FORMAT_VERSION,
    MANIFEST_FILE, RESUME_FILE,
};
use crate::data::error::OptionsError;
use crate::data::pack::{check_seq_len, PackOptions, PackStats, Sample};

/// Samples per shard unless set otherwise: 8192 samples of 4096 `uint16` tokens is 64 MiB.
pub const DEFAULT_SAMPLES_PER_SHARD: usize = 8192;

/// The most samples a shard may hold: 2^24.
pub const MAX_SAMPLES_PER_SHARD: usize = 1 << 24;

/// The most tokens a shard may hold, `samples_per_shard * seq_len`: 2^31 (4 GiB of `uint16`).
pub const MAX_SHARD_TOKENS: usize = 1 << 31;

/// What can go wrong writing, checking or inspecting a shard directory. Each message names the
/// path or value at fault; how to fix it (which flag, which option) is the caller's to say, from
/// [`ShardError::kind`].
#[derive(Debug, Error)]
pub enum ShardError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The directory already holds an output of this format, and replacing it was not asked for.
    #[error("{} already holds a shard output ({found})", dir.display())]
    DirectoryInUse { dir: PathBuf, found: String },

    /// The directory holds an unfinished packing run (`resume.json`), and neither resuming nor
    /// replacing it was asked for.
    #[error("{} holds an unfinished packing run ({})", dir.display(), found.as_deref().unwrap_or(RESUME_FILE))]
    UnfinishedRun {
        dir: PathBuf,
        /// What shows it, when not `resume.json` (the partitions of a partitioned run).
        found: Option<String>,
    },

    /// A resume found the directory or its inputs not as the interrupted run left them.
    #[error("cannot resume the run in {}: {reason}", dir.display())]
    CannotResume { dir: PathBuf, reason: String },

    /// The output path names something that is not a directory (a file).
    #[error("{} exists and is not a directory", path.display())]
    NotADirectory { path: PathBuf },

    #[error(
        "{}: cannot replace the output there: its manifest.json does not parse ({reason}), so \
         which files belong to it is unknown",
        dir.display()
    )]
    UnreadableOldManifest { dir: PathBuf, reason: String },

    /// An option of the writer is out of bounds.
    #[error(transparent)]
    Options(#[from] OptionsError),

    #[error("sample {sample} cannot be written: {reason}")]
    InvalidSample { sample: u64, reason: String },

    #[error("the manifest does not match what was written: {0}")]
    ManifestMismatch(String),

    #[error("an earlier shard write failed, so this output is incomplete")]
    Failed,

    #[error("{}: not a readable shard directory: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },

    /// The shards were made by another tokenizer than the one given.
    #[error(
        "the shards were made by another tokenizer: theirs has sha256 {}... and {} pieces, this \
         one {}... and {} pieces",
        short_sha(manifest_sha256),
        manifest_vocab_size,
        short_sha(tokenizer_sha256),
        tokenizer_vocab_size
    )]
    TokenizerMismatch {
        manifest_sha256: String,
        manifest_vocab_size: u64,
        tokenizer_sha256: String,
        tokenizer_vocab_size: u64,
    },
}

/// The first 12 hex digits of a SHA-256, for messages.
fn short_sha(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

impl ShardError {
    /// A stable snake_case name of the variant (`invalid_option` for an option error).
    pub fn kind(&self) -> &'static str {
        match self {
            ShardError::Io { .. } => "io",
            ShardError::DirectoryInUse { .. } => "directory_in_use",
            ShardError::UnfinishedRun { .. } => "unfinished_run",
            ShardError::CannotResume { .. } => "cannot_resume",
            ShardError::NotADirectory { .. } => "not_a_directory",
            ShardError::UnreadableOldManifest { .. } => "unreadable_old_manifest",
            ShardError::Options(e) => e.kind(),
            ShardError::InvalidSample { .. } => "invalid_sample",
            ShardError::ManifestMismatch(_) => "manifest_mismatch",
            ShardError::Failed => "failed",
            ShardError::Unreadable { .. } => "unreadable",
            ShardError::TokenizerMismatch { .. } => "tokenizer_mismatch",
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ShardError + '_ {
    move |source| ShardError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How a [`ShardWriter`] lays out its output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardWriterOptions {
    /// Pieces in the vocabulary: every token id must be below it, and it picks the token dtype.
    pub vocab_size: u64,
    /// Tokens per sample, L.
    pub seq_len: usize,
    /// Samples per shard (the last shard may hold fewer). Memory is one shard's sample index (8
    /// bytes a sample); tokens and segment rows are written as they come.
    pub samples_per_shard: usize,
    /// The id padding tokens hold (below `vocab_size`).
    pub pad_id: u32,
    /// Replace an existing output in the directory: remove the files its manifest lists and any
    /// stale temporaries, nothing else.
    pub overwrite: bool,
}

impl ShardWriterOptions {
    /// [`DEFAULT_SAMPLES_PER_SHARD`] samples per shard, no overwrite.
    pub fn new(vocab_size: u64, seq_len: usize, pad_id: u32) -> Self {
        ShardWriterOptions {
            vocab_size,
            seq_len,
            samples_per_shard: DEFAULT_SAMPLES_PER_SHARD,
            pad_id,
            overwrite: false,
        }
    }

    /// The token dtype: `uint16` for vocabularies of at most 65,536 pieces, else `uint32`.
    pub fn token_dtype(&self) -> Option<TokenDtype> {
        TokenDtype::for_vocab_size(self.vocab_size)
    }

    /// Checks the options: a vocabulary of 1 to 2^32 pieces, `seq_len` in
    /// `2..=`[`crate::data::pack::MAX_SEQ_LEN`], `samples_per_shard` in
    /// `1..=`[`MAX_SAMPLES_PER_SHARD`] and at most [`MAX_SHARD_TOKENS`] tokens per shard, `pad_id`
    /// below `vocab_size`. Returns the token dtype.
    pub fn validate(&self) -> Result<TokenDtype, OptionsError> {
        let Some(dtype) = self.token_dtype() else {
            return Err(OptionsError::new(
                "vocab_size",
                format!(
                    "{} is not between 1 and 4294967296 (2^32), the vocabularies the token dtypes \
                     hold",
                    self.vocab_size
                ),
            ));
        };
        check_seq_len(self.seq_len)?;
        let samples = self.samples_per_shard;
        if samples == 0 {
            return Err(OptionsError::new(
                "samples_per_shard",
                "0 is too small: a shard holds at least one sample",
            ));
        }
        if samples > MAX_SAMPLES_PER_SHARD {
            return Err(OptionsError::new(
                "samples_per_shard",
                format!(
                    "{samples} is more than the {MAX_SAMPLES_PER_SHARD} samples a shard may hold \
                     (the writer keeps a shard's sample index in memory)"
                ),
            ));
        }
        // Both factors are at most 2^24 and 2^20 here, so the product fits.
        let tokens = samples * self.seq_len;
        if tokens > MAX_SHARD_TOKENS {
            return Err(OptionsError::new(
                "samples_per_shard",
                format!(
                    "{samples} samples of {} tokens is {tokens} tokens, more than the \
                     {MAX_SHARD_TOKENS} tokens a shard may hold (a shard is one file, read and \
                     hashed whole); at most {} samples fit at this sample length",
                    self.seq_len,
                    MAX_SHARD_TOKENS / self.seq_len
                ),
            ));
        }
        check_pad_id(u64::from(self.pad_id), self.vocab_size)?;
        Ok(dtype)
    }
}

/// `pad_id` must be an id of the vocabulary: padding holds a real token id (never a target).
pub fn check_pad_id(pad_id: u64, vocab_size: u64) -> Result<u32, OptionsError> {
    match u32::try_from(pad_id) {
        Ok(id) if pad_id < vocab_size => Ok(id),
        _ => Err(OptionsError::new(
            "pad_id",
            format!(
                "{pad_id} is not an id of the vocabulary of {vocab_size} pieces (ids 0 to {})",
                vocab_size.saturating_sub(1)
            ),
        )),
    }
}

/// What the writer cannot know by itself, given to [`ShardWriter::finish`] for the manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct ManifestInfo {
    pub tokenizer: TokenizerInfo,
    /// The packer's options; `seq_len` and `pad_id` must be the writer's.
    pub pack: PackOptions,
    /// Whether documents got a BOS / an EOS token.
    pub bos: bool,
    pub eos: bool,
    /// Input-reading options for `options.input`.
    pub input_options: InputOptions,
    /// Input files in the order read.
    pub inputs: Vec<InputFile>,
    /// The packer's final statistics ([`crate::data::Packer::finish`]). Its sample, padding, context
    /// and target counts must equal what the writer was given.
    pub stats: PackStats,
    /// Conversations: how they were encoded (`options.chat`); `None` for documents of text.
    pub chat: Option<ChatOptions>,
    /// One partition of a partitioned run: the run's partition size (`options.partition_size`).
    pub partition_size: Option<u64>,
}

/// Writes packed samples into a shard directory (`docs/shard-format.md`).
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bpetok::data::pack::{PackOptions, Packer};
/// use bpetok::data::shard::{ManifestInfo, ShardWriter, ShardWriterOptions, TokenizerInfo};
/// let opts = PackOptions::new(4096, 4096);
/// let mut writer = ShardWriter::create("out", ShardWriterOptions::new(32000, 4096, 0))?;
/// let mut packer = Packer::new(opts.clone())?;
/// packer.push_document(0, &[1, 50, 51, 2], |s| writer.write_sample(&s))?;
/// let stats = packer.finish(|s| writer.write_sample(&s))?;
/// let tokenizer = TokenizerInfo { sha256: "0".repeat(64), vocab_size: 32000, bos_id: Some(1), eos_id: Some(2) };
/// writer.finish(ManifestInfo {
///     tokenizer, pack: opts, bos: true, eos: true,
///     input_options: Default::default(), inputs: vec![], stats, chat: None, partition_size: None,
/// })?;
/// # Ok(()) }
/// ```
///
/// Each file goes to `.NAME.tmp` in the directory, is fsynced and renamed to `NAME`; the
/// directory is fsynced after the renames. A writer dropped without [`ShardWriter::finish`]
/// leaves its completed shards but no `manifest.json`, and no temporary (a temporary is removed
/// when its write fails or unwinds); if it created the directory and wrote no shard, the
/// directory is removed too.
pub struct ShardWriter {
    dir: PathBuf,
    opts: ShardWriterOptions,
    dtype: TokenDtype,
    /// The tokens and segments files of the shard being filled, written as samples come (so no
    /// shard is held in memory); `None` until its first sample.
    files: Option<StreamedFiles>,
    /// One sample's tokens (or segment rows) as little-endian bytes.
    scratch: Vec<u8>,
    /// Segment rows of the shard being filled (written to its segments file).
    rows: u64,
    sample_index: Vec<i64>,
    shard_padding: u64,
    shard_context: u64,
    shards: Vec<ShardEntry>,
    samples: u64,
    padding_tokens: u64,
    context_tokens: u64,
    target_tokens: u64,
    /// Set when writing a shard failed: the buffer no longer matches the files, so every later
    /// call fails too.
    failed: bool,
    /// The shard being completed on a background thread, if any (at most one at a time).
    in_flight: Option<std::thread::JoinHandle<Result<ShardEntry, ShardError>>>,
    /// Whether [`ShardWriter::create`] made the directory: if so, and it is still empty when the
    /// writer is dropped unfinished, it is removed.
    created_dir: bool,
}

/// An `.npy` of the shard being filled, under its temporary name: a header for the final shape
/// (rewritten when the shard is complete; numpy's header has room for the first axis to grow, so
/// its length does not change), then the values as they are given.
struct StreamedFile {
    temporary: Temporary,
    out: BufWriter<File>,
}

impl StreamedFile {
    fn create(dir: &Path, name: &str, descr: &str, row: u64) -> Result<Self, ShardError> {
        let temporary = Temporary {
            path: dir.join(temporary_name(name)),
            renamed: false,
        };
        let file = File::create(&temporary.path).map_err(io_error(&temporary.path))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&npy::header(descr, &[0, row]))
            .map_err(io_error(&temporary.path))?;
        Ok(StreamedFile { temporary, out })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ShardError> {
        self.out
            .write_all(bytes)
            .map_err(io_error(&self.temporary.path))
    }

    /// Flushes the file and gives its header the final first axis.
    fn complete(self, descr: &str, shape: &[u64]) -> Result<(Temporary, File), ShardError> {
        let StreamedFile { temporary, out } = self;
        let path = temporary.path.clone();
        let mut file = out
            .into_inner()
            .map_err(|e| io_error(&path)(e.into_error()))?;
        file.seek(io::SeekFrom::Start(0))
            .and_then(|_| file.write_all(&npy::header(descr, shape)))
            .map_err(io_error(&path))?;
        Ok((temporary, file))
    }
}

/// The two streamed files of the shard being filled.
struct StreamedFiles {
    tokens: StreamedFile,
    segments: StreamedFile,
    loss_mask: Option<StreamedFile>,
}

/// numpy's `bool`.
const BOOL_DESCR: &str = "|b1";

/// A full shard on its way to disk: its tokens file is written, the rest is done on a background
/// thread.
struct ShardJob {
    dir: PathBuf,
    name: String,
    samples: u64,
    seq_len: u64,
    padding_tokens: u64,
    context_tokens: u64,
    tokens: (Temporary, File),
    segments: (Temporary, File),
    loss_mask: Option<(Temporary, File)>,
    rows: u64,
    sample_index: Vec<i64>,
}

impl ShardJob {
    /// Syncs, hashes and renames the tokens and segments files, writes the sample index
    /// (atomically) and syncs the directory.
    fn write(self) -> Result<ShardEntry, ShardError> {
        let (dir, name) = (&self.dir, &self.name);
        let tokens = complete_file(dir, &ShardFile::Tokens.file_name(name), self.tokens)?;
        let segments = complete_file(dir, &ShardFile::Segments.file_name(name), self.segments)?;
        let loss_mask = match self.loss_mask {
            Some(file) => Some(complete_file(
                dir,
                &ShardFile::LossMask.file_name(name),
                file,
            )?),
            None => None,
        };
        let rows = self.rows;
        let sample_index = write_npy(
            dir,
            name,
            ShardFile::SampleIndex,
            &[self.samples + 1],
            &self.sample_index,
        )?;
        sync_dir(dir)?;
        Ok(ShardEntry {
            name: name.clone(),
            samples: self.samples,
            segments: rows,
            tokens: self.samples * self.seq_len,
            padding_tokens: self.padding_tokens,
            context_tokens: self.context_tokens,
            files: ShardFiles {
                tokens,
                segments,
                sample_index,
                loss_mask,
            },
        })
    }
}

/// Syncs and hashes (read back, while the disk syncs it) a complete streamed file, then renames
/// it into place.
fn complete_file(
    dir: &Path,
    name: &str,
    (mut temporary, file): (Temporary, File),
) -> Result<FileDigest, ShardError> {
    let (synced, digest) = std::thread::scope(|scope| {
        let sync = scope.spawn(|| file.sync_all());
        let digest = file_digest(&temporary.path, name);
        let synced = sync
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (synced, digest)
    });
    synced.map_err(io_error(&temporary.path))?;
    let digest = digest?;
    drop(file);
    let final_path = dir.join(name);
    fs::rename(&temporary.path, &final_path).map_err(io_error(&final_path))?;
    temporary.renamed = true;
    Ok(digest)
}

/// Size and SHA-256 of a written file, read back (from the page cache, as a rule).
fn file_digest(path: &Path, name: &str) -> Result<FileDigest, ShardError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let mut hashing = HashingWriter::new(io::sink());
    io::copy(&mut file, &mut hashing).map_err(io_error(path))?;
    let (_, hash) = hashing.finish();
    Ok(FileDigest {
        path: name.to_string(),
        size: hash.size,
        sha256: hash.sha256,
    })
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        // A shard being completed is finished (or its temporaries removed) before the writer
        // goes; the tokens file of an unfinished shard is removed by its `Temporary`.
        if let Some(handle) = self.in_flight.take() {
            let _ = handle.join();
        }
        // A directory this writer made and left empty (a run that failed or was abandoned before
        // its first shard) goes too; `remove_dir` removes only an empty directory.
        if self.created_dir {
            drop(self.files.take());
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

impl ShardWriter {
    /// Opens `dir` for a new output, creating it if missing. Refuses a directory that holds a
    /// `manifest.json`, shard files or temporaries of this format, unless `opts.overwrite` is set:
    /// then the old manifest is removed first, then the files it lists, then stale temporaries.
    /// Other files are left alone.
    pub fn create(dir: impl AsRef<Path>, opts: ShardWriterOptions) -> Result<Self, ShardError> {
        let dtype = opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let created_dir = match fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => false,
            Ok(_) => return Err(ShardError::NotADirectory { path: dir }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&dir).map_err(io_error(&dir))?;
                true
            }
            Err(e) => return Err(io_error(&dir)(e)),
        };
        if let Err(err) = prepare_directory(&dir, opts.overwrite) {
            if created_dir {
                let _ = fs::remove_dir(&dir);
            }
            return Err(err);
        }
        Ok(ShardWriter::open(
            dir,
            opts,
            dtype,
            created_dir,
            Vec::new(),
            WriterTotals::default(),
        ))
    }

    /// A writer about to fill the shard after `shards`, having been given `totals`.
    fn open(
        dir: PathBuf,
        opts: ShardWriterOptions,
        dtype: TokenDtype,
        created_dir: bool,
        shards: Vec<ShardEntry>,
        totals: WriterTotals,
    ) -> Self {
        ShardWriter {
            dir,
            created_dir,
            dtype,
            files: None,
            scratch: Vec::new(),
            rows: 0,
            sample_index: vec![0],
            shard_padding: 0,
            shard_context: 0,
            shards,
            samples: totals.samples,
            padding_tokens: totals.padding_tokens,
            context_tokens: totals.context_tokens,
            target_tokens: totals.target_tokens,
            failed: false,
            in_flight: None,
            opts,
        }
    }

    /// Opens `dir` to continue an output after its complete shards `shards` (the first
    /// `shards.len()` of the run, as a [`super::Checkpoint`] lists them), with the totals the
    /// writer had then. Each listed file must be there with its recorded size; every other file
    /// of this format (later shards, temporaries, a manifest) is removed. Other files are left
    /// alone.
    pub fn resume(
        dir: impl AsRef<Path>,
        opts: ShardWriterOptions,
        shards: Vec<ShardEntry>,
        totals: WriterTotals,
    ) -> Result<Self, ShardError> {
        let dtype = opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let cannot = |reason: String| ShardError::CannotResume {
            dir: dir.clone(),
            reason,
        };
        let mut keep = Vec::new();
        for (index, shard) in shards.iter().enumerate() {
            if shard.name != shard_name(index) {
                return Err(cannot(format!(
                    "its shard {index} is recorded as {:?}, not {}",
                    shard.name,
                    shard_name(index)
                )));
            }
            let files = &shard.files;
            for digest in files.all() {
                let path = dir.join(&digest.path);
                match fs::metadata(&path) {
                    Ok(meta) if meta.len() == digest.size => keep.push(digest.path.clone()),
                    Ok(meta) => {
                        return Err(cannot(format!(
                            "{} has {} bytes, but the run wrote {}",
                            digest.path,
                            meta.len(),
                            digest.size
                        )))
                    }
                    Err(e) => return Err(cannot(format!("{}: {e}", digest.path))),
                }
            }
        }
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_ours(&name) && !keep.contains(&name) {
                let path = dir.join(&name);
                fs::remove_file(&path).map_err(io_error(&path))?;
            }
        }
        sync_dir(&dir)?;
        Ok(ShardWriter::open(dir, opts, dtype, false, shards, totals))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &ShardWriterOptions {
        &self.opts
    }

    /// What the writer has been given so far.
    pub fn totals(&self) -> WriterTotals {
        WriterTotals {
            samples: self.samples,
            padding_tokens: self.padding_tokens,
            context_tokens: self.context_tokens,
            target_tokens: self.target_tokens,
        }
    }

    /// Records the shard being completed in the background if it is done (without waiting), so
    /// [`ShardWriter::shards`] lists it; its failure fails this call.
    pub fn poll(&mut self) -> Result<(), ShardError> {
        if self.in_flight.as_ref().is_some_and(|h| h.is_finished()) {
            self.wait_for_write()?;
        }
        Ok(())
    }

    pub fn token_dtype(&self) -> TokenDtype {
        self.dtype
    }

    /// Samples given so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Shards written so far (not the one being filled, nor one still being written).
    pub fn shards(&self) -> &[ShardEntry] {
        &self.shards
    }

    /// Adds a sample; writes a shard when `samples_per_shard` samples are buffered. The sample is
    /// checked first (L tokens, segments tiling them, padding last and holding `pad_id`, ids below
    /// `vocab_size`); a rejected sample changes nothing.
    pub fn write_sample(&mut self, sample: &Sample) -> Result<(), ShardError> {
        self.check_not_failed()?;
        self.check_sample(sample)?;
        self.append(sample)?;
        self.rows += sample.segments.len() as u64;
        self.sample_index.push(self.rows as i64);
        let (padding, context) = (
            sample.padding_tokens() as u64,
            sample.context_tokens() as u64,
        );
        self.shard_padding += padding;
        self.shard_context += context;
        self.samples += 1;
        self.padding_tokens += padding;
        self.context_tokens += context;
        self.target_tokens += sample.target_tokens() as u64;
        if self.sample_index.len() - 1 == self.opts.samples_per_shard {
            self.write_shard()?;
        }
        Ok(())
    }

    fn check_not_failed(&self) -> Result<(), ShardError> {
        if self.failed {
            return Err(ShardError::Failed);
        }
        Ok(())
    }

    fn check_sample(&self, sample: &Sample) -> Result<(), ShardError> {
        let invalid = |reason: String| {
            Err(ShardError::InvalidSample {
                sample: self.samples,
                reason,
            })
        };
        let l = self.opts.seq_len;
        if sample.tokens.len() != l {
            return invalid(format!(
                "it has {} tokens, but seq_len is {l}",
                sample.tokens.len()
            ));
        }
        let masked_before = match (&self.files, self.shards.first()) {
            (Some(files), _) => Some(files.loss_mask.is_some()),
            (None, Some(shard)) => Some(shard.files.loss_mask.is_some()),
            (None, None) => None,
        };
        if masked_before.is_some_and(|m| m != sample.loss_mask.is_some()) {
            return invalid(
                "an output has a loss mask for every sample or for none, and this sample \
                 differs from the ones before"
                    .to_owned(),
            );
        }
        if let Some(mask) = &sample.loss_mask {
            if mask.len() != l {
                return invalid(format!(
                    "its loss mask has {} flags, but seq_len is {l}",
                    mask.len()
                ));
            }
            let padding_start = l - sample.padding_tokens().min(l);
            if let Some(p) = mask[padding_start..].iter().position(|&m| m) {
                return invalid(format!(
                    "its loss mask is set on padding token {}",
                    padding_start + p
                ));
            }
        }
        let mut at = 0usize;
        for (k, seg) in sample.segments.iter().enumerate() {
            if seg.len == 0 {
                return invalid(format!("segment {k} is empty"));
            }
            let end = at + seg.len as usize;
            if end > l {
                return invalid(format!("segment {k} ends at {end}, past seq_len {l}"));
            }
            match seg.doc_id {
                None => {
                    if k + 1 != sample.segments.len() {
                        return invalid(format!("padding segment {k} is not the last segment"));
                    }
                    if seg.context != 0 || seg.doc_start != 0 {
                        return invalid(format!(
                            "padding segment {k} has context {} and doc_start {}; both must be 0",
                            seg.context, seg.doc_start
                        ));
                    }
                    if let Some(p) = sample.tokens[at..end]
                        .iter()
                        .position(|&t| t != self.opts.pad_id)
                    {
                        return invalid(format!(
                            "padding token {} is {}, not pad_id {}",
                            at + p,
                            sample.tokens[at + p],
                            self.opts.pad_id
                        ));
                    }
                }
                Some(doc) => {
                    if seg.context >= seg.len {
                        return invalid(format!(
                            "segment {k} has context {} but length {}: a chunk needs a target",
                            seg.context, seg.len
                        ));
                    }
                    if doc > i64::MAX as u64
                        || seg
                            .doc_start
                            .checked_add(u64::from(seg.len))
                            .is_none_or(|e| e > i64::MAX as u64)
                    {
                        return invalid(format!(
                            "segment {k} (doc_id {doc}, doc_start {}) does not fit int64",
                            seg.doc_start
                        ));
                    }
                }
            }
            at = end;
        }
        if at != l {
            return invalid(format!("its segments cover {at} tokens, not seq_len {l}"));
        }
        if let Some(p) = sample
            .tokens
            .iter()
            .position(|&t| u64::from(t) >= self.opts.vocab_size)
        {
            return invalid(format!(
                "token {p} is id {}, not below vocab_size {}",
                sample.tokens[p], self.opts.vocab_size
            ));
        }
        Ok(())
    }

    /// Appends a checked sample's tokens and segment rows to the shard's files (created at its
    /// first sample). On failure the writer refuses all further calls (the files no longer match
    /// the counts).
    fn append(&mut self, sample: &Sample) -> Result<(), ShardError> {
        self.failed = true;
        if self.files.is_none() {
            let name = shard_name(self.shards.len() + usize::from(self.in_flight.is_some()));
            let tokens = StreamedFile::create(
                &self.dir,
                &ShardFile::Tokens.file_name(&name),
                self.dtype.descr(),
                self.opts.seq_len as u64,
            )?;
            let segments = StreamedFile::create(
                &self.dir,
                &ShardFile::Segments.file_name(&name),
                <i64 as LittleEndian>::DESCR,
                5,
            )?;
            let loss_mask = match sample.loss_mask {
                Some(_) => Some(StreamedFile::create(
                    &self.dir,
                    &ShardFile::LossMask.file_name(&name),
                    BOOL_DESCR,
                    self.opts.seq_len as u64,
                )?),
                None => None,
            };
            self.files = Some(StreamedFiles {
                tokens,
                segments,
                loss_mask,
            });
        }
        let files = self.files.as_mut().expect("created above");
        let size = self.dtype.size();
        self.scratch.resize(sample.tokens.len() * size, 0);
        let bytes = self.scratch.chunks_exact_mut(size).zip(&sample.tokens);
        match self.dtype {
            // check_sample made sure every id is below vocab_size, which fits the dtype.
            TokenDtype::Uint16 => {
                bytes.for_each(|(b, &id)| b.copy_from_slice(&(id as u16).to_le_bytes()))
            }
            TokenDtype::Uint32 => bytes.for_each(|(b, &id)| b.copy_from_slice(&id.to_le_bytes())),
        }
        files.tokens.write(&self.scratch)?;
        // Rows: start, length, context, doc_id, doc_start (check_sample made sure all fit i64).
        self.scratch.clear();
        let mut start = 0i64;
        for seg in &sample.segments {
            let (doc_id, context) = match seg.doc_id {
                Some(doc) => (doc as i64, i64::from(seg.context)),
                None => (-1, 0),
            };
            for v in [
                start,
                i64::from(seg.len),
                context,
                doc_id,
                seg.doc_start as i64,
            ] {
                v.put(&mut self.scratch);
            }
            start += i64::from(seg.len);
        }
        files.segments.write(&self.scratch)?;
        if let (Some(file), Some(mask)) = (&mut files.loss_mask, &sample.loss_mask) {
            self.scratch.clear();
            self.scratch.extend(mask.iter().map(|&m| u8::from(m)));
            file.write(&self.scratch)?;
        }
        self.failed = false;
        Ok(())
    }

    /// Completes the shard being filled: its tokens file gets its final header, and a background
    /// thread syncs, hashes and renames it and writes the index files. The previous shard's
    /// completion is waited for first, so at most one runs; a failure fails this call (or
    /// [`ShardWriter::finish`]), and the writer then refuses all further calls.
    fn write_shard(&mut self) -> Result<(), ShardError> {
        self.failed = true;
        self.wait_for_write()?;
        let StreamedFiles {
            tokens,
            segments,
            loss_mask,
        } = self.files.take().expect("a shard has samples");
        let samples = (self.sample_index.len() - 1) as u64;
        let tokens = tokens.complete(self.dtype.descr(), &[samples, self.opts.seq_len as u64])?;
        let loss_mask = match loss_mask {
            Some(file) => Some(file.complete(BOOL_DESCR, &[samples, self.opts.seq_len as u64])?),
            None => None,
        };
        let segments = segments.complete(<i64 as LittleEndian>::DESCR, &[self.rows, 5])?;
        let job = ShardJob {
            dir: self.dir.clone(),
            name: shard_name(self.shards.len()),
            samples,
            seq_len: self.opts.seq_len as u64,
            padding_tokens: self.shard_padding,
            context_tokens: self.shard_context,
            tokens,
            segments,
            loss_mask,
            rows: std::mem::take(&mut self.rows),
            sample_index: std::mem::replace(&mut self.sample_index, vec![0]),
        };
        self.shard_padding = 0;
        self.shard_context = 0;
        let handle = std::thread::Builder::new()
            .name("bpetok-shard-writer".into())
            .spawn(move || job.write())
            .map_err(io_error(&self.dir))?;
        self.in_flight = Some(handle);
        self.failed = false;
        Ok(())
    }

    /// Waits for the shard being completed, if any, and records it.
    fn wait_for_write(&mut self) -> Result<(), ShardError> {
        let Some(handle) = self.in_flight.take() else {
            return Ok(());
        };
        match handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        {
            Ok(entry) => {
                self.shards.push(entry);
                Ok(())
            }
            Err(err) => {
                self.failed = true;
                Err(err)
            }
        }
    }

    /// Writes the last, partial shard (if any samples are buffered), then `manifest.json`, and
    /// returns the manifest. `info` is checked against what was written first, so a mismatch
    /// leaves no manifest.
    pub fn finish(mut self, info: ManifestInfo) -> Result<Manifest, ShardError> {
        self.check_not_failed()?;
        self.check_info(&info)?;
        if self.sample_index.len() > 1 {
            self.write_shard()?;
        }
        self.wait_for_write()?;
        let pack = &info.pack;
        let stats = &info.stats;
        let manifest = Manifest {
            format: FORMAT.to_string(),
            format_version: FORMAT_VERSION,
            tokenizer: info.tokenizer,
            options: ManifestOptions {
                chat: info.chat,
                partition_size: info.partition_size,
                ..ManifestOptions::new(
                    pack,
                    info.bos,
                    info.eos,
                    self.opts.samples_per_shard,
                    info.input_options,
                )
            },
            token_dtype: self.dtype,
            inputs: info.inputs,
            partitions: None,
            shards: std::mem::take(&mut self.shards),
            totals: Totals {
                documents: stats.documents,
                empty_documents: stats.empty_documents,
                documents_split: stats.documents_split,
                document_tokens: stats.document_tokens,
                samples: self.samples,
                padding_tokens: self.padding_tokens,
                context_tokens: self.context_tokens,
                target_tokens: self.target_tokens,
            },
        };
        write_atomically(&self.dir, MANIFEST_FILE, |w| {
            w.write_all(&manifest.to_json())
        })?;
        sync_dir(&self.dir)?;
        Ok(manifest)
    }

    fn check_info(&self, info: &ManifestInfo) -> Result<(), ShardError> {
        let mismatch = |m: String| Err(ShardError::ManifestMismatch(m));
        if info.tokenizer.vocab_size != self.opts.vocab_size {
            return mismatch(format!(
                "tokenizer vocab_size {} but the writer's vocab_size is {}",
                info.tokenizer.vocab_size, self.opts.vocab_size
            ));
        }
        if let Err(e) = info.pack.validate() {
            return mismatch(format!("pack options: {e}"));
        }
        if info.pack.seq_len != self.opts.seq_len || info.pack.pad_id != self.opts.pad_id {
            return mismatch(format!(
                "pack options have seq_len {} and pad_id {}, the writer {} and {}",
                info.pack.seq_len, info.pack.pad_id, self.opts.seq_len, self.opts.pad_id
            ));
        }
        let s = &info.stats;
        let written = (
            self.samples,
            self.padding_tokens,
            self.context_tokens,
            self.target_tokens,
        );
        let packed = (
            s.samples,
            s.padding_tokens,
            s.context_tokens,
            s.target_tokens,
        );
        if written != packed {
            return mismatch(format!(
                "the packer made (samples, padding, context, target tokens) {packed:?}, the writer \
                 was given {written:?}; every sample the packer emits must be written"
            ));
        }
        if !info.inputs.is_empty() {
            let documents: u64 = info.inputs.iter().map(|i| i.documents).sum();
            if documents != s.documents {
                return mismatch(format!(
                    "the inputs list {documents} documents, the packer was given {}",
                    s.documents
                ));
            }
        }
        Ok(())
    }
}

/// Whether `name` is a file of this format that a writer may replace: the manifest, a shard
/// file or a temporary (not `resume.json`, which the session owns).
fn is_ours(name: &str) -> bool {
    name == MANIFEST_FILE || is_shard_file_name(name) || is_temporary_name(name)
}

/// Refuses a directory with an output in it, or (with `overwrite`) removes that output: an
/// unfinished run's `resume.json` and shard files, or the old manifest first, so the directory
/// never looks complete with a mix of files, then the files it lists; then stale temporaries.
fn prepare_directory(dir: &Path, overwrite: bool) -> Result<(), ShardError> {
    let mut ours = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_ours(&name) {
            ours.push(name);
        }
    }
    let unfinished = fs::symlink_metadata(dir.join(RESUME_FILE)).is_ok();
    if ours.is_empty() && !unfinished {
        return Ok(());
    }
    ours.sort();
    if !overwrite && unfinished {
        return Err(ShardError::UnfinishedRun {
            dir: dir.to_path_buf(),
            found: None,
        });
    }
    if !overwrite {
        let found = if ours.iter().any(|n| n == MANIFEST_FILE) {
            MANIFEST_FILE.to_string()
        } else {
            format!("{} and {} more", ours[0], ours.len() - 1)
        };
        return Err(ShardError::DirectoryInUse {
            dir: dir.to_path_buf(),
            found,
        });
    }
    let manifest_path = dir.join(MANIFEST_FILE);
    if ours.iter().any(|n| n == MANIFEST_FILE) {
        let bytes = fs::read(&manifest_path).map_err(io_error(&manifest_path))?;
        let listed = listed_files(&bytes).map_err(|reason| ShardError::UnreadableOldManifest {
            dir: dir.to_path_buf(),
            reason,
        })?;
        fs::remove_file(&manifest_path).map_err(io_error(&manifest_path))?;
        sync_dir(dir)?;
        for name in listed {
            let path = dir.join(&name);
            let removed = if name.starts_with("part-") {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path)(e)),
            }
        }
    }
    if unfinished {
        // Shard files no manifest lists are the unfinished run's.
        super::Checkpoint::remove(dir)?;
        for name in ours.iter().filter(|n| is_shard_file_name(n)) {
            let path = dir.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path)(e)),
            }
        }
    }
    for name in ours.iter().filter(|n| is_temporary_name(n)) {
        let path = dir.join(name);
        fs::remove_file(&path).map_err(io_error(&path))?;
    }
    Ok(())
}

/// The shard files an old manifest lists, read loosely (any format version), keeping only plain
/// shard file names so nothing outside the directory, or not of this format, is removed; and the
/// partition directories (`part-NNNNN`) of a partitioned run's manifest.
fn listed_files(manifest: &[u8]) -> Result<Vec<String>, String> {
    let value: serde_json::Value = serde_json::from_slice(manifest).map_err(|e| e.to_string())?;
    if let Some(partitions) = value.get("partitions").and_then(|p| p.as_array()) {
        let names = partitions
            .iter()
            .filter_map(|p| p.get("name").and_then(|n| n.as_str()))
            .filter(|n| crate::data::partition::is_partition_dir_name(n))
            .map(str::to_owned)
            .collect();
        return Ok(names);
    }
    let shards = value
        .get("shards")
        .and_then(|s| s.as_array())
        .ok_or("it has no \"shards\" list")?;
    let mut names = Vec::new();
    for shard in shards {
        if let Some(files) = shard.get("files").and_then(|f| f.as_object()) {
            for file in files.values() {
                if let Some(path) = file.get("path").and_then(|p| p.as_str()) {
                    if is_plain_file_name(path) && is_shard_file_name(path) {
                        names.push(path.to_string());
                    }
                }
            }
        }
    }
    Ok(names)
}

/// Removes a temporary file when dropped, unless it was renamed into place.
struct Temporary {
    path: PathBuf,
    renamed: bool,
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `name` in `dir` through `.name.tmp`: `write` fills a buffered, hashing writer; then the
/// file is flushed, fsynced and renamed. Returns the file's digest.
pub(crate) fn write_atomically(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut BufWriter<HashingWriter<File>>) -> io::Result<()>,
) -> Result<FileDigest, ShardError> {
    let final_path = dir.join(name);
    let mut temporary = Temporary {
        path: dir.join(temporary_name(name)),
        renamed: false,
    };
    let file = File::create(&temporary.path).map_err(io_error(&temporary.path))?;
    let mut writer = BufWriter::with_capacity(1 << 20, HashingWriter::new(file));
    write(&mut writer).map_err(io_error(&temporary.path))?;
    let (file, hash) = writer
        .into_inner()
        .map_err(|e| io_error(&temporary.path)(e.into_error()))?
        .finish();
    file.sync_all().map_err(io_error(&temporary.path))?;
    drop(file);
    fs::rename(&temporary.path, &final_path).map_err(io_error(&final_path))?;
    temporary.renamed = true;
    Ok(FileDigest {
        path: name.to_string(),
        size: hash.size,
        sha256: hash.sha256,
    })
}

/// One `.npy` array of a shard: C order, little-endian, the version 1.0 header `numpy.save` writes.
fn write_npy<T: LittleEndian>(
    dir: &Path,
    shard: &str,
    file: ShardFile,
    shape: &[u64],
    data: &[T],
) -> Result<FileDigest, ShardError> {
    write_atomically(dir, &file.file_name(shard), |w| {
        npy::write_array(w, shape, data)
    })
}

/// Makes the renames in `dir` durable (a no-op where directories cannot be opened as files).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ShardError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
