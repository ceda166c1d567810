//! A loaded SentencePiece BPE model: the piece table as SentencePiece keeps it, validated, plus
//! what the BPE algorithm reads besides it (symbol ids for characters and the merge table, both
//! functions of the pieces alone). A `Model` is built in one go and never changes; it knows
//! nothing of the encoder. The encoder's fast-path tables (where text can be cut, the seed cache,
//! which pieces encode to themselves) are derived from a finished `Model` by
//! `bpe::EncoderTables::build`.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use prost::Message;
use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::tokenizer::error::{Error, Result};
use crate::tokenizer::normalize::SPACE_SYMBOL;
use crate::tokenizer::proto::{ModelProto, PieceType};

/// Marks "no symbol id": a character that occurs in no piece a merge can produce.
pub(crate) const NO_SYM: u32 = u32::MAX;

const MODEL_TYPE_BPE: i32 = 2;
const DEFAULT_UNK_SURFACE: &str = " \u{2047} ";

/// A validated SentencePiece BPE model: everything the plain BPE algorithm and the decoder read.
/// Complete when constructed and immutable afterwards; the encoder's fast-path tables are derived
/// from it separately (`bpe::EncoderTables`).
#[derive(Debug)]
pub struct Model {
    pub(crate) pieces: PieceTable,
    pub(crate) types: Vec<PieceType>,
    /// The score of every piece (-0.0 stored as 0.0). The encoder reads them through `merges`;
    /// only the textbook algorithm (`bpe::encode_segment_textbook`) reads them here.
    pub(crate) scores: Vec<f32>,
    /// SentencePiece's `pieces_`: NORMAL, USER_DEFINED and UNUSED pieces by text (ids, whose
    /// texts are in `pieces`; see `Model::mergeable_id`).
    mergeable: HashTable<u32>,
    /// SentencePiece's `reserved_id_map_`: UNKNOWN, CONTROL and BYTE pieces by text.
    pub(crate) reserved: FxHashMap<String, u32>,
    pub(crate) unk_id: u32,
    pub(crate) bos_id: Option<u32>,
    pub(crate) eos_id: Option<u32>,
    pub(crate) pad_id: Option<u32>,
    /// The id of `<0xXX>` for every byte value.
    pub(crate) byte_ids: [u32; 256],
    /// `Some(b)` for the id of a BYTE piece.
    pub(crate) byte_of_id: Vec<Option<u8>>,
    pub(crate) unk_surface: String,
    pub(crate) add_dummy_prefix: bool,
    /// Symbol id of each ASCII character (`NO_SYM` when it occurs in no mergeable piece).
    pub(crate) ascii_sym: [u32; 128],
    /// Symbol id of every other character that occurs in a mergeable piece. Characters that are
    /// not pieces themselves but occur inside one get "virtual" ids from `pieces.len()` up.
    pub(crate) char_sym: FxHashMap<char, u32>,
    /// UTF-8 length of the text of every symbol id below `pieces.len()`.
    pub(crate) piece_len: Vec<u32>,
    /// (left symbol, right symbol) -> (merged piece id, its score): every merge the model allows.
    pub(crate) merges: FxHashMap<u64, (u32, f32)>,
    /// `merges` for two symbols of one character each, both ASCII or `▁`, indexed by
    /// [`ascii_pair_index`]: (merged id, score), `NO_SYM` for no merge. The first merges of a word
    /// read this small table instead of the hash map.
    pub(crate) ascii_pairs: Box<[(u32, f32)]>,
    /// A reserved piece whose text is one character: SentencePiece reports it for that character.
    pub(crate) reserved_chars: FxHashMap<char, u32>,
    /// USER_DEFINED pieces, longest first, matched greedily before any merge.
    pub(crate) user_defined: Vec<(String, u32)>,
    /// First bytes of user-defined pieces, to skip the matcher quickly.
    pub(crate) user_defined_first: [bool; 256],
    /// Whether any UNUSED piece exists (merges into them are undone at the end; see `bpe`).
    pub(crate) has_unused: bool,
}

fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// The code of a one-character symbol in `Model::ascii_pairs`: its byte for ASCII, 128 for `▁`.
pub(crate) const ASCII_PAIR_SPACE: u8 = 128;
/// Codes of one-character symbols in `Model::ascii_pairs` (ASCII and `▁`).
const ASCII_PAIR_CODES: usize = 129;
/// Not a one-character ASCII or `▁` symbol: not in `Model::ascii_pairs`.
pub(crate) const NOT_ASCII_PAIR: u8 = u8::MAX;

/// Where the pair of two one-character symbols of these codes is in `Model::ascii_pairs`.
#[inline(always)]
pub(crate) fn ascii_pair_index(left: u8, right: u8) -> usize {
    usize::from(left) * ASCII_PAIR_CODES + usize::from(right)
}

/// `Model::ascii_pairs` from the symbols and merges.
fn ascii_pair_table(
    ascii_sym: &[u32; 128],
    char_sym: &FxHashMap<char, u32>,
    merges: &FxHashMap<u64, (u32, f32)>,
) -> Box<[(u32, f32)]> {
    let sym = |code: usize| match code {
        0..=127 => ascii_sym[code],
        _ => char_sym.get(&SPACE_SYMBOL).copied().unwrap_or(NO_SYM),
    };
    let mut table = vec![(NO_SYM, 0.0); ASCII_PAIR_CODES * ASCII_PAIR_CODES];
    for l in 0..ASCII_PAIR_CODES {
        for r in 0..ASCII_PAIR_CODES {
            let (a, b) = (sym(l), sym(r));
            if a != NO_SYM && b != NO_SYM {
                if let Some(&merge) = merges.get(&pair_key(a, b)) {
                    table[l * ASCII_PAIR_CODES + r] = merge;
                }
            }
        }
    }
    table.into_boxed_slice()
}

fn byte_piece(b: u8) -> String {
    format!("<0x{b:02X}>")
}

/// The texts of all pieces back to back, with where each one ends: one allocation for the whole
/// vocabulary instead of one per piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PieceTable {
    text: String,
    ends: Vec<u32>,
}

impl PieceTable {
    fn with_capacity(pieces: usize) -> Self {
        Self {
            text: String::with_capacity(pieces * 8),
            ends: Vec::with_capacity(pieces),
        }
    }

    /// Rebuilds a table from its two parts (`text`, `ends`), if they describe one.
    pub(crate) fn from_parts(text: String, ends: Vec<u32>) -> Option<Self> {
        let mut start = 0;
        for &end in &ends {
            let end = end as usize;
            if end < start || end > text.len() || !text.is_char_boundary(end) {
                return None;
            }
            start = end;
        }
        (start == text.len()).then_some(Self { text, ends })
    }

    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    #[cfg(test)]
    pub(crate) fn ends(&self) -> &[u32] {
        &self.ends
    }

    fn push(&mut self, piece: &str) {
        self.text.push_str(piece);
        self.ends.push(self.text.len() as u32);
    }

    /// The text of piece `id` (which must be below `len()`).
    #[inline]
    pub(crate) fn get(&self, id: usize) -> &str {
        let start = if id == 0 {
            0
        } else {
            self.ends[id - 1] as usize
        };
        &self.text[start..self.ends[id] as usize]
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|id| self.get(id))
    }
}

fn text_hash(text: &str) -> u64 {
    FxBuildHasher.hash_one(text)
}

/// What a model file says that encoding and decoding read: the pieces and the few settings,
/// read from the `.model` file's protobuf and checked for what bpetok implements. Everything else
/// in a `Model` is derived from it (`Model::assemble`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelSpec {
    pub(crate) pieces: PieceTable,
    pub(crate) types: Vec<PieceType>,
    /// -0.0 is stored as 0.0; never NaN.
    pub(crate) scores: Vec<f32>,
    pub(crate) unk_surface: String,
    pub(crate) add_dummy_prefix: bool,
    /// The trainer spec's names of the BOS, EOS and PAD pieces (`None`: the default name).
    pub(crate) control_names: [Option<String>; 3],
}

