//! `bpetok`: SentencePiece byte-fallback BPE, bit-identical to the `sentencepiece` package for
//! the Mistral / Mixtral vocabularies (and any BPE model with the identity normalizer and byte
//! fallback), in pure Rust.
//!
//! ```
//! let tok = bpetok::Tokenizer::mixtral_8x7b();
//! let ids = tok.encode("Hello world", true, false);
//! assert_eq!(ids, vec![1, 22557, 1526]);
//! assert_eq!(tok.decode(&ids).unwrap(), "Hello world");
//! ```

mod bpe;
mod decode;
mod error;
pub mod input;
mod model;
mod normalize;
pub mod pack;
pub mod pipeline;
mod proto;
pub mod shard;
mod tokenizer;

pub use error::{Error, Result};
pub use normalize::SPACE_SYMBOL;
pub use pack::{PackError, PackOptions, Packer, Sample, Segment};
pub use proto::PieceType;
pub use shard::{verify_dir, Manifest, ManifestInfo, ShardError, ShardWriter, ShardWriterOptions};
pub use tokenizer::{Encoder, Tokenizer, MIXTRAL_8X7B_MODEL};
