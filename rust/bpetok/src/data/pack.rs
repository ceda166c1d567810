//! Packing documents into fixed-length training samples. This module owns the three steps: cutting
//! long documents into chunks that repeat the sliding window's worth of context, placing chunks
//! into samples by best-fit decreasing within a bounded buffer, and shuffling the samples with a
//! seeded generator written here (so the order never depends on a crate's version).
//!
//! Pure Rust, single-threaded, deterministic: the same documents and options give the same samples,
//! byte for byte. `docs/packing.md` states the semantics with worked examples; `tests/pack.rs`
//! checks every one of them.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::data::error::OptionsError;

/// The default number of chunks the packer holds before it places them (`pack_buffer`). Memory is
/// about `pack_buffer * seq_len * 4` bytes of tokens: 64 MiB at `seq_len` 4096.
pub const DEFAULT_PACK_BUFFER: usize = 4096;

/// The longest sample, in tokens: 1,048,576 (2^20). Segment boundaries go to FlashAttention as
/// int32 `cu_seqlens` over a whole batch, so a batch of samples must stay well below 2^31 tokens;
/// and the packer holds `pack_buffer` chunks of up to `seq_len` tokens, so a larger `seq_len`
/// multiplies its memory. No model trains on longer samples today; a value beyond this is a
/// mistake (a `seq_len` of 10^9 on a 21 MB corpus wrote a 10 GB file of 99.85% padding).
pub const MAX_SEQ_LEN: usize = 1 << 20;

/// The most chunks the packer may hold (`pack_buffer`).
pub const MAX_PACK_BUFFER: usize = 1 << 20;

/// The most tokens the packer may hold, `pack_buffer * seq_len`: 2^30 tokens, 4 GiB of ids.
pub const MAX_PACK_BUFFER_TOKENS: usize = 1 << 30;

/// The largest sliding window, `u32::MAX` (readers and kernels take it as a 32-bit integer).
pub const MAX_WINDOW: usize = u32::MAX as usize;

/// Checks a sample length against `2..=MAX_SEQ_LEN` (one rule for the packer and the writer).
pub(crate) fn check_seq_len(seq_len: usize) -> Result<(), OptionsError> {
    if seq_len < 2 {
        return Err(OptionsError::new(
            "seq_len",
            format!(
                "{seq_len} is too small: a sample needs at least 2 tokens, since the first token \
                 of a segment is never a target"
            ),
        ));
    }
    if seq_len > MAX_SEQ_LEN {
        return Err(OptionsError::new(
            "seq_len",
            format!(
                "{seq_len} is more than the {MAX_SEQ_LEN} tokens a sample may hold (attention \
                 kernels take segment offsets as int32, and packing holds many samples of this \
                 length in memory)"
            ),
        ));
    }
    Ok(())
}

/// The label of a token that is not a target (Hugging Face's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// How documents are cut and packed. Build with [`PackOptions::new`] and adjust the fields; every
/// entry point checks them with [`PackOptions::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackOptions {
    /// Tokens per sample, L (2 to [`MAX_SEQ_LEN`]).
    pub seq_len: usize,
    /// Sliding attention window W: a token attends to itself and the W-1 tokens before it within
    /// its document (FlashAttention `window_size=(W-1, 0)`). 0 means full causal attention.
    pub window: usize,
    /// Context tokens repeated at the start of every chunk after a document's first; `None` for the
    /// default (W when 0 < W < L, else 0). Must be below `seq_len`. 0 is raised to 1, see
    /// [`PackOptions::overlap_tokens`].
    pub overlap: Option<usize>,
    /// Chunks held before they are placed into samples (1 to [`MAX_PACK_BUFFER`], and at most
    /// [`MAX_PACK_BUFFER_TOKENS`] tokens). Larger packs tighter.
    pub pack_buffer: usize,
    /// Seed of the sample shuffle.
    pub seed: u64,
    /// Token id written into padding (never a target, never attended to by a document token).
    pub pad_id: u32,
}

