//! A packing run into a shard directory, from options to `manifest.json`: [`PackSession`] owns
//! the option rules (bounds, BOS/EOS, the padding id's default), the document-id counter, the
//! read-encode-pack-write loop over inputs ([`crate::data::pipeline::encode_inputs`]) and
//! everything the manifest records (inputs in order, input options, the tokenizer's SHA-256).
//! The command line and the Python binding drive it; neither repeats a rule of it.

use std::path::{Path, PathBuf};

use crate::data::error::{DataError, OptionsError};
use crate::data::input::{FormatChoice, InputSpec, ReadOptions};
use crate::data::pack::{PackOptions, Packer};
use crate::data::pipeline::{encode_inputs, Counters, EncodeOptions};
use crate::data::shard::{
    check_pad_id, InputFile, InputOptions, Manifest, ManifestInfo, ShardError, ShardWriter,
    ShardWriterOptions, TokenizerInfo, DEFAULT_SAMPLES_PER_SHARD,
};
use crate::Tokenizer;

/// Every option of a packing run. [`PackConfig::new`] gives the command line's defaults.
#[derive(Clone, Debug)]
pub struct PackConfig {
    /// Sample length, window, overlap, buffer and seed. Its `pad_id` is not used: set
    /// [`PackConfig::pad_id`].
    pub pack: PackOptions,
    /// The id padding holds; `None` for the EOS id, or 0 when the model has none.
    pub pad_id: Option<u64>,
    pub samples_per_shard: usize,
    /// Begin every document with BOS (the model must have one).
    pub add_bos: bool,
    /// End every document with EOS (the model must have one).
    pub add_eos: bool,
    /// Replace an output already in the directory.
    pub overwrite: bool,
    pub read: ReadOptions,
    /// The input format asked for, as the manifest records it (`auto`, `jsonl`, `text`,
    /// `parquet`).
    /// How inputs were told apart (recorded in the manifest as `choice.name()`).
    pub input_format: FormatChoice,
    /// Encoding threads (0: all CPUs).
    pub threads: usize,
}

impl PackConfig {
    /// The command line's defaults for `seq_len` and `window`: the default overlap, a buffer of
    /// [`crate::data::pack::DEFAULT_PACK_BUFFER`] chunks, seed 0, padding with EOS,
    /// [`DEFAULT_SAMPLES_PER_SHARD`] samples per shard, BOS and EOS added, no overwrite, the
    /// default reading options, format `auto`, all CPUs.
    pub fn new(seq_len: usize, window: usize) -> Self {
        PackConfig {
            pack: PackOptions::new(seq_len, window),
            pad_id: None,
            samples_per_shard: DEFAULT_SAMPLES_PER_SHARD,
            add_bos: true,
            add_eos: true,
            overwrite: false,
            read: ReadOptions::default(),
            input_format: FormatChoice::Auto,
            threads: 0,
        }
    }

    /// Checks every option against `tok` and its bounds (the one place they are checked) and
    /// returns the packer's and the writer's options, with the padding id resolved.
    pub fn validate(
        &self,
        tok: &Tokenizer,
    ) -> Result<(PackOptions, ShardWriterOptions), OptionsError> {
        if self.add_bos && tok.bos_id().is_none() {
            return Err(OptionsError::new(
                "bos",
                "the model has no BOS piece (<s>), so documents cannot begin with one",
            ));
        }
        if self.add_eos && tok.eos_id().is_none() {
            return Err(OptionsError::new(
                "eos",
                "the model has no EOS piece (</s>), so documents cannot end with one",
            ));
        }
        let mut pack = self.pack.clone();
        pack.pad_id = match self.pad_id {
            Some(id) => check_pad_id(id, tok.vocab_size() as u64)?,
            None => tok.eos_id().unwrap_or(0),
        };
        pack.validate()?;
        let mut writer =
            ShardWriterOptions::new(tok.vocab_size() as u64, pack.seq_len, pack.pad_id);
        writer.samples_per_shard = self.samples_per_shard;
        writer.overwrite = self.overwrite;
        writer.validate()?;
        Ok((pack, writer))
    }

    /// The input options as the manifest records them.
    pub fn input_options(&self) -> InputOptions {
        InputOptions {
            errors: self.read.errors.name().to_owned(),
            field: self.read.field.clone(),
            input_format: self.input_format.name().to_owned(),
            lines: self.read.lines,
        }
    }
}

/// One packing run: create it (options checked, directory prepared), add inputs (each call
/// continues the document ids), then [`PackSession::finish`] writes the last shard and the
/// manifest. Dropped unfinished (or after an error), the directory has its completed shards but
/// no manifest, and a directory the run created and left empty is removed.
pub struct PackSession<'t> {
    tok: &'t Tokenizer,
    config: PackConfig,
    packer: Packer,
    writer: ShardWriter,
    tokenizer: TokenizerInfo,
    /// The next document's id: documents added so far, over all inputs.
    next_doc_id: u64,
    /// The manifest's inputs, in the order read.
    inputs: Vec<InputFile>,
    /// Raw input bytes read by completed `add_inputs` calls.
    input_bytes: u64,
    /// Set by a failed `add_inputs`: the output is incomplete and no manifest may be written.
    failed: bool,
}

