//! A loaded SentencePiece BPE model: the piece table as SentencePiece keeps it, validated, plus
//! what the BPE algorithm reads besides it (symbol ids for characters and the merge table, both
//! functions of the pieces alone). A `Model` is built in one go and never changes; it knows
//! nothing of the encoder. The encoder's fast-path tables (where text can be cut, the seed cache,
//! which pieces encode to themselves) are derived from a finished `Model` by
//! `bpe::EncoderTables::build`.

use prost::Message;
use rustc_hash::FxHashMap;

use crate::tokenizer::error::{Error, Result};
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
    pub(crate) pieces: Vec<String>,
    pub(crate) types: Vec<PieceType>,
    /// The score of every piece (-0.0 stored as 0.0). The encoder reads them through `merges`;
    /// only the textbook algorithm (`bpe::encode_segment_textbook`) reads them here.
    pub(crate) scores: Vec<f32>,
    /// SentencePiece's `pieces_`: NORMAL, USER_DEFINED and UNUSED pieces by text.
    pub(crate) mergeable: FxHashMap<String, u32>,
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

fn byte_piece(b: u8) -> String {
    format!("<0x{b:02X}>")
}

impl Model {
    /// Parses and validates a serialized `ModelProto` (the bytes of a `.model` file).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
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

        let mut pieces = Vec::with_capacity(n);
        let mut scores = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        let mut mergeable = FxHashMap::with_capacity_and_hasher(n, Default::default());
        let mut reserved = FxHashMap::default();
        let mut unk_id = None;
        let mut byte_of_id = vec![None; n];
        let mut user_defined = Vec::new();
        for (i, mut sp) in proto.pieces.into_iter().enumerate() {
            let id = i as u32;
            let text = sp.piece.take().unwrap_or_default();
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
            // SentencePiece keeps two maps and would accept the same text in both, always
            // answering with the reserved one; such a model is broken, so it is refused here.
            let map = if ty.is_mergeable() {
                &mut mergeable
            } else {
                &mut reserved
            };
            if map.insert(text.clone(), id).is_some()
                || (mergeable.contains_key(&text) && reserved.contains_key(&text))
            {
                return Err(Error::Inconsistent(format!(
                    "piece {text:?} (id {i}) is defined twice"
                )));
            }
            match ty {
                PieceType::Unknown if unk_id.replace(id).is_some() => {
                    return Err(Error::Inconsistent("more than one UNKNOWN piece".into()));
                }
                PieceType::Byte => {
                    let byte = parse_byte_piece(&text).ok_or_else(|| {
                        Error::Inconsistent(format!("BYTE piece {i} is {text:?}, not <0xXX>"))
                    })?;
                    byte_of_id[i] = Some(byte);
                }
                PieceType::UserDefined => user_defined.push((text.clone(), id)),
                _ => {}
            }
            pieces.push(text);
            scores.push(score);
            types.push(ty);
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
        let control_id = |name: Option<&str>, default: &str| -> Option<u32> {
            let id = *reserved.get(name.unwrap_or(default))?;
            (types[id as usize] == PieceType::Control).then_some(id)
        };
        let bos_id = control_id(trainer.bos_piece.as_deref(), "<s>");
        let eos_id = control_id(trainer.eos_piece.as_deref(), "</s>");
        let pad_id = control_id(trainer.pad_piece.as_deref(), "<pad>");
        let unk_surface = trainer
            .unk_surface
            .clone()
            .unwrap_or_else(|| DEFAULT_UNK_SURFACE.to_string());
        user_defined.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let mut user_defined_first = [false; 256];
        for (text, _) in &user_defined {
            user_defined_first[text.as_bytes()[0] as usize] = true;
        }
        let has_unused = types.contains(&PieceType::Unused);

        let symbols = Symbols::build(&pieces, &types);
        let merges = merge_table(&symbols, &mergeable, &pieces, &types, &scores);
        Ok(Model {
            piece_len: pieces.iter().map(|p| p.len() as u32).collect(),
            reserved_chars: reserved
                .iter()
                .filter(|&(_, &id)| types[id as usize] != PieceType::Unknown)
                .filter_map(|(text, &id)| {
                    let mut chars = text.chars();
                    let c = chars.next()?;
                    chars.next().is_none().then_some((c, id))
                })
                .collect(),
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
            add_dummy_prefix: normalizer.add_dummy_prefix(),
            ascii_sym: symbols.ascii,
            char_sym: symbols.other,
            merges,
            user_defined,
            user_defined_first,
            has_unused,
        })
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

/// The mergeable pieces of a piece table with their ids, in id order.
fn mergeable_in_id_order<'a>(
    pieces: &'a [String],
    types: &'a [PieceType],
) -> impl Iterator<Item = (&'a str, u32)> {
    pieces
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (_, ty))| ty.is_mergeable())
        .map(|(id, (text, _))| (text.as_str(), id as u32))
}

