//! The public face of the core crate: a loaded model, the encoder tables derived from it, and a
//! pool of per-thread scratch space, with encode, decode and their batch forms.

pub(crate) mod bpe;
pub(crate) mod claims;
pub(crate) mod decode;
pub(crate) mod error;
pub(crate) mod model;
pub(crate) mod normalize;
pub(crate) mod placement;
pub(crate) mod proto;
pub(crate) mod snapshot;

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock, TryLockError};

use crate::tokenizer::error::{Error, Result};
use crate::tokenizer::model::Model;
use bpe::{EncoderTables, RecordedTables, Workspace};
pub use claims::Claims;
pub use placement::CallerCpu;

/// The Mistral 7B / Mixtral 8x7B SentencePiece model (32,000 pieces), embedded in the crate.
pub const MIXTRAL_8X7B_MODEL: &[u8] = include_bytes!("../../data/mixtral-8x7b-v0.1.model");
/// The derived tables of the embedded model, recorded beside it (see `snapshot`), at an address
/// aligned for the seed's table to be read in place.
pub(crate) static MIXTRAL_8X7B_TABLES: &[u8] = &ALIGNED_TABLES.0;
static ALIGNED_TABLES: &Aligned<[u8]> =
    &Aligned(*include_bytes!("../../data/mixtral-8x7b-v0.1.tables"));

/// Bytes at an address that is a multiple of 64.
#[repr(C, align(64))]
struct Aligned<B: ?Sized>(B);

/// Batches smaller than this many bytes of text are encoded on the calling thread only.
const MIN_BYTES_PER_THREAD: usize = 32 * 1024;
/// [`Tokenizer::encode_parallel`] cuts texts of at least this many bytes.
pub const PARALLEL_MIN_BYTES: usize = 1 << 20;
/// ... into parts of at least this many bytes ...
pub const PARALLEL_PART_BYTES: usize = 256 * 1024;
/// ... about this many per thread, so that parts of uneven cost balance.
const PARTS_PER_THREAD: usize = 16;
/// Scratch spaces kept for reuse; more threads than this still work, they just start cold.
const MAX_POOLED_WORKSPACES: usize = 64;

/// The one rule for storing token ids: the bytes of the smallest unsigned integer that holds
/// every id of a `vocab_size`-piece vocabulary: 2 (`uint16`) up to 65,536 pieces, 4 (`uint32`)
/// up to 2^32; `None` for an empty vocabulary or a larger one. Shards, Megatron files and numpy
/// arrays all follow it.
pub fn id_bytes_for_vocab(vocab_size: u64) -> Option<usize> {
    match vocab_size {
        0 => None,
        1..=65_536 => Some(2),
        65_537..=4_294_967_296 => Some(4),
        _ => None,
    }
}

/// A SentencePiece BPE tokenizer: the same ids as `sentencepiece` for the same `.model` file.
///
/// `Tokenizer` is `Send + Sync`: share one between threads. Each encoding thread borrows a
/// scratch space (buffers and a cache of recently seen segments) from an internal pool.
#[derive(Debug)]
pub struct Tokenizer {
    model: Model,
    /// Derived from `model` alone, once it is complete (see `EncoderTables::build`), at the first
    /// encoding: decoding needs none of them, and they are half of the embedded model's load.
    tables: OnceLock<EncoderTables>,
    /// A snapshot's recorded tables, which `tables` is built from.
    recorded: Option<RecordedTables<'static>>,
    model_bytes: Cow<'static, [u8]>,
    workspaces: Mutex<Vec<Workspace>>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Workspace")
    }
}