impl<'t> PackSession<'t> {
    /// Checks `config` against `tok` and opens `out_dir` for a new output (see
    /// [`ShardWriter::create`]); nothing is created when an option is out of bounds.
    pub fn create(
        tok: &'t Tokenizer,
        out_dir: &Path,
        config: PackConfig,
    ) -> Result<Self, DataError> {
        let (pack, writer_opts) = config.validate(tok)?;
        let packer = Packer::new(pack)?;
        let tokenizer = TokenizerInfo::of(tok);
        let writer = ShardWriter::create(out_dir, writer_opts)?;
        Ok(PackSession {
            tok,
            config,
            packer,
            writer,
            tokenizer,
            next_doc_id: 0,
            inputs: Vec::new(),
            input_bytes: 0,
            failed: false,
        })
    }

    /// Reads, encodes and packs `inputs` in order, writing shards as they fill; document ids
    /// continue from the previous call. `tick` is called on this thread at least every
    /// [`crate::data::pipeline::TICK`] (progress from `counters`, cancellation by returning an
    /// error). After an error the session only refuses: drop it.
    pub fn add_inputs(
        &mut self,
        inputs: &[InputSpec],
        counters: &Counters,
        tick: impl FnMut() -> Result<(), DataError>,
    ) -> Result<(), DataError> {
        if self.failed {
            return Err(ShardError::Failed.into());
        }
        self.failed = true;
        let encode = EncodeOptions {
            add_bos: self.config.add_bos,
            add_eos: self.config.add_eos,
            threads: self.config.threads,
        };
        let (packer, writer, next_doc_id) =
            (&mut self.packer, &mut self.writer, &mut self.next_doc_id);
        let summaries = encode_inputs(
            self.tok,
            inputs,
            &self.config.read,
            encode,
            counters,
            |ids| {
                packer.push_document(*next_doc_id, &ids, |s| writer.write_sample(&s))?;
                *next_doc_id += 1;
                Ok::<(), DataError>(())
            },
            tick,
        )?;
        for (spec, summary) in inputs.iter().zip(summaries) {
            self.input_bytes += summary.size;
            self.inputs.push(InputFile {
                // The manifest records standard input as `-`, a file by the path as given.
                path: if spec.path.is_none() {
                    "-".to_owned()
                } else {
                    spec.name.clone()
                },
                size: summary.size,
                sha256: summary.sha256,
                documents: summary.documents,
            });
        }
        self.failed = false;
        Ok(())
    }

    /// Documents added so far (the next document's id).
    pub fn documents(&self) -> u64 {
        self.next_doc_id
    }

    /// The inputs read so far, as the manifest will record them.
    pub fn inputs(&self) -> &[InputFile] {
        &self.inputs
    }

    pub fn output(&self) -> &Path {
        self.writer.dir()
    }

    /// Flushes the packer, writes the last shard and `manifest.json`.
    pub fn finish(self) -> Result<PackReport, DataError> {
        if self.failed {
            return Err(ShardError::Failed.into());
        }
        let PackSession {
            config,
            packer,
            mut writer,
            tokenizer,
            inputs,
            input_bytes,
            ..
        } = self;
        let pack = packer.options().clone();
        let stats = packer.finish(|s| writer.write_sample(&s))?;
        let output = writer.dir().to_path_buf();
        let manifest = writer.finish(ManifestInfo {
            tokenizer,
            pack,
            bos: config.add_bos,
            eos: config.add_eos,
            input_options: config.input_options(),
            inputs,
            stats,
        })?;
        Ok(PackReport {
            manifest,
            output,
            input_bytes,
        })
    }
}

/// What a finished [`PackSession`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct PackReport {
    pub manifest: Manifest,
    /// The shard directory.
    pub output: PathBuf,
    /// Raw (compressed) input bytes read.
    pub input_bytes: u64,
}

impl PackReport {
    /// Tokens of all samples (`samples * seq_len`).
    pub fn sample_tokens(&self) -> u64 {
        self.manifest.totals.samples * self.manifest.options.seq_len
    }

    /// Padding tokens as a fraction of all sample tokens (0 when there are no samples).
    pub fn padding_share(&self) -> f64 {
        share(self.manifest.totals.padding_tokens, self.sample_tokens())
    }

    /// Context tokens (repeated from a document's previous chunk, never targets; see
    /// `docs/packing.md`) as a fraction of all sample tokens (0 when there are no samples).
    pub fn context_share(&self) -> f64 {
        share(self.manifest.totals.context_tokens, self.sample_tokens())
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
