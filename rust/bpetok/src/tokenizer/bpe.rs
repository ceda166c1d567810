//! The BPE encoder: SentencePiece's `bpe_model.cc` algorithm on normalized text, plus the two
//! things that make it fast without changing a single id.
//!
//! The algorithm (as in SentencePiece 0.2.x): one symbol per character, except that a
//! user-defined piece matching at the current position (longest first) is one frozen symbol.
//! Every adjacent pair whose concatenation is a mergeable piece goes on a max-heap keyed by
//! (score of the merged piece, then the leftmost position). The top pair is merged if both of its
//! symbols are still as they were when it was pushed, and the two new neighbouring pairs are
//! pushed. When the heap is empty, merges into UNUSED pieces are undone, and every symbol that is
//! not a piece (a character outside the vocabulary) becomes one byte piece per UTF-8 byte.
//! O(n log n) in the number of characters.
//!
//! Speed:
//! 1. Cutting. If two adjacent characters `ab` occur next to each other in no mergeable piece,
//!    no symbol can ever span the boundary between them (every multi-character symbol is a
//!    mergeable piece, so it would contain `ab`). Merges on either side then never interact: each
//!    side sees the same pairs in the same relative order as in the whole text, so encoding the
//!    sides separately gives the same ids. The bigram table is built from the loaded model, so this
//!    is proved per vocabulary at load time, not assumed; for the Mistral vocabularies it cuts
//!    before every `▁` that follows another character, since no piece has `▁` after a non-`▁`.
//!    When the model has UNUSED pieces, SentencePiece's undoing of merges depends on the whole
//!    text (its `rev_merge` map), so such models are encoded in one piece, without cutting.
//! 2. Reuse. Segments are looked up by their raw bytes: first in the shared seed cache (every
//!    piece that encodes to itself, checked for every piece at load time), then in the worker's
//!    own bounded cache of segments it has seen.
//!
//! The plain algorithm (`encode_segment`) reads the `Model` only. The fast path (`encode_text`)
//! also reads `EncoderTables`: the cut table, the seed cache and the like, all derived from the
//! finished `Model` (partly by running the plain algorithm on it) by `EncoderTables::build`.
//! 3. Cheaper algorithms with the same choices: short segments scan a small array for the best
//!    pair (`encode_short_segment`); long ones keep candidates grouped by score with in-order
//!    queues (`Agenda`). Both pick the highest score, then the leftmost pair, as the heap does; the
//!    tests compare them on random and repetitive text.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Deref;
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::tokenizer::model::{ascii_pair_index, Model, ASCII_PAIR_SPACE, NOT_ASCII_PAIR, NO_SYM};
use crate::tokenizer::normalize::{self, SPACE_SYMBOL};
use crate::tokenizer::proto::PieceType;

/// Segments up to this many bytes are cached.
const MAX_CACHED_LEN: usize = 256;
/// A worker's caches are emptied when they reach their number of entries: the table of the
/// shortest segments (`SmallCache`) at `MAX_SMALL_ENTRIES` (3/4 of 2^17 slots of 16 bytes: 2 MiB),
/// the table of the other short ones at `MAX_SHORT_ENTRIES` (just under 7/8 of 2^16, where the
/// hash table would double: 2.6 MB), its long-segment cache at `MAX_LONG_CACHE_ENTRIES`: under 10
/// MB per worker, whatever the corpus. The pieces themselves live in the seed cache of the
/// `EncoderTables`, shared by all workers.
const MAX_SMALL_ENTRIES: usize = 3 << 15;
const MAX_SHORT_ENTRIES: usize = 57_000;
const MAX_LONG_CACHE_ENTRIES: usize = 1 << 14;
/// Segments up to this many bytes are encoded by `encode_short_segment`.
const MAX_SHORT_LEN: usize = 48;
/// "No neighbour" in the symbol list.
const NONE: u32 = u32::MAX;

/// A symbol of the heap version: 16 bytes, since a long segment has one per character.
#[derive(Clone, Copy, Debug)]
struct Symbol {
    /// Byte length of the symbol's text; 0 once merged into its left neighbour.
    len: u32,
    /// Symbol id (a mergeable piece id, a virtual character id, or `NO_SYM`), with `FROZEN` set
    /// for a user-defined piece.
    id: u32,
    prev: u32,
    next: u32,
}

/// Marks a symbol id that never merges (a user-defined piece). Ids are below 2^31 (checked when
/// the model is loaded), and `NO_SYM` has this bit set too.
const FROZEN: u32 = 1 << 31;

/// Ids of short segments by their raw bytes (`ShortKey`): a segment of one id holds it in the map
/// itself (most segments are one piece: no second memory access), a longer one a range of one
/// arena.
#[derive(Clone, Default, Debug, PartialEq)]
struct ShortCache {
    /// (the id, 1) or (where the ids start in `arena`, how many).
    map: FxHashMap<ShortKey, (u32, u32)>,
    arena: Vec<u32>,
}

impl ShortCache {
    #[inline]
    fn get(&self, key: &ShortKey) -> Option<&[u32]> {
        let (first, len) = self.map.get(key)?;
        if *len == 1 {
            return Some(std::slice::from_ref(first));
        }
        self.arena.get(*first as usize..(first + len) as usize)
    }

    fn insert(&mut self, key: ShortKey, ids: &[u32]) {
        let value = if let [id] = ids {
            (*id, 1)
        } else {
            let first = self.arena.len() as u32;
            self.arena.extend_from_slice(ids);
            (first, ids.len() as u32)
        };
        self.map.insert(key, value);
    }

    fn clear(&mut self) {
        self.map.clear();
        self.arena.clear();
    }
}

/// Ids of the shortest segments (`SmallKey`), most of them: an open-addressed table of 16-byte
/// slots, four to a 64-byte bucket (one cache line), at most 3/4 full. A key is looked for from
/// its bucket on, in order, up to a free slot, so a look-up, found or not, mostly reads one cache
/// line, and the table is a third of the size of a general hash map's (control bytes plus
/// 40-byte entries of `ShortKey`). That size is what counts: the encoder reads the shared seed
/// table and its own for every segment, and on a machine whose caches are shared with others the
/// two no longer fit at the old size. Slots are never removed one by one (only all at once), so
/// a free slot ends every search.
///
/// A worker's table owns its slots and arena (`SmallCache`); the seed's (`SeedSmallCache`) reads
/// them in place from the embedded snapshot's bytes where it can (see
/// `RecordedSmallCache::recorded`).
#[derive(Clone, Default, Debug, PartialEq)]
struct SmallCache<B = Vec<SmallBucket>, A = Vec<u32>> {
    /// A power of two of them (at least 16), or none.
    buckets: B,
    /// Keys in the table.
    len: usize,
    /// The ids of segments of several ids: their number, then the ids.
    arena: A,
}

/// A small table whose slots and arena may be borrowed from a record's bytes.
type RecordedSmallCache<'a> = SmallCache<Cow<'a, [SmallBucket]>, Cow<'a, [u32]>>;
/// The seed's small table.
type SeedSmallCache = RecordedSmallCache<'static>;

/// A slot of `SmallCache`: the key (`hi == 0`: free, as no key has a zero `hi`), and the value:
/// the id of a segment of one id, or `IN_ARENA` plus where its ids are in the arena.
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
#[repr(C)]
struct SmallSlot {
    lo: u64,
    hi: u32,
    value: u32,
}