impl PackOptions {
    /// Options for `seq_len` L and `window` W with the default overlap, a buffer of
    /// [`DEFAULT_PACK_BUFFER`] chunks, seed 0 and padding id 0.
    pub fn new(seq_len: usize, window: usize) -> Self {
        PackOptions {
            seq_len,
            window,
            overlap: None,
            pack_buffer: DEFAULT_PACK_BUFFER,
            seed: 0,
            pad_id: 0,
        }
    }

    /// Checks the options: `seq_len` in `2..=`[`MAX_SEQ_LEN`], `window` at most [`MAX_WINDOW`],
    /// `overlap` below `seq_len`, `pack_buffer` in `1..=`[`MAX_PACK_BUFFER`] and at most
    /// [`MAX_PACK_BUFFER_TOKENS`] tokens held. The message names the option, its value, the bound
    /// and why.
    pub fn validate(&self) -> Result<(), OptionsError> {
        check_seq_len(self.seq_len)?;
        let seq_len = self.seq_len;
        if self.window > MAX_WINDOW {
            return Err(OptionsError::new(
                "window",
                format!(
                    "{} is more than {MAX_WINDOW}, the largest window attention kernels take",
                    self.window
                ),
            ));
        }
        if let Some(overlap) = self.overlap {
            if overlap >= seq_len {
                return Err(OptionsError::new(
                    "overlap",
                    format!(
                        "{overlap} is not below the sample length {seq_len}: a chunk after a \
                         document's first would be all context and hold no target (at most {} \
                         fits)",
                        seq_len - 1
                    ),
                ));
            }
        }
        if self.pack_buffer == 0 {
            return Err(OptionsError::new(
                "pack_buffer",
                "0 is too small: the packer must hold at least one chunk",
            ));
        }
        if self.pack_buffer > MAX_PACK_BUFFER {
            return Err(OptionsError::new(
                "pack_buffer",
                format!(
                    "{} is more than the {MAX_PACK_BUFFER} chunks the packer may hold (a larger \
                     buffer packs no tighter in practice, and costs memory)",
                    self.pack_buffer
                ),
            ));
        }
        // Both factors are at most 2^20 here, so the product fits.
        let held = self.pack_buffer * seq_len;
        if held > MAX_PACK_BUFFER_TOKENS {
            return Err(OptionsError::new(
                "pack_buffer",
                format!(
                    "{} chunks of up to {seq_len} tokens is {held} tokens, more than the \
                     {MAX_PACK_BUFFER_TOKENS} tokens (4 GiB) the packer may hold in memory; at \
                     most {} chunks fit at this sample length",
                    self.pack_buffer,
                    MAX_PACK_BUFFER_TOKENS / seq_len
                ),
            ));
        }
        Ok(())
    }

    /// The overlap asked for: `overlap` if set, else W when 0 < W < L, else 0. With W = 0 no
    /// finite overlap keeps full causal context; with W >= L the W tokens a target needs cannot fit
    /// in an L-token sample beside it. Both lose context at chunk boundaries (docs/packing.md).
    pub fn requested_overlap(&self) -> usize {
        self.overlap
            .unwrap_or(if self.window > 0 && self.window < self.seq_len {
                self.window
            } else {
                0
            })
    }

    /// The context tokens that actually begin every chunk after a document's first:
    /// `max(1, requested_overlap())`. At least one, because a target is predicted at the token
    /// before it and a segment's first token has no such token in its segment; with 0 the first
    /// token of every continuation chunk would never be a target.
    pub fn overlap_tokens(&self) -> usize {
        self.requested_overlap().max(1)
    }
}

/// One piece of a document, as positions: tokens `doc_start .. doc_start + len` of document
/// `doc_id`, of which the first `context` are repeated from the previous chunk as context only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Chunk {
    pub doc_id: u64,
    pub doc_start: u64,
    pub len: u32,
    pub context: u32,
}