/// The symbol ids of characters, built before the `Model` that holds them.
struct Symbols {
    ascii: [u32; 128],
    other: FxHashMap<char, u32>,
    /// The character behind each virtual symbol id (index = id - pieces.len()).
    virtual_chars: Vec<char>,
}

impl Symbols {
    /// Characters that are mergeable pieces get that piece's id; other characters inside
    /// mergeable pieces get virtual ids from `pieces.len()` up, in id order of the pieces (so
    /// that they do not depend on hash order). Only mergeable pieces matter: they are the only
    /// results of merges.
    fn build(pieces: &[String], types: &[PieceType]) -> Self {
        let mut symbols = Symbols {
            ascii: [NO_SYM; 128],
            other: FxHashMap::default(),
            virtual_chars: Vec::new(),
        };
        for (text, id) in mergeable_in_id_order(pieces, types) {
            let mut chars = text.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                symbols.set(c, id);
            }
        }
        let n = pieces.len() as u32;
        for (text, _) in mergeable_in_id_order(pieces, types) {
            for c in text.chars() {
                if symbols.of_char(c) == NO_SYM {
                    let id = n + symbols.virtual_chars.len() as u32;
                    symbols.virtual_chars.push(c);
                    symbols.set(c, id);
                }
            }
        }
        symbols
    }

    fn set(&mut self, c: char, id: u32) {
        if c.is_ascii() {
            self.ascii[c as usize] = id;
        } else {
            self.other.insert(c, id);
        }
    }

    fn of_char(&self, c: char) -> u32 {
        if c.is_ascii() {
            self.ascii[c as usize]
        } else {
            self.other.get(&c).copied().unwrap_or(NO_SYM)
        }
    }

    /// The symbol id of a text that a symbol can have: a mergeable piece or a single character.
    fn of_text(&self, mergeable: &FxHashMap<String, u32>, text: &str) -> Option<u32> {
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            // A character's symbol is its piece's id when it is a piece (see `build`).
            (Some(c), None) => Some(self.of_char(c)).filter(|&s| s != NO_SYM),
            _ => mergeable.get(text).copied(),
        }
    }
}

/// Every split of a mergeable piece into two symbol texts is a merge the model allows:
/// (left symbol, right symbol) -> (merged piece id, its score).
fn merge_table(
    symbols: &Symbols,
    mergeable: &FxHashMap<String, u32>,
    pieces: &[String],
    types: &[PieceType],
    scores: &[f32],
) -> FxHashMap<u64, (u32, f32)> {
    let mut merges = FxHashMap::with_capacity_and_hasher(2 * mergeable.len(), Default::default());
    for (text, id) in mergeable_in_id_order(pieces, types) {
        let score = scores[id as usize];
        for (k, _) in text.char_indices().skip(1) {
            let (left, right) = text.split_at(k);
            if let (Some(l), Some(r)) = (
                symbols.of_text(mergeable, left),
                symbols.of_text(mergeable, right),
            ) {
                merges.insert(pair_key(l, r), (id, score));
            }
        }
    }
    merges
}

/// `<0xXX>` with two upper- or lower-case hex digits, as SentencePiece's `PieceToByte` reads it.
fn parse_byte_piece(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}
