//! `resume.json`: what an unfinished packing run records so that `bpetok pack --resume` can
//! continue it and end with the bytes an uninterrupted run writes. It is rewritten (atomically:
//! temporary, fsync, rename, directory fsync) each time a shard is complete on disk, and removed
//! once the manifest is written. It holds:
//!
//! - what must not change for a resume: the tokenizer, the options, and every input's path,
//!   size and modification time (and the SHA-256 of each input read to its end);
//! - the complete shards (as the manifest will list them) and the writer's totals;
//! - where to continue: the packer's state when its current buffer began ([`ResumePoint`]), and
//!   the input record that buffer began in.
//!
//! A kill at any moment leaves either the last `resume.json` (every shard it lists complete,
//! fsynced before it was written), or none and no manifest: a run that never completed a shard,
//! which `--resume` starts again.

use std::fs;
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::writer::{sync_dir, write_atomically};
use super::{InputFile, ManifestOptions, ShardEntry, ShardError, TokenizerInfo, RESUME_FILE};
use crate::data::input::InputSpec;
use crate::data::pack::ResumePoint;

/// The value of `resume.json`'s `format` field.
pub const RESUME_FORMAT: &str = "bpetok-pack-resume";

/// The `format_version` this module writes and reads.
const RESUME_VERSION: u64 = 1;

/// The contents of `resume.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub format: String,
    pub format_version: u64,
    pub tokenizer: TokenizerInfo,
    /// The options as the manifest will record them.
    pub options: ManifestOptions,
    /// Every input of the run, in order.
    pub inputs: Vec<InputStat>,
    /// The inputs before [`Position::input`], read to their end, as the manifest will list them.
    pub done_inputs: Vec<InputFile>,
    pub position: Position,
    pub packer: ResumePoint,
    pub writer: WriterTotals,
    /// The complete shards, as the manifest will list them.
    pub shards: Vec<ShardEntry>,
}

/// An input as the run found it: the path as given, its size and its modification time (in
/// nanoseconds since the Unix epoch; 0 where the file system has none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputStat {
    pub path: String,
    pub size: u64,
    pub mtime_ns: u64,
}

/// The stat of every input, or `None` when one is standard input (which cannot be read again,
/// so the run cannot be resumed).
pub fn input_stats(inputs: &[InputSpec]) -> Result<Option<Vec<InputStat>>, ShardError> {
    let mut stats = Vec::with_capacity(inputs.len());
    for spec in inputs {
        let Some(path) = &spec.path else {
            return Ok(None);
        };
        let meta = fs::metadata(path).map_err(|source| ShardError::Io {
            path: path.clone(),
            source,
        })?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        stats.push(InputStat {
            path: spec.name.clone(),
            size: meta.len(),
            mtime_ns,
        });
    }
    Ok(Some(stats))
}

/// Where the resumed run starts reading: record `index` of input `input` (counted from 0 in the
/// run's input list), the document with id `doc_id`; `documents` and `skipped_records` are what
/// that input had given before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    pub input: u64,
    pub index: u64,
    pub doc_id: u64,
    pub documents: u64,
    pub skipped_records: u64,
}

/// What the writer had been given when the checkpoint's last shard filled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterTotals {
    pub samples: u64,
    pub padding_tokens: u64,
    pub context_tokens: u64,
    pub target_tokens: u64,
}

impl Checkpoint {
    /// A checkpoint of this format version (the other fields as given).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tokenizer: TokenizerInfo,
        options: ManifestOptions,
        inputs: Vec<InputStat>,
        done_inputs: Vec<InputFile>,
        position: Position,
        packer: ResumePoint,
        writer: WriterTotals,
        shards: Vec<ShardEntry>,
    ) -> Self {
        Checkpoint {
            format: RESUME_FORMAT.to_owned(),
            format_version: RESUME_VERSION,
            tokenizer,
            options,
            inputs,
            done_inputs,
            position,
            packer,
            writer,
            shards,
        }
    }

    /// Writes `resume.json` in `dir` atomically and makes it durable.
    pub fn write(&self, dir: &Path) -> Result<(), ShardError> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a checkpoint serialises to JSON");
        bytes.push(b'\n');
        write_atomically(dir, RESUME_FILE, |w| std::io::Write::write_all(w, &bytes))?;
        sync_dir(dir)
    }

    /// Reads `resume.json` in `dir`: `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Self>, ShardError> {
        let path = dir.join(RESUME_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ShardError::Io { path, source }),
        };
        let unreadable = |reason: String| ShardError::Unreadable {
            path: path.clone(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| unreadable(format!("not JSON: {e}")))?;
        let format = value.get("format").and_then(|f| f.as_str());
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if format != Some(RESUME_FORMAT) || version != Some(RESUME_VERSION) {
            return Err(unreadable(format!(
                "not a resume file of this version (format {format:?}, version {version:?}; \
                 expected {RESUME_FORMAT:?}, {RESUME_VERSION})"
            )));
        }
        let checkpoint: Checkpoint =
            serde_json::from_value(value).map_err(|e| unreadable(e.to_string()))?;
        if checkpoint.shards.is_empty()
            || checkpoint.position.input as usize > checkpoint.inputs.len()
            || checkpoint.done_inputs.len() as u64 != checkpoint.position.input
        {
            return Err(unreadable(
                "its shards, inputs and position do not agree".to_owned(),
            ));
        }
        Ok(Some(checkpoint))
    }

    /// Removes `resume.json` from `dir` (nothing if there is none) and makes that durable.
    pub fn remove(dir: &Path) -> Result<(), ShardError> {
        let path = dir.join(RESUME_FILE);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ShardError::Io { path, source }),
        }
    }
}