impl SmallSlot {
    fn key(&self) -> SmallKey {
        SmallKey {
            lo: self.lo,
            hi: self.hi,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
#[repr(C, align(64))]
struct SmallBucket([SmallSlot; 4]);

/// `SmallSlot::value`: the ids are in the arena (ids are below 2^31, checked at load).
const IN_ARENA: u32 = 1 << 31;

impl<B: Deref<Target = [SmallBucket]>, A: Deref<Target = [u32]>> SmallCache<B, A> {
    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        // The top bits of the multiplicative hash (the number of buckets is a power of two).
        (hash >> (64 - self.buckets.len().trailing_zeros())) as usize
    }

    #[inline(always)]
    fn get(&self, key: SmallKey) -> Option<&[u32]> {
        if self.buckets.is_empty() {
            return None;
        }
        let mask = self.buckets.len() - 1;
        let mut b = self.home(key.hash());
        loop {
            for slot in &self.buckets[b].0 {
                if slot.lo == key.lo && slot.hi == key.hi {
                    return Some(self.ids(&slot.value));
                }
                if slot.hi == 0 {
                    return None;
                }
            }
            b = (b + 1) & mask;
        }
    }

    #[inline(always)]
    fn ids<'a>(&'a self, value: &'a u32) -> &'a [u32] {
        if value & IN_ARENA == 0 {
            return std::slice::from_ref(value);
        }
        let at = (value & !IN_ARENA) as usize;
        let count = self.arena[at] as usize;
        &self.arena[at + 1..at + 1 + count]
    }

    /// The keys in the table.
    fn keys(&self) -> impl Iterator<Item = SmallKey> + '_ {
        self.buckets
            .iter()
            .flat_map(|bucket| bucket.0.iter())
            .filter(|slot| slot.hi != 0)
            .map(SmallSlot::key)
    }

    /// The table as bytes, little-endian: the number of buckets, of keys and of words in the
    /// arena, zeros up to byte 64, every slot in order (`lo`, `hi`, `value`: 16 bytes), and the
    /// arena's words. `recorded` reads them back into the same table, slot for slot; a record
    /// placed at an offset of a multiple of 64 in memory is read in place.
    #[cfg(test)]
    fn record(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(RECORD_HEADER + 64 * self.buckets.len() + 4 * self.arena.len());
        for n in [self.buckets.len(), self.len, self.arena.len()] {
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        out.resize(RECORD_HEADER, 0);
        for slot in self.buckets.iter().flat_map(|bucket| &bucket.0) {
            out.extend_from_slice(&slot.lo.to_le_bytes());
            out.extend_from_slice(&slot.hi.to_le_bytes());
            out.extend_from_slice(&slot.value.to_le_bytes());
        }
        self.arena
            .iter()
            .for_each(|word| out.extend_from_slice(&word.to_le_bytes()));
        out
    }

    /// The same table with its slots and arena owned.
    #[cfg(test)]
    fn to_owned_cache(&self) -> SmallCache {
        SmallCache {
            buckets: self.buckets.to_vec(),
            len: self.len,
            arena: self.arena.to_vec(),
        }
    }
}

/// Bytes of a small table's record before its slots (see `SmallCache::record`).
const RECORD_HEADER: usize = 64;

impl SmallCache {
    /// Inserts (or replaces) the ids of a key; the table doubles before it would be more than
    /// 3/4 full.
    fn insert(&mut self, key: SmallKey, ids: &[u32]) {
        if 4 * (self.len + 1) > 3 * 4 * self.buckets.len() {
            self.grow();
        }
        let value = match ids {
            [id] if id & IN_ARENA == 0 => *id,
            _ => {
                let at = self.arena.len() as u32;
                self.arena.push(ids.len() as u32);
                self.arena.extend_from_slice(ids);
                IN_ARENA | at
            }
        };
        self.put(SmallSlot {
            lo: key.lo,
            hi: key.hi,
            value,
        });
    }

    /// Puts a slot in the table, which has a free slot.
    fn put(&mut self, new: SmallSlot) {
        let mask = self.buckets.len() - 1;
        let mut b = self.home(new.key().hash());
        loop {
            for slot in &mut self.buckets[b].0 {
                if slot.hi == 0 || (slot.lo == new.lo && slot.hi == new.hi) {
                    if slot.hi == 0 {
                        self.len += 1;
                    }
                    *slot = new;
                    return;
                }
            }
            b = (b + 1) & mask;
        }
    }

    fn grow(&mut self) {
        self.resize((2 * self.buckets.len()).max(16));
    }

    /// Room for `n` keys without growing.
    fn reserve(&mut self, n: usize) {
        let buckets = n.div_ceil(3).next_power_of_two().max(16);
        if buckets > self.buckets.len() {
            self.resize(buckets);
        }
    }

    fn resize(&mut self, size: usize) {
        let old = std::mem::replace(&mut self.buckets, vec![SmallBucket::default(); size]);
        self.len = 0;
        for bucket in old {
            for slot in bucket.0 {
                if slot.hi != 0 {
                    self.put(slot);
                }
            }
        }
    }

    fn clear(&mut self) {
        self.buckets.fill(SmallBucket::default());
        self.len = 0;
        self.arena.clear();
    }

    /// This table as the seed's small table, owning its slots (the table of a model that has no
    /// snapshot).
    fn into_seed(self) -> SeedSmallCache {
        SmallCache {
            buckets: Cow::Owned(self.buckets),
            len: self.len,
            arena: Cow::Owned(self.arena),
        }
    }
}

impl<'a> RecordedSmallCache<'a> {
    /// The table `record` wrote, or `None` if `bytes` cannot be one: a number of buckets that is
    /// not a power of two of at least 16, a number of keys that is not the number of slots taken
    /// or makes the table more than 3/4 full (a search must end at a free slot), a value in the
    /// arena that is not there, or bytes left over (or any record, on a big-endian machine). The
    /// slots and the arena are read in place (borrowed from `bytes`) when `bytes` is aligned for
    /// them, as the embedded snapshot's are, and copied otherwise: reading a table of 1 MiB in
    /// place instead of copying it (into memory the kernel must first zero) was half of the first
    /// encoding of a process, on every thread of its first batch.
    fn recorded(bytes: &'a [u8]) -> Option<Self> {
        if cfg!(target_endian = "big") {
            // The record is little-endian: such a machine makes the table by inserting.
            return None;
        }
        let word = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        let (n, len, arena_len) = (word(0)? as usize, word(4)? as usize, word(8)? as usize);
        if n < 16 || !n.is_power_of_two() || 4 * len > 3 * 4 * n {
            return None;
        }
        let slots_end = RECORD_HEADER.checked_add(n.checked_mul(64)?)?;
        if bytes.len() != slots_end.checked_add(arena_len.checked_mul(4)?)?
            || bytes[12..RECORD_HEADER].iter().any(|&b| b != 0)
        {
            return None;
        }
        let (slots, words) = (&bytes[RECORD_HEADER..slots_end], &bytes[slots_end..]);
        let buckets: Cow<'a, [SmallBucket]> = match bytemuck::try_cast_slice(slots) {
            Ok(buckets) => Cow::Borrowed(buckets),
            Err(_) => Cow::Owned(bytemuck::pod_collect_to_vec(slots)),
        };
        let arena: Cow<'a, [u32]> = match bytemuck::try_cast_slice(words) {
            Ok(arena) => Cow::Borrowed(arena),
            Err(_) => Cow::Owned(bytemuck::pod_collect_to_vec(words)),
        };
        let mut taken = 0;
        for slot in buckets.iter().flat_map(|bucket| &bucket.0) {
            if slot.hi != 0 {
                taken += 1;
                if slot.value & IN_ARENA != 0 {
                    let at = (slot.value & !IN_ARENA) as usize;
                    let count = *arena.get(at)? as usize;
                    arena.get(at + 1..at.checked_add(1 + count)?)?;
                }
            }
        }
        if taken != len {
            return None;
        }
        Some(Self {
            buckets,
            len,
            arena,
        })
    }
}

/// Ids of short segments by their raw bytes: those of up to `MAX_SMALL_KEY_LEN` bytes in a
/// `SmallCache`, the others of up to `MAX_SHORT_KEY_LEN` in a `ShortCache`.
#[derive(Clone, Default, Debug, PartialEq)]
struct SegmentCache<B = Vec<SmallBucket>, A = Vec<u32>> {
    small: SmallCache<B, A>,
    short: ShortCache,
}

/// The seed's segment cache (its small table read in place from a snapshot where it can be).
type SeedCache = SegmentCache<Cow<'static, [SmallBucket]>, Cow<'static, [u32]>>;

impl<B: Deref<Target = [SmallBucket]>, A: Deref<Target = [u32]>> SegmentCache<B, A> {
    #[inline(always)]
    fn get(&self, key: &SegmentKey) -> Option<&[u32]> {
        match key {
            SegmentKey::Small(key) => self.small.get(*key),
            SegmentKey::Short(key) => self.short.get(key),
        }
    }
}

impl SegmentCache {
    /// Inserts the ids of a segment; the tables are emptied when they reach their bound
    /// (`MAX_SMALL_ENTRIES`, `MAX_SHORT_ENTRIES`) instead of growing.
    fn insert(&mut self, key: SegmentKey, ids: &[u32]) {
        match key {
            SegmentKey::Small(key) => {
                if self.small.len >= MAX_SMALL_ENTRIES {
                    self.small.clear();
                }
                self.small.insert(key, ids);
            }
            SegmentKey::Short(key) => {
                if self.short.map.len() >= MAX_SHORT_ENTRIES {
                    self.short.clear();
                }
                self.short.insert(key, ids);
            }
        }
    }
}

/// Scratch space for one encoding thread: reused buffers and the segment cache.
#[derive(Default)]
pub(crate) struct Workspace {
    symbols: Vec<Symbol>,
    /// Candidate merges of the heap version: (score, left position) only (see
    /// `encode_segment_heap` for why the pair need not be stored).
    agenda: Agenda,
    short_symbols: Vec<ShortSymbol>,
    /// For UNUSED merged pieces: the pair that was pushed last for it (SentencePiece's
    /// `rev_merge`).
    rev_merge: FxHashMap<u32, (u32, u32)>,
    normalized: String,
    /// The normalized text of the segment being encoded.
    segment: String,
    /// Ids of short segments this worker saw recently (the pieces are in the shared seed cache).
    short_cache: SegmentCache,
    /// Ids of recently seen longer segments.
    cache: FxHashMap<Box<str>, Box<[u32]>>,
}

/// Scratch buffers larger than this (in bytes of capacity) are freed after the text that grew them
/// instead of being kept for the next one. A segment of n characters needs about 30 n bytes of
/// symbols and candidates (a text that is one run of a character is one segment); a scratch space
/// that kept them would hold that memory for as long as the tokenizer lives, in each of the up to
/// `MAX_POOLED_WORKSPACES` pooled spaces.
const MAX_KEPT_SCRATCH_BYTES: usize = 1 << 20;

impl Workspace {
    /// Whether a long segment containing `needle` is in this worker's cache.
    #[cfg(test)]
    pub(crate) fn caches_long_segment_with(&self, needle: &str) -> bool {
        self.cache.keys().any(|key| key.contains(needle))
    }

    /// Frees the buffers that one long segment (or, for models with UNUSED pieces, one long text)
    /// grew beyond [`MAX_KEPT_SCRATCH_BYTES`]. Candidates are pushed at most three times per
    /// symbol, so the symbols' capacity tells for the agenda and `rev_merge` too. Called after
    /// every text: a few comparisons. The caches are bounded by entries and stay.
    pub(crate) fn release_large_buffers(&mut self) {
        if self.symbols.capacity() * std::mem::size_of::<Symbol>() > MAX_KEPT_SCRATCH_BYTES {
            self.symbols = Vec::new();
            self.agenda = Agenda::default();
            self.rev_merge = FxHashMap::default();
        }
        for text in [&mut self.normalized, &mut self.segment] {
            if text.capacity() > MAX_KEPT_SCRATCH_BYTES {
                *text = String::new();
            }
        }
    }

    #[cfg(test)]
    fn capacity_bytes(&self) -> usize {
        self.symbols.capacity() * std::mem::size_of::<Symbol>()
            + self.agenda.capacity_bytes()
            + self.rev_merge.capacity() * 16
            + self.normalized.capacity()
            + self.segment.capacity()
    }
}

/// The candidate merges of the heap version, grouped by score. Popping gives the highest score
/// and, within it, the lowest position: the order of SentencePiece's agenda. A long segment puts
/// one candidate per character here, and candidates of one score mostly arrive in increasing
/// position (the initial scan, and merges sweeping a run left to right); those go to an
/// append-only queue, the others to a small heap. A long run of one character is then close to
/// linear, where one binary heap of a million entries was dominated by cache misses.
#[derive(Default)]
struct Agenda {
    /// Score keys (`score_key`) of the non-empty buckets.
    scores: BinaryHeap<u32>,
    /// Score key -> index in `buckets`.
    index: FxHashMap<u32, usize>,
    /// Buckets, reused across segments; the first `index.len()` are in use.
    buckets: Vec<Bucket>,
}

#[derive(Default)]
struct Bucket {
    /// Positions in increasing order, consumed from `cursor`.
    run: Vec<u32>,
    cursor: usize,
    /// Positions that arrived out of order.
    heap: BinaryHeap<Reverse<u32>>,
}

impl Bucket {
    fn is_empty(&self) -> bool {
        self.cursor == self.run.len() && self.heap.is_empty()
    }

    fn push(&mut self, pos: u32) {
        if self.cursor == self.run.len() {
            self.run.clear();
            self.cursor = 0;
        }
        if self.run.last().is_none_or(|&last| pos >= last) {
            self.run.push(pos);
        } else {
            self.heap.push(Reverse(pos));
        }
    }

    fn pop(&mut self) -> Option<u32> {
        let from_run = self.run.get(self.cursor).copied();
        match (from_run, self.heap.peek()) {
            (Some(a), Some(&Reverse(b))) if b < a => self.heap.pop().map(|Reverse(b)| b),
            (Some(a), _) => {
                self.cursor += 1;
                Some(a)
            }
            (None, _) => self.heap.pop().map(|Reverse(b)| b),
        }
    }
}

impl Agenda {
    /// Bytes of the candidate queues' buffers.
    #[cfg(test)]
    fn capacity_bytes(&self) -> usize {
        let buckets: usize = self
            .buckets
            .iter()
            .map(|b| b.run.capacity() * 4 + b.heap.capacity() * 4)
            .sum();
        buckets
            + self.buckets.capacity() * std::mem::size_of::<Bucket>()
            + self.scores.capacity() * 4
    }

    fn clear(&mut self) {
        for bucket in &mut self.buckets[..self.index.len()] {
            bucket.run.clear();
            bucket.cursor = 0;
            bucket.heap.clear();
        }
        self.index.clear();
        self.scores.clear();
    }

