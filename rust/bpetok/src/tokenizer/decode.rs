//! Ids back to text, as `SentencePieceProcessor::Decode` does it: runs of byte pieces are
//! decoded together with the strict UTF-8 decoder (U+FFFD per invalid byte), control pieces
//! render nothing, the unknown piece renders the model's unknown surface, `▁` becomes a space,
//! and the leading `▁` of the first piece is dropped (the dummy prefix).
//!
//! Two implementations of the same rules: [`decode`] reads the model's pieces as they are, piece
//! by piece (the plain statement of the rules, and what [`Tokenizer::decode`] does), and
//! [`Decoder`] works from a table made once per model, with every piece's output text already
//! written out, so that decoding is a copy per id. The tests compare the two on arbitrary ids of
//! both reference vocabularies.

use crate::tokenizer::error::{Error, Result};
use crate::tokenizer::model::Model;
use crate::tokenizer::normalize::{for_each_utf8_run, SPACE_SYMBOL, SPACE_SYMBOL_STR};
use crate::tokenizer::proto::PieceType;
use crate::tokenizer::{run_parallel, Tokenizer};

/// Checks that every id is in range.
pub(crate) fn check_ids(model: &Model, ids: &[u32]) -> Result<()> {
    first_out_of_range(model.vocab_size(), ids)
}

fn first_out_of_range(vocab_size: usize, ids: &[u32]) -> Result<()> {
    // The maximum first: a loop the compiler vectorizes, where the search for the first id out
    // of range is one comparison and branch per id (15% of the table decoder's time).
    if ids
        .iter()
        .max()
        .is_none_or(|&max| (max as usize) < vocab_size)
    {
        return Ok(());
    }
    match ids.iter().find(|&&id| id as usize >= vocab_size) {
        Some(&id) => Err(Error::IdOutOfRange {
            id: i64::from(id),
            vocab_size,
        }),
        None => Ok(()),
    }
}

pub(crate) fn decode(model: &Model, ids: &[u32]) -> Result<String> {
    check_ids(model, ids)?;
    let mut text = String::with_capacity(ids.len() * 4);
    let mut bytes: Vec<u8> = Vec::new();
    let flush = |bytes: &mut Vec<u8>, text: &mut String| {
        if !bytes.is_empty() {
            for_each_utf8_run(bytes, |run| text.push_str(run));
            bytes.clear();
        }
    };
    // SentencePiece's `is_bos_ws`: true until a piece has had its leading `▁` consumed or
    // anything has been output.
    let mut is_bos_ws = true;
    let mut bos_ws_seen = false;
    for &id in ids {
        let id = id as usize;
        if let Some(b) = model.byte_of_id[id] {
            bytes.push(b);
            continue;
        }
        flush(&mut bytes, &mut text);
        if bos_ws_seen || !text.is_empty() {
            is_bos_ws = false;
        }
        bos_ws_seen = false;
        match model.types[id] {
            PieceType::Control => {}
            PieceType::Unknown => text.push_str(&model.unk_surface),
            _ => {
                let mut piece = model.piece(id);
                if is_bos_ws && model.add_dummy_prefix {
                    if let Some(rest) = piece.strip_prefix(SPACE_SYMBOL) {
                        piece = rest;
                        bos_ws_seen = true;
                    }
                }
                push_unescaped(&mut text, piece);
            }
        }
    }
    flush(&mut bytes, &mut text);
    Ok(text)
}

fn push_unescaped(text: &mut String, piece: &str) {
    let mut parts = piece.split(SPACE_SYMBOL_STR);
    if let Some(first) = parts.next() {
        text.push_str(first);
    }
    for part in parts {
        text.push(' ');
        text.push_str(part);
    }
}

