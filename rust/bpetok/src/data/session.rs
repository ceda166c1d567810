//! A packing run into a shard directory, from options to `manifest.json`: [`PackSession`] owns
//! the option rules (bounds, BOS/EOS, the padding id's default), the document-id counter, the
//! read-encode-pack-write loop over inputs ([`crate::data::pipeline::encode_inputs`]) and
//! everything the manifest records (inputs in order, input options, the tokenizer's SHA-256).
//! The command line and the Python binding drive it; neither repeats a rule of it.

use std::path::{Path, PathBuf};

use crate::data::chat::ChatSpec;
use crate::data::error::{DataError, OptionsError};
use crate::data::input::{FormatChoice, InputSpec, ReadOptions};
use crate::data::pack::{PackOptions, Packer, ResumePoint};
use crate::data::pipeline::{encode_inputs, Counters, EncodeOptions, Event};
use crate::data::shard::{
    check_pad_id, input_stats, ChatOptions, Checkpoint, InputFile, InputOptions, InputStat,
    Manifest, ManifestInfo, ManifestOptions, Position, ShardError, ShardWriter, ShardWriterOptions,
    TokenizerInfo, WriterTotals, DEFAULT_SAMPLES_PER_SHARD, MANIFEST_FILE,
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
    /// Continue the run interrupted in the directory ([`PackSession::create`]).
    pub resume: bool,
    pub read: ReadOptions,
    /// The input format asked for, as the manifest records it (`auto`, `jsonl`, `text`,
    /// `parquet`).
    /// How inputs were told apart (recorded in the manifest as `choice.name()`).
    pub input_format: FormatChoice,
    /// Encoding threads (0: all CPUs).
    pub threads: usize,
    /// A partitioned run ([`crate::data::partition`]): the partition size it was cut by, as the
    /// manifest of each partition and of the whole run records it.
    pub partition_size: Option<u64>,
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
            resume: false,
            read: ReadOptions::default(),
            input_format: FormatChoice::Auto,
            threads: 0,
            partition_size: None,
        }
    }

    /// Checks every option against `tok` and its bounds (the one place they are checked) and
    /// returns the packer's and the writer's options, with the padding id resolved.
    pub fn validate(
        &self,
        tok: &Tokenizer,
    ) -> Result<(PackOptions, ShardWriterOptions), OptionsError> {
        if self.resume && self.overwrite {
            return Err(OptionsError::new(
                "resume",
                "cannot be combined with overwrite: resuming keeps the interrupted run's shards, \
                 overwriting removes them",
            ));
        }
        if let Some(spec) = &self.read.chat {
            if self.add_bos || self.add_eos {
                let option = if self.add_bos { "bos" } else { "eos" };
                return Err(OptionsError::new(
                    option,
                    "does not apply to conversations: the instruct format begins each with <s> \
                     and ends each assistant turn with </s> (turn off add_bos and add_eos)",
                ));
            }
            match ChatSpec::new(tok, spec.format, spec.train_on) {
                Ok(ours) if ours == *spec => {}
                Ok(_) => {
                    return Err(OptionsError::new(
                        "chat",
                        "was made with another tokenizer's ids",
                    ))
                }
                Err(err) => return Err(OptionsError::new("chat", err.reason)),
            }
        }
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
            skip_bad_records: self.read.skip_bad_records,
        }
    }
}

/// One packing run over a list of inputs: [`PackSession::create`] (options checked, directory
/// prepared, or an interrupted run's state loaded), [`PackSession::run`], then
/// [`PackSession::finish`] writes the last shard and the manifest.
///
/// While it runs, `resume.json` is rewritten each time a shard is complete on disk (see
/// [`Checkpoint`]), so that a run killed at any moment can be continued with
/// [`PackConfig::resume`] and ends with the bytes of an uninterrupted run. Dropped unfinished (or
/// after an error), the directory has its completed shards and `resume.json` but no manifest,
/// and a directory the run created and left empty is removed.
pub struct PackSession<'t> {
    tok: &'t Tokenizer,
    config: PackConfig,
    inputs: Vec<InputSpec>,
    output: PathBuf,
    /// The manifest's record of the tokenizer (its SHA-256 computed once).
    tokenizer: TokenizerInfo,
    state: State,
}

enum State {
    /// `--resume` of a run that had finished: its manifest.
    Complete(Box<Manifest>),
    Running(Box<Run>),
    /// A run, an error or `finish` happened: only refusals from now on.
    Failed,
}