/// Cuts a document of `doc_len` tokens into chunks (positions only). An empty document has none; a
/// document of at most L tokens is one chunk; a longer one is chunk 0 = `[0, L)` and then chunks
/// that each start `overlap_tokens()` before their first target, which is where the previous
/// chunk's targets ended. Every chunk but the last has exactly L tokens.
pub fn chunk_document(
    doc_id: u64,
    doc_len: usize,
    opts: &PackOptions,
) -> Result<Vec<Chunk>, OptionsError> {
    opts.validate()?;
    Ok(
        ChunkBounds::new(doc_len, opts.seq_len, opts.overlap_tokens())
            .map(|(start, len, context)| Chunk {
                doc_id,
                doc_start: start as u64,
                len: len as u32,
                context: context as u32,
            })
            .collect(),
    )
}

/// `(start, len, context)` of each chunk of one document, in document order. Options are
/// already validated, so `overlap < seq_len` and every step advances by `seq_len - overlap >= 1`.
struct ChunkBounds {
    doc_len: usize,
    seq_len: usize,
    overlap: usize,
    /// The document position of the next chunk's first target; `None` once all are cut.
    next_target: Option<usize>,
}

impl ChunkBounds {
    fn new(doc_len: usize, seq_len: usize, overlap: usize) -> Self {
        ChunkBounds {
            doc_len,
            seq_len,
            overlap,
            next_target: (doc_len > 0).then_some(0),
        }
    }
}

impl Iterator for ChunkBounds {
    type Item = (usize, usize, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let target = self.next_target?;
        // Chunk 0 starts at position 0 with no context; its first target is position 1.
        let context = if target == 0 { 0 } else { self.overlap };
        let start = target - context;
        let len = self.seq_len.min(self.doc_len - start);
        let end = start + len;
        self.next_target = (end < self.doc_len).then_some(end);
        Some((start, len, context))
    }
}

/// A run of tokens inside a sample: a chunk of a document, or the padding at a sample's tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Segment {
    /// The source document (the record's index over all inputs), `None` for padding.
    pub doc_id: Option<u64>,
    /// Offset of the segment's first token within the document's token list (0 for padding).
    pub doc_start: u64,
    pub len: u32,
    /// Leading tokens that are context only (repeated from the document's previous chunk).
    pub context: u32,
}

impl Segment {
    pub fn is_padding(&self) -> bool {
        self.doc_id.is_none()
    }

    /// Index within the segment of the first target: every token but the first, and none of the
    /// context tokens, is a target. Padding has no targets.
    pub fn first_target(&self) -> u32 {
        if self.is_padding() {
            self.len
        } else {
            self.context.max(1).min(self.len)
        }
    }

    pub fn target_count(&self) -> u32 {
        self.len - self.first_target()
    }
}

/// One training sample: exactly `seq_len` tokens, tiled by its segments in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sample {
    pub tokens: Vec<u32>,
    pub segments: Vec<Segment>,
    /// For documents pushed with a loss mask (conversations): `loss_mask[i]` is whether token
    /// `i` may be a target at all (false on padding). A target is then a token that is one by
    /// its segment (not the first, not context) and by the mask. `None`: no mask.
    pub loss_mask: Option<Vec<bool>>,
}

impl Sample {
    /// Hugging Face labels: the token id where the token is a target, -100 elsewhere (the model
    /// shifts, so label i is predicted at token i-1, which is in the same segment).
    pub fn labels(&self) -> Vec<i64> {
        let mut labels = Vec::with_capacity(self.tokens.len());
        let mut at = 0;
        for seg in &self.segments {
            let first = seg.first_target() as usize;
            let len = seg.len as usize;
            labels.extend(std::iter::repeat_n(IGNORE_INDEX, first));
            let span = at + first..at + len;
            match &self.loss_mask {
                None => labels.extend(self.tokens[span].iter().map(|&t| i64::from(t))),
                Some(mask) => labels.extend(
                    self.tokens[span.clone()]
                        .iter()
                        .zip(&mask[span])
                        .map(|(&t, &m)| if m { i64::from(t) } else { IGNORE_INDEX }),
                ),
            }
            at += len;
        }
        labels
    }

