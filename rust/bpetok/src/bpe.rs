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
//! 2. Reuse. A segment that is itself a piece which encodes to itself (checked for every piece at
//!    load time) is that piece; other short segments are cached per worker.

use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

use crate::model::{Model, NO_SYM};
use crate::proto::PieceType;

/// Segments up to this many bytes are cached.
const MAX_CACHED_LEN: usize = 64;
/// A worker's cache is emptied when it reaches this many entries (bounds memory at a few MB).
const MAX_CACHE_ENTRIES: usize = 1 << 16;
/// "No neighbour" in the symbol list.
const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Symbol {
    /// Byte offset of the symbol's text in the segment.
    start: u32,
    /// Byte length of the symbol's text; 0 once merged into its left neighbour.
    len: u32,
    /// Symbol id: a mergeable piece id, a virtual character id, or `NO_SYM`.
    id: u32,
    prev: u32,
    next: u32,
    /// A user-defined piece: never merged.
    frozen: bool,
}

/// A candidate merge on the heap. `key` orders by score, then by the leftmost position.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    key: u64,
    right: u32,
    merged: u32,
}

/// Scratch space for one encoding thread: reused buffers and the segment cache.
#[derive(Default)]
pub struct Workspace {
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Candidate>,
    /// For UNUSED merged pieces: the pair that was pushed last for it (SentencePiece's
    /// `rev_merge`).
    rev_merge: FxHashMap<u32, (u32, u32)>,
    pub(crate) normalized: String,
    cache: FxHashMap<Box<str>, Box<[u32]>>,
}

/// A totally ordered key: higher score first, then lower `left` first.
#[inline]
fn candidate_key(score: f32, left: u32) -> u64 {
    let bits = score.to_bits();
    let ordered = if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    (u64::from(ordered) << 32) | u64::from(!left)
}

/// Encodes normalized text (spaces already `▁`, dummy prefix already added), appending ids.
pub(crate) fn encode_normalized(
    model: &Model,
    normalized: &str,
    ws: &mut Workspace,
    out: &mut Vec<u32>,
) {
    if model.has_unused {
        encode_segment(model, normalized, ws, out);
        return;
    }
    let mut chars = normalized.char_indices();
    let Some((_, mut prev)) = chars.next() else {
        return;
    };
    let mut start = 0;
    for (i, c) in chars {
        if !model.bigram_in_pieces(prev, c) {
            encode_segment_cached(model, &normalized[start..i], ws, out);
            start = i;
        }
        prev = c;
    }
    encode_segment_cached(model, &normalized[start..], ws, out);
}

fn encode_segment_cached(model: &Model, segment: &str, ws: &mut Workspace, out: &mut Vec<u32>) {
    if let Some(&id) = model.mergeable.get(segment) {
        if model.self_encoding[id as usize] {
            out.push(id);
            return;
        }
    }
    if segment.len() > MAX_CACHED_LEN {
        encode_segment(model, segment, ws, out);
        return;
    }
    if let Some(ids) = ws.cache.get(segment) {
        out.extend_from_slice(ids);
        return;
    }
    let first = out.len();
    encode_segment(model, segment, ws, out);
    if ws.cache.len() >= MAX_CACHE_ENTRIES {
        ws.cache.clear();
    }
    ws.cache.insert(segment.into(), out[first..].into());
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

/// Pushes the merge of `left` and `right` if the model has one (SentencePiece's
/// `MaybeAddNewSymbolPair`).
#[inline]
fn push_pair(
    model: &Model,
    symbols: &[Symbol],
    heap: &mut BinaryHeap<Candidate>,
    rev_merge: &mut FxHashMap<u32, (u32, u32)>,
    left: u32,
    right: u32,
) {
    if left == NONE || right == NONE {
        return;
    }
    let (l, r) = (&symbols[left as usize], &symbols[right as usize]);
    if l.frozen || r.frozen || l.id == NO_SYM || r.id == NO_SYM {
        return;
    }
    let key = (u64::from(l.id) << 32) | u64::from(r.id);
    if let Some(&(merged, score)) = model.merges.get(&key) {
        heap.push(Candidate {
            key: candidate_key(score, left),
            right,
            merged,
        });
        if model.has_unused && model.types[merged as usize] == PieceType::Unused {
            rev_merge.insert(merged, (l.id, r.id));
        }
    }
}

/// Encodes one segment of normalized text with the full algorithm, appending ids to `out`.
pub(crate) fn encode_segment(model: &Model, text: &str, ws: &mut Workspace, out: &mut Vec<u32>) {
    let Workspace {
        symbols,
        heap,
        rev_merge,
        ..
    } = ws;
    symbols.clear();
    heap.clear();
    rev_merge.clear();

    // One symbol per character, or per user-defined match.
    let bytes = text.as_bytes();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let (len, id, frozen) = if let Some((len, id)) = match_user_defined(model, &text[pos..]) {
            (len, id, true)
        } else if bytes[pos] < 0x80 {
            (1, model.ascii_sym[bytes[pos] as usize], false)
        } else {
            let Some(c) = text[pos..].chars().next() else {
                break;
            };
            (c.len_utf8(), model.sym_of_char(c), false)
        };
        let index = symbols.len() as u32;
        symbols.push(Symbol {
            start: pos as u32,
            len: len as u32,
            id,
            prev: if index == 0 { NONE } else { index - 1 },
            next: index + 1,
            frozen,
        });
        pos += len;
    }
    let Some(last) = symbols.last_mut() else {
        return;
    };
    last.next = NONE;

    for right in 1..symbols.len() as u32 {
        push_pair(model, symbols, heap, rev_merge, right - 1, right);
    }

    while let Some(top) = heap.pop() {
        let left = !(top.key as u32);
        let (l, r) = (symbols[left as usize], symbols[top.right as usize]);
        // Stale: one of the two symbols has changed since the pair was pushed.
        if l.len == 0 || r.len == 0 || l.len + r.len != model.piece_len[top.merged as usize] {
            continue;
        }
        symbols[left as usize].id = top.merged;
        symbols[left as usize].len = l.len + r.len;
        symbols[left as usize].next = r.next;
        if r.next != NONE {
            symbols[r.next as usize].prev = left;
        }
        symbols[top.right as usize].len = 0;
        push_pair(model, symbols, heap, rev_merge, l.prev, left);
        push_pair(model, symbols, heap, rev_merge, left, r.next);
    }

    let mut index = 0u32;
    while index != NONE {
        let s = symbols[index as usize];
        let piece = &text[s.start as usize..(s.start + s.len) as usize];
        emit(model, s.id, piece, rev_merge, out);
        index = s.next;
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
