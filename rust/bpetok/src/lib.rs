//! `bpetok`: SentencePiece byte-fallback BPE, bit-identical to the `sentencepiece` package for
//! the Mistral / Mixtral vocabularies (and any BPE model with the identity normalizer and byte
//! fallback), in pure Rust.
//!
//! The crate has two halves:
//! - [`tokenizer`]: loading a `.model` file, encoding and decoding (always built);
//! - [`data`]: reading corpora, packing documents into sliding-window-aware samples, writing and
//!   verifying shards, and the sessions that run them (the default-on cargo feature `data`; a
//!   tokenizer-only user builds with `default-features = false` and compiles none of it).
//!
//! ```
//! let tok = bpetok::Tokenizer::mixtral_8x7b();
//! let ids = tok.encode("Hello world", true, false);
//! assert_eq!(ids, vec![1, 22557, 1526]);
//! assert_eq!(tok.decode(&ids).unwrap(), "Hello world");
//! ```

pub mod tokenizer;

#[cfg(feature = "data")]
pub mod data;

pub use tokenizer::decode::Decoder;
pub use tokenizer::error::{Error, Result};
pub use tokenizer::normalize::SPACE_SYMBOL;
pub use tokenizer::proto::PieceType;
pub use tokenizer::{
    CallerCpu, Claims, Encoder, Text, Tokenizer, MIXTRAL_8X7B_MODEL, PARALLEL_MIN_BYTES,
    PARALLEL_PART_BYTES,
};