    fn push(&mut self, score: u32, pos: u32) {
        let next = self.index.len();
        let slot = *self.index.entry(score).or_insert(next);
        if slot == self.buckets.len() {
            self.buckets.push(Bucket::default());
        }
        let bucket = &mut self.buckets[slot];
        if bucket.is_empty() {
            self.scores.push(score);
        }
        bucket.push(pos);
    }

    /// The best candidate: (score key, position).
    fn pop(&mut self) -> Option<(u32, u32)> {
        let &score = self.scores.peek()?;
        let bucket = &mut self.buckets[self.index[&score]];
        let pos = bucket.pop()?;
        if bucket.is_empty() {
            self.scores.pop();
        }
        Some((score, pos))
    }
}

/// The tables of the fast path (`encode_text`), derived from a finished `Model`. They only make
/// encoding faster: the ids are the plain algorithm's on the whole text.
#[derive(Debug)]
pub(crate) struct EncoderTables {
    /// For two ASCII characters of raw text (' ' stands for `▁`), indexed by `a * 128 + b`:
    /// whether some mergeable piece contains them next to each other. The test the encoder makes
    /// for every character, so one byte load.
    raw_ascii_bigrams: Arc<[bool]>,
    /// Bigrams with a non-ASCII character found inside mergeable pieces.
    other_bigrams: Arc<FxHashSet<u64>>,
    /// `true` when encoding the text of this piece on its own gives exactly this piece.
    self_encoding: Arc<[bool]>,
    /// The segments that are pieces encoding to themselves, read by every worker before its own
    /// cache.
    seed_cache: SeedCache,
    /// `SEED_FILTER_BITS` bits, one set for every small key of `seed_cache` (at the bit
    /// `seed_filter_bit` gives): a key whose bit is clear is not in the seed.
    seed_filter: Box<[u64]>,
    /// The ids of each ASCII character of raw text on its own (' ' stands for `▁`).
    raw_ascii_ids: Vec<Box<[u32]>>,
    /// One word per character of the Basic Multilingual Plane, indexed by code point (raw text:
    /// index 0x20, ' ', describes `▁`): `CHAR_LEFT` / `CHAR_RIGHT` (whether the character
    /// occurs before / after another one inside some mergeable piece, a necessary condition for
    /// every bigram test) and what the character encodes to as a segment of its own (`CHAR_BYTES`:
    /// one byte piece per UTF-8 byte; otherwise the id in the low bits). Characters above the BMP
    /// are `CHAR_SLOW`.
    char_info: Arc<[u32]>,
}

/// The tables of `EncoderTables` that cost the most to derive: `self_encoding` and `char_info`
/// (by running the plain algorithm over the vocabulary), the two bigram tables (from every
/// character of every piece), and the seed's table of small keys (`SmallCache::recorded`), which
/// is read from the bytes it was recorded in at the first encoding instead of being made by
/// inserting the pieces one by one. The tables are shared with the `EncoderTables` built from
/// them (a tokenizer keeps its recorded tables for every thread that may build its encoder's).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RecordedTables<'a> {
    pub(crate) raw_ascii_bigrams: Arc<[bool]>,
    pub(crate) other_bigrams: Arc<FxHashSet<u64>>,
    pub(crate) self_encoding: Arc<[bool]>,
    pub(crate) char_info: Arc<[u32]>,
    /// `SmallCache::record` of the seed's small table, if it was recorded.
    pub(crate) seed_small: Option<&'a [u8]>,
}

/// Bits of `EncoderTables::seed_filter` (64 KiB: eleven bits per small seed key).
const SEED_FILTER_BITS: usize = 1 << 19;

/// The bit of `seed_filter` for a small key: bits of its hash below those `SmallCache` takes
/// for the bucket.
#[inline(always)]
fn seed_filter_bit(key: SmallKey) -> usize {
    (key.hash() >> 24) as usize & (SEED_FILTER_BITS - 1)
}

/// `char_info`: the character occurs, followed by another character, inside a mergeable piece.
const CHAR_LEFT: u32 = 1 << 31;
/// `char_info`: the character occurs, preceded by another character, inside a mergeable piece.
const CHAR_RIGHT: u32 = 1 << 30;
/// `char_info`: the character on its own encodes to its UTF-8 bytes' byte pieces.
const CHAR_BYTES: u32 = 1 << 29;
/// `char_info`: the id of the character on its own (when `CHAR_BYTES` is clear).
const CHAR_ID: u32 = CHAR_BYTES - 1;
/// `char_info` of a character the table does not describe: both neighbours must be tested with
/// the bigram set, and a segment of it alone goes the general way.
const CHAR_SLOW: u32 = CHAR_LEFT | CHAR_RIGHT | CHAR_ID;
/// Code points with an entry in `char_info`.
const CHAR_TABLE_LEN: usize = 0x1_0000;

impl EncoderTables {
    /// Derives the fast path's tables from a complete `Model`, and from nothing else: the
    /// character bigrams inside its mergeable pieces (where text can be cut), and, by running the
    /// plain algorithm (`encode_segment`, which reads only the model) on every mergeable piece and
    /// every ASCII character, which pieces encode to themselves (the seed cache) and the ids of
    /// single characters.
    #[cfg(test)]
    pub(crate) fn build(model: &Model) -> Self {
        Self::build_with(model, None)
    }

    /// `build`, with the two tables that cost the most to derive (which pieces encode to
    /// themselves, and `char_info`, both by running the plain algorithm) taken from `recorded`
    /// instead: the tables of the embedded model, recorded beside it (see `snapshot`), which the
    /// tests check against the derivation. Recorded tables of the wrong size are ignored.
    pub(crate) fn build_with(model: &Model, recorded: Option<RecordedTables<'static>>) -> Self {
        let recorded = recorded.filter(|r| {
            r.self_encoding.len() == model.vocab_size()
                && r.char_info.len() == CHAR_TABLE_LEN
                && r.raw_ascii_bigrams.len() == 128 * 128
        });
        let mut ws = Workspace::default();
        let mut out = Vec::new();
        let RecordedTables {
            raw_ascii_bigrams,
            other_bigrams,
            self_encoding,
            char_info,
            seed_small,
        } = match recorded {
            Some(recorded) => recorded,
            None => {
                let (raw_ascii_bigrams, other_bigrams) = bigram_tables(model);
                RecordedTables {
                    raw_ascii_bigrams: raw_ascii_bigrams.into(),
                    other_bigrams: Arc::new(other_bigrams),
                    self_encoding: self_encoding_pieces(model, &mut ws).into(),
                    char_info: char_info_table(model).into(),
                    seed_small: None,
                }
            }
        };
        // Those pieces, under the raw-text forms a segment of them can have, are the seed cache
        // every worker reads first: a word that is a piece is a hit from its first occurrence.
        // (Models with UNUSED pieces are never cut or cached.)
        let mut seed_cache = SeedCache::default();
        if !model.has_unused {
            // Up to two keys per piece (with and without the dummy prefix), nearly all small
            // (46,475 of 47,503 for the Mistral vocabularies). Their table, recorded, is read as
            // it was made, in place: the inserts in random places of 1 MiB were most of a first
            // encoding's 2-3 ms, on every thread of a first batch at once, and then copying the
            // record (into pages the kernel zeroes first) was half of the 1.4 ms left.
            let pieces = model.vocab_size();
            let small = seed_small.and_then(SeedSmallCache::recorded);
            let small_recorded = small.is_some();
            let mut built = SmallCache::default();
            match small {
                Some(small) => seed_cache.small = small,
                None => built.reserve(pieces + pieces / 2),
            }
            seed_cache.short.map.reserve(pieces / 16);
            let mut raw = Vec::new();
            for (text, id) in model.mergeable_pieces() {
                // A piece's raw text is at most as long as the piece's: when it is small, so are
                // both of its keys, already in a recorded table.
                if !self_encoding[id as usize]
                    || (small_recorded && text.len() <= MAX_SMALL_KEY_LEN)
                {
                    continue;
                }
                raw_text(text, &mut raw);
                let with_prefix = raw.strip_prefix(b" ").map(|rest| (rest, true));
                for (raw, prefix) in std::iter::once((&raw[..], false)).chain(with_prefix) {
                    match segment_key(raw, 0, raw.len(), prefix) {
                        Some(SegmentKey::Small(_)) if small_recorded => {}
                        Some(SegmentKey::Small(key)) => built.insert(key, &[id]),
                        Some(SegmentKey::Short(key)) => seed_cache.short.insert(key, &[id]),
                        None => {}
                    }
                }
            }
            if !small_recorded {
                seed_cache.small = built.into_seed();
            }
        }
        let mut seed_filter = vec![0u64; SEED_FILTER_BITS / 64].into_boxed_slice();
        for key in seed_cache.small.keys() {
            let bit = seed_filter_bit(key);
            seed_filter[bit / 64] |= 1 << (bit % 64);
        }
        let raw_ascii_ids = (0..128u8)
            .map(|b| {
                let text = raw_char(b as char).to_string();
                out.clear();
                encode_segment(model, &text, &mut ws, &mut out);
                out.as_slice().into()
            })
            .collect();
        EncoderTables {
            raw_ascii_bigrams,
            other_bigrams,
            self_encoding,
            seed_cache,
            seed_filter,
            raw_ascii_ids,
            char_info,
        }
    }

    /// The ids of `key` in the seed cache, whose look-up is skipped when the filter says the key
    /// is not there.
    #[inline(always)]
    fn seeded(&self, key: &SegmentKey) -> Option<&[u32]> {
        if self.may_be_seeded(key) {
            self.seed_cache.get(key)
        } else {
            None
        }
    }

    /// Whether `key` may be in the seed cache (`false`: it is not).
    #[inline(always)]
    fn may_be_seeded(&self, key: &SegmentKey) -> bool {
        match key {
            SegmentKey::Small(key) => {
                let bit = seed_filter_bit(*key);
                self.seed_filter[bit / 64] & (1 << (bit % 64)) != 0
            }
            SegmentKey::Short(_) => true,
        }
    }