    /// Positions restarting at 0 at every segment (continuation chunks and padding included).
    pub fn position_ids(&self) -> Vec<i64> {
        let mut positions = Vec::with_capacity(self.tokens.len());
        for seg in &self.segments {
            positions.extend(0..i64::from(seg.len));
        }
        positions
    }

    /// Segment boundaries for FlashAttention varlen: 0, then each segment's end, up to L.
    pub fn cu_seqlens(&self) -> Vec<i32> {
        let mut bounds = Vec::with_capacity(self.segments.len() + 1);
        let mut at = 0i32;
        bounds.push(at);
        for seg in &self.segments {
            // seq_len <= MAX_SEQ_LEN is checked by PackOptions::validate.
            at += seg.len as i32;
            bounds.push(at);
        }
        bounds
    }

    pub fn padding_tokens(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| s.is_padding())
            .map(|s| s.len as usize)
            .sum()
    }

    pub fn context_tokens(&self) -> usize {
        self.segments.iter().map(|s| s.context as usize).sum()
    }

    pub fn target_tokens(&self) -> usize {
        let Some(mask) = &self.loss_mask else {
            return self
                .segments
                .iter()
                .map(|s| s.target_count() as usize)
                .sum();
        };
        let mut at = 0;
        let mut targets = 0;
        for seg in &self.segments {
            let (first, len) = (seg.first_target() as usize, seg.len as usize);
            targets += mask[at + first..at + len].iter().filter(|&&m| m).count();
            at += len;
        }
        targets
    }
}

/// Running totals over everything a [`Packer`] has been given and has emitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackStats {
    /// Documents pushed, empty ones included.
    pub documents: u64,
    /// Documents with no tokens (they produce nothing).
    pub empty_documents: u64,
    /// Documents cut into more than one chunk.
    pub documents_split: u64,
    /// Document tokens pushed (each counted once, context repeats not included).
    pub document_tokens: u64,
    pub chunks: u64,
    pub samples: u64,
    pub padding_tokens: u64,
    pub context_tokens: u64,
    pub target_tokens: u64,
}

/// What a [`Packer`] had done when its current buffer began (at its start, or where its last
/// flush ended): pushing the same documents again from there, into a packer made by
/// [`Packer::resume`], gives the same samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackerState {
    /// The shuffle generator's state ([`SplitMix64::state`]).
    pub rng: u64,
    /// Documents pushed.
    pub pushes: u64,
    pub stats: PackStats,
    /// The document the last flush ended in, and how many of its chunks that flush (and those
    /// before) took; `None` before the first flush. It is to be pushed again, and its first
    /// `chunks_done` chunks are then passed over.
    pub document: Option<FlushedDocument>,
}

/// See [`PackerState::document`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlushedDocument {
    pub doc_id: u64,
    pub chunks_done: u64,
}

/// Where an emitted sample stands in a packer's output: the state its buffer began from, and
/// how many samples that buffer's flush has emitted so far (this one included). A packer made by
/// [`Packer::resume`] from it emits exactly the samples that followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumePoint {
    pub state: PackerState,
    pub samples_emitted: u64,
}

/// A chunk waiting in the buffer, with its tokens at `offset` in the packer's token arena.
struct Pending {
    chunk: Chunk,
    offset: usize,
    /// Counts pushes: chunks of one document share it, and arrive consecutively.
    document: u64,
}

