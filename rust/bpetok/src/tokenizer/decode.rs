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
    // of range is one comparison and branch per id (15% of the table decoder's time). A fold,
    // not `Iterator::max`, which compiled to a scalar loop with a branch per id.
    let max = ids.iter().fold(0, |max, &id| max.max(id));
    if ids.is_empty() || (max as usize) < vocab_size {
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
    /// The same texts as UTF-16, made on the first [`Decoder::decode_utf16_into`].
    utf16: std::sync::OnceLock<Utf16Table>,
}

/// Output texts of at most this many bytes are held in the entry itself.
const INLINE: usize = 14;
/// `Entry::len` of a BYTE piece: consecutive ones are decoded together as UTF-8.
const BYTE: u8 = u8::MAX - 1;
/// `Entry::len` of an output text longer than [`INLINE`].
const LONG: u8 = u8::MAX;

/// One id's output, 16 bytes, aligned: decoding reads one entry per id from a table that, for
/// 32,000 pieces, fits the L2 cache, and copies its text in one fixed-size move. (A table of
/// offsets into one string of all texts cost two cache misses per id, one for the entry and one
/// for the text, and made decoding twice as slow.)
///
/// Bytes 0 to 13 are the output text when it fits, padded with zeros (the byte of a byte piece;
/// the index into `Decoder::long`, little-endian u32, of a long text); byte 14 is the text's
/// length, or [`BYTE`] or [`LONG`]; byte 15 is 1 for a piece that starts with `▁` in a model that
/// adds the dummy prefix (while SentencePiece's `is_bos_ws` holds, that space is dropped). The
/// decoding loop copies all 16 bytes and moves on by the length: a single comparison tells an
/// inline text from the rest, and what is copied past the text is overwritten by the next piece
/// or cut off at the end.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Entry {
    bytes: [u8; 16],
}

impl Entry {
    fn new(text: &[u8], len: u8, space_first: bool, non_ascii: bool) -> Self {
        let mut bytes = [0; 16];
        bytes[..text.len()].copy_from_slice(text);
        bytes[INLINE] = len;
        bytes[INLINE + 1] = u8::from(space_first) | if non_ascii { NON_ASCII } else { 0 };
        Entry { bytes }
    }

    /// The text's length ([`INLINE`] or less), or [`BYTE`] or [`LONG`].
    fn len(&self) -> u8 {
        self.bytes[INLINE]
    }

    fn is_byte(&self) -> bool {
        self.len() == BYTE
    }

    fn space_first(&self) -> bool {
        self.bytes[INLINE + 1] & 1 != 0
    }

    /// Whether the output holds a non-ASCII byte (a byte piece: is one).
    fn non_ascii(&self) -> bool {
        self.bytes[INLINE + 1] & NON_ASCII != 0
    }
}

/// Bit of an entry's byte 15: its output holds a byte outside ASCII.
const NON_ASCII: u8 = 2;

/// [`Decoder::mostly_non_ascii`] holds when one sampled piece in this many is non-ASCII.
const NON_ASCII_SHARE: usize = 4;

/// UTF-16 code units of an output text held in an [`Entry16`] itself.
const INLINE16: usize = 7;

/// One id's output as UTF-16, 16 bytes: units 0 to 6 are the text when it fits, padded with
/// zeros (the byte of a byte piece; the index into `Utf16Table::long`, as two little-endian
/// units, of a long text); unit 7 is the text's length in units, or [`BYTE`] or [`LONG`]. Read
/// as [`Entry`] is: one fixed-size copy per id.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Entry16 {
    units: [u16; 8],
}

impl Entry16 {
    fn len(&self) -> u16 {
        self.units[INLINE16]
    }
}

/// The output texts of [`Decoder`] as UTF-16, by id.
#[derive(Clone)]
struct Utf16Table {
    entries: Vec<Entry16>,
    /// The output text of entries too long for [`INLINE16`] units, back to back.
    long_units: Vec<u16>,
    long: Vec<(usize, usize)>,
}