    /// The tables `build_with` can take instead of deriving them, but for the seed's small
    /// table, whose record is `seed_small_record`.
    #[cfg(test)]
    pub(crate) fn recorded(&self) -> RecordedTables<'static> {
        RecordedTables {
            raw_ascii_bigrams: self.raw_ascii_bigrams.clone(),
            other_bigrams: self.other_bigrams.clone(),
            self_encoding: self.self_encoding.clone(),
            char_info: self.char_info.clone(),
            seed_small: None,
        }
    }

    /// The bytes `RecordedTables::seed_small` takes: the seed's small table as it is.
    #[cfg(test)]
    pub(crate) fn seed_small_record(&self) -> Vec<u8> {
        self.seed_cache.small.record()
    }

    /// Whether the seed's small table is read in place from a snapshot's bytes.
    #[cfg(test)]
    pub(crate) fn seed_small_is_borrowed(&self) -> bool {
        matches!(self.seed_cache.small.buckets, Cow::Borrowed(_))
    }

    /// Panics unless `self` and `other` agree in every field.
    #[cfg(test)]
    pub(crate) fn assert_same(&self, other: &EncoderTables) {
        let EncoderTables {
            raw_ascii_bigrams,
            other_bigrams,
            self_encoding,
            seed_cache,
            seed_filter,
            raw_ascii_ids,
            char_info,
        } = self;
        assert_eq!(raw_ascii_bigrams, &other.raw_ascii_bigrams);
        assert_eq!(other_bigrams, &other.other_bigrams);
        assert_eq!(self_encoding, &other.self_encoding);
        assert_eq!(seed_cache, &other.seed_cache);
        assert_eq!(seed_filter, &other.seed_filter);
        assert_eq!(raw_ascii_ids, &other.raw_ascii_ids);
        assert_eq!(char_info, &other.char_info);
    }

    /// The `char_info` word of a code point of raw text.
    #[inline]
    fn char_info(&self, c: u32) -> u32 {
        self.char_info.get(c as usize).copied().unwrap_or(CHAR_SLOW)
    }

    /// `raw_bigram_in_pieces` for two ASCII characters: one load from the 16 K table.
    #[inline(always)]
    fn raw_ascii_bigram_in_pieces(&self, a: u8, b: u8) -> bool {
        self.raw_ascii_bigrams[usize::from(a) << 7 | usize::from(b)]
    }

    /// Whether some mergeable piece contains the two characters next to each other, for two
    /// characters of raw text (where ' ' stands for `▁`). Where none does, no symbol can ever span
    /// the boundary between them, so the text can be cut there and both sides encoded
    /// independently with the same result.
    #[inline]
    fn raw_bigram_in_pieces(&self, a: char, b: char) -> bool {
        if a.is_ascii() && b.is_ascii() {
            self.raw_ascii_bigram_in_pieces(a as u8, b as u8)
        } else {
            self.other_bigrams
                .contains(&char_pair_key(raw_char(a), raw_char(b)))
        }
    }
}

/// The character bigrams inside mergeable pieces, as `EncoderTables` keeps them: for ASCII
/// pairs of raw text (' ' standing for `▁`) a table, for the others (all non-ASCII bigrams of
/// normalized text) a set.
fn bigram_tables(model: &Model) -> (Box<[bool]>, FxHashSet<u64>) {
    let mut ascii_bigrams = [0u128; 128];
    let mut other_bigrams = FxHashSet::default();
    for (text, _) in model.mergeable_pieces() {
        let mut chars = text.chars();
        let Some(mut prev) = chars.next() else {
            continue;
        };
        for c in chars {
            if prev.is_ascii() && c.is_ascii() {
                ascii_bigrams[prev as usize] |= 1u128 << (c as u32);
            } else {
                other_bigrams.insert(char_pair_key(prev, c));
            }
            prev = c;
        }
    }
    let mut raw_ascii_bigrams = vec![false; 128 * 128].into_boxed_slice();
    for a in 0..128u8 {
        for b in 0..128u8 {
            let (ca, cb) = (raw_char(a as char), raw_char(b as char));
            let inside = if ca.is_ascii() && cb.is_ascii() {
                ascii_bigrams[a as usize] & (1u128 << b) != 0
            } else {
                other_bigrams.contains(&char_pair_key(ca, cb))
            };
            raw_ascii_bigrams[a as usize * 128 + b as usize] = inside;
        }
    }
    (raw_ascii_bigrams, other_bigrams)
}

/// The raw text of a piece's text: every `▁` a ' ', into `raw` (emptied first).
fn raw_text(text: &str, raw: &mut Vec<u8>) {
    raw.clear();
    let mut rest = text.as_bytes();
    while let Some(at) = rest.iter().position(|&b| b == SPACE_SYMBOL_UTF8[0]) {
        raw.extend_from_slice(&rest[..at]);
        if rest[at..].starts_with(&SPACE_SYMBOL_UTF8) {
            raw.push(b' ');
            rest = &rest[at + SPACE_SYMBOL_UTF8.len()..];
        } else {
            raw.push(rest[at]);
            rest = &rest[at + 1..];
        }
    }
    raw.extend_from_slice(rest);
}

/// `▁` in UTF-8.
const SPACE_SYMBOL_UTF8: [u8; 3] = [0xE2, 0x96, 0x81];

/// For every piece, whether encoding its text as a segment of its own gives exactly that piece
/// (by running the plain algorithm on every mergeable piece; the other pieces never are).
fn self_encoding_pieces(model: &Model, ws: &mut Workspace) -> Vec<bool> {
    let mut out = Vec::new();
    let mut self_encoding = vec![false; model.vocab_size()];
    for (text, id) in model.mergeable_pieces() {
        out.clear();
        encode_segment(model, text, ws, &mut out);
        self_encoding[id as usize] = out.len() == 1 && out[0] == id;
    }
    self_encoding
}

/// `EncoderTables::char_info`: for every BMP character of raw text, the neighbour flags (from the
/// characters of the mergeable pieces) and the ids of the character as a segment of its own. A
/// one-character segment has nothing to merge: the plain algorithm gives `emit` of its symbol,
/// which is the piece (a character that is a mergeable piece), a reserved one-character piece, or
/// the byte pieces of its UTF-8 bytes. Characters with a symbol or a reserved piece are run
/// through the plain algorithm here; for every other one it has no symbol and no reserved piece,
/// so `emit` gives the bytes. `every_bmp_character_alone_encodes_as_the_table_says` checks the
/// whole table against the plain algorithm. Models with UNUSED pieces, or too many pieces for the
/// id field, get `CHAR_SLOW` everywhere (they are not cut anyway).
fn char_info_table(model: &Model) -> Box<[u32]> {
    if model.has_unused || model.vocab_size() >= CHAR_ID as usize {
        return vec![CHAR_SLOW; CHAR_TABLE_LEN].into_boxed_slice();
    }
    let mut table = vec![CHAR_BYTES; CHAR_TABLE_LEN].into_boxed_slice();
    let index = |c: char| (c as usize) < CHAR_TABLE_LEN;
    let mut ws = Workspace::default();
    let mut out = Vec::new();
    let mut text = String::new();
    let symbols = model
        .ascii_sym
        .iter()
        .enumerate()
        .filter(|&(_, &sym)| sym != NO_SYM)
        .map(|(c, _)| c as u8 as char)
        .chain(model.char_sym.keys().copied())
        .chain(model.reserved_chars.keys().copied());
    for c in symbols.filter(|&c| index(c)) {
        text.clear();
        text.push(c);
        out.clear();
        encode_segment(model, &text, &mut ws, &mut out);
        let entry = &mut table[c as usize];
        *entry = match out[..] {
            [id] => id,
            _ => CHAR_BYTES,
        };
    }
    for (piece, _) in model.mergeable_pieces() {
        let mut chars = piece.chars().peekable();
        let mut first = true;
        while let Some(c) = chars.next() {
            if index(c) {
                if chars.peek().is_some() {
                    table[c as usize] |= CHAR_LEFT;
                }
                if !first {
                    table[c as usize] |= CHAR_RIGHT;
                }
            }
            first = false;
        }
    }
    // A raw ' ' is `▁` to the model: its flags; alone (not the dummy prefix) it is `▁`.
    let space = table[SPACE_SYMBOL as usize];
    table[b' ' as usize] = space;
    table
}

fn char_pair_key(a: char, b: char) -> u64 {
    (u64::from(u32::from(a)) << 32) | u64::from(u32::from(b))
}

/// The normalized form of one raw character: ' ' is `▁`.
#[inline]
fn raw_char(c: char) -> char {
    if c == ' ' {
        SPACE_SYMBOL
    } else {
        c
    }
}