/// The symbol ids of characters and the merge table: the part of a `Model` that costs the most to
/// derive (see `Symbols::build` and `merge_table`), and that a recorded snapshot can give.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MergeTables {
    pub(crate) ascii_sym: [u32; 128],
    pub(crate) char_sym: FxHashMap<char, u32>,
    pub(crate) merges: FxHashMap<u64, (u32, f32)>,
}

impl ModelSpec {
    /// Reads a serialized `ModelProto` (the bytes of a `.model` file), refusing what bpetok
    /// does not implement.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let proto = ModelProto::decode(bytes).map_err(|e| Error::Parse(e.to_string()))?;
        Self::from_proto(proto)
    }

    fn from_proto(proto: ModelProto) -> Result<Self> {
        let trainer = proto.trainer_spec.clone().unwrap_or_default();
        let normalizer = proto.normalizer_spec.clone().unwrap_or_default();
        if proto.pieces.is_empty() {
            return Err(Error::Parse("the model has no pieces".into()));
        }
        let model_type = trainer.model_type();
        if model_type != MODEL_TYPE_BPE {
            let name = match model_type {
                1 => "UNIGRAM",
                3 => "WORD",
                4 => "CHAR",
                _ => "unknown",
            };
            return Err(Error::Unsupported(format!(
                "model_type is {name} ({model_type}); bpetok implements BPE (2) models only"
            )));
        }
        if !trainer.byte_fallback() {
            return Err(Error::Unsupported(
                "byte_fallback is off; bpetok implements byte-fallback BPE models (Llama / Mistral family)"
                    .into(),
            ));
        }
        if trainer.treat_whitespace_as_suffix() {
            return Err(Error::Unsupported(
                "treat_whitespace_as_suffix is on; only prefix whitespace is implemented".into(),
            ));
        }
        if !normalizer.precompiled_charsmap().is_empty() {
            return Err(Error::Unsupported(format!(
                "normalizer '{}' has a character map; only the identity normalizer is implemented",
                normalizer.name()
            )));
        }
        if normalizer.remove_extra_whitespaces() {
            return Err(Error::Unsupported(
                "remove_extra_whitespaces is on; only models that keep whitespace as is are implemented"
                    .into(),
            ));
        }
        if !normalizer.escape_whitespaces() {
            return Err(Error::Unsupported(
                "escape_whitespaces is off; spaces must be written as U+2581".into(),
            ));
        }
        if let Some(denorm) = &proto.denormalizer_spec {
            if !denorm.precompiled_charsmap().is_empty() {
                return Err(Error::Unsupported(
                    "the model has a denormalizer; it is not implemented".into(),
                ));
            }
        }
        let n = proto.pieces.len();
        if n >= (u32::MAX / 2) as usize {
            return Err(Error::Inconsistent(format!("{n} pieces is too many")));
        }
        let mut pieces = PieceTable::with_capacity(n);
        let mut scores = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        for (i, sp) in proto.pieces.iter().enumerate() {
            let text = sp.piece();
            if text.is_empty() {
                return Err(Error::Inconsistent(format!("piece {i} is empty")));
            }
            let ty = PieceType::from_proto(sp.r#type()).ok_or_else(|| {
                Error::Inconsistent(format!(
                    "piece {i} ({text:?}) has unknown type {}",
                    sp.r#type()
                ))
            })?;
            let mut score = sp.score();
            if score.is_nan() {
                return Err(Error::Inconsistent(format!(
                    "piece {i} ({text:?}) has a NaN score"
                )));
            }
            if score == 0.0 {
                score = 0.0; // -0.0 and 0.0 compare equal in SentencePiece; keep one of them
            }
            pieces.push(text);
            scores.push(score);
            types.push(ty);
        }
        Ok(ModelSpec {
            pieces,
            types,
            scores,
            unk_surface: trainer
                .unk_surface
                .clone()
                .unwrap_or_else(|| DEFAULT_UNK_SURFACE.to_string()),
            add_dummy_prefix: normalizer.add_dummy_prefix(),
            control_names: [
                trainer.bos_piece.clone(),
                trainer.eos_piece.clone(),
                trainer.pad_piece.clone(),
            ],
        })
    }
}