/// The parts of a running session.
struct Run {
    packer: Packer,
    writer: ShardWriter,
    /// What `resume.json` records besides the position; `None` when the run reads standard
    /// input and cannot be resumed.
    record: Option<Record>,
    /// Where reading starts (not at the beginning when resumed).
    start: Position,
    /// Documents added so far, over all inputs: the next document's id.
    next_doc_id: u64,
    /// The inputs read to their end, in order, as the manifest will list them.
    done_inputs: Vec<InputFile>,
    /// The input being read: documents and skipped records so far.
    current_input: (u64, u64),
    /// The document being packed, and the one the packer's buffer began in.
    current_doc: Position,
    window_doc: Position,
    /// A checkpoint waiting for its last shard to be complete on disk.
    waiting: Option<Waiting>,
    /// Shards made before this process (a resumed run).
    resumed: Option<Resumed>,
    raw_bytes: u64,
}

/// The unchanging part of a checkpoint.
struct Record {
    tokenizer: TokenizerInfo,
    options: ManifestOptions,
    inputs: Vec<InputStat>,
}

struct Waiting {
    shards: usize,
    position: Position,
    packer: ResumePoint,
    writer: WriterTotals,
}

/// What a resumed run found done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resumed {
    /// Complete shards kept.
    pub shards: u64,
    /// Their samples.
    pub samples: u64,
    /// The run had finished already: nothing was done.
    pub complete: bool,
}

impl<'t> PackSession<'t> {
    /// Checks `config` against `tok` and opens `out_dir`: for a new output (see
    /// [`ShardWriter::create`]; nothing is created when an option is out of bounds), or, with
    /// [`PackConfig::resume`], to continue the run interrupted there. A resume compares the
    /// tokenizer, the options and the inputs (paths, sizes, modification times) with what the
    /// interrupted run recorded, and refuses with a message naming each difference. With nothing
    /// to resume (no `resume.json`: the run completed no shard, or never started), it starts
    /// again; when the run had finished, [`PackSession::finish`] gives its report.
    pub fn create(
        tok: &'t Tokenizer,
        out_dir: &Path,
        config: PackConfig,
        inputs: Vec<InputSpec>,
    ) -> Result<Self, DataError> {
        let (pack, mut writer_opts) = config.validate(tok)?;
        let tokenizer = TokenizerInfo::of(tok);
        let options = manifest_options(&config, &pack);
        let stats = input_stats(&inputs)?;
        if config.resume && stats.is_none() {
            return Err(ShardError::CannotResume {
                dir: out_dir.to_path_buf(),
                reason: "it reads standard input, which cannot be read again".to_owned(),
            }
            .into());
        }
        let record = stats.map(|inputs| Record {
            tokenizer: tokenizer.clone(),
            options,
            inputs,
        });
        let mut session = PackSession {
            tok,
            config,
            inputs,
            output: out_dir.to_path_buf(),
            tokenizer,
            state: State::Failed,
        };
        if session.config.resume {
            let record = record.expect("checked above");
            if let Some(manifest) = finished_run(out_dir, &record)? {
                session.state = State::Complete(Box::new(manifest));
                return Ok(session);
            }
            if let Some(checkpoint) = Checkpoint::read(out_dir)? {
                check_same_run(out_dir, &checkpoint, &record)?;
                let writer = ShardWriter::resume(
                    out_dir,
                    writer_opts,
                    checkpoint.shards.clone(),
                    checkpoint.writer,
                )?;
                let packer = Packer::resume(pack, checkpoint.packer)?;
                let position = checkpoint.position;
                let run = Run {
                    packer,
                    writer,
                    start: position,
                    next_doc_id: position.doc_id,
                    done_inputs: checkpoint.done_inputs,
                    current_input: (position.documents, position.skipped_records),
                    current_doc: position,
                    window_doc: position,
                    waiting: None,
                    resumed: Some(Resumed {
                        shards: checkpoint.shards.len() as u64,
                        samples: checkpoint.writer.samples,
                        complete: false,
                    }),
                    raw_bytes: 0,
                    record: Some(record),
                };
                session.state = State::Running(Box::new(run));
                return Ok(session);
            }
            // Nothing to continue from: start again, replacing what the run left.
            writer_opts.overwrite = true;
            session.start(out_dir, pack, writer_opts, Some(record))?;
            return Ok(session);
        }
        session.start(out_dir, pack, writer_opts, record)?;
        Ok(session)
    }