/// Streaming packer: feed documents in order with [`Packer::push_document`], then call
/// [`Packer::finish`]. Samples are handed to an `emit` callback as soon as a buffer flush makes
/// them, so memory stays at most `pack_buffer` chunks whatever the corpus or document size.
///
/// A flush happens when the buffer holds `pack_buffer` chunks (even in the middle of a document)
/// and at `finish`. It places the buffered chunks by best-fit decreasing, pads every sample, shuffles
/// the flush's samples and emits them.
pub struct Packer {
    opts: PackOptions,
    overlap: usize,
    pending: Vec<Pending>,
    arena: Vec<u32>,
    /// The loss masks of the tokens in `arena`, once a document with a mask has been pushed
    /// (documents without one count as all true).
    mask_arena: Option<Vec<bool>>,
    rng: SplitMix64,
    pushes: u64,
    stats: PackStats,
    /// The state the current buffer began from.
    window: PackerState,
    /// A resumed packer: the document to be pushed again first, with the chunks to pass over.
    resuming: Option<FlushedDocument>,
    /// A resumed packer: samples of its next flush that were emitted before (not emitted again).
    suppress: u64,
}

impl Packer {
    pub fn new(opts: PackOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        let rng = SplitMix64::new(opts.seed);
        Ok(Packer {
            overlap: opts.overlap_tokens(),
            window: PackerState {
                rng: rng.state(),
                pushes: 0,
                stats: PackStats::default(),
                document: None,
            },
            rng,
            pending: Vec::new(),
            arena: Vec::new(),
            mask_arena: None,
            pushes: 0,
            stats: PackStats::default(),
            resuming: None,
            suppress: 0,
            opts,
        })
    }

    /// A packer that continues from `point` (see [`ResumePoint`]): push the documents again
    /// from `point.state.document` (that one included; from the first if `None`), with the same
    /// ids, and it emits the samples that followed the one `point` came with. The options must
    /// be those of the packer `point` came from.
    pub fn resume(opts: PackOptions, point: ResumePoint) -> Result<Self, OptionsError> {
        let mut packer = Packer::new(opts)?;
        let state = point.state;
        packer.rng = SplitMix64::from_state(state.rng);
        packer.pushes = state.pushes;
        packer.stats = state.stats;
        packer.window = state;
        packer.resuming = state.document;
        packer.suppress = point.samples_emitted;
        Ok(packer)
    }

    /// The state the current buffer began from.
    pub fn window(&self) -> &PackerState {
        &self.window
    }

    /// The document a resumed packer expects first (see [`Packer::resume`]), until it is pushed.
    pub fn resuming(&self) -> Option<FlushedDocument> {
        self.resuming
    }

    pub fn options(&self) -> &PackOptions {
        &self.opts
    }

    /// Chunks currently held (always below `pack_buffer` between calls).
    pub fn buffered_chunks(&self) -> usize {
        self.pending.len()
    }

    pub fn stats(&self) -> &PackStats {
        &self.stats
    }

    /// Adds one document (with BOS/EOS already in `tokens` if wanted); `emit` receives every
    /// sample a flush completes meanwhile. An error from `emit` is returned at once; the packer's
    /// output is then incomplete and it should be dropped.
    pub fn push_document<E>(
        &mut self,
        doc_id: u64,
        tokens: &[u32],
        mut emit: impl FnMut(Sample) -> Result<(), E>,
    ) -> Result<(), E> {
        self.push_tracked(doc_id, tokens, None, |sample, _| emit(sample))
    }

    /// [`Packer::push_document`] of a document with a loss mask (`mask[i]`: whether `tokens[i]`
    /// may be a target; same length). Samples then carry [`Sample::loss_mask`].
    pub fn push_masked_document<E>(
        &mut self,
        doc_id: u64,
        tokens: &[u32],
        mask: &[bool],
        mut emit: impl FnMut(Sample) -> Result<(), E>,
    ) -> Result<(), E> {
        self.push_tracked(doc_id, tokens, Some(mask), |sample, _| emit(sample))
    }