impl Model {
    /// Parses and validates a serialized `ModelProto` (the bytes of a `.model` file).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::assemble(ModelSpec::from_bytes(bytes)?, None)
    }

    /// The model of a spec, with its symbols and merges derived from the pieces, or taken from
    /// `recorded` (which must be what `MergeTables::derive` gives for this spec: the tests check
    /// the one recorded table the crate embeds).
    pub(crate) fn assemble(spec: ModelSpec, recorded: Option<MergeTables>) -> Result<Self> {
        let ModelSpec {
            pieces,
            types,
            scores,
            unk_surface,
            add_dummy_prefix,
            control_names,
        } = spec;
        let n = pieces.len();
        if n == 0 {
            return Err(Error::Parse("the model has no pieces".into()));
        }
        if n >= (u32::MAX / 2) as usize {
            return Err(Error::Inconsistent(format!("{n} pieces is too many")));
        }
        if types.len() != n || scores.len() != n {
            return Err(Error::Inconsistent(format!(
                "{n} pieces but {} types and {} scores",
                types.len(),
                scores.len()
            )));
        }
        let mut mergeable: HashTable<u32> = HashTable::with_capacity(n);
        let mut reserved = FxHashMap::default();
        let mut unk_id = None;
        let mut byte_of_id = vec![None; n];
        let mut user_defined = Vec::new();
        for (i, (text, &ty)) in pieces.iter().zip(&types).enumerate() {
            let id = i as u32;
            // SentencePiece keeps two maps and would accept the same text in both, always
            // answering with the reserved one; such a model is broken, so it is refused here.
            let hash = text_hash(text);
            let defined_twice = mergeable
                .find(hash, |&other| pieces.get(other as usize) == text)
                .is_some()
                || if ty.is_mergeable() {
                    reserved.contains_key(text)
                } else {
                    reserved.insert(text.to_string(), id).is_some()
                };
            if !defined_twice && ty.is_mergeable() {
                mergeable.insert_unique(hash, id, |&other| text_hash(pieces.get(other as usize)));
            }
            if defined_twice {
                return Err(Error::Inconsistent(format!(
                    "piece {text:?} (id {i}) is defined twice"
                )));
            }
            match ty {
                PieceType::Unknown if unk_id.replace(id).is_some() => {
                    return Err(Error::Inconsistent("more than one UNKNOWN piece".into()));
                }
                PieceType::Byte => {
                    let byte = parse_byte_piece(text).ok_or_else(|| {
                        Error::Inconsistent(format!("BYTE piece {i} is {text:?}, not <0xXX>"))
                    })?;
                    byte_of_id[i] = Some(byte);
                }
                PieceType::UserDefined => user_defined.push((text.to_string(), id)),
                _ => {}
            }
        }
        let unk_id =
            unk_id.ok_or_else(|| Error::Inconsistent("the model has no UNKNOWN piece".into()))?;
        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let text = byte_piece(b as u8);
            match reserved.get(&text) {
                Some(&id) if types[id as usize] == PieceType::Byte => *slot = id,
                _ => {
                    return Err(Error::Inconsistent(format!(
                        "byte_fallback is on but the byte piece {text} is missing"
                    )))
                }
            }
        }
        // SentencePiece's bos_id()/eos_id()/pad_id(): the piece named in the trainer spec, if it
        // is a CONTROL piece.
        let control_id = |name: &Option<String>, default: &str| -> Option<u32> {
            let id = *reserved.get(name.as_deref().unwrap_or(default))?;
            (types[id as usize] == PieceType::Control).then_some(id)
        };
        let [bos_name, eos_name, pad_name] = &control_names;
        let bos_id = control_id(bos_name, "<s>");
        let eos_id = control_id(eos_name, "</s>");
        let pad_id = control_id(pad_name, "<pad>");
        user_defined.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let mut user_defined_first = [false; 256];
        for (text, _) in &user_defined {
            user_defined_first[text.as_bytes()[0] as usize] = true;
        }
        let has_unused = types.contains(&PieceType::Unused);
        let reserved_chars = reserved
            .iter()
            .filter(|&(_, &id)| types[id as usize] != PieceType::Unknown)
            .filter_map(|(text, &id)| {
                let mut chars = text.chars();
                let c = chars.next()?;
                chars.next().is_none().then_some((c, id))
            })
            .collect();
        let piece_len = pieces.iter().map(|p| p.len() as u32).collect();
        let mut model = Model {
            piece_len,
            reserved_chars,
            pieces,
            types,
            scores,
            mergeable,
            reserved,
            unk_id,
            bos_id,
            eos_id,
            pad_id,
            byte_ids,
            byte_of_id,
            unk_surface,
            add_dummy_prefix,
            ascii_sym: [NO_SYM; 128],
            char_sym: FxHashMap::default(),
            merges: FxHashMap::default(),
            ascii_pairs: Box::default(),
            user_defined,
            user_defined_first,
            has_unused,
        };
        let tables = match recorded {
            Some(tables) => tables,
            None => MergeTables::derive(&model),
        };
        model.ascii_pairs = ascii_pair_table(&tables.ascii_sym, &tables.char_sym, &tables.merges);
        model.ascii_sym = tables.ascii_sym;
        model.char_sym = tables.char_sym;
        model.merges = tables.merges;
        Ok(model)
    }

    /// The id of a mergeable piece (NORMAL, USER_DEFINED or UNUSED) by its text.
    #[inline]
    pub(crate) fn mergeable_id(&self, text: &str) -> Option<u32> {
        self.mergeable
            .find(text_hash(text), |&id| self.pieces.get(id as usize) == text)
            .copied()
    }

    /// The text of piece `id` (below `vocab_size()`).
    #[inline]
    pub(crate) fn piece(&self, id: usize) -> &str {
        self.pieces.get(id)
    }

    /// The model's symbols and merges, as `MergeTables::derive` made them (or as recorded).
    #[cfg(test)]
    pub(crate) fn merge_tables(&self) -> MergeTables {
        MergeTables {
            ascii_sym: self.ascii_sym,
            char_sym: self.char_sym.clone(),
            merges: self.merges.clone(),
        }
    }

    /// The mergeable pieces (the only results of merges) with their ids, in id order.
    pub(crate) fn mergeable_pieces(&self) -> impl Iterator<Item = (&str, u32)> {
        mergeable_in_id_order(&self.pieces, &self.types)
    }

    /// The symbol id of one character, `NO_SYM` if no merge can involve it.
    #[inline]
    pub(crate) fn sym_of_char(&self, c: char) -> u32 {
        if c.is_ascii() {
            self.ascii_sym[c as usize]
        } else {
            self.char_sym.get(&c).copied().unwrap_or(NO_SYM)
        }
    }

    /// Number of pieces.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }
}