/// Decodes ids with a table made once from the model (see [`Tokenizer::decoder`]): every piece's
/// output text (`▁` already a space, the unknown surface, nothing for control pieces) is written
/// out in the table, so a piece costs a copy. Gives exactly what [`Tokenizer::decode`] gives,
/// faster; it owns its table, so it can be kept next to the tokenizer and shared between threads.
#[derive(Clone)]
pub struct Decoder {
    /// What each id renders, by id.
    entries: Vec<Entry>,
    /// The output text of pieces too long for their entry, back to back.
    long_text: String,
    /// Where each long one is in `long_text`, by the index its entry holds.
    long: Vec<(usize, usize)>,
}

/// Output texts of at most this many bytes are held in the entry itself.
const INLINE: usize = 14;
/// `Entry::len` of an output text longer than [`INLINE`].
const LONG: u8 = u8::MAX;

/// One id's output, 16 bytes: decoding reads one entry per id from a table that, for 32,000
/// pieces, fits the L2 cache, and copies its text in one fixed-size move. (A table of offsets into
/// one string of all texts cost two cache misses per id, one for the entry and one for the text,
/// and made decoding twice as slow.)
#[derive(Clone, Copy)]
struct Entry {
    /// The output text when it fits, padded with zeros; the byte of a byte piece; the index into
    /// `Decoder::long` (little-endian u32) of a long text.
    text: [u8; INLINE],
    /// Length of the output text in bytes, or [`LONG`].
    len: u8,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Text that is output as it is: control (empty), unknown (the unknown surface) and
    /// user-defined pieces, and pieces that do not start with `▁` (or every piece, when the model
    /// adds no dummy prefix).
    Text,
    /// A piece that starts with `▁` (its output text with a space), in a model that adds the
    /// dummy prefix: while SentencePiece's `is_bos_ws` holds, that space is dropped.
    SpaceFirst,
    /// A BYTE piece: consecutive ones are decoded together as UTF-8.
    Byte,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Decoder({} pieces)", self.entries.len())
    }
}

impl Tokenizer {
    /// A decoder with this tokenizer's table of piece texts, made once (about a millisecond for
    /// 32,000 pieces): keep it for many calls. It decodes exactly as [`Tokenizer::decode`] does,
    /// several times faster.
    pub fn decoder(&self) -> Decoder {
        Decoder::new(&self.model)
    }
}

impl Decoder {
    fn new(model: &Model) -> Self {
        let mut decoder = Decoder {
            entries: Vec::with_capacity(model.vocab_size()),
            long_text: String::new(),
            long: Vec::new(),
        };
        let mut surface = String::new();
        for id in 0..model.vocab_size() {
            if let Some(b) = model.byte_of_id[id] {
                let mut text = [0; INLINE];
                text[0] = b;
                decoder.entries.push(Entry {
                    text,
                    len: 1,
                    kind: Kind::Byte,
                });
                continue;
            }
            surface.clear();
            let piece = model.piece(id);
            let kind = match model.types[id] {
                PieceType::Control => Kind::Text,
                PieceType::Unknown => {
                    surface.push_str(&model.unk_surface);
                    Kind::Text
                }
                _ => {
                    push_unescaped(&mut surface, piece);
                    if model.add_dummy_prefix && piece.starts_with(SPACE_SYMBOL) {
                        Kind::SpaceFirst
                    } else {
                        Kind::Text
                    }
                }
            };
            let entry = decoder.entry(&surface, kind);
            decoder.entries.push(entry);
        }
        decoder
    }

    fn entry(&mut self, surface: &str, kind: Kind) -> Entry {
        let mut text = [0; INLINE];
        if surface.len() <= INLINE {
            text[..surface.len()].copy_from_slice(surface.as_bytes());
            return Entry {
                text,
                len: surface.len() as u8,
                kind,
            };
        }
        // Ids are u32, so there are fewer long texts than u32 values.
        let index = self.long.len() as u32;
        text[..4].copy_from_slice(&index.to_le_bytes());
        let start = self.long_text.len();
        self.long_text.push_str(surface);
        self.long.push((start, self.long_text.len()));
        Entry {
            text,
            len: LONG,
            kind,
        }
    }