    /// [`Packer::push_document`], with each sample's [`ResumePoint`]. The first push into a
    /// resumed packer must be the document it expects ([`Packer::resuming`]): its chunks already
    /// flushed are passed over and it is not counted again.
    pub fn push_document_tracked<E>(
        &mut self,
        doc_id: u64,
        tokens: &[u32],
        emit: impl FnMut(Sample, ResumePoint) -> Result<(), E>,
    ) -> Result<(), E> {
        self.push_tracked(doc_id, tokens, None, emit)
    }

    /// [`Packer::push_document_tracked`] with an optional loss mask (see
    /// [`Packer::push_masked_document`]).
    pub fn push_tracked<E>(
        &mut self,
        doc_id: u64,
        tokens: &[u32],
        mask: Option<&[bool]>,
        mut emit: impl FnMut(Sample, ResumePoint) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(mask) = mask {
            assert_eq!(mask.len(), tokens.len(), "a loss mask has a flag per token");
            if self.mask_arena.is_none() {
                self.mask_arena = Some(vec![true; self.arena.len()]);
            }
        }
        let (document, chunks_done) = match self.resuming.take() {
            Some(again) => {
                assert_eq!(
                    again.doc_id, doc_id,
                    "a resumed packer must be given its document {} first",
                    again.doc_id
                );
                (self.pushes - 1, again.chunks_done)
            }
            None => {
                let document = self.pushes;
                self.pushes += 1;
                self.stats.documents += 1;
                self.stats.document_tokens += tokens.len() as u64;
                if tokens.is_empty() {
                    self.stats.empty_documents += 1;
                }
                if tokens.len() > self.opts.seq_len {
                    self.stats.documents_split += 1;
                }
                (document, 0)
            }
        };
        let chunks = ChunkBounds::new(tokens.len(), self.opts.seq_len, self.overlap);
        for (k, (start, len, context)) in chunks.enumerate().skip(chunks_done as usize) {
            self.stats.chunks += 1;
            self.pending.push(Pending {
                chunk: Chunk {
                    doc_id,
                    doc_start: start as u64,
                    len: len as u32,
                    context: context as u32,
                },
                offset: self.arena.len(),
                document,
            });
            self.arena.extend_from_slice(&tokens[start..start + len]);
            if let Some(arena) = &mut self.mask_arena {
                match mask {
                    Some(mask) => arena.extend_from_slice(&mask[start..start + len]),
                    None => arena.resize(arena.len() + len, true),
                }
            }
            if self.pending.len() == self.opts.pack_buffer {
                let flushed = FlushedDocument {
                    doc_id,
                    chunks_done: k as u64 + 1,
                };
                self.flush(&mut emit, Some(flushed))?;
            }
        }
        Ok(())
    }

    /// Flushes what is left in the buffer.
    pub fn finish<E>(self, mut emit: impl FnMut(Sample) -> Result<(), E>) -> Result<PackStats, E> {
        self.finish_tracked(|sample, _| emit(sample))
    }

    /// [`Packer::finish`], with each sample's [`ResumePoint`].
    pub fn finish_tracked<E>(
        mut self,
        mut emit: impl FnMut(Sample, ResumePoint) -> Result<(), E>,
    ) -> Result<PackStats, E> {
        self.flush(&mut emit, None)?;
        Ok(self.stats)
    }

    /// Places, shuffles and emits the buffer; `flushed` is the document being pushed, if any, and
    /// the chunks of it the buffer holds so far.
    fn flush<E>(
        &mut self,
        emit: &mut impl FnMut(Sample, ResumePoint) -> Result<(), E>,
        flushed: Option<FlushedDocument>,
    ) -> Result<(), E> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let bins = best_fit_decreasing(
            pending.iter().map(|p| p.chunk.len as usize),
            self.opts.seq_len,
        );