#[cfg(test)]
impl Model {
    /// Panics unless `self` and `other` agree in every field (the index of mergeable pieces by
    /// looking every one of them up).
    pub(crate) fn assert_same(&self, other: &Model) {
        let Model {
            pieces,
            types,
            scores,
            mergeable,
            reserved,
            unk_id,
            bos_id,
            eos_id,
            pad_id,
            byte_ids,
            byte_of_id,
            unk_surface,
            add_dummy_prefix,
            ascii_sym,
            char_sym,
            piece_len,
            merges,
            ascii_pairs,
            reserved_chars,
            user_defined,
            user_defined_first,
            has_unused,
        } = self;
        assert_eq!(pieces, &other.pieces);
        assert_eq!(types, &other.types);
        assert_eq!(scores, &other.scores);
        assert_eq!(mergeable.len(), other.mergeable.len());
        for &id in mergeable.iter() {
            assert_eq!(other.mergeable_id(self.piece(id as usize)), Some(id));
        }
        assert_eq!(reserved, &other.reserved);
        assert_eq!(
            (unk_id, bos_id, eos_id, pad_id),
            (&other.unk_id, &other.bos_id, &other.eos_id, &other.pad_id)
        );
        assert_eq!(byte_ids, &other.byte_ids);
        assert_eq!(byte_of_id, &other.byte_of_id);
        assert_eq!(unk_surface, &other.unk_surface);
        assert_eq!(add_dummy_prefix, &other.add_dummy_prefix);
        assert_eq!(ascii_sym, &other.ascii_sym);
        assert_eq!(char_sym, &other.char_sym);
        assert_eq!(piece_len, &other.piece_len);
        assert_eq!(merges, &other.merges);
        assert_eq!(ascii_pairs, &other.ascii_pairs);
        assert_eq!(reserved_chars, &other.reserved_chars);
        assert_eq!(user_defined, &other.user_defined);
        assert_eq!(user_defined_first, &other.user_defined_first);
        assert_eq!(has_unused, &other.has_unused);
    }
}

