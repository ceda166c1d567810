//! The data half of the crate (cargo feature `data`, on by default): documents from corpora
//! ([`input`]), the read-encode-consume pipeline ([`pipeline`]), sliding-window-aware packing
//! ([`pack`]), shards ([`shard`]), and the runs built on them: a packing run into a shard
//! directory ([`session`]), encoding into JSONL or Megatron-LM files ([`encode`],
//! [`megatron`]), decoding ids JSONL ([`decode`]) and counting tokens ([`count`]). Their errors
//! are in [`error`].

pub mod chat;
pub mod count;
pub mod decode;
pub mod encode;
pub mod error;
pub mod input;
pub mod megatron;
mod output;
pub mod pack;
pub mod partition;
pub mod pipeline;
pub mod session;
pub mod shard;

pub use count::{count_to, CountReport, InputCount};
pub use decode::decode_to;
pub use encode::{encode_to, EncodeReport, IdsOutput};
pub use error::{DataError, OptionsError};
pub use pack::{PackOptions, Packer, Sample, Segment};
pub use session::{PackConfig, PackReport, PackSession, Resumed};
pub use shard::{
    check_tokenizer, tokenizer_sha256, verify_dir, verify_dir_with, Manifest, ManifestInfo,
    ShardError, ShardWriter, ShardWriterOptions,
};