    fn start(
        &mut self,
        out_dir: &Path,
        pack: PackOptions,
        writer_opts: ShardWriterOptions,
        record: Option<Record>,
    ) -> Result<(), DataError> {
        let packer = Packer::new(pack)?;
        let writer = ShardWriter::create(out_dir, writer_opts)?;
        self.state = State::Running(Box::new(Run {
            packer,
            writer,
            record,
            start: Position::default(),
            next_doc_id: 0,
            done_inputs: Vec::new(),
            current_input: (0, 0),
            current_doc: Position::default(),
            window_doc: Position::default(),
            waiting: None,
            resumed: None,
            raw_bytes: 0,
        }));
        Ok(())
    }

    /// Reads, encodes and packs the inputs in order, writing shards as they fill (a resumed run
    /// first checks the SHA-256 of the inputs it had read to their end, then continues where it
    /// stopped). `tick` is called on this thread at least every
    /// [`crate::data::pipeline::TICK`] (progress from `counters`, cancellation by returning an
    /// error). After an error the session only refuses: drop it.
    pub fn run(
        &mut self,
        counters: &Counters,
        mut tick: impl FnMut() -> Result<(), DataError>,
    ) -> Result<(), DataError> {
        let mut run = match std::mem::replace(&mut self.state, State::Failed) {
            State::Running(run) => run,
            State::Complete(manifest) => {
                self.state = State::Complete(manifest);
                return Ok(());
            }
            State::Failed => return Err(ShardError::Failed.into()),
        };
        let first = run.start.input as usize;
        check_done_inputs(
            run.writer.dir(),
            &self.inputs[..first],
            &run.done_inputs,
            counters,
            &mut tick,
        )?;
        run.raw_bytes = run.done_inputs.iter().map(|i| i.size).sum();
        let encode = EncodeOptions {
            add_bos: self.config.add_bos,
            add_eos: self.config.add_eos,
            threads: self.config.threads,
            skip_records: run.start.index,
        };
        let skipping = self.config.read.skip_bad_records;
        let run_ref = &mut *run;
        encode_inputs(
            self.tok,
            &self.inputs[first..],
            &self.config.read,
            encode,
            counters,
            |event| run_ref.consume(event, first, skipping, &self.inputs),
            tick,
        )?;
        self.state = State::Running(run);
        Ok(())
    }

    /// Documents added so far (the next document's id).
    pub fn documents(&self) -> u64 {
        match &self.state {
            State::Running(run) => run.next_doc_id,
            State::Complete(manifest) => manifest.totals.documents,
            State::Failed => 0,
        }
    }

    /// Flushes the packer, writes the last shard and `manifest.json`, and removes `resume.json`.
    pub fn finish(mut self) -> Result<PackReport, DataError> {
        let run = match std::mem::replace(&mut self.state, State::Failed) {
            State::Running(run) => run,
            State::Complete(manifest) => {
                let resumed = Resumed {
                    shards: manifest.shards.len() as u64,
                    samples: manifest.totals.samples,
                    complete: true,
                };
                return Ok(PackReport {
                    input_bytes: manifest.inputs.iter().map(|i| i.size).sum(),
                    manifest: *manifest,
                    output: self.output.clone(),
                    resumed: Some(resumed),
                });
            }
            State::Failed => return Err(ShardError::Failed.into()),
        };
        let Run {
            packer,
            mut writer,
            done_inputs,
            raw_bytes,
            resumed,
            ..
        } = *run;
        let pack = packer.options().clone();
        let stats = packer.finish(|s| writer.write_sample(&s))?;
        let output = writer.dir().to_path_buf();
        let manifest = writer.finish(ManifestInfo {
            tokenizer: self.tokenizer.clone(),
            pack,
            bos: self.config.add_bos,
            eos: self.config.add_eos,
            input_options: self.config.input_options(),
            inputs: done_inputs,
            stats,
            chat: chat_options(&self.config),
            partition_size: self.config.partition_size,
        })?;
        Checkpoint::remove(&output)?;
        Ok(PackReport {
            manifest,
            output,
            input_bytes: raw_bytes,
            resumed,
        })
    }
}

