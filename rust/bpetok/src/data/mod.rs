//! The data half of the crate (cargo feature `data`, on by default): documents from corpora
//! ([`input`]), the read-encode-consume pipeline ([`pipeline`]), sliding-window-aware packing
//! ([`pack`]) and shards ([`shard`]).

pub mod input;
pub mod pack;
pub mod pipeline;
pub mod shard;

pub use pack::{PackError, PackOptions, Packer, Sample, Segment};
pub use shard::{verify_dir, Manifest, ManifestInfo, ShardError, ShardWriter, ShardWriterOptions};
