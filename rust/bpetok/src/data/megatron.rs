//! Megatron-LM's indexed dataset files, `PREFIX.bin` and `PREFIX.idx`, written one sequence per
//! document: the layout of NVIDIA/Megatron-LM's `megatron/core/datasets/indexed_dataset.py`
//! (`_IndexWriter`, version 1, not multimodal). All integers little-endian, nothing padded:
//!
//! ```text
//! PREFIX.idx  offset 0   9 bytes  magic b"MMIDIDX\x00\x00"
//!             offset 9   u64      version, 1
//!             offset 17  u8       dtype code of the tokens (see MegatronDtype::code)
//!             offset 18  u64      sequence count S
//!             offset 26  u64      document index length D = S + 1
//!             offset 34  i32[S]   sequence lengths, in tokens
//!                        i64[S]   sequence pointers: byte offset of each sequence in PREFIX.bin
//!                        i64[D]   document indices: 0, 1, ..., S (one sequence per document)
//! PREFIX.bin  the tokens of every sequence back to back, in the dtype of the code
//! ```
//!
//! Both files are written under temporary names and renamed when complete, `.idx` last (an old
//! `.idx` is removed first): a prefix whose `.idx` exists is complete. The reader
//! (`bpetok.megatron.MegatronDataset`) is in Python.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::data::error::{DataError, OptionsError};
use crate::data::output::AtomicFile;
use crate::data::shard::TokenDtype;

/// The first bytes of a `.idx` file.
pub const MAGIC: &[u8; 9] = b"MMIDIDX\x00\x00";
/// The index version written.
pub const VERSION: u64 = 1;

/// The token dtypes bpetok writes, with Megatron's codes (1 uint8, 2 int8, 3 int16, 4 int32,
/// 5 int64, 6 float64, 7 float32, 8 uint16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MegatronDtype {
    Uint16,
    /// For vocabularies above 65,536 pieces: Megatron has no unsigned 32-bit code.
    Int32,
    /// For vocabularies above 2^31 pieces.
    Int64,
}

impl MegatronDtype {
    /// The dtype for a vocabulary: the shards' rule ([`TokenDtype::for_vocab_size`]), with
    /// `uint32` as `int32` (or `int64` past 2^31 pieces), which Megatron has codes for. `None` for
    /// a vocabulary no token dtype holds. (The Python writer had a `uint8` case for at most 256
    /// pieces; a byte-fallback model, the only kind bpetok loads, has at least 257, so the two
    /// rules agree on every model.)
    pub fn for_vocab_size(vocab_size: u64) -> Option<Self> {
        Some(match TokenDtype::for_vocab_size(vocab_size)? {
            TokenDtype::Uint16 => MegatronDtype::Uint16,
            TokenDtype::Uint32 if vocab_size <= 1 << 31 => MegatronDtype::Int32,
            TokenDtype::Uint32 => MegatronDtype::Int64,
        })
    }

    /// The numpy name of the dtype: `uint16`, `int32` or `int64`.
    pub fn name(self) -> &'static str {
        match self {
            MegatronDtype::Uint16 => "uint16",
            MegatronDtype::Int32 => "int32",
            MegatronDtype::Int64 => "int64",
        }
    }

    /// Megatron's dtype code.
    pub fn code(self) -> u8 {
        match self {
            MegatronDtype::Uint16 => 8,
            MegatronDtype::Int32 => 4,
            MegatronDtype::Int64 => 5,
        }
    }

    /// Bytes per token.
    pub fn size(self) -> usize {
        match self {
            MegatronDtype::Uint16 => 2,
            MegatronDtype::Int32 => 4,
            MegatronDtype::Int64 => 8,
        }
    }

    fn push(self, id: u32, out: &mut Vec<u8>) {
        match self {
            MegatronDtype::Uint16 => out.extend_from_slice(&(id as u16).to_le_bytes()),
            MegatronDtype::Int32 => out.extend_from_slice(&(id as i32).to_le_bytes()),
            MegatronDtype::Int64 => out.extend_from_slice(&i64::from(id).to_le_bytes()),
        }
    }
}