        // Samples in the order their bins were opened, then shuffled (Fisher-Yates, Durstenfeld's
        // form: for i from n-1 down to 1, swap i with a uniform j in 0..=i).
        let mut order: Vec<usize> = (0..bins.len()).collect();
        for i in (1..order.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        keep_document_order(&mut order, &pending, &bins);

        let window = self.window;
        let suppress = std::mem::take(&mut self.suppress);
        for (n, &bin) in order.iter().enumerate() {
            let sample = self.build_sample(&pending, &bins[bin]);
            self.stats.samples += 1;
            self.stats.padding_tokens += sample.padding_tokens() as u64;
            self.stats.context_tokens += sample.context_tokens() as u64;
            self.stats.target_tokens += sample.target_tokens() as u64;
            let samples_emitted = n as u64 + 1;
            if samples_emitted > suppress {
                let point = ResumePoint {
                    state: window,
                    samples_emitted,
                };
                emit(sample, point)?;
            }
        }
        self.arena.clear();
        if let Some(arena) = &mut self.mask_arena {
            arena.clear();
        }
        self.window = PackerState {
            rng: self.rng.state(),
            pushes: self.pushes,
            stats: self.stats,
            document: flushed,
        };
        Ok(())
    }

    /// One sample from a bin: its chunks in arrival order, then padding to L as its own segment.
    fn build_sample(&self, pending: &[Pending], bin: &[usize]) -> Sample {
        let mut tokens = Vec::with_capacity(self.opts.seq_len);
        let mut segments = Vec::with_capacity(bin.len() + 1);
        let mut loss_mask = self
            .mask_arena
            .as_ref()
            .map(|_| Vec::with_capacity(self.opts.seq_len));
        for &i in bin {
            let p = &pending[i];
            let span = p.offset..p.offset + p.chunk.len as usize;
            if let (Some(out), Some(arena)) = (&mut loss_mask, &self.mask_arena) {
                out.extend_from_slice(&arena[span.clone()]);
            }
            tokens.extend_from_slice(&self.arena[span]);
            segments.push(Segment {
                doc_id: Some(p.chunk.doc_id),
                doc_start: p.chunk.doc_start,
                len: p.chunk.len,
                context: p.chunk.context,
            });
        }
        let padding = self.opts.seq_len - tokens.len();
        if padding > 0 {
            tokens.resize(self.opts.seq_len, self.opts.pad_id);
            if let Some(out) = &mut loss_mask {
                out.resize(self.opts.seq_len, false);
            }
            segments.push(Segment {
                doc_id: None,
                doc_start: 0,
                len: padding as u32,
                context: 0,
            });
        }
        Sample {
            tokens,
            segments,
            loss_mask,
        }
    }
}

/// Best-fit decreasing (Ding et al. 2024): items sorted by length, longest first (ties in arrival
/// order), each into the open bin with the least free space that holds it (ties: the bin opened
/// first), a new bin when none does. Returns, per bin in the order bins were opened, the indices
/// of its items in arrival order. Lengths are in `1..=capacity`.
pub fn best_fit_decreasing(
    lengths: impl IntoIterator<Item = usize>,
    capacity: usize,
) -> Vec<Vec<usize>> {
    let lengths: Vec<usize> = lengths.into_iter().collect();
    let mut by_length: Vec<usize> = (0..lengths.len()).collect();
    // A stable sort keeps arrival order among equal lengths.
    by_length.sort_by_key(|&i| Reverse(lengths[i]));

    let mut bins: Vec<Vec<usize>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    // Bins with room left, as (free space, bin index): the first entry at or above (len, 0) is the
    // tightest fit, earliest bin first. O(log bins) per item.
    let mut open: BTreeSet<(usize, usize)> = BTreeSet::new();
    for i in by_length {
        let len = lengths[i];
        let bin = match open.range((len, 0)..).next().copied() {
            Some(entry) => {
                open.remove(&entry);
                entry.1
            }
            None => {
                bins.push(Vec::new());
                free.push(capacity);
                bins.len() - 1
            }
        };
        bins[bin].push(i);
        free[bin] -= len;
        if free[bin] > 0 {
            open.insert((free[bin], bin));
        }
    }
    for bin in &mut bins {
        bin.sort_unstable();
    }
    bins
}