/// Scores as totally ordered integers (higher score, higher key). Scores are never NaN, and -0.0
/// is stored as 0.0 (see `Model::from_bytes`).
#[inline]
fn score_key(score: f32) -> u32 {
    let bits = score.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Encodes raw text (before normalization), appending ids. Equivalent to normalizing it (dummy
/// prefix, ' ' -> `▁`) and running `encode_segment` on the whole, but walks the raw text once:
/// a raw ' ' stands for `▁` in the cut test, and segments are cached under their raw bytes.
/// `tables` must be `EncoderTables::build(model)`.
pub(crate) fn encode_text(
    model: &Model,
    tables: &EncoderTables,
    text: &str,
    ws: &mut Workspace,
    out: &mut Vec<u32>,
) {
    if text.is_empty() {
        return;
    }
    if model.has_unused {
        let mut normalized = std::mem::take(&mut ws.normalized);
        normalize::normalize_str_into(text, model.add_dummy_prefix, &mut normalized);
        encode_segment(model, &normalized, ws, out);
        ws.normalized = normalized;
        return;
    }
    encode_text_part(model, tables, text, model.add_dummy_prefix, ws, out);
}

/// Where `text` can be cut into parts that `encode_text_part` encodes independently: byte
/// offsets, increasing, each at least `min_part` after the one before (and before the end), at the
/// first place from there where the encoder itself cuts (two characters that occur next to each
/// other in no mergeable piece). Encoding the parts (the first with the dummy prefix) and joining
/// the ids gives `encode_text`'s ids: the walk over a part makes the same cuts as over the whole
/// text, since each is decided by the two characters around it, and every part starts where the
/// whole walk starts a segment. Empty for models with UNUSED pieces, which are never cut.
pub(crate) fn cut_points(
    model: &Model,
    tables: &EncoderTables,
    text: &str,
    min_part: usize,
) -> Vec<usize> {
    let mut cuts = Vec::new();
    if model.has_unused {
        return cuts;
    }
    let bytes = text.as_bytes();
    let mut from = min_part.max(1);
    while from < bytes.len() {
        // The first character boundary at or after `from`, and the character before it.
        let mut i = from;
        while i < bytes.len() && !text.is_char_boundary(i) {
            i += 1;
        }
        let mut prev = text[..i].chars().next_back().unwrap_or(' ');
        let mut found = None;
        for (k, c) in text[i..].char_indices() {
            if !tables.raw_bigram_in_pieces(prev, c) {
                found = Some(i + k);
                break;
            }
            prev = c;
        }
        let Some(cut) = found else { break };
        cuts.push(cut);
        from = cut + min_part;
    }
    cuts
}

/// `encode_text` on a part of a text (see `cut_points`), with or without the dummy prefix. For
/// models without UNUSED pieces.
pub(crate) fn encode_text_part(
    model: &Model,
    tables: &EncoderTables,
    text: &str,
    dummy_prefix: bool,
    ws: &mut Workspace,
    out: &mut Vec<u32>,
) {
    debug_assert!(!model.has_unused);
    if text.is_empty() {
        return;
    }
    let bytes = text.as_bytes();
    // `prefix`: the current segment starts with the dummy-prefix `▁`, which is not in `text`.
    let mut prefix = dummy_prefix;
    // `prev`: the character before byte `i` (raw text; the dummy prefix is a ' '). When it is
    // not ASCII, `prev_at` is where it starts (`usize::MAX` for the dummy prefix) and `prev_info`
    // its `char_info`; the ASCII loop keeps neither, which keeps it short (a one-character ASCII
    // segment is as quick through `encode_raw_segment`).
    let (mut prev, mut prev_at, mut i) = if prefix {
        (u32::from(b' '), usize::MAX, 0)
    } else {
        let (c, len) = decode_char(bytes, 0);
        (c, 0, len)
    };
    let mut prev_info = tables.char_info(prev);
    let mut start = 0;
    loop {
        // A run of ASCII characters after an ASCII one, eight at a time: the cuts among them
        // (the same table test as below, without a branch per character) as a bit mask, then
        // the segments that end at them.
        while prev < 0x80 && i + 8 <= bytes.len() {
            let mut chunk = [0u8; 8];
            chunk.copy_from_slice(&bytes[i..i + 8]);
            if u64::from_le_bytes(chunk) & 0x8080_8080_8080_8080 != 0 {
                break;
            }
            let mut cuts = 0u32;
            let mut p = prev as u8;
            for (k, &b) in chunk.iter().enumerate() {
                cuts |= u32::from(!tables.raw_ascii_bigram_in_pieces(p, b)) << k;
                p = b;
            }
            while cuts != 0 {
                let cut = i + cuts.trailing_zeros() as usize;
                encode_raw_segment(model, tables, text, start, cut, prefix, ws, out);
                start = cut;
                prefix = false;
                cuts &= cuts - 1;
            }
            prev = u32::from(p);
            i += 8;
        }
        // The rest of the run (fewer than eight characters, or up to a non-ASCII one): one
        // table load per character.
        while i < bytes.len() && (prev | u32::from(bytes[i])) < 0x80 {
            let b = bytes[i];
            if !tables.raw_ascii_bigram_in_pieces(prev as u8, b) {
                encode_raw_segment(model, tables, text, start, i, prefix, ws, out);
                start = i;
                prefix = false;
            }
            prev = u32::from(b);
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        // A non-ASCII character, or an ASCII one after a non-ASCII one.
        let (c, len) = decode_char(bytes, i);
        let info = tables.char_info(c);
        let prev_flags = if prev < 0x80 {
            tables.char_info[prev as usize]
        } else {
            prev_info
        };
        // A bigram inside a piece needs `prev` before and `c` after some character there; most
        // pairs with a non-ASCII character fail that test and need no lookup.
        let inside = prev_flags & CHAR_LEFT != 0
            && info & CHAR_RIGHT != 0
            && tables.raw_bigram_in_pieces(raw_code_char(prev), raw_code_char(c));
        if !inside {
            encode_segment_before(
                model,
                tables,
                text,
                start,
                i,
                prefix,
                (prev, prev_at, prev_info),
                ws,
                out,
            );
            start = i;
            prefix = false;
        }
        (prev, prev_at, prev_info) = (c, i, info);
        i += len;
    }
    encode_segment_before(
        model,
        tables,
        text,
        start,
        bytes.len(),
        prefix,
        (prev, prev_at, prev_info),
        ws,
        out,
    );
}

/// Encodes the segment `text[start..end]` (see `encode_raw_segment`) whose last character is
/// `last` = (code point, start, `char_info` if not ASCII): from the table if it is that character
/// alone.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn encode_segment_before(
    model: &Model,
    tables: &EncoderTables,
    text: &str,
    start: usize,
    end: usize,
    prefix: bool,
    (last, last_at, info): (u32, usize, u32),
    ws: &mut Workspace,
    out: &mut Vec<u32>,
) {
    if start == last_at && !prefix && last >= 0x80 && info & CHAR_ID != CHAR_ID {
        push_char_ids(model, info, &text.as_bytes()[start..end], out);
    } else {
        encode_raw_segment(model, tables, text, start, end, prefix, ws, out);
    }
}

/// The ids of a one-character segment whose `char_info` is `info` (not `CHAR_SLOW`).
#[inline(always)]
fn push_char_ids(model: &Model, info: u32, raw: &[u8], out: &mut Vec<u32>) {
    if info & CHAR_BYTES == 0 {
        out.push(info & CHAR_ID);
    } else {
        out.extend(raw.iter().map(|&b| model.byte_ids[b as usize]));
    }
}

/// The code point starting at byte `i` of valid UTF-8, and its length in bytes.
#[inline(always)]
fn decode_char(bytes: &[u8], i: usize) -> (u32, usize) {
    let b0 = u32::from(bytes[i]);
    let cont = |k: usize| u32::from(bytes[i + k] & 0x3F);
    if b0 < 0x80 {
        (b0, 1)
    } else if b0 < 0xE0 {
        (((b0 & 0x1F) << 6) | cont(1), 2)
    } else if b0 < 0xF0 {
        (((b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2), 3)
    } else {
        (
            ((b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3),
            4,
        )
    }
}

/// A code point of valid UTF-8 as a `char`.
#[inline(always)]
fn raw_code_char(c: u32) -> char {
    char::from_u32(c).unwrap_or('\u{FFFD}')
}

/// Encodes the segment `text[start..end]` given as raw text (a ' ' is a `▁`), preceded by the
/// dummy-prefix `▁` if `prefix`. Segments are cached per workspace under their raw bytes.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn encode_raw_segment(
    model: &Model,
    tables: &EncoderTables,
    text: &str,
    start: usize,
    end: usize,
    prefix: bool,
    ws: &mut Workspace,
    out: &mut Vec<u32>,
) {
    let bytes = &text.as_bytes()[start..end];
    // One ASCII character (or the lone prefix): one symbol, nothing to merge.
    match (prefix, bytes) {
        // (Pushed one by one: `extend_from_slice` calls `memcpy`, dear for one id.)
        (true, []) => return push_ids(out, &tables.raw_ascii_ids[b' ' as usize]),
        (false, [b]) if b.is_ascii() => return push_ids(out, &tables.raw_ascii_ids[*b as usize]),
        _ => {}
    }
    let key = segment_key(text.as_bytes(), start, end, prefix);
    if let Some(key) = &key {
        // Most segments are pieces (the shared seed); the rest were seen by this worker.
        if let Some(ids) = tables.seeded(key) {
            return push_ids(out, ids);
        }
        if let Some(ids) = ws.short_cache.get(key) {
            return push_ids(out, ids);
        }
    } else if !prefix && bytes.len() <= MAX_CACHED_LEN {
        if let Some(ids) = ws.cache.get(&text[start..end]) {
            out.extend_from_slice(ids);
            return;
        }
    }
    // (The text is sliced as `str` only here: its checks of character boundaries are off the
    // path of a segment found by its key.)
    encode_raw_segment_miss(model, tables, &text[start..end], prefix, key, ws, out);
}

/// Appends a few ids.
#[inline(always)]
fn push_ids(out: &mut Vec<u32>, ids: &[u32]) {
    for &id in ids {
        out.push(id);
    }
}

/// The cache did not have the segment: normalize it, encode it, remember the ids.
#[inline(never)]
fn encode_raw_segment_miss(
    model: &Model,
    tables: &EncoderTables,
    raw: &str,
    prefix: bool,
    key: Option<SegmentKey>,
    ws: &mut Workspace,
    out: &mut Vec<u32>,
) {
    let mut segment = std::mem::take(&mut ws.segment);
    segment.clear();
    if prefix {
        segment.push(SPACE_SYMBOL);
    }
    normalize::push_escaped(&mut segment, raw);
    let first = out.len();
    if key.is_some() {
        // A short segment that is a piece encoding to itself is in the seed cache, so it is not
        // one (and the algorithm would give that piece anyway): no look-up of the piece.
        encode_segment(model, &segment, ws, out);
    } else {
        encode_segment_uncached(model, tables, &segment, ws, out);
    }
    ws.segment = segment;
    if let Some(key) = key {
        ws.short_cache.insert(key, &out[first..]);
    } else if !prefix && raw.len() <= MAX_CACHED_LEN {
        // (A long segment with the dummy prefix starts a text: too rare to be worth caching.)
        if ws.cache.len() >= MAX_LONG_CACHE_ENTRIES {
            ws.cache.clear();
        }
        ws.cache.insert(raw.into(), out[first..].into());
    }
}

/// A segment that is a piece which encodes to itself is that piece; others run the algorithm.
fn encode_segment_uncached(
    model: &Model,
    tables: &EncoderTables,
    segment: &str,
    ws: &mut Workspace,
    out: &mut Vec<u32>,
) {
    match model.mergeable_id(segment) {
        Some(id) if tables.self_encoding[id as usize] => out.push(id),
        _ => encode_segment(model, segment, ws, out),
    }
}

/// A segment of up to `MAX_SHORT_KEY_LEN` raw bytes as four words: its bytes, zero-padded, with
/// the length and the prefix flag in the last byte. Hashing and comparing that costs a fraction of
/// a string key's, and it covers words with their indentation in code.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct ShortKey([u64; 4]);

impl std::hash::Hash for ShortKey {
    /// The four words folded into one before hashing: one multiplication of the Fx hasher
    /// instead of four in a chain, on the path of every segment. Keys that fold to the same word
    /// only share a hash; the table still compares whole keys.
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let [a, b, c, d] = self.0;
        state.write_u64(a ^ b.rotate_left(19) ^ c.rotate_left(38) ^ d.rotate_left(57));
    }
}

const MAX_SHORT_KEY_LEN: usize = 31;

/// `KEY_MASKS[n]` keeps the first `n` bytes of 32.
const KEY_MASKS: [[u64; 4]; MAX_SHORT_KEY_LEN + 1] = {
    let mut masks = [[0u64; 4]; MAX_SHORT_KEY_LEN + 1];
    let mut n = 0;
    while n <= MAX_SHORT_KEY_LEN {
        let mut word = 0;
        while word < 4 {
            let keep = if n >= 8 * (word + 1) {
                8
            } else {
                n.saturating_sub(8 * word)
            };
            masks[n][word] = if keep == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * keep)) - 1
            };
            word += 1;
        }
        n += 1;
    }
    masks
};

/// Segments of at most this many raw bytes have a `SmallKey`.
const MAX_SMALL_KEY_LEN: usize = 11;

/// A segment of up to `MAX_SMALL_KEY_LEN` raw bytes: its first eight bytes in `lo`, the rest in the
/// low three bytes of `hi`, zero-padded, and the length and the prefix flag in the top byte of
/// `hi` (never zero: a segment has a byte or the prefix).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct SmallKey {
    lo: u64,
    hi: u32,
}

impl SmallKey {
    /// `SmallCache`'s hash: the two words mixed by one multiplication; the table takes the top
    /// bits.
    #[inline(always)]
    fn hash(&self) -> u64 {
        (self.lo ^ u64::from(self.hi).rotate_left(40)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// The key of a short segment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SegmentKey {
    Small(SmallKey),
    Short(ShortKey),
}

/// The key of the segment `text[start..end]`, if it is short enough.
#[inline(always)]
fn segment_key(text: &[u8], start: usize, end: usize, prefix: bool) -> Option<SegmentKey> {
    let len = end - start;
    if len > MAX_SMALL_KEY_LEN {
        return short_key(text, start, end, prefix).map(SegmentKey::Short);
    }
    let mut buf = [0u8; 16];
    match text.get(start..start + 16) {
        // One unaligned 16-byte load, then keep the segment's bytes.
        Some(window) => buf.copy_from_slice(window),
        None => buf[..len].copy_from_slice(&text[start..end]),
    }
    let mut lo = [0u8; 8];
    lo.copy_from_slice(&buf[..8]);
    let mut hi = [0u8; 4];
    hi.copy_from_slice(&buf[8..12]);
    let lo_mask = if len >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * len)) - 1
    };
    let hi_mask = (1u32 << (8 * len.saturating_sub(8))) - 1;
    let meta = u32::from(len as u8 | if prefix { 0x80 } else { 0 });
    Some(SegmentKey::Small(SmallKey {
        lo: u64::from_le_bytes(lo) & lo_mask,
        hi: (u32::from_le_bytes(hi) & hi_mask) | meta << 24,
    }))
}