/// The two paths of a prefix. A prefix that ends in `.bin` or `.idx` is refused (it would write
/// `x.bin.bin`): the message names the prefix to use.
pub fn prefix_paths(prefix: &Path) -> Result<(PathBuf, PathBuf), OptionsError> {
    let text = prefix.to_string_lossy();
    for ext in [".bin", ".idx"] {
        if let Some(stem) = text.strip_suffix(ext) {
            return Err(OptionsError::new(
                "output",
                format!(
                    "{text} ends in {ext}, but the output is a prefix (PREFIX.bin and \
                     PREFIX.idx are written): the prefix is {stem}"
                ),
            ));
        }
    }
    let with = |ext: &str| {
        let mut path = prefix.as_os_str().to_owned();
        path.push(ext);
        PathBuf::from(path)
    };
    Ok((with(".bin"), with(".idx")))
}

/// Writes `PREFIX.bin` / `PREFIX.idx`, one sequence per document. Dropped without
/// [`MegatronWriter::finish`], it leaves nothing under either name. Memory: 4 bytes per document.
pub struct MegatronWriter {
    bin: AtomicFile,
    idx_path: PathBuf,
    dtype: MegatronDtype,
    lengths: Vec<i32>,
    scratch: Vec<u8>,
}

/// Bytes of tokens gathered before they are written.
const FLUSH_BYTES: usize = 1 << 20;

impl MegatronWriter {
    pub fn create(prefix: &Path, dtype: MegatronDtype) -> Result<Self, DataError> {
        let (bin_path, idx_path) = prefix_paths(prefix)?;
        Ok(MegatronWriter {
            bin: AtomicFile::create(&bin_path)?,
            idx_path,
            dtype,
            lengths: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Documents added so far.
    pub fn documents(&self) -> u64 {
        self.lengths.len() as u64
    }

    /// Adds one document (one sequence). A document of more than 2^31 - 1 tokens is an error
    /// (Megatron's lengths are int32).
    pub fn add_document(&mut self, ids: &[u32]) -> Result<(), DataError> {
        let Ok(len) = i32::try_from(ids.len()) else {
            return Err(DataError::output(self.bin.path())(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a document has {} tokens, more than the 2147483647 Megatron's int32 \
                     lengths hold",
                    ids.len()
                ),
            )));
        };
        for &id in ids {
            self.dtype.push(id, &mut self.scratch);
        }
        self.lengths.push(len);
        if self.scratch.len() >= FLUSH_BYTES {
            self.bin.write_all(&self.scratch)?;
            self.scratch.clear();
        }
        Ok(())
    }

    /// Writes the index and puts both files in place, `.idx` last.
    pub fn finish(mut self) -> Result<(), DataError> {
        self.bin.write_all(&self.scratch)?;
        let count = self.lengths.len() as u64;
        let mut idx = AtomicFile::create(&self.idx_path)?;
        let mut header = Vec::with_capacity(34);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.push(self.dtype.code());
        header.extend_from_slice(&count.to_le_bytes());
        header.extend_from_slice(&(count + 1).to_le_bytes());
        idx.write_all(&header)?;
        let mut buf = Vec::with_capacity(FLUSH_BYTES + 8);
        let flush = |buf: &mut Vec<u8>, idx: &mut AtomicFile, force: bool| {
            if force || buf.len() >= FLUSH_BYTES {
                idx.write_all(buf)?;
                buf.clear();
            }
            Ok::<(), DataError>(())
        };
        for &len in &self.lengths {
            buf.extend_from_slice(&len.to_le_bytes());
            flush(&mut buf, &mut idx, false)?;
        }
        let mut pointer = 0i64;
        for &len in &self.lengths {
            buf.extend_from_slice(&pointer.to_le_bytes());
            pointer += i64::from(len) * self.dtype.size() as i64;
            flush(&mut buf, &mut idx, false)?;
        }
        for d in 0..=count as i64 {
            buf.extend_from_slice(&d.to_le_bytes());
            flush(&mut buf, &mut idx, false)?;
        }
        flush(&mut buf, &mut idx, true)?;
        // An old .idx beside the new .bin would look complete: remove it first, put .idx last.
        match fs::remove_file(&self.idx_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(DataError::output(&self.idx_path)(e)),
        }
        self.bin.commit()?;
        idx.commit()
    }
}
