//! The errors of the data half: [`OptionsError`] for an option out of bounds, and [`DataError`],
//! what a packing or encoding run ([`crate::data::session`], [`crate::data::encode`]) fails with.
//! Messages say what went wrong and where, never which command-line flag or API call fixes it:
//! the caller (the CLI, the Python binding) adds that in its own words from [`DataError::kind`].

use std::fmt;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::data::input::InputError;
use crate::data::shard::ShardError;

/// A packing or encoding option that cannot be used: which option, and what is wrong with its
/// value (the value, the bound and why). Display: `"{option}: {problem}"`, e.g.
/// `seq_len: 1 is too small: a sample needs at least 2 tokens, since the first token of a segment
/// is never a target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionsError {
    /// The option's name: `seq_len`, `window`, `overlap`, `pad_id`, `samples_per_shard`,
    /// `pack_buffer`, `vocab_size`, `bos`, `eos`, `output`.
    pub option: &'static str,
    pub problem: String,
}

impl OptionsError {
    pub fn new(option: &'static str, problem: impl Into<String>) -> Self {
        OptionsError {
            option,
            problem: problem.into(),
        }
    }

    /// Always `invalid_option`.
    pub fn kind(&self) -> &'static str {
        "invalid_option"
    }
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.option, self.problem)
    }
}

impl std::error::Error for OptionsError {}

/// Why a packing or encoding run failed. Display is the inner error's.
#[derive(Debug, Error)]
pub enum DataError {
    /// Reading an input failed (the file and line are in the message).
    #[error(transparent)]
    Input(InputError),
    /// An option is out of bounds.
    #[error(transparent)]
    Options(OptionsError),
    /// Writing or checking a shard directory failed.
    #[error(transparent)]
    Shard(ShardError),
    /// Writing an output file (encode's JSONL or Megatron files, stdout) failed.
    #[error("{}: {source}", path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The caller's `tick` stopped the run (the caller keeps its own reason).
    #[error("the run was stopped")]
    Stopped,
}

impl DataError {
    /// A stable snake_case name: the inner error's kind for shard and option errors, `input`,
    /// `output` or `stopped` otherwise.
    pub fn kind(&self) -> &'static str {
        match self {
            DataError::Input(e) => e.kind(),
            DataError::Options(e) => e.kind(),
            DataError::Shard(e) => e.kind(),
            DataError::Output { .. } => "output",
            DataError::Stopped => "stopped",
        }
    }

    pub(crate) fn output(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> DataError {
        let path = path.into();
        move |source| DataError::Output { path, source }
    }
}

impl From<InputError> for DataError {
    fn from(err: InputError) -> Self {
        DataError::Input(err)
    }
}

impl From<OptionsError> for DataError {
    fn from(err: OptionsError) -> Self {
        DataError::Options(err)
    }
}

impl From<ShardError> for DataError {
    /// A shard writer's option error is an option error of the run.
    fn from(err: ShardError) -> Self {
        match err {
            ShardError::Options(e) => DataError::Options(e),
            other => DataError::Shard(other),
        }
    }
}