/// The key of the segment `text[start..end]`, if it is short enough.
#[inline]
fn short_key(text: &[u8], start: usize, end: usize, prefix: bool) -> Option<ShortKey> {
    let len = end - start;
    if len > MAX_SHORT_KEY_LEN {
        return None;
    }
    let mut buf = [0u8; 32];
    match text.get(start..start + 32) {
        // Two unaligned 16-byte loads, then keep the segment's bytes.
        Some(window) => buf.copy_from_slice(window),
        None => buf[..len].copy_from_slice(&text[start..end]),
    }
    let mut words = [0u64; 4];
    for (k, word) in words.iter_mut().enumerate() {
        let mut chunk = [0u8; 8];
        chunk.copy_from_slice(&buf[8 * k..8 * k + 8]);
        *word = u64::from_le_bytes(chunk) & KEY_MASKS[len][k];
    }
    words[3] |= u64::from(len as u8 | if prefix { 0x80 } else { 0 }) << 56;
    Some(ShortKey(words))
}

/// The longest user-defined piece that `text` starts with.
#[inline]
fn match_user_defined(model: &Model, text: &str) -> Option<(usize, u32)> {
    if model.user_defined.is_empty() || !model.user_defined_first[text.as_bytes()[0] as usize] {
        return None;
    }
    model
        .user_defined
        .iter()
        .find(|(piece, _)| text.starts_with(piece.as_str()))
        .map(|(piece, id)| (piece.len(), *id))
}

/// A symbol of `encode_short_segment`: where its text is, its id, its right neighbour, and the
/// merge with that neighbour if the model has one.
#[derive(Clone, Copy)]
struct ShortSymbol {
    start: u32,
    len: u32,
    id: u32,
    frozen: bool,
    /// Its code in `Model::ascii_pairs` while it is one ASCII character or `▁`, else
    /// `NOT_ASCII_PAIR`.
    code: u8,
    /// Index of the right neighbour (`NONE` for the last symbol).
    next: u32,
    /// Index of the left neighbour (`NONE` for the first symbol).
    prev: u32,
    /// (score, merged id) of the pair with the right neighbour.
    pair: Option<(f32, u32)>,
}

/// The merge of two adjacent symbols, if the model has one: (score, merged id).
#[inline]
fn short_pair(model: &Model, l: &ShortSymbol, r: &ShortSymbol) -> Option<(f32, u32)> {
    if l.frozen || r.frozen || l.id == NO_SYM || r.id == NO_SYM {
        return None;
    }
    if l.code != NOT_ASCII_PAIR && r.code != NOT_ASCII_PAIR {
        let (merged, score) = model.ascii_pairs[ascii_pair_index(l.code, r.code)];
        return (merged != NO_SYM).then_some((score, merged));
    }
    let key = (u64::from(l.id) << 32) | u64::from(r.id);
    model
        .merges
        .get(&key)
        .map(|&(merged, score)| (score, merged))
}

/// `encode_segment` for short segments: the same choice of merges (the highest score, the
/// leftmost on ties, among the pairs that exist now) found by scanning the few symbols of a word
/// in order instead of keeping a heap. The symbols are a linked list in one small array, so a
/// merge unlinks a symbol instead of moving the rest. Not for models with UNUSED pieces (their
/// merges are undone from a record that only the heap version keeps).
fn encode_short_segment(model: &Model, text: &str, ws: &mut Workspace, out: &mut Vec<u32>) {
    let symbols = &mut ws.short_symbols;
    symbols.clear();
    let bytes = text.as_bytes();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let (len, id, frozen, code) =
            if let Some((len, id)) = match_user_defined(model, &text[pos..]) {
                (len, id, true, NOT_ASCII_PAIR)
            } else if bytes[pos] < 0x80 {
                (1, model.ascii_sym[bytes[pos] as usize], false, bytes[pos])
            } else {
                let Some(c) = text[pos..].chars().next() else {
                    break;
                };
                let code = if c == SPACE_SYMBOL {
                    ASCII_PAIR_SPACE
                } else {
                    NOT_ASCII_PAIR
                };
                (c.len_utf8(), model.sym_of_char(c), false, code)
            };
        let index = symbols.len() as u32;
        symbols.push(ShortSymbol {
            start: pos as u32,
            len: len as u32,
            id,
            frozen,
            code,
            next: index + 1,
            prev: index.wrapping_sub(1),
            pair: None,
        });
        pos += len;
    }
    let Some(last) = symbols.last_mut() else {
        return;
    };
    last.next = NONE;
    symbols[0].prev = NONE;
    for i in 1..symbols.len() {
        symbols[i - 1].pair = short_pair(model, &symbols[i - 1], &symbols[i]);
    }
    loop {
        // The best pair: highest score, leftmost on ties (strict `>` keeps the leftmost).
        let mut best: Option<(u32, f32, u32)> = None;
        let mut i = 0u32;
        while i != NONE {
            let s = &symbols[i as usize];
            if let Some((score, merged)) = s.pair {
                if best.is_none_or(|(_, best_score, _)| score > best_score) {
                    best = Some((i, score, merged));
                }
            }
            i = s.next;
        }
        let Some((i, _, merged)) = best else { break };
        let right = symbols[i as usize].next as usize;
        let (right_len, after) = (symbols[right].len, symbols[right].next);
        let left = &mut symbols[i as usize];
        left.id = merged;
        left.code = NOT_ASCII_PAIR;
        left.len += right_len;
        left.next = after;
        let before = left.prev;
        if after != NONE {
            symbols[after as usize].prev = i;
            symbols[i as usize].pair =
                short_pair(model, &symbols[i as usize], &symbols[after as usize]);
        } else {
            symbols[i as usize].pair = None;
        }
        if before != NONE {
            symbols[before as usize].pair =
                short_pair(model, &symbols[before as usize], &symbols[i as usize]);
        }
    }
    let mut i = 0u32;
    while i != NONE {
        let s = symbols[i as usize];
        let piece = &text[s.start as usize..(s.start + s.len) as usize];
        emit(model, s.id, piece, &ws.rev_merge, out);
        i = s.next;
    }
}

/// Encodes one segment of normalized text with the full algorithm, appending ids to `out`.
pub(crate) fn encode_segment(model: &Model, text: &str, ws: &mut Workspace, out: &mut Vec<u32>) {
    if text.len() <= MAX_SHORT_LEN && !model.has_unused {
        encode_short_segment(model, text, ws, out);
    } else {
        encode_segment_heap(model, text, ws, out);
    }
}

/// The heap version of `encode_segment`, for any length.
pub(crate) fn encode_segment_heap(
    model: &Model,
    text: &str,
    ws: &mut Workspace,
    out: &mut Vec<u32>,
) {
    let Workspace {
        symbols,
        agenda,
        rev_merge,
        ..
    } = ws;
    symbols.clear();
    agenda.clear();
    rev_merge.clear();

    // One symbol per character, or per user-defined match.
    let bytes = text.as_bytes();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let (len, id) = if let Some((len, id)) = match_user_defined(model, &text[pos..]) {
            (len, id | FROZEN)
        } else if bytes[pos] < 0x80 {
            (1, model.ascii_sym[bytes[pos] as usize])
        } else {
            let Some(c) = text[pos..].chars().next() else {
                break;
            };
            (c.len_utf8(), model.sym_of_char(c))
        };
        let index = symbols.len() as u32;
        symbols.push(Symbol {
            len: len as u32,
            id,
            prev: if index == 0 { NONE } else { index - 1 },
            next: index + 1,
        });
        pos += len;
    }
    let Some(last) = symbols.last_mut() else {
        return;
    };
    last.next = NONE;

    for left in 0..symbols.len() as u32 - 1 {
        push_pair(model, symbols, agenda, rev_merge, left);
    }

    // A candidate is only (score, left). When it comes out on top, the pair now at `left` is
    // merged if its score is that score: that pair was pushed with exactly this key when it
    // formed, so it is the best candidate now; whether this very entry or an equal one was pushed
    // for it makes no difference. Otherwise the entry is stale. SentencePiece checks instead that
    // both symbols are unchanged since the push; both merge the same pairs in the same order.
    while let Some((key, left)) = agenda.pop() {
        let l = symbols[left as usize];
        if l.len == 0 || l.next == NONE {
            continue;
        }
        let r = symbols[l.next as usize];
        let Some((merged, score)) = merge_of(model, l.id, r.id) else {
            continue;
        };
        if score_key(score) != key {
            continue;
        }
        symbols[left as usize].id = merged;
        symbols[left as usize].len = l.len + r.len;
        symbols[left as usize].next = r.next;
        if r.next != NONE {
            symbols[r.next as usize].prev = left;
        }
        symbols[l.next as usize].len = 0;
        if l.prev != NONE {
            push_pair(model, symbols, agenda, rev_merge, l.prev);
        }
        push_pair(model, symbols, agenda, rev_merge, left);
    }

    let (mut index, mut start) = (0u32, 0usize);
    while index != NONE {
        let s = symbols[index as usize];
        let end = start + s.len as usize;
        emit(model, s.id & !FROZEN, &text[start..end], rev_merge, out);
        (index, start) = (s.next, end);
    }
}

