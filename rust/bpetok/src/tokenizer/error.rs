//! The one error type of the core crate: every way loading a model or decoding ids can fail.

use thiserror::Error;

/// Everything that can go wrong in `bpetok`. Encoding text never fails; loading a model and
/// decoding ids can.
#[derive(Debug, Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read model file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// The bytes are not a SentencePiece `ModelProto` (truncated, garbage, wrong file).
    #[error("not a SentencePiece model: the protobuf does not parse ({0})")]
    Parse(String),

    /// The model parses but is of a kind this library does not implement.
    #[error("unsupported SentencePiece model: {0}")]
    Unsupported(String),

    /// The model parses but its piece list contradicts itself.
    #[error("inconsistent SentencePiece model: {0}")]
    Inconsistent(String),

    /// An id given to `decode` or `id_to_piece` is not in the vocabulary.
    #[error(
        "token id {id} is out of range: the vocabulary has {vocab_size} pieces (ids 0 to {})",
        vocab_size.saturating_sub(1)
    )]
    IdOutOfRange { id: i64, vocab_size: usize },
}

pub type Result<T> = std::result::Result<T, Error>;