/// Reorders the shuffled samples of one flush so that each document's chunks come out in document
/// order. `order[k]` is the bin emitted k-th.
///
/// Every chunk of a document but its last in this flush is exactly L long, so it fills a bin alone;
/// only the last can share a bin. For each document with chunks in several bins: if its last chunk's
/// bin is not the latest of its bins, swap it with the latest (moving a bin later never breaks
/// another document's order, as that bin holds no document's non-last chunk), then put the
/// document's full bins, in document order, into the remaining positions, ascending. Full bins of
/// a document are touched only while that document is handled.
fn keep_document_order(order: &mut [usize], pending: &[Pending], bins: &[Vec<usize>]) {
    let mut bin_of = vec![0; pending.len()];
    for (b, items) in bins.iter().enumerate() {
        for &i in items {
            bin_of[i] = b;
        }
    }
    let mut position = vec![0; bins.len()];
    for (k, &b) in order.iter().enumerate() {
        position[b] = k;
    }

    let mut run_start = 0;
    while run_start < pending.len() {
        let document = pending[run_start].document;
        let mut run_end = run_start + 1;
        while run_end < pending.len() && pending[run_end].document == document {
            run_end += 1;
        }
        if run_end - run_start > 1 {
            let run_bins: Vec<usize> = (run_start..run_end).map(|i| bin_of[i]).collect();
            let (&last_bin, full_bins) = run_bins.split_last().expect("a run has two chunks");
            let latest = run_bins
                .iter()
                .map(|&b| position[b])
                .max()
                .expect("non-empty");
            let at = position[last_bin];
            if at != latest {
                let moved = order[latest];
                order.swap(at, latest);
                position[moved] = at;
                position[last_bin] = latest;
            }
            let mut slots: Vec<usize> = full_bins.iter().map(|&b| position[b]).collect();
            slots.sort_unstable();
            for (&slot, &b) in slots.iter().zip(full_bins) {
                order[slot] = b;
                position[b] = slot;
            }
        }
        run_start = run_end;
    }
}

/// Packs whole documents (document i gets `doc_id` i) and returns every sample; for corpora that
/// fit in memory and for tests. Streaming callers use [`Packer`].
pub fn pack_documents<'a>(
    opts: &PackOptions,
    documents: impl IntoIterator<Item = &'a [u32]>,
) -> Result<Vec<Sample>, OptionsError> {
    let mut packer = Packer::new(opts.clone())?;
    let mut samples = Vec::new();
    let mut collect = |s: Sample| -> Result<(), std::convert::Infallible> {
        samples.push(s);
        Ok(())
    };
    for (doc_id, tokens) in documents.into_iter().enumerate() {
        let Ok(()) = packer.push_document(doc_id as u64, tokens, &mut collect);
    }
    let Ok(_) = packer.finish(&mut collect);
    Ok(samples)
}

/// SplitMix64 (Steele, Lea and Flood 2014; the generator of Java's `SplittableRandom`), written
/// out here so the shuffle is fixed forever: the state advances by 0x9E3779B97F4A7C15 and each
/// output is the state through the MurmurHash3-style finalizer below. From state 1234567 the first
/// outputs are 6457827717110365317, 3203168211198807973, 9817491932198370423 (checked in tests).
/// One generator, seeded with `seed`, serves all flushes of a packer in turn.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The generator's state: [`SplitMix64::from_state`] of it continues the same sequence.
    pub fn state(&self) -> u64 {
        self.state
    }

    pub fn from_state(state: u64) -> Self {
        SplitMix64 { state }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (`n >= 1`), by Lemire's multiply-and-reject (2019): the high
    /// half of `x * n` over 128 bits, redrawing the rare `x` whose low half falls in the biased
    /// sliver below `2^64 mod n`.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }
}