impl Run {
    /// One event of the pipeline, in input order (`first`: the list position of the first
    /// input read, not 0 when resumed).
    fn consume(
        &mut self,
        event: Event,
        first: usize,
        skipping: bool,
        inputs: &[InputSpec],
    ) -> Result<(), DataError> {
        match event {
            Event::Document {
                ids,
                mask,
                input,
                index,
            } => {
                let doc_id = self.next_doc_id;
                self.current_doc = Position {
                    input: (input + first) as u64,
                    index,
                    doc_id,
                    documents: self.current_input.0,
                    skipped_records: self.current_input.1,
                };
                let Run {
                    packer,
                    writer,
                    record,
                    done_inputs,
                    current_doc,
                    window_doc,
                    waiting,
                    ..
                } = self;
                let samples_per_shard = writer.options().samples_per_shard as u64;
                packer.push_tracked(doc_id, &ids, mask.as_deref(), |sample, point| {
                    writer.write_sample(&sample)?;
                    let Some(record) = record.as_ref() else {
                        return Ok::<(), DataError>(());
                    };
                    if writer.samples() % samples_per_shard == 0 {
                        // A shard just filled (and the one before it is complete on disk).
                        write_waiting(writer, waiting, record, done_inputs)?;
                        let position = match point.state.document {
                            None => Position::default(),
                            Some(d) if d.doc_id == current_doc.doc_id => *current_doc,
                            Some(d) if d.doc_id == window_doc.doc_id => *window_doc,
                            Some(d) => unreachable!("the packer's buffer began in document {}, which is neither the current one nor the last one a flush ended in", d.doc_id),
                        };
                        *waiting = Some(Waiting {
                            shards: (writer.samples() / samples_per_shard) as usize,
                            position,
                            packer: point,
                            writer: writer.totals(),
                        });
                    }
                    Ok(())
                })?;
                self.next_doc_id += 1;
                self.current_input.0 += 1;
                if self
                    .packer
                    .window()
                    .document
                    .is_some_and(|d| d.doc_id == doc_id)
                {
                    self.window_doc = self.current_doc;
                }
                if let Some(record) = &self.record {
                    self.writer.poll()?;
                    write_waiting(&self.writer, &mut self.waiting, record, &self.done_inputs)?;
                }
            }
            Event::Skipped { .. } => self.current_input.1 += 1,
            Event::InputEnd { input, summary } => {
                let spec = &inputs[input + first];
                self.raw_bytes += summary.size;
                self.done_inputs.push(InputFile {
                    // The manifest records standard input as `-`, a file by the path as given.
                    path: if spec.path.is_none() {
                        "-".to_owned()
                    } else {
                        spec.name.clone()
                    },
                    size: summary.size,
                    sha256: summary.sha256,
                    documents: self.current_input.0,
                    skipped_records: skipping.then_some(self.current_input.1),
                    range: spec.range,
                });
                self.current_input = (0, 0);
            }
        }
        Ok(())
    }
}

/// Writes the waiting checkpoint if every shard it lists is complete on disk.
fn write_waiting(
    writer: &ShardWriter,
    waiting: &mut Option<Waiting>,
    record: &Record,
    done_inputs: &[InputFile],
) -> Result<(), DataError> {
    let Some(w) = waiting.as_ref() else {
        return Ok(());
    };
    if writer.shards().len() < w.shards {
        return Ok(());
    }
    let checkpoint = Checkpoint::new(
        record.tokenizer.clone(),
        record.options.clone(),
        record.inputs.clone(),
        done_inputs[..w.position.input as usize].to_vec(),
        w.position,
        w.packer,
        w.writer,
        writer.shards()[..w.shards].to_vec(),
    );
    checkpoint.write(writer.dir())?;
    *waiting = None;
    Ok(())
}

/// The options as the manifest records them.
pub(crate) fn manifest_options(config: &PackConfig, pack: &PackOptions) -> ManifestOptions {
    let mut options = ManifestOptions::new(
        pack,
        config.add_bos,
        config.add_eos,
        config.samples_per_shard,
        config.input_options(),
    );
    options.chat = chat_options(config);
    options.partition_size = config.partition_size;
    options
}

/// How conversations are encoded, as the manifest records it.
fn chat_options(config: &PackConfig) -> Option<ChatOptions> {
    config.read.chat.as_ref().map(|spec| ChatOptions {
        format: spec.format.name().to_owned(),
        train_on: spec.train_on.name().to_owned(),
    })
}