impl Tokenizer {
    /// Loads a model from the bytes of a SentencePiece `.model` file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        // The embedded model's costly tables are read from the snapshot recorded (and checked by
        // the tests) beside it, not derived again.
        if bytes == MIXTRAL_8X7B_MODEL {
            if let Some(tokenizer) = Self::from_snapshot(MIXTRAL_8X7B_TABLES, MIXTRAL_8X7B_MODEL) {
                return Ok(tokenizer);
            }
        }
        // The model, complete; the encoder's tables are derived from it at the first encoding.
        let model = Model::from_bytes(bytes)?;
        Ok(Self::from_parts(model, None, Cow::Owned(bytes.to_vec())))
    }

    /// The tokenizer of `model_bytes` from its recorded snapshot (`None` if it is not one).
    fn from_snapshot(snapshot: &'static [u8], model_bytes: &'static [u8]) -> Option<Self> {
        let snapshot::Snapshot {
            spec,
            merges,
            tables,
        } = snapshot::read(snapshot)?;
        let model = Model::assemble(spec, Some(merges)).ok()?;
        Some(Self::from_parts(
            model,
            Some(tables),
            Cow::Borrowed(model_bytes),
        ))
    }

    fn from_parts(
        model: Model,
        recorded: Option<RecordedTables<'static>>,
        model_bytes: Cow<'static, [u8]>,
    ) -> Self {
        Self {
            model,
            tables: OnceLock::new(),
            recorded,
            model_bytes,
            workspaces: Mutex::new(Vec::new()),
        }
    }

    /// The encoder's tables, built at the first call (from the snapshot's recorded tables when
    /// the model came from one).
    #[inline]
    pub(crate) fn tables(&self) -> &EncoderTables {
        self.tables.get().unwrap_or_else(|| self.build_tables())
    }

    /// Builds the encoder's tables without waiting for another thread to build them: threads that
    /// meet here each build them (the same tables, in about 4 ms), and the first to finish keeps
    /// its own. No lock is held while they are built (only `OnceLock::set`'s move of the built
    /// value, nanoseconds), so a child forked while a thread of its parent was building them builds
    /// them itself instead of waiting for a thread it does not have (see `take_workspace`).
    #[cold]
    #[inline(never)]
    fn build_tables(&self) -> &EncoderTables {
        let built = EncoderTables::build_with(&self.model, self.recorded.clone());
        let _ = self.tables.set(built);
        self.tables
            .get()
            .expect("the tables are set once a thread has built them")
    }

    /// Loads a model from a SentencePiece `.model` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    /// The embedded Mistral 7B / Mixtral 8x7B tokenizer.
    pub fn mixtral_8x7b() -> Self {
        // The embedded file is fixed at build time and loaded by the tests.
        Self::from_bytes(MIXTRAL_8X7B_MODEL).expect("the embedded Mixtral model loads")
    }

    /// The bytes of the `.model` file this tokenizer was loaded from.
    pub fn model_bytes(&self) -> &[u8] {
        &self.model_bytes
    }

    /// A handle for encoding on one thread: it holds one scratch space (with its segment cache)
    /// from the tokenizer's pool until it is dropped. Keep one per thread for long runs of calls.
    pub fn encoder(&self) -> Encoder<'_> {
        Encoder {
            tokenizer: self,
            workspace: Some(self.take_workspace()),
        }
    }

    /// `n` encoders for the `n` threads of one batch, encoder `k` for thread `k`. A batch that
    /// drops its vector whole (in index order, as a `Vec` does) gives each encoder's scratch
    /// space back so that the next `encoders(n)` hands it to the same `k` again: the thread that
    /// encodes the same stretch of the next batch keeps the segment cache it learned there.
    /// (One-at-a-time [`Tokenizer::encoder`] calls between batches take and give back the
    /// space at the end, the last index's.)
    pub fn encoders(&self, n: usize) -> Vec<Encoder<'_>> {
        let mut spaces: Vec<Workspace> = match self.pool() {
            // The last n given back, in the order they were given back (0, 1, ...).
            Some(mut pool) => {
                let keep = pool.len().saturating_sub(n);
                pool.drain(keep..).collect()
            }
            None => Vec::new(),
        };
        spaces.resize_with(n, Workspace::default);
        spaces
            .into_iter()
            .map(|ws| Encoder {
                tokenizer: self,
                workspace: Some(ws),
            })
            .collect()
    }

    fn encode_with(
        &self,
        ws: &mut Workspace,
        text: Text<'_>,
        add_bos: bool,
        add_eos: bool,
    ) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        self.encode_with_into(ws, text, add_bos, add_eos, &mut ids);
        ids
    }

    /// `encode_with`, appending the ids to `ids`.
    fn encode_with_into(
        &self,
        ws: &mut Workspace,
        text: Text<'_>,
        add_bos: bool,
        add_eos: bool,
        ids: &mut Vec<u32>,
    ) {
        let text = text.valid();
        if add_bos {
            ids.extend(self.model.bos_id);
        }
        bpe::encode_text(&self.model, self.tables(), &text, ws, ids);
        if add_eos {
            ids.extend(self.model.eos_id);
        }
        ws.release_large_buffers();
    }

    /// [`Tokenizer::encode_bytes`] on up to `num_threads` threads for one long text: a text of at
    /// least [`PARALLEL_MIN_BYTES`] is cut where the encoder itself would cut it (two characters
    /// that occur next to each other in no piece, so no merge can cross; see `docs/encoder.md`),
    /// into parts of at least [`PARALLEL_PART_BYTES`] encoded in parallel. The ids are those of
    /// `encode_bytes`, whatever the number of threads. Shorter texts, one thread, and models with
    /// UNUSED pieces (never cut) are encoded on the calling thread.
    pub fn encode_bytes_parallel(
        &self,
        text: &[u8],
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> Vec<u32> {
        self.parallel_with(Text::Bytes(text), add_bos, add_eos, num_threads)
    }

    /// [`Tokenizer::encode_bytes_parallel`] for a `str`.
    pub fn encode_parallel(
        &self,
        text: &str,
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> Vec<u32> {
        self.parallel_with(Text::Str(text), add_bos, add_eos, num_threads)
    }

    /// [`Tokenizer::encode_bytes_parallel`] as the parts it encodes on the threads, not joined:
    /// their concatenation is the ids of `text` (`<s>` at the start of the first part, `</s>` at
    /// the end of the last one). For callers that write the ids somewhere else, such as one
    /// output buffer that the threads fill in place, without a joined copy first. A text that is
    /// not cut is one part.
    pub fn encode_bytes_parts(
        &self,
        text: &[u8],
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> Vec<Vec<u32>> {
        self.parts_with(Text::Bytes(text), add_bos, add_eos, num_threads)
    }

    fn parallel_with(
        &self,
        text: Text<'_>,
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> Vec<u32> {
        let mut parts = self.parts_with(text, add_bos, add_eos, num_threads);
        if parts.len() == 1 {
            return parts.pop().unwrap_or_default();
        }
        // Each part is freed as soon as it is copied, so the peak is the parts and the part of
        // the result written so far, not twice the ids (`concat` would keep every part to the
        // end: tests/test_memory.py's huge document went over its bound with it).
        let total = parts.iter().map(Vec::len).sum();
        let mut ids = Vec::with_capacity(total);
        for part in parts {
            ids.extend_from_slice(&part);
        }
        ids
    }

    fn parts_with(
        &self,
        text: Text<'_>,
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> Vec<Vec<u32>> {
        if num_threads <= 1 || text.len() < PARALLEL_MIN_BYTES {
            return vec![self.encoder().encode_text(text, add_bos, add_eos)];
        }
        let text = text.valid();
        let tables = self.tables();
        let part = PARALLEL_PART_BYTES.max(text.len() / (num_threads * PARTS_PER_THREAD));
        let mut bounds = vec![0];
        bounds.extend(bpe::cut_points(&self.model, tables, &text, part));
        bounds.push(text.len());
        if bounds.len() <= 2 {
            return vec![self.encode(&text, add_bos, add_eos)];
        }
        let last = bounds.len() - 2;
        let parts: Vec<OnceLock<Vec<u32>>> = bounds[1..].iter().map(|_| OnceLock::new()).collect();
        let sizes: Vec<usize> = bounds.windows(2).map(|w| w[1] - w[0]).collect();
        run_parallel(
            &sizes,
            self.encoders(num_threads.min(parts.len())),
            |k, encoder| {
                let piece = &text[bounds[k]..bounds[k + 1]];
                let mut ids = Vec::with_capacity(piece.len() / 3 + 2);
                if k == 0 && add_bos {
                    ids.extend(self.model.bos_id);
                }
                let ws = encoder.workspace();
                bpe::encode_text_part(
                    &self.model,
                    tables,
                    piece,
                    k == 0 && self.model.add_dummy_prefix,
                    ws,
                    &mut ids,
                );
                ws.release_large_buffers();
                if k == last && add_eos {
                    ids.extend(self.model.eos_id);
                }
                let _ = parts[k].set(ids);
            },
        );
        parts
            .into_iter()
            .map(|part| part.into_inner().unwrap_or_default())
            .collect()
    }

    /// Encodes text to ids. `add_bos` / `add_eos` put `<s>` / `</s>` around the result (also for
    /// empty text); they add nothing if the model has no such control piece.
    pub fn encode(&self, text: &str, add_bos: bool, add_eos: bool) -> Vec<u32> {
        self.encoder().encode(text, add_bos, add_eos)
    }

    /// Encodes UTF-8 bytes to ids; each byte that does not start a valid UTF-8 character is read
    /// as U+FFFD, as SentencePiece does.
    pub fn encode_bytes(&self, text: &[u8], add_bos: bool, add_eos: bool) -> Vec<u32> {
        self.encoder().encode_bytes(text, add_bos, add_eos)
    }

    /// The ids of SentencePiece's algorithm written the plain way, for tests and fuzzing: the
    /// whole text normalized at once (invalid UTF-8 as in [`Tokenizer::encode_bytes`]) and encoded
    /// in one piece by a binary heap that looks merges up by text, with none of the encoder's
    /// tables (no cutting, no caches, no short-segment scan, no merge table). It must give the ids
    /// of [`Tokenizer::encode_bytes`] on every input; it is many times slower.
    #[doc(hidden)]
    pub fn encode_reference(&self, text: &[u8], add_bos: bool, add_eos: bool) -> Vec<u32> {
        let mut valid = String::with_capacity(text.len());
        normalize::for_each_utf8_run(text, |run| valid.push_str(run));
        let mut normalized = String::new();
        normalize::normalize_str_into(&valid, self.model.add_dummy_prefix, &mut normalized);
        let mut ids = Vec::new();
        if add_bos {
            ids.extend(self.model.bos_id);
        }
        bpe::encode_segment_textbook(&self.model, &normalized, &mut ids);
        if add_eos {
            ids.extend(self.model.eos_id);
        }
        ids
    }

    /// Encodes many texts on up to `num_threads` threads; results are in input order and do not
    /// depend on the number of threads.
    pub fn encode_batch<T: AsRef<[u8]> + Sync>(
        &self,
        texts: &[T],
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> Vec<Vec<u32>> {
        let slots: Vec<OnceLock<Vec<u32>>> = texts.iter().map(|_| OnceLock::new()).collect();
        self.encode_batch_each(texts, add_bos, add_eos, num_threads, |i, ids| {
            let _ = slots[i].set(ids);
        });
        slots
            .into_iter()
            .map(|slot| slot.into_inner().unwrap_or_default())
            .collect()
    }

    /// [`Tokenizer::encode_batch`] with each text's ids as the consecutive parts they were
    /// encoded in (see [`Tokenizer::encode_bytes_parts`]): one part per text, except when there
    /// are fewer texts than threads and one of them is long, when each text gets every thread and
    /// a long one is cut. For writing all ids to one buffer without joining them first.
    pub fn encode_batch_parts<T: AsRef<[u8]> + Sync>(
        &self,
        texts: &[T],
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> Vec<Vec<Vec<u32>>> {
        if splits_texts(texts, num_threads) {
            return texts
                .iter()
                .map(|text| self.encode_bytes_parts(text.as_ref(), add_bos, add_eos, num_threads))
                .collect();
        }
        self.encode_batch(texts, add_bos, add_eos, num_threads)
            .into_iter()
            .map(|ids| vec![ids])
            .collect()
    }

    /// Encodes many texts on up to `num_threads` threads (the calling one included) and hands
    /// each result to `each(index, ids)` on the thread that made it, as soon as it is made, in no
    /// particular order. For consumers that want to overlap their own work with encoding.
    pub fn encode_batch_each<T: AsRef<[u8]> + Sync>(
        &self,
        texts: &[T],
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
        each: impl Fn(usize, Vec<u32>) + Sync,
    ) {
        if splits_texts(texts, num_threads) {
            for (i, text) in texts.iter().enumerate() {
                each(
                    i,
                    self.encode_bytes_parallel(text.as_ref(), add_bos, add_eos, num_threads),
                );
            }
            return;
        }
        let sizes: Vec<usize> = texts.iter().map(|t| t.as_ref().len()).collect();
        let threads = self.batch_threads(sizes.iter().copied(), num_threads);
        run_parallel(&sizes, self.encoders(threads), |i, encoder| {
            each(i, encoder.encode_bytes(texts[i].as_ref(), add_bos, add_eos))
        });
    }

    /// How many threads a batch of texts of these lengths is worth (at most `requested`).
    pub fn batch_threads(&self, lengths: impl Iterator<Item = usize>, requested: usize) -> usize {
        let (count, total) = lengths.fold((0usize, 0usize), |(n, sum), len| (n + 1, sum + len));
        requested
            .min(total / MIN_BYTES_PER_THREAD + 1)
            .min(count)
            .max(1)
    }

    // The pool is only ever `try_lock`ed: encoding never waits for it. A busy pool costs a cold
    // scratch space (or one not kept), never a wait. This is what makes a tokenizer usable in a
    // child forked while another thread of the parent held the lock: the child has a copy of the
    // locked mutex and no thread that will ever unlock it, and a blocking `lock` there would hang
    // forever (`os.fork` and multiprocessing's `fork` start method do exactly this).
    fn take_workspace(&self) -> Workspace {
        self.pool()
            .and_then(|mut pool| pool.pop())
            .unwrap_or_default()
    }

    fn return_workspace(&self, ws: Workspace) {
        if let Some(mut pool) = self.pool() {
            if pool.len() < MAX_POOLED_WORKSPACES {
                pool.push(ws);
            }
        }
    }

    fn pool(&self) -> Option<MutexGuard<'_, Vec<Workspace>>> {
        match self.workspaces.try_lock() {
            Ok(pool) => Some(pool),
            // A panic while holding the lock left a valid Vec: keep using it.
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Decodes ids to text exactly as `SentencePieceProcessor.decode` does.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        decode::decode(&self.model, ids)
    }

    /// Decodes many id lists on up to `num_threads` threads, in input order.
    pub fn decode_batch<T: AsRef<[u32]> + Sync>(
        &self,
        batch: &[T],
        num_threads: usize,
    ) -> Result<Vec<String>> {
        for ids in batch {
            decode::check_ids(&self.model, ids.as_ref())?;
        }
        // Ids are ~4 bytes of text each: weigh them like text.
        let sizes: Vec<usize> = batch.iter().map(|ids| ids.as_ref().len()).collect();
        let threads = self.batch_threads(sizes.iter().map(|&ids| ids * 4), num_threads);
        let slots: Vec<OnceLock<Result<String>>> = batch.iter().map(|_| OnceLock::new()).collect();
        run_parallel(&sizes, vec![(); threads], |i, _| {
            let _ = slots[i].set(decode::decode(&self.model, batch[i].as_ref()));
        });
        slots
            .into_iter()
            .map(|slot| slot.into_inner().unwrap_or_else(|| Ok(String::new())))
            .collect()
    }

    /// The pieces of an encoding (byte pieces as `<0xXX>`), like `encode(..., out_type=str)`.
    pub fn encode_as_pieces(&self, text: &str) -> Vec<&str> {
        self.encode_text_as_pieces(Text::Str(text), false, false)
    }

    /// [`Tokenizer::encode_as_pieces`] of UTF-8 bytes (invalid UTF-8 as in
    /// [`Tokenizer::encode_bytes`]), with `<s>` / `</s>` around when asked.
    pub fn encode_bytes_as_pieces(&self, text: &[u8], add_bos: bool, add_eos: bool) -> Vec<&str> {
        self.encode_text_as_pieces(Text::Bytes(text), add_bos, add_eos)
    }

    /// [`Tokenizer::encode_as_pieces`] of a [`Text`]: a `str` is not checked again, bytes are
    /// read as [`Tokenizer::encode_bytes`] reads them.
    pub fn encode_text_as_pieces(&self, text: Text<'_>, add_bos: bool, add_eos: bool) -> Vec<&str> {
        self.encoder()
            .encode_text(text, add_bos, add_eos)
            .into_iter()
            .map(|id| self.model.piece(id as usize))
            .collect()
    }

    /// Bytes per id when ids are stored as unsigned integers: 2 up to 65,536 pieces, else 4
    /// (see [`id_bytes_for_vocab`]).
    pub fn id_bytes(&self) -> usize {
        id_bytes_for_vocab(self.vocab_size() as u64).unwrap_or(4)
    }

    /// The text of piece `id`.
    pub fn id_to_piece(&self, id: u32) -> Result<&str> {
        ((id as usize) < self.vocab_size())
            .then(|| self.model.piece(id as usize))
            .ok_or(Error::IdOutOfRange {
                id: i64::from(id),
                vocab_size: self.vocab_size(),
            })
    }

    /// The id of a piece, or the unknown id if there is no such piece (as SentencePiece does).
    pub fn piece_to_id(&self, piece: &str) -> u32 {
        self.model
            .reserved
            .get(piece)
            .copied()
            .or_else(|| self.model.mergeable_id(piece))
            .unwrap_or(self.model.unk_id)
    }

    /// Number of pieces in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    /// `<s>`, if the model has it as a control piece.
    pub fn bos_id(&self) -> Option<u32> {
        self.model.bos_id
    }

    /// `</s>`, if the model has it as a control piece.
    pub fn eos_id(&self) -> Option<u32> {
        self.model.eos_id
    }

    /// `<pad>`, if the model has it as a control piece (the Mistral models do not).
    pub fn pad_id(&self) -> Option<u32> {
        self.model.pad_id
    }

    /// The unknown piece (`<unk>`).
    pub fn unk_id(&self) -> u32 {
        self.model.unk_id
    }

    /// The type of piece `id`.
    pub fn piece_type(&self, id: u32) -> Result<crate::PieceType> {
        self.model
            .types
            .get(id as usize)
            .copied()
            .ok_or(Error::IdOutOfRange {
                id: i64::from(id),
                vocab_size: self.vocab_size(),
            })
    }
}

/// A text to encode: a `str` (valid UTF-8, nothing to check) or bytes (checked; each byte that
/// does not start a valid character read as U+FFFD, as SentencePiece reads them). For callers
/// that hold texts of both kinds, such as the Python binding (a `str`'s UTF-8 or a `bytes`).
#[derive(Clone, Copy, Debug)]
pub enum Text<'a> {
    Str(&'a str),
    Bytes(&'a [u8]),
}

impl<'a> Text<'a> {
    /// The text's bytes, as given.
    pub fn as_bytes(self) -> &'a [u8] {
        match self {
            Text::Str(s) => s.as_bytes(),
            Text::Bytes(b) => b,
        }
    }

    fn len(&self) -> usize {
        match self {
            Text::Str(s) => s.len(),
            Text::Bytes(b) => b.len(),
        }
    }

    /// The text as valid UTF-8: bytes that do not start a valid character read as U+FFFD, as
    /// SentencePiece reads them.
    pub(crate) fn valid(self) -> Cow<'a, str> {
        match self {
            Text::Str(s) => Cow::Borrowed(s),
            Text::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => {
                    let mut valid = String::with_capacity(b.len() + 16);
                    normalize::for_each_utf8_run(b, |run| valid.push_str(run));
                    Cow::Owned(valid)
                }
            },
        }
    }
}

/// Whether a batch is encoded one text at a time on all threads, a long text cut into parts:
/// when there are fewer texts than threads and one of them is long.
fn splits_texts<T: AsRef<[u8]>>(texts: &[T], num_threads: usize) -> bool {
    texts.len() < num_threads && texts.iter().any(|t| t.as_ref().len() >= PARALLEL_MIN_BYTES)
}

/// Runs `work(i, &mut state)` for every item `i` (of `sizes.len()`, of those sizes) on
/// `states.len()` threads (the caller's included), thread `k` with `states[k]` (for the encoders
/// of [`Tokenizer::encoders`], the same stretch of each batch gets the same cache). Indices are
/// handed out one at a time by [`Claims::by_size`] (each thread mostly takes neighbouring items,
/// its stretch's large ones first), so uneven items balance.
///
/// Each thread moves its state onto its own stack while it works (states side by side in one
/// vector would share cache lines between threads that write them all the time), and gives it
/// back at the end; they are dropped on the calling thread in index order.
fn run_parallel<S: Send>(sizes: &[usize], states: Vec<S>, work: impl Fn(usize, &mut S) + Sync) {
    let claims = Claims::by_size(sizes, states.len().max(1));
    let worker = |home: usize, mut state: S| {
        while let Some(i) = claims.next(home) {
            work(i, &mut state);
        }
        state
    };
    let mut states = states.into_iter();
    let Some(first) = states.next() else {
        return;
    };
    if states.len() == 0 {
        drop(worker(0, first));
        return;
    }
    let (caller, threads) = (CallerCpu::here(), states.len() + 1);
    let back: Vec<S> = std::thread::scope(|scope| {
        let handles: Vec<_> = states
            .enumerate()
            .map(|(k, state)| caller.spawn(scope, threads, move || worker(k + 1, state)))
            .collect();
        let mut back = vec![worker(0, first)];
        for handle in handles {
            match handle.join() {
                Ok(state) => back.push(state),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        back
    });
    drop(back);
}

/// Encodes on one thread with one scratch space from the tokenizer's pool (see
/// [`Tokenizer::encoder`]); the scratch space goes back to the pool when this is dropped.
pub struct Encoder<'a> {
    tokenizer: &'a Tokenizer,
    workspace: Option<Workspace>,
}

impl Encoder<'_> {
    fn workspace(&mut self) -> &mut Workspace {
        let tokenizer = self.tokenizer;
        self.workspace
            .get_or_insert_with(|| tokenizer.take_workspace())
    }

    /// [`Tokenizer::encode`] with this encoder's scratch space.
    pub fn encode(&mut self, text: &str, add_bos: bool, add_eos: bool) -> Vec<u32> {
        let tokenizer = self.tokenizer;
        tokenizer.encode_with(self.workspace(), Text::Str(text), add_bos, add_eos)
    }

    /// [`Tokenizer::encode_bytes`] with this encoder's scratch space.
    pub fn encode_bytes(&mut self, text: &[u8], add_bos: bool, add_eos: bool) -> Vec<u32> {
        self.encode_text(Text::Bytes(text), add_bos, add_eos)
    }

    /// [`Encoder::encode_bytes`], appending the ids to `ids` instead of returning a new vector:
    /// for a caller that turns each text's ids into something else (packed into an output
    /// buffer, say) and reuses one vector for all of them, so that its memory is touched once.
    pub fn encode_bytes_into(
        &mut self,
        text: &[u8],
        add_bos: bool,
        add_eos: bool,
        ids: &mut Vec<u32>,
    ) {
        self.encode_text_into(Text::Bytes(text), add_bos, add_eos, ids);
    }

    /// [`Encoder::encode_bytes_into`] of a [`Text`] of either kind.
    pub fn encode_text_into(
        &mut self,
        text: Text<'_>,
        add_bos: bool,
        add_eos: bool,
        ids: &mut Vec<u32>,
    ) {
        let tokenizer = self.tokenizer;
        tokenizer.encode_with_into(self.workspace(), text, add_bos, add_eos, ids);
    }

    /// [`Tokenizer::encode_parallel`] for a pipeline's encoding thread: a text of at least
    /// [`PARALLEL_MIN_BYTES`] is encoded on `num_threads` threads of its own (with one huge
    /// document the other encoders would have nothing to do), any other with this encoder's
    /// scratch space.
    pub fn encode_parallel(
        &mut self,
        text: &str,
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> Vec<u32> {
        if num_threads > 1 && text.len() >= PARALLEL_MIN_BYTES {
            self.tokenizer
                .encode_parallel(text, add_bos, add_eos, num_threads)
        } else {
            self.encode(text, add_bos, add_eos)
        }
    }

    /// [`Encoder::encode`] or [`Encoder::encode_bytes`], by the kind of the [`Text`].
    pub fn encode_text(&mut self, text: Text<'_>, add_bos: bool, add_eos: bool) -> Vec<u32> {
        let tokenizer = self.tokenizer;
        tokenizer.encode_with(self.workspace(), text, add_bos, add_eos)
    }
}

impl Drop for Encoder<'_> {
    fn drop(&mut self) {
        if let Some(ws) = self.workspace.take() {
            self.tokenizer.return_workspace(ws);
        }
    }
}

impl std::fmt::Debug for Encoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encoder")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{mpsc, PoisonError};
    use std::time::Duration;

    use super::*;

    /// Loading and decoding build no encoder tables (half of the load); the first encodings,
    /// on several threads at once, build them and give the ids of a tokenizer whose tables were
    /// derived from the `.model` file rather than read from the snapshot.
    #[test]
    fn encoder_tables_are_built_at_the_first_encoding() {
        let tok = Tokenizer::mixtral_8x7b();
        let text = "Hello world. Grüße, 日本語のテキスト, fn main() { return 42; }";
        let model = Model::from_bytes(MIXTRAL_8X7B_MODEL).unwrap();
        let derived = Tokenizer::from_parts(model, None, Cow::Borrowed(MIXTRAL_8X7B_MODEL));
        let ids = derived.encode(text, true, false);
        // Both decoders: the plain one, and the table decoder Python and `bpetok decode` use.
        assert_eq!(tok.decode(&ids).unwrap(), text);
        assert_eq!(tok.decoder().decode(&ids).unwrap(), text);
        assert!(tok.tables.get().is_none());
        assert!(tok.recorded.is_some());
        let texts = vec![text; 64];
        let batch = tok.encode_batch(&texts, true, false, 4);
        assert!(batch.iter().all(|got| *got == ids));
        assert!(tok.tables.get().is_some());
    }

    /// The encoders of one batch come back in their places: encoder k of the next `encoders(n)`
    /// has the cache that encoder k had, also after one-at-a-time encodes in between.
    #[test]
    fn encoders_get_back_their_own_scratch_spaces() {
        let tok = Tokenizer::mixtral_8x7b();
        let words = [
            "Pneumonoultramicroscopicsilicovolcanoconiosis",
            "Hippopotomonstrosesquippedaliophobia",
        ];
        // (The cache's keys are what is left of a word after the pieces cut off its ends.)
        let has = |e: &Encoder<'_>, word: &str| {
            e.workspace
                .as_ref()
                .unwrap()
                .caches_long_segment_with(&word[5..25])
        };
        for n in [2, 3] {
            let mut encoders = tok.encoders(n);
            assert_eq!(encoders.len(), n);
            for (k, word) in words.iter().enumerate() {
                encoders[k].encode(&format!("A {word} here"), false, false);
            }
            drop(encoders);
            tok.encode("something else", true, false);
            drop(tok.encoder());
            let encoders = tok.encoders(n);
            for (k, word) in words.iter().enumerate() {
                assert!(
                    has(&encoders[k], word),
                    "{n} encoders: encoder {k} lost {word}"
                );
                assert!(!has(&encoders[1 - k], word), "{n} encoders: {word} moved");
            }
            drop(encoders);
            // Empty the pool for the next round (a new tokenizer would do too).
            drop(tok.workspaces.lock().unwrap().drain(..));
        }
    }

    /// `run_parallel` gives every index to exactly one thread, thread k the state k, and drops
    /// the states in index order on the calling thread.
    #[test]
    fn run_parallel_keeps_the_states_in_order() {
        struct State<'a> {
            home: usize,
            seen: Vec<usize>,
            dropped: &'a std::sync::Mutex<Vec<(usize, Vec<usize>, std::thread::ThreadId)>>,
        }
        impl Drop for State<'_> {
            fn drop(&mut self) {
                let entry = (
                    self.home,
                    std::mem::take(&mut self.seen),
                    std::thread::current().id(),
                );
                self.dropped.lock().unwrap().push(entry);
            }
        }
        for threads in [1, 2, 3] {
            let dropped = std::sync::Mutex::new(Vec::new());
            let states = (0..threads)
                .map(|home| State {
                    home,
                    seen: Vec::new(),
                    dropped: &dropped,
                })
                .collect();
            run_parallel(&[1; 100], states, |i, state: &mut State<'_>| {
                state.seen.push(i)
            });
            let dropped = dropped.into_inner().unwrap();
            let homes: Vec<usize> = dropped.iter().map(|d| d.0).collect();
            assert_eq!(homes, (0..threads).collect::<Vec<_>>());
            assert!(dropped.iter().all(|d| d.2 == std::thread::current().id()));
            let mut all: Vec<usize> = dropped.iter().flat_map(|d| d.1.clone()).collect();
            all.sort_unstable();
            assert_eq!(all, (0..100).collect::<Vec<_>>());
        }
    }

    /// A child forked while another thread held the pool's lock has that lock held forever; an
    /// encode there must still finish. Holding the lock here stands for that thread.
    #[test]
    fn encoding_does_not_wait_for_a_held_pool_lock() {
        let tok = Tokenizer::mixtral_8x7b();
        let expected = tok.encode("Hello world, once more.", true, true);
        // Put a warm scratch space in the pool, so that the encode below would want it.
        drop(tok.encoder());
        let held = tok
            .workspaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let ids = tok.encode("Hello world, once more.", true, true);
                let batch = tok.encode_batch(&["Hello world, once more."; 64], true, true, 2);
                let _ = done_tx.send((ids, batch));
            });
            let got = done_rx.recv_timeout(Duration::from_secs(20));
            drop(held);
            let (ids, batch) = got.expect("encode waited for the pool's lock");
            assert_eq!(ids, expected);
            assert!(batch.iter().all(|ids| *ids == expected));
        });
    }
}

// Counting tokens (`Tokenizer::count`, `count_batch`, `Encoder::count`) is in its own module.
mod count;