impl Utf16Table {
    fn new(decoder: &Decoder) -> Self {
        let mut table = Utf16Table {
            entries: Vec::with_capacity(decoder.entries.len()),
            long_units: Vec::new(),
            long: Vec::new(),
        };
        let mut units = Vec::new();
        for entry in &decoder.entries {
            let mut e = Entry16 { units: [0; 8] };
            if entry.is_byte() {
                e.units[0] = u16::from(entry.bytes[0]);
                e.units[INLINE16] = u16::from(BYTE);
            } else {
                let text =
                    std::str::from_utf8(decoder.text_of(entry)).expect("piece text is UTF-8");
                units.clear();
                units.extend(text.encode_utf16());
                if units.len() <= INLINE16 {
                    e.units[..units.len()].copy_from_slice(&units);
                    e.units[INLINE16] = units.len() as u16;
                } else {
                    let index = table.long.len() as u32;
                    let start = table.long_units.len();
                    table.long_units.extend_from_slice(&units);
                    table.long.push((start, table.long_units.len()));
                    e.units[0] = index as u16;
                    e.units[1] = (index >> 16) as u16;
                    e.units[INLINE16] = u16::from(LONG);
                }
            }
            table.entries.push(e);
        }
        table
    }
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
            utf16: std::sync::OnceLock::new(),
        };
        let mut surface = String::new();
        for id in 0..model.vocab_size() {
            if let Some(b) = model.byte_of_id[id] {
                decoder
                    .entries
                    .push(Entry::new(&[b], BYTE, false, b >= 0x80));
                continue;
            }
            surface.clear();
            let piece = model.piece(id);
            let space_first = match model.types[id] {
                PieceType::Control => false,
                PieceType::Unknown => {
                    surface.push_str(&model.unk_surface);
                    false
                }
                _ => {
                    push_unescaped(&mut surface, piece);
                    model.add_dummy_prefix && piece.starts_with(SPACE_SYMBOL)
                }
            };
            let entry = decoder.entry(&surface, space_first);
            decoder.entries.push(entry);
        }
        decoder
    }

    fn entry(&mut self, surface: &str, space_first: bool) -> Entry {
        let non_ascii = !surface.is_ascii();
        if surface.len() <= INLINE {
            return Entry::new(
                surface.as_bytes(),
                surface.len() as u8,
                space_first,
                non_ascii,
            );
        }
        // Ids are u32, so there are fewer long texts than u32 values.
        let index = self.long.len() as u32;
        let start = self.long_text.len();
        self.long_text.push_str(surface);
        self.long.push((start, self.long_text.len()));
        Entry::new(&index.to_le_bytes(), LONG, space_first, non_ascii)
    }

    /// The output text of an entry that is not a byte piece's.
    fn text_of<'a>(&'a self, entry: &'a Entry) -> &'a [u8] {
        if entry.len() == LONG {
            let b = &entry.bytes;
            let index = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let (start, end) = self.long[index as usize];
            &self.long_text.as_bytes()[start..end]
        } else {
            &entry.bytes[..usize::from(entry.len())]
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
        let mut run = Vec::new();
        let i = self.push_head(ids, text, &mut run);
        self.push_pieces(&ids[i..], text, &mut run);
        Ok(())
    }

    /// Appends the text of the first ids, up to where no rule of the dummy prefix is left to
    /// apply, and returns the index of the first id not decoded.
    fn push_head(&self, ids: &[u32], text: &mut Vec<u8>, run: &mut Vec<u8>) -> usize {
        let start = text.len();
        let mut i = 0;
        // SentencePiece's `is_bos_ws`: true until a piece has had its leading `▁` dropped or
        // anything has been output. Only pieces other than byte pieces change it, and once false
        // it stays false: this loop ends there, and the one below has no rule left to apply.
        let mut bos_ws_seen = false;
        while let Some(&id) = ids.get(i) {
            let entry = &self.entries[id as usize];
            if entry.is_byte() {
                let mut pos = text.len();
                i = self.push_byte_run(ids, i, text, &mut pos, run);
                text.truncate(pos);
                continue;
            }
            i += 1;
            let surface = self.text_of(entry);
            if bos_ws_seen || text.len() > start {
                text.extend_from_slice(surface);
                break;
            }
            if entry.space_first() {
                // The text starts with the space the `▁` became: one byte.
                text.extend_from_slice(&surface[1..]);
                bos_ws_seen = true;
            } else {
                text.extend_from_slice(surface);
            }
        }
        i
    }

    /// Whether at least a quarter of `ids` render non-ASCII text, judged from 64 of them spread
    /// over the list (all of a shorter one): a hint for a caller that can take the text as UTF-8
    /// or as UTF-16 (CPython makes a `str` from UTF-16 faster when much of it is not ASCII). Ids
    /// out of range count as ASCII.
    pub fn mostly_non_ascii(&self, ids: &[u32]) -> bool {
        const SAMPLE: usize = 64;
        let step = ids.len().div_ceil(SAMPLE).max(1);
        let (mut sampled, mut non_ascii) = (0usize, 0usize);
        for &id in ids.iter().step_by(step) {
            sampled += 1;
            non_ascii += usize::from(self.entries.get(id as usize).is_some_and(Entry::non_ascii));
        }
        sampled > 0 && NON_ASCII_SHARE * non_ascii >= sampled
    }

    /// [`Decoder::decode_into`] as UTF-16: appends the code units of the same text to `units`
    /// (always valid UTF-16). On an error `units` is left as it was. The first call makes the
    /// UTF-16 table (about as long as making the decoder).
    pub fn decode_utf16_into(&self, ids: &[u32], units: &mut Vec<u16>) -> Result<()> {
        first_out_of_range(self.entries.len(), ids)?;
        let table = self.utf16.get_or_init(|| Utf16Table::new(self));
        units.reserve(ids.len() * 2 + 64);
        // The head as UTF-8 in `utf8`, which then holds each byte run's UTF-8 in turn.
        let (mut utf8, mut run) = (Vec::new(), Vec::new());
        let i = self.push_head(ids, &mut utf8, &mut run);
        units.extend(
            std::str::from_utf8(&utf8)
                .expect("decoded text is UTF-8")
                .encode_utf16(),
        );
        self.push_pieces16(table, &ids[i..], units, (&mut run, &mut utf8));
        Ok(())
    }

    /// [`Decoder::push_pieces`] in UTF-16: one 16-byte copy per inline text.
    fn push_pieces16(
        &self,
        table: &Utf16Table,
        ids: &[u32],
        units: &mut Vec<u16>,
        scratch: (&mut Vec<u8>, &mut Vec<u8>),
    ) {
        let (run, utf8) = scratch;
        let mut out = std::mem::take(units);
        let mut pos = out.len();
        let mut i = 0;
        while let Some(&id) = ids.get(i) {
            if pos + 8 > out.len() {
                out.resize(pos + ROOM / 2, 0);
            }
            let entry = &table.entries[id as usize];
            let len = entry.len();
            if usize::from(len) <= INLINE16 {
                out[pos..pos + 8].copy_from_slice(&entry.units);
                pos += usize::from(len);
                i += 1;
            } else {
                (i, pos) = self.push_other16(table, ids, i, &mut out, pos, (&mut *run, &mut *utf8));
            }
        }
        out.truncate(pos);
        *units = out;
    }

    /// [`Decoder::push_other`] in UTF-16: a long text, or a byte run decoded as UTF-8 (in
    /// `scratch.1`) and written as UTF-16.
    #[inline(never)]
    fn push_other16(
        &self,
        table: &Utf16Table,
        ids: &[u32],
        i: usize,
        out: &mut Vec<u16>,
        mut pos: usize,
        scratch: (&mut Vec<u8>, &mut Vec<u8>),
    ) -> (usize, usize) {
        let entry = &table.entries[ids[i] as usize];
        if entry.len() == u16::from(LONG) {
            let index = usize::from(entry.units[0]) | usize::from(entry.units[1]) << 16;
            let (start, end) = table.long[index];
            put(out, &mut pos, &table.long_units[start..end]);
            return (i + 1, pos);
        }
        let (run, utf8) = scratch;
        let mut len = 0;
        let end = self.push_byte_run(ids, i, utf8, &mut len, run);
        let text = std::str::from_utf8(&utf8[..len]).expect("a decoded byte run is UTF-8");
        // At most one unit per byte: room for all, then one pass.
        if pos + len > out.len() {
            out.resize(pos + len + ROOM / 2, 0);
        }
        for (slot, unit) in out[pos..].iter_mut().zip(text.encode_utf16()) {
            *slot = unit;
            pos += 1;
        }
        (end, pos)
    }

    /// Appends the text of `ids` once no rule of the dummy prefix is left to apply.
    ///
    /// The text is written to a `Vec` kept longer than what is written (zeros, cut off at the
    /// end), so that an inline text is one 16-byte copy to `text[pos..]` and the only bookkeeping
    /// per piece is `pos` in a register; the room is made [`ROOM`] bytes at a time, so the zeros
    /// written are about the text's length. Byte runs and long texts, a few in a hundred pieces,
    /// are handed to [`Decoder::push_other`], out of line, so that the loop keeps its state in
    /// registers. (With them inline, the loop kept its index and `pos` on the stack, and every
    /// id waited for the store of the one before.)
    fn push_pieces(&self, ids: &[u32], text: &mut Vec<u8>, run: &mut Vec<u8>) {
        let mut out = std::mem::take(text);
        let mut pos = out.len();
        let mut i = 0;
        while let Some(&id) = ids.get(i) {
            if pos + 16 > out.len() {
                out.resize(pos + ROOM, 0);
            }
            let entry = &self.entries[id as usize];
            let len = entry.len();
            if usize::from(len) <= INLINE {
                out[pos..pos + 16].copy_from_slice(&entry.bytes);
                pos += usize::from(len);
                i += 1;
            } else {
                (i, pos) = self.push_other(ids, i, &mut out, pos, run);
            }
        }
        out.truncate(pos);
        *text = out;
    }

    /// [`Decoder::push_pieces`] for the piece at `ids[i]`, a long text or the start of a byte
    /// run: writes it (the whole run) at `out[pos..]`, making room as needed, and returns the
    /// index after it and the position after its text. (`pos` goes by value: a `&mut` to it
    /// would keep the loop's `pos` in memory.)
    #[inline(never)]
    fn push_other(
        &self,
        ids: &[u32],
        i: usize,
        out: &mut Vec<u8>,
        mut pos: usize,
        run: &mut Vec<u8>,
    ) -> (usize, usize) {
        let entry = &self.entries[ids[i] as usize];
        if entry.is_byte() {
            let end = self.push_byte_run(ids, i, out, &mut pos, run);
            return (end, pos);
        }
        put(out, &mut pos, self.text_of(entry));
        (i + 1, pos)
    }

    /// Decodes the run of byte pieces that starts at `ids[i]` as UTF-8 (U+FFFD per byte that
    /// starts no valid character) to `out[*pos..]` (see [`put`]) and returns the index after it.
    /// The bytes are written as they are and checked there (a run is mostly one character);
    /// only an invalid run is copied to `run` and written again, corrected.
    fn push_byte_run(
        &self,
        ids: &[u32],
        mut i: usize,
        out: &mut Vec<u8>,
        pos: &mut usize,
        run: &mut Vec<u8>,
    ) -> usize {
        let start = *pos;
        while let Some(&id) = ids.get(i) {
            let entry = &self.entries[id as usize];
            if !entry.is_byte() {
                break;
            }
            if *pos >= out.len() {
                out.resize(*pos + ROOM, 0);
            }
            out[*pos] = entry.bytes[0];
            *pos += 1;
            i += 1;
        }
        if std::str::from_utf8(&out[start..*pos]).is_err() {
            run.clear();
            run.extend_from_slice(&out[start..*pos]);
            *pos = start;
            for_each_utf8_run(run, |valid| put(out, pos, valid.as_bytes()));
        }
        i
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
        let sizes: Vec<usize> = batch.iter().map(|ids| ids.as_ref().len()).collect();
        let threads = threads_for(sizes.iter().copied(), num_threads);
        let slots: Vec<std::sync::OnceLock<Vec<u8>>> =
            batch.iter().map(|_| std::sync::OnceLock::new()).collect();
        run_parallel(&sizes, vec![(); threads], |i, ()| {
            let mut text = Vec::new();
            // Checked above: cannot fail.
            if self.decode_into(batch[i].as_ref(), &mut text).is_ok() {
                let _ = slots[i].set(text);
            }
        });
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

/// Room made at a time at the end of the text [`Decoder::push_pieces`] writes, in bytes.
const ROOM: usize = 4096;

/// Writes `items` (bytes of UTF-8 or units of UTF-16) at `out[*pos..]`, making room (zeros, about
/// [`ROOM`] bytes at a time) as needed, and moves `*pos` past them.
fn put<T: Copy + Default>(out: &mut Vec<T>, pos: &mut usize, items: &[T]) {
    let end = *pos + items.len();
    if end > out.len() {
        out.resize(end + ROOM / std::mem::size_of::<T>(), T::default());
    }
    out[*pos..end].copy_from_slice(items);
    *pos = end;
}