/// The mergeable pieces of a piece table with their ids, in id order.
fn mergeable_in_id_order<'a>(
    pieces: &'a PieceTable,
    types: &'a [PieceType],
) -> impl Iterator<Item = (&'a str, u32)> {
    pieces
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (_, ty))| ty.is_mergeable())
        .map(|(id, (text, _))| (text, id as u32))
}

impl MergeTables {
    /// Derives the symbol ids of characters and the merge table from a model's pieces (the rest
    /// of the model is not read).
    ///
    /// Symbols: characters that are mergeable pieces get that piece's id; other characters inside
    /// mergeable pieces get "virtual" ids from `pieces.len()` up, in id order of the pieces (so
    /// that they do not depend on hash order). Only mergeable pieces matter: they are the only
    /// results of merges.
    ///
    /// Merges: every split of a mergeable piece into two symbol texts is a merge the model
    /// allows: (left symbol, right symbol) -> (merged piece id, its score).
    pub(crate) fn derive(model: &Model) -> Self {
        let mut tables = MergeTables {
            ascii_sym: [NO_SYM; 128],
            char_sym: FxHashMap::default(),
            merges: FxHashMap::default(),
        };
        for (text, id) in model.mergeable_pieces() {
            let mut chars = text.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                tables.set(c, id);
            }
        }
        let mut next_virtual = model.vocab_size() as u32;
        for (text, _) in model.mergeable_pieces() {
            for c in text.chars() {
                if tables.of_char(c) == NO_SYM {
                    tables.set(c, next_virtual);
                    next_virtual += 1;
                }
            }
        }
        let mut merges =
            FxHashMap::with_capacity_and_hasher(2 * model.mergeable.len(), Default::default());
        for (text, id) in model.mergeable_pieces() {
            let score = model.scores[id as usize];
            for (k, _) in text.char_indices().skip(1) {
                let (left, right) = text.split_at(k);
                if let (Some(l), Some(r)) =
                    (tables.of_text(model, left), tables.of_text(model, right))
                {
                    merges.insert(pair_key(l, r), (id, score));
                }
            }
        }
        tables.merges = merges;
        tables
    }

    fn set(&mut self, c: char, id: u32) {
        if c.is_ascii() {
            self.ascii_sym[c as usize] = id;
        } else {
            self.char_sym.insert(c, id);
        }
    }

    fn of_char(&self, c: char) -> u32 {
        if c.is_ascii() {
            self.ascii_sym[c as usize]
        } else {
            self.char_sym.get(&c).copied().unwrap_or(NO_SYM)
        }
    }

    /// The symbol id of a text that a symbol can have: a mergeable piece or a single character.
    fn of_text(&self, model: &Model, text: &str) -> Option<u32> {
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            // A character's symbol is its piece's id when it is a piece (see `derive`).
            (Some(c), None) => Some(self.of_char(c)).filter(|&s| s != NO_SYM),
            _ => model.mergeable_id(text),
        }
    }
}

/// `<0xXX>` with two upper- or lower-case hex digits, as SentencePiece's `PieceToByte` reads it.
fn parse_byte_piece(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}