/// SentencePiece's `bpe_model.cc` loop written as it is there, for tests and fuzzing only
/// (`Tokenizer::encode_reference`): it shares no table with the encoder above. Symbols are text
/// ranges; a pair is a candidate when its concatenated text is a mergeable piece (looked up by
/// text, not through the merge table); a binary heap ranks candidates (highest score, then
/// leftmost); a popped pair is stale unless both symbols are alive with the sizes they had when
/// it was pushed. At the end each symbol's text is looked up as `PieceToId` does (reserved pieces
/// first, then mergeable ones), UNUSED pieces are split again by the record of their last push
/// (`rev_merge`), and anything that is not a piece, or is the unknown piece, becomes byte pieces.
/// Quadratic nowhere, but slow: one string hash per candidate.
pub(crate) fn encode_segment_textbook(model: &Model, text: &str, out: &mut Vec<u32>) {
    struct Sym {
        start: usize,
        len: usize,
        frozen: bool,
        prev: usize,
        next: usize,
    }
    const END: usize = usize::MAX;
    let mut symbols: Vec<Sym> = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        // The longest user-defined piece at this position is one frozen symbol.
        let user = model
            .user_defined
            .iter()
            .filter(|(piece, _)| text[pos..].starts_with(piece.as_str()))
            .map(|(piece, _)| piece.len())
            .max();
        let (len, frozen) = match user {
            Some(len) => (len, true),
            None => (text[pos..].chars().next().map_or(1, char::len_utf8), false),
        };
        let index = symbols.len();
        symbols.push(Sym {
            start: pos,
            len,
            frozen,
            prev: if index == 0 { END } else { index - 1 },
            next: if pos + len < text.len() {
                index + 1
            } else {
                END
            },
        });
        pos += len;
    }
    if symbols.is_empty() {
        return;
    }

    // (score key, leftmost first, left, right, size): the heap's top is SentencePiece's.
    let mut agenda: BinaryHeap<(u32, Reverse<usize>, usize, usize)> = BinaryHeap::new();
    let mut rev_merge: FxHashMap<String, (String, String)> = FxHashMap::default();
    let mut push = |symbols: &[Sym],
                    agenda: &mut BinaryHeap<(u32, Reverse<usize>, usize, usize)>,
                    left: usize,
                    right: usize| {
        if left == END || right == END || symbols[left].frozen || symbols[right].frozen {
            return;
        }
        let (l, r) = (&symbols[left], &symbols[right]);
        let merged = &text[l.start..r.start + r.len];
        let Some(id) = model.mergeable_id(merged) else {
            return;
        };
        let score = model.scores[id as usize];
        agenda.push((score_key(score), Reverse(l.start), left, l.len + r.len));
        if model.types[id as usize] == PieceType::Unused {
            let left_text = text[l.start..l.start + l.len].to_string();
            let right_text = text[r.start..r.start + r.len].to_string();
            rev_merge.insert(merged.to_string(), (left_text, right_text));
        }
    };
    for i in 1..symbols.len() {
        push(&symbols, &mut agenda, i - 1, i);
    }
    while let Some((_, _, left, size)) = agenda.pop() {
        let right = symbols[left].next;
        if symbols[left].len == 0
            || right == END
            || symbols[right].len == 0
            || symbols[left].len + symbols[right].len != size
        {
            continue;
        }
        symbols[left].len += symbols[right].len;
        symbols[left].next = symbols[right].next;
        let after = symbols[right].next;
        if after != END {
            symbols[after].prev = left;
        }
        symbols[right].len = 0;
        let before = symbols[left].prev;
        push(&symbols, &mut agenda, before, left);
        push(&symbols, &mut agenda, left, after);
    }

    fn resegment(
        model: &Model,
        piece: &str,
        rev_merge: &FxHashMap<String, (String, String)>,
        out: &mut Vec<u32>,
    ) {
        // `PieceToId`: reserved pieces first, then mergeable ones, else the unknown id.
        let id = model
            .reserved
            .get(piece)
            .copied()
            .or_else(|| model.mergeable_id(piece))
            .unwrap_or(model.unk_id);
        if model.types[id as usize] == PieceType::Unused {
            if let Some((left, right)) = rev_merge.get(piece) {
                resegment(model, left, rev_merge, out);
                resegment(model, right, rev_merge, out);
                return;
            }
        }
        if id == model.unk_id {
            // Byte fallback.
            out.extend(piece.bytes().map(|b| model.byte_ids[b as usize]));
        } else {
            out.push(id);
        }
    }
    let mut index = 0;
    while index != END {
        let s = &symbols[index];
        resegment(model, &text[s.start..s.start + s.len], &rev_merge, out);
        index = s.next;
    }
}

/// The merge of two adjacent symbols, if the model allows one (never for a frozen symbol or a
/// character outside every piece).
#[inline]
fn merge_of(model: &Model, left: u32, right: u32) -> Option<(u32, f32)> {
    if (left | right) & FROZEN != 0 {
        return None;
    }
    model
        .merges
        .get(&((u64::from(left) << 32) | u64::from(right)))
        .copied()
}

/// Pushes the pair at `left` (with its right neighbour) if the model has a merge for it
/// (SentencePiece's `MaybeAddNewSymbolPair`).
#[inline]
fn push_pair(
    model: &Model,
    symbols: &[Symbol],
    agenda: &mut Agenda,
    rev_merge: &mut FxHashMap<u32, (u32, u32)>,
    left: u32,
) {
    let l = &symbols[left as usize];
    if l.next == NONE {
        return;
    }
    let r = &symbols[l.next as usize];
    if let Some((merged, score)) = merge_of(model, l.id, r.id) {
        agenda.push(score_key(score), left);
        if model.has_unused && model.types[merged as usize] == PieceType::Unused {
            rev_merge.insert(merged, (l.id, r.id));
        }
    }
}

/// Appends the ids of one final symbol: the piece itself, the halves of an UNUSED merge
/// (recursively), a reserved single-character piece, or one byte piece per UTF-8 byte.
fn emit(
    model: &Model,
    id: u32,
    text: &str,
    rev_merge: &FxHashMap<u32, (u32, u32)>,
    out: &mut Vec<u32>,
) {
    if (id as usize) < model.pieces.len() {
        if model.has_unused && model.types[id as usize] == PieceType::Unused {
            if let Some(&(left, right)) = rev_merge.get(&id) {
                let split = sym_len(model, left, text);
                emit(model, left, &text[..split], rev_merge, out);
                emit(model, right, &text[split..], rev_merge, out);
                return;
            }
        }
        out.push(id);
        return;
    }
    // A single character that is not a mergeable piece.
    if let Some(&reserved) = text
        .chars()
        .next()
        .and_then(|c| model.reserved_chars.get(&c))
    {
        out.push(reserved);
        return;
    }
    out.extend(text.bytes().map(|b| model.byte_ids[b as usize]));
}

/// Byte length of the text of symbol `id` (a piece or a virtual character); `text` starts with it.
fn sym_len(model: &Model, id: u32, text: &str) -> usize {
    if (id as usize) < model.pieces.len() {
        model.piece_len[id as usize] as usize
    } else {
        text.chars().next().map_or(0, char::len_utf8)
    }
}

#[cfg(test)]
mod tests {
    //! The fast path (cutting at bigrams no piece contains, caching, raw-text walking) against
    //! the plain algorithm on the whole normalized text: they must agree on every input.
    use proptest::prelude::*;

    use super::*;
    use crate::tokenizer::MIXTRAL_8X7B_MODEL;