    /// The output text of an entry of [`Kind::Text`] or [`Kind::SpaceFirst`].
    fn text_of<'a>(&'a self, entry: &'a Entry) -> &'a [u8] {
        if entry.len == LONG {
            let index =
                u32::from_le_bytes([entry.text[0], entry.text[1], entry.text[2], entry.text[3]]);
            let (start, end) = self.long[index as usize];
            &self.long_text.as_bytes()[start..end]
        } else {
            &entry.text[..usize::from(entry.len)]
        }
    }

    /// Number of pieces in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.entries.len()
    }

    /// Decodes ids to text exactly as `SentencePieceProcessor.decode` does; an id outside the
    /// vocabulary is an error naming it.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut text = Vec::new();
        self.decode_into(ids, &mut text)?;
        // Every piece's text is a whole `str`, and byte runs are decoded to `str`s.
        Ok(String::from_utf8(text).expect("decoded text is UTF-8"))
    }

    /// [`Decoder::decode`], appending the text's UTF-8 bytes to `text` (they are always valid
    /// UTF-8). On an error (an id outside the vocabulary, checked before anything is appended)
    /// `text` is left as it was.
    pub fn decode_into(&self, ids: &[u32], text: &mut Vec<u8>) -> Result<()> {
        first_out_of_range(self.entries.len(), ids)?;
        // Pieces average 3 to 4 bytes of text: one allocation for most texts.
        text.reserve(ids.len() * 4 + 64);
        let start = text.len();
        let mut run = Vec::new();
        let mut i = 0;
        // SentencePiece's `is_bos_ws`: true until a piece has had its leading `▁` dropped or
        // anything has been output. Only pieces other than byte pieces change it, and once false
        // it stays false: this loop ends there, and the one below has no rule left to apply.
        let mut bos_ws_seen = false;
        while let Some(&id) = ids.get(i) {
            let entry = &self.entries[id as usize];
            if entry.kind == Kind::Byte {
                i = self.push_byte_run(ids, i, text, &mut run);
                continue;
            }
            i += 1;
            let surface = self.text_of(entry);
            if bos_ws_seen || text.len() > start {
                text.extend_from_slice(surface);
                break;
            }
            if entry.kind == Kind::SpaceFirst {
                // The text starts with the space the `▁` became: one byte.
                text.extend_from_slice(&surface[1..]);
                bos_ws_seen = true;
            } else {
                text.extend_from_slice(surface);
            }
        }
        self.push_pieces(&ids[i..], text, &mut run);
        Ok(())
    }

    /// Appends the text of `ids` once no rule of the dummy prefix is left to apply.
    ///
    /// `text` is kept longer than what is written (zeros, cut off at the end), so that an inline
    /// text is one fixed-size copy to `text[pos..]` and the only bookkeeping per piece is `pos`
    /// in a register. (Appending with `extend_from_slice` kept the length in the `Vec`, in memory,
    /// and each piece waited for the one before to store it.) The room is made [`ROOM`] bytes at a
    /// time, so the zeros written are about the text's length, not `INLINE` per id.
    fn push_pieces(&self, ids: &[u32], text: &mut Vec<u8>, run: &mut Vec<u8>) {
        /// Room made at a time, in bytes.
        const ROOM: usize = 4096;
        let room = |text: &mut Vec<u8>, pos: usize, bytes: usize| {
            if pos + bytes > text.len() {
                text.resize(pos + bytes + ROOM, 0);
            }
        };
        let mut pos = text.len();
        let mut i = 0;
        while let Some(&id) = ids.get(i) {
            let entry = &self.entries[id as usize];
            if entry.kind == Kind::Byte {
                i = self.byte_run(ids, i, run);
                for_each_utf8_run(run, |valid| {
                    room(text, pos, valid.len());
                    text[pos..pos + valid.len()].copy_from_slice(valid.as_bytes());
                    pos += valid.len();
                });
            } else if entry.len == LONG {
                let long = self.text_of(entry);
                room(text, pos, long.len());
                text[pos..pos + long.len()].copy_from_slice(long);
                pos += long.len();
                i += 1;
            } else {
                room(text, pos, INLINE);
                text[pos..pos + INLINE].copy_from_slice(&entry.text);
                pos += usize::from(entry.len);
                i += 1;
            }
        }
        text.truncate(pos);
    }

    /// Collects the bytes of the run of byte pieces that starts at `ids[i]` into `run` and
    /// returns the index after it.
    fn byte_run(&self, ids: &[u32], mut i: usize, run: &mut Vec<u8>) -> usize {
        run.clear();
        while let Some(&id) = ids.get(i) {
            let entry = &self.entries[id as usize];
            if entry.kind != Kind::Byte {
                break;
            }
            run.push(entry.text[0]);
            i += 1;
        }
        i
    }

    /// Decodes the run of byte pieces that starts at `ids[i]` as UTF-8 (U+FFFD per byte that
    /// starts no valid character) and returns the index after it.
    fn push_byte_run(&self, ids: &[u32], i: usize, text: &mut Vec<u8>, run: &mut Vec<u8>) -> usize {
        let end = self.byte_run(ids, i, run);
        for_each_utf8_run(run, |valid| text.extend_from_slice(valid.as_bytes()));
        end
    }

    /// Decodes many id lists on up to `num_threads` threads, in input order. Every id is checked
    /// first: an id outside the vocabulary is an error naming it, and nothing is decoded.
    pub fn decode_batch<T: AsRef<[u32]> + Sync>(
        &self,
        batch: &[T],
        num_threads: usize,
    ) -> Result<Vec<String>> {
        let texts = self.decode_batch_utf8(batch, num_threads)?;
        // Every text is UTF-8 (see `decode`).
        Ok(texts
            .into_iter()
            .map(|text| String::from_utf8(text).expect("decoded text is UTF-8"))
            .collect())
    }

    /// [`Decoder::decode_batch`], each text as its UTF-8 bytes (always valid UTF-8), for a caller
    /// that makes its own strings from them (a Python `str` from UTF-8 checks them anyway).
    pub fn decode_batch_utf8<T: AsRef<[u32]> + Sync>(
        &self,
        batch: &[T],
        num_threads: usize,
    ) -> Result<Vec<Vec<u8>>> {
        for ids in batch {
            first_out_of_range(self.entries.len(), ids.as_ref())?;
        }
        let threads = threads_for(batch.iter().map(|ids| ids.as_ref().len()), num_threads);
        let slots: Vec<std::sync::OnceLock<Vec<u8>>> =
            batch.iter().map(|_| std::sync::OnceLock::new()).collect();
        run_parallel(
            threads,
            batch.len(),
            || (),
            |i, ()| {
                let mut text = Vec::new();
                // Checked above: cannot fail.
                if self.decode_into(batch[i].as_ref(), &mut text).is_ok() {
                    let _ = slots[i].set(text);
                }
            },
        );
        Ok(slots
            .into_iter()
            .map(|slot| slot.into_inner().unwrap_or_default())
            .collect())
    }
}

/// Ids decoded per thread, at least: below this a batch is decoded on the calling thread (a
/// thread costs tens of microseconds; a million ids take a few milliseconds).
const MIN_IDS_PER_THREAD: usize = 32 * 1024;

/// How many threads a batch of id lists of these lengths is worth (at most `requested`).
fn threads_for(lengths: impl Iterator<Item = usize>, requested: usize) -> usize {
    let (count, total) = lengths.fold((0usize, 0usize), |(n, sum), len| (n + 1, sum + len));
    requested
        .min(total / MIN_IDS_PER_THREAD + 1)
        .min(count)
        .max(1)
}