/// With `--resume`, a directory with a manifest holds a finished run: its manifest, if it is of
/// the same tokenizer, options and inputs (by path and size); a stale `resume.json` (a kill
/// between the manifest and its removal) goes.
fn finished_run(dir: &Path, record: &Record) -> Result<Option<Manifest>, DataError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ShardError::Io { path, source }.into()),
    };
    let manifest = Manifest::from_json(&bytes).map_err(|e| ShardError::Unreadable {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let mut differences = differences(
        (&manifest.tokenizer, &manifest.options),
        (&record.tokenizer, &record.options),
    );
    let then: Vec<(&str, u64)> = manifest
        .inputs
        .iter()
        .map(|i| (i.path.as_str(), i.size))
        .collect();
    let now: Vec<(&str, u64)> = record
        .inputs
        .iter()
        .map(|i| (i.path.as_str(), i.size))
        .collect();
    if then != now {
        differences.push("the inputs (paths or sizes) are not those it read".to_owned());
    }
    if !differences.is_empty() {
        return Err(ShardError::CannotResume {
            dir: dir.to_path_buf(),
            reason: format!(
                "the run there has finished, with other settings: {}",
                differences.join("; ")
            ),
        }
        .into());
    }
    Checkpoint::remove(dir)?;
    Ok(Some(manifest))
}

/// Refuses a resume whose tokenizer, options or inputs are not those the checkpoint recorded,
/// naming each difference.
fn check_same_run(dir: &Path, checkpoint: &Checkpoint, record: &Record) -> Result<(), DataError> {
    let mut differences = differences(
        (&checkpoint.tokenizer, &checkpoint.options),
        (&record.tokenizer, &record.options),
    );
    let (then, now) = (&checkpoint.inputs, &record.inputs);
    if then.len() != now.len() {
        differences.push(format!(
            "it read {} inputs, this run names {}",
            then.len(),
            now.len()
        ));
    }
    for (k, (a, b)) in then.iter().zip(now).enumerate() {
        if a.path != b.path {
            differences.push(format!("input {} was {:?}, is {:?}", k + 1, a.path, b.path));
        } else if a.size != b.size {
            differences.push(format!("{} had {} bytes, has {}", a.path, a.size, b.size));
        } else if a.mtime_ns != b.mtime_ns {
            differences.push(format!("{} was modified since", a.path));
        }
    }
    if differences.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 5;
    let more = differences.len().saturating_sub(SHOWN);
    differences.truncate(SHOWN);
    let mut reason = format!(
        "this run is not the one interrupted there: {}",
        differences.join("; ")
    );
    if more > 0 {
        reason.push_str(&format!(" (and {more} more)"));
    }
    Err(ShardError::CannotResume {
        dir: dir.to_path_buf(),
        reason,
    }
    .into())
}

/// The differences between two runs' tokenizers and options, one phrase each.
fn differences(
    (tok_then, opts_then): (&TokenizerInfo, &ManifestOptions),
    (tok_now, opts_now): (&TokenizerInfo, &ManifestOptions),
) -> Vec<String> {
    let mut out = Vec::new();
    if tok_then != tok_now {
        out.push(format!(
            "the tokenizer was sha256 {}... with {} pieces, is {}... with {}",
            tok_then.sha256.get(..12).unwrap_or(&tok_then.sha256),
            tok_then.vocab_size,
            tok_now.sha256.get(..12).unwrap_or(&tok_now.sha256),
            tok_now.vocab_size
        ));
    }
    let flat = |o: &ManifestOptions| {
        let mut pairs = Vec::new();
        flatten(
            "",
            &serde_json::to_value(o).expect("options serialise"),
            &mut pairs,
        );
        pairs
    };
    let (then, now) = (flat(opts_then), flat(opts_now));
    for (key, a) in &then {
        let b = now.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let b = b.unwrap_or(serde_json::Value::Null);
        if *a != b {
            out.push(format!("{key} was {a}, is {b}"));
        }
    }
    for (key, b) in &now {
        if !then.iter().any(|(k, _)| k == key) {
            out.push(format!("{key} was unset, is {b}"));
        }
    }
    out
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

/// Reads the inputs a resumed run had read to their end again and checks their SHA-256 against
/// what it recorded (progress in `counters.bytes_read`).
fn check_done_inputs(
    dir: &Path,
    inputs: &[InputSpec],
    done: &[InputFile],
    counters: &Counters,
    tick: &mut impl FnMut() -> Result<(), DataError>,
) -> Result<(), DataError> {
    for (spec, done) in inputs.iter().zip(done) {
        let (_, sha256) = crate::data::input::hash_input(spec, &counters.bytes_read, &mut *tick)?;
        if sha256 != done.sha256 {
            return Err(changed_since(dir, spec, done, &sha256));
        }
    }
    Ok(())
}

fn changed_since(dir: &Path, spec: &InputSpec, done: &InputFile, sha256: &str) -> DataError {
    ShardError::CannotResume {
        dir: dir.to_path_buf(),
        reason: format!(
            "{} changed since the interrupted run read it (sha256 {}... then, {}... now)",
            spec.name,
            &done.sha256[..12.min(done.sha256.len())],
            &sha256[..12.min(sha256.len())]
        ),
    }
    .into()
}
/// What a finished [`PackSession`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct PackReport {
    pub manifest: Manifest,
    /// The shard directory.
    pub output: PathBuf,
    /// Raw (compressed) input bytes of all inputs.
    pub input_bytes: u64,
    /// A resumed run: what was done before.
    pub resumed: Option<Resumed>,
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