    fn model() -> &'static Model {
        &loaded().0
    }

    fn tables() -> &'static EncoderTables {
        &loaded().1
    }

    fn loaded() -> &'static (Model, EncoderTables) {
        static LOADED: std::sync::OnceLock<(Model, EncoderTables)> = std::sync::OnceLock::new();
        LOADED.get_or_init(|| {
            let model = Model::from_bytes(MIXTRAL_8X7B_MODEL).expect("embedded model loads");
            let tables = EncoderTables::build(&model);
            (model, tables)
        })
    }

    fn reference(model: &Model, text: &str) -> Vec<u32> {
        let mut normalized = String::new();
        normalize::normalize_str_into(text, model.add_dummy_prefix, &mut normalized);
        let mut out = Vec::new();
        encode_segment_heap(model, &normalized, &mut Workspace::default(), &mut out);
        out
    }

    fn fast(model: &Model, text: &str, ws: &mut Workspace) -> Vec<u32> {
        let mut out = Vec::new();
        encode_text(model, tables(), text, ws, &mut out);
        out
    }

    #[test]
    fn known_encodings() {
        let m = model();
        let mut ws = Workspace::default();
        for (text, ids) in [
            ("", vec![]),
            (" ", vec![259]),
            ("a ", vec![264, 28705]),
            ("Hello world", vec![22557, 1526]),
            ("hello world", vec![6312, 28709, 1526]),
        ] {
            assert_eq!(fast(m, text, &mut ws), ids, "{text:?}");
            assert_eq!(reference(m, text), ids, "{text:?}");
        }
    }

    /// `char_info` against the plain algorithm, for every character of the BMP as a segment of
    /// its own (a raw ' ' is `▁`), and its neighbour flags against the bigram set.
    #[test]
    fn every_bmp_character_alone_encodes_as_the_table_says() {
        let (model, tables) = loaded();
        let mut ws = Workspace::default();
        let (mut out, mut text) = (Vec::new(), String::new());
        for code in 0..CHAR_TABLE_LEN as u32 {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            let info = tables.char_info(code);
            text.clear();
            text.push(raw_char(c));
            out.clear();
            encode_segment(model, &text, &mut ws, &mut out);
            let mut raw = [0u8; 4];
            let mut expected = Vec::new();
            push_char_ids(
                model,
                info,
                c.encode_utf8(&mut raw).as_bytes(),
                &mut expected,
            );
            assert_eq!(out, expected, "{c:?}");
            for other in ['a', ' ', '\u{65e5}', '\u{2581}'] {
                if tables.raw_bigram_in_pieces(c, other) {
                    assert!(info & CHAR_LEFT != 0, "{c:?}{other:?}");
                }
                if tables.raw_bigram_in_pieces(other, c) {
                    assert!(info & CHAR_RIGHT != 0, "{other:?}{c:?}");
                }
            }
        }
    }

    #[test]
    fn a_long_segment_leaves_no_large_buffers_behind() {
        let m = model();
        let mut ws = Workspace::default();
        let short = fast(m, "a few words", &mut ws);
        // One segment of a million characters: about 30 MB of symbols and candidates.
        let long = "=".repeat(1_000_000);
        let ids = fast(m, &long, &mut ws);
        assert!(ws.capacity_bytes() > 16 * MAX_KEPT_SCRATCH_BYTES);
        ws.release_large_buffers();
        assert!(ws.capacity_bytes() <= 5 * MAX_KEPT_SCRATCH_BYTES);
        // The same ids afterwards, from the trimmed space and from a fresh one.
        assert_eq!(fast(m, &long, &mut ws), ids);
        assert_eq!(fast(m, &long, &mut Workspace::default()), ids);
        assert_eq!(fast(m, "a few words", &mut ws), short);
    }

    /// A segment cache against a map of (bytes, prefix) to ids: keys of every length up to the
    /// short-key limit (both key kinds, and the lengths where `SmallKey` moves from `lo` to `hi`),
    /// keys that differ only in length (trailing zero bytes), in the prefix flag, or in one byte,
    /// values of one id and of several, replaced values, the table's growth, and, for a worker's
    /// bounded cache, emptying at the bound.
    #[test]
    fn the_ascii_pair_table_is_the_merge_table_for_one_character_symbols() {
        let m = model();
        let sym = |code: u8| match code {
            ASCII_PAIR_SPACE => m.sym_of_char(SPACE_SYMBOL),
            b => m.ascii_sym[usize::from(b)],
        };
        let mut merges = 0;
        for l in (0..128u8).chain([ASCII_PAIR_SPACE]) {
            for r in (0..128u8).chain([ASCII_PAIR_SPACE]) {
                let want = match (sym(l), sym(r)) {
                    (a, b) if a == NO_SYM || b == NO_SYM => None,
                    (a, b) => m
                        .merges
                        .get(&((u64::from(a) << 32) | u64::from(b)))
                        .copied(),
                };
                let (merged, score) = m.ascii_pairs[ascii_pair_index(l, r)];
                let got = (merged != NO_SYM).then_some((merged, score));
                assert_eq!(got, want, "{l} {r}");
                merges += usize::from(got.is_some());
            }
        }
        // "▁t", "he", "in", ...: 1,492 of the 16,641 pairs are merges in Mixtral's vocabulary.
        assert!(merges > 1_000, "{merges}");
    }

    /// A small table read back from its record is the same table, slot for slot (its arena
    /// too); a record that could make a search run past every slot, or point outside the arena,
    /// or is cut, is refused.
    #[test]
    fn a_small_table_reads_back_from_its_record_and_a_bad_record_is_refused() {
        let seed = &tables().seed_cache.small;
        assert_eq!(
            RecordedSmallCache::recorded(&seed.record()).as_ref(),
            Some(seed)
        );
        let mut table = SmallCache::default();
        for n in 1..=40u64 {
            let ids: Vec<u32> = (0..(n % 3) as u32 + 1).collect();
            table.insert(SmallKey { lo: n, hi: 1 << 24 }, &ids);
        }
        let record = table.record();
        let read = |bytes: &[u8]| RecordedSmallCache::recorded(bytes).map(|t| t.to_owned_cache());
        assert_eq!(read(&record).as_ref(), Some(&table));
        for cut in [0, 3, 4, 100, record.len() - 1] {
            assert!(read(&record[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = record.clone();
        longer.push(0);
        assert!(read(&longer).is_none());
        // A bucket count that is not a power of two.
        let mut odd = record.clone();
        odd[..4].copy_from_slice(&(table.buckets.len() as u32 + 1).to_le_bytes());
        assert!(read(&odd).is_none());
        // A count of keys that is not the number of slots taken.
        let mut miscounted = record.clone();
        miscounted[4..8].copy_from_slice(&(table.len as u32 - 1).to_le_bytes());
        assert!(read(&miscounted).is_none());
        // Something other than zeros before the slots.
        let mut padded = record.clone();
        padded[RECORD_HEADER - 1] = 1;
        assert!(read(&padded).is_none());
        // Every slot taken: a search for a key that is not there would never end.
        let mut full = record.clone();
        let slots = RECORD_HEADER..RECORD_HEADER + 64 * table.buckets.len();
        for slot in full[slots].chunks_exact_mut(16) {
            slot[8..12].copy_from_slice(&(1u32 << 24).to_le_bytes());
            slot[12..16].copy_from_slice(&7u32.to_le_bytes());
        }
        full[4..8].copy_from_slice(&(4 * table.buckets.len() as u32).to_le_bytes());
        assert!(read(&full).is_none());
        // A value in the arena beyond its end.
        let mut outside = record;
        let slot = (0..table.buckets.len() * 4)
            .find(|&i| table.buckets[i / 4].0[i % 4].value & IN_ARENA != 0)
            .expect("a key of several ids");
        let at = RECORD_HEADER + 16 * slot + 12;
        outside[at..at + 4].copy_from_slice(&(IN_ARENA | 1_000_000).to_le_bytes());
        assert!(read(&outside).is_none());
    }

    /// A record at an address aligned for its slots is read in place; anywhere else it is
    /// copied, into the same table.
    #[test]
    fn a_small_table_is_read_in_place_where_its_record_is_aligned() {
        let seed = &tables().seed_cache.small;
        let record = seed.record();
        // A buffer of buckets holds the record at an aligned address, and one byte further.
        let mut buffer = vec![SmallBucket::default(); record.len() / 64 + 2];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buffer);
        bytes[..record.len()].copy_from_slice(&record);
        let aligned = RecordedSmallCache::recorded(&bytes[..record.len()]).unwrap();
        assert!(matches!(aligned.buckets, Cow::Borrowed(_)));
        assert!(matches!(aligned.arena, Cow::Borrowed(_)));
        assert_eq!(&aligned, seed);
        bytes.copy_within(..record.len(), 1);
        let shifted = RecordedSmallCache::recorded(&bytes[1..=record.len()]).unwrap();
        assert!(matches!(shifted.buckets, Cow::Owned(_)));
        assert_eq!(&shifted, seed);
    }

    #[test]
    fn the_seed_filter_passes_every_seed_key_and_few_others() {
        let t = tables();
        let mut seeded = 0;
        for key in t.seed_cache.small.keys() {
            assert!(t.may_be_seeded(&SegmentKey::Small(key)), "{key:?}");
            seeded += 1;
        }
        assert!(seeded > 40_000, "{seeded} small seed keys");
        // Random lowercase words (not pieces, mostly): at most a fifth pass the filter, and of
        // those that the seed has, every one does.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let (mut tried, mut passed) = (0, 0);
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let len = 4 + (rng % 8) as usize;
            let raw: Vec<u8> = (0..len)
                .map(|i| b'a' + ((rng >> (5 * i)) % 26) as u8)
                .collect();
            let key = segment_key(&raw, 0, len, rng & 1 == 0).unwrap();
            let may = t.may_be_seeded(&key);
            if t.seed_cache.get(&key).is_some() {
                assert!(may, "{raw:?}");
            } else {
                tried += 1;
                passed += usize::from(may);
            }
        }
        assert!(
            5 * passed <= tried,
            "{passed} of {tried} keys not in the seed pass"
        );
    }

    #[test]
    fn segment_caches_give_the_ids_put_in_them() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let alphabet = [b'a', b'b', 0u8, b' ', 0xE2, 0x96];
        for bounded in [false, true] {
            let mut cache = SegmentCache::default();
            let mut reference: std::collections::HashMap<(Vec<u8>, bool), Vec<u32>> =
                Default::default();
            for step in 0..200_000u32 {
                let len = (next() % (MAX_SHORT_KEY_LEN as u64 + 1)) as usize;
                let raw: Vec<u8> = (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect();
                let prefix = next() % 2 == 0 || raw.is_empty();
                let ids: Vec<u32> = (0..1 + next() % 3).map(|k| step * 4 + k as u32).collect();
                let key = segment_key(&raw, 0, raw.len(), prefix).unwrap();
                assert_eq!(
                    matches!(key, SegmentKey::Small(_)),
                    len <= MAX_SMALL_KEY_LEN
                );
                let (small_before, short_before) = (cache.small.len, cache.short.map.len());
                match key {
                    _ if bounded => cache.insert(key, &ids),
                    // The tables themselves, which grow without a bound (as the seed's do).
                    SegmentKey::Small(key) => cache.small.insert(key, &ids),
                    SegmentKey::Short(key) => cache.short.insert(key, &ids),
                }
                if bounded && cache.small.len < small_before {
                    // Emptied at the bound: forget the small keys the cache dropped.
                    assert_eq!(small_before, MAX_SMALL_ENTRIES);
                    reference.retain(|(raw, _), _| raw.len() > MAX_SMALL_KEY_LEN);
                }
                if bounded && cache.short.map.len() < short_before {
                    assert_eq!(short_before, MAX_SHORT_ENTRIES);
                    reference.retain(|(raw, _), _| raw.len() <= MAX_SMALL_KEY_LEN);
                }
                reference.insert((raw, prefix), ids);
                if step % 1000 == 0 {
                    for ((raw, prefix), ids) in &reference {
                        let key = segment_key(raw, 0, raw.len(), *prefix).unwrap();
                        assert_eq!(cache.get(&key), Some(ids.as_slice()), "{raw:?} {prefix}");
                    }
                }
            }
            assert!(4 * cache.small.len <= 3 * 4 * cache.small.buckets.len());
            // Keys never inserted are not found: longer by a zero byte, or with the other flag.
            for ((raw, prefix), _) in reference.iter().take(5000) {
                let mut longer = raw.clone();
                longer.push(0);
                if longer.len() <= MAX_SHORT_KEY_LEN
                    && !reference.contains_key(&(longer.clone(), *prefix))
                {
                    let key = segment_key(&longer, 0, longer.len(), *prefix).unwrap();
                    assert_eq!(cache.get(&key), None);
                }
                if !raw.is_empty() && !reference.contains_key(&(raw.clone(), !prefix)) {
                    let key = segment_key(raw, 0, raw.len(), !prefix).unwrap();
                    assert_eq!(cache.get(&key), None);
                }
            }
        }
        // A worker's table of small keys stays within its bound.
        let mut cache = SegmentCache::default();
        for k in 0..(MAX_SMALL_ENTRIES as u64 + 10) {
            let raw = k.to_le_bytes();
            let key = segment_key(&raw, 0, 8, false).unwrap();
            cache.insert(key, &[1]);
        }
        assert_eq!(cache.small.len, 10);
        assert_eq!(cache.small.buckets.len() * 4, 4 * MAX_SMALL_ENTRIES / 3);
    }

    /// A key is read from the text around the segment (16 bytes at once where the text has
    /// them): the bytes after the segment must not change it.
    #[test]
    fn a_segment_key_depends_on_the_segment_alone() {
        let text = b"xx abcdefghijklmnopqrstuvwxyz0123456789";
        for start in 0..4 {
            for end in start..text.len().min(start + MAX_SHORT_KEY_LEN + 1) {
                let alone = &text[start..end];
                for prefix in [false, true] {
                    assert_eq!(
                        segment_key(text, start, end, prefix),
                        segment_key(alone, 0, alone.len(), prefix),
                    );
                }
            }
        }
    }

    #[test]
    fn the_mistral_vocabulary_is_cut_before_every_space_after_a_character() {
        // No piece has `▁` after another character, so "x▁" never merges.
        let t = tables();
        assert!(!t.raw_bigram_in_pieces('x', ' '));
        assert!(!t.raw_bigram_in_pieces('\u{65e5}', ' '));
        assert!(t.raw_bigram_in_pieces(' ', 'x'));
        assert!(t.raw_bigram_in_pieces(' ', ' '));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn fast_path_equals_whole_text_algorithm(text in "(?s)[ a-zA-Z0-9.,;:'\"()\\n\\t\u{2581}\u{e9}\u{65e5}\u{672c}\u{3042}\u{1f600}\u{6570}\u{636e}\u{83b7}\u{53d6}\u{4e00}\u{4e2a}\u{9f98}\u{3002}-]{0,80}") {
            let m = model();
            let mut ws = Workspace::default();
            let expected = reference(m, &text);
            prop_assert_eq!(fast(m, &text, &mut ws), expected.clone());
            // Again, now from the cache.
            prop_assert_eq!(fast(m, &text, &mut ws), expected);
        }

        /// The array scan and the heap choose the same merges, also on long repetitive text
        /// where many pairs tie (runs of one letter, of spaces).
        #[test]
        fn short_algorithm_equals_heap_algorithm(text in "[ab\u{2581}\u{65e5}]{1,300}") {
            let m = model();
            let mut ws = Workspace::default();
            let (mut short, mut heap) = (Vec::new(), Vec::new());
            encode_short_segment(m, &text, &mut ws, &mut short);
            encode_segment_heap(m, &text, &mut ws, &mut heap);
            prop_assert_eq!(short, heap);
        }

        #[test]
        fn fast_path_equals_whole_text_algorithm_on_any_text(text in any::<String>()) {
            let m = model();
            let mut ws = Workspace::default();
            prop_assert_eq!(fast(m, &text, &mut ws), reference(m, &text));
        }

        /// The textbook loop (text lookups, a plain heap, SentencePiece's staleness test) and the
        /// heap version (merge table, grouped agenda, score test) agree.
        #[test]
        fn textbook_algorithm_equals_heap_algorithm(text in "[ab \u{65e5}\u{1f600}x.]{0,200}") {
            let m = model();
            let mut normalized = String::new();
            normalize::normalize_str_into(&text, m.add_dummy_prefix, &mut normalized);
            let mut textbook = Vec::new();
            encode_segment_textbook(m, &normalized, &mut textbook);
            prop_assert_eq!(textbook, reference(m, &text));
        }
    }
}
