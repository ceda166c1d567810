//! A loaded SentencePiece BPE model: the piece table as SentencePiece keeps it, validated, plus the
//! tables the encoder derives from it once at load time (merge table, symbol ids for characters,
//! the character bigrams that pieces contain, and which pieces encode to themselves).

use prost::Message;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::tokenizer::bpe::{self, Workspace};
use crate::tokenizer::error::{Error, Result};
use crate::tokenizer::normalize::SPACE_SYMBOL;
use crate::tokenizer::proto::{ModelProto, PieceType};

/// Marks "no symbol id": a character that occurs in no piece a merge can produce.
pub(crate) const NO_SYM: u32 = u32::MAX;

const MODEL_TYPE_BPE: i32 = 2;
const DEFAULT_UNK_SURFACE: &str = " \u{2047} ";

/// A validated SentencePiece BPE model and the encoder's derived tables.
#[derive(Debug)]
pub struct Model {
    pub(crate) pieces: Vec<String>,
    pub(crate) scores: Vec<f32>,
    pub(crate) types: Vec<PieceType>,
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

    // ---- derived encoder tables ----
    /// Symbol id of each ASCII character (`NO_SYM` when it occurs in no mergeable piece).
    pub(crate) ascii_sym: [u32; 128],
    /// Symbol id of every other character that occurs in a mergeable piece. Characters that are
    /// not pieces themselves but occur inside one get "virtual" ids from `pieces.len()` up.
    pub(crate) char_sym: FxHashMap<char, u32>,
    /// The character behind each virtual symbol id (index = id - pieces.len()).
    pub(crate) virtual_chars: Vec<char>,
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
    /// Bigrams of ASCII characters found inside mergeable pieces: bit `b` of `[a]`.
    pub(crate) ascii_bigrams: [u128; 128],
    /// Bigrams with a non-ASCII character found inside mergeable pieces.
    pub(crate) other_bigrams: FxHashSet<u64>,
    /// `true` when encoding the text of this piece on its own gives exactly this piece.
    pub(crate) self_encoding: Vec<bool>,
    /// The segments that are pieces encoding to themselves, read by every worker before its own
    /// cache (see `derive_encoder_tables`).
    pub(crate) seed_cache: bpe::SegmentCache,
    /// The ids of each ASCII character of raw text on its own (' ' stands for `▁`).
    pub(crate) raw_ascii_ids: Vec<Box<[u32]>>,
    /// `ascii_bigrams` for raw text, where ' ' stands for `▁`, indexed by `a * 128 + b`: the
    /// test the encoder makes for every character, so one byte load.
    pub(crate) raw_ascii_bigrams: Box<[bool]>,
}

fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

fn char_pair_key(a: char, b: char) -> u64 {
    (u64::from(u32::from(a)) << 32) | u64::from(u32::from(b))
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
        let mut mergeable = FxHashMap::default();
        let mut reserved = FxHashMap::default();
        let mut unk_id = None;
        let mut byte_of_id = vec![None; n];
        let mut user_defined = Vec::new();
        for (i, sp) in proto.pieces.iter().enumerate() {
            let id = i as u32;
            let text = sp.piece().to_string();
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

        let mut model = Model {
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
            scores,
            types,
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
            ascii_sym: [NO_SYM; 128],
            char_sym: FxHashMap::default(),
            virtual_chars: Vec::new(),
            merges: FxHashMap::default(),
            user_defined,
            user_defined_first,
            has_unused,
            ascii_bigrams: [0; 128],
            other_bigrams: FxHashSet::default(),
            self_encoding: Vec::new(),
            raw_ascii_bigrams: vec![false; 128 * 128].into_boxed_slice(),
            raw_ascii_ids: Vec::new(),
            seed_cache: bpe::SegmentCache::default(),
        };
        model.derive_encoder_tables();
        Ok(model)
    }

    /// Builds the symbol ids of characters, the merge table, the bigram table and the
    /// self-encoding flags. Only mergeable pieces matter: they are the only results of merges.
    fn derive_encoder_tables(&mut self) {
        let n = self.pieces.len() as u32;
        // In id order, so that virtual ids do not depend on hash order.
        let texts: Vec<(String, u32)> = (0..n)
            .filter(|&id| self.types[id as usize].is_mergeable())
            .map(|id| (self.pieces[id as usize].clone(), id))
            .collect();
        // Characters that are mergeable pieces themselves.
        for (text, id) in &texts {
            let mut chars = text.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                self.set_char_sym(c, *id);
            }
        }
        // Characters inside longer pieces that are not pieces: virtual symbol ids.
        let mut virtual_chars = Vec::new();
        for (text, _) in &texts {
            for c in text.chars() {
                if self.sym_of_char(c) == NO_SYM {
                    let id = n + virtual_chars.len() as u32;
                    virtual_chars.push(c);
                    self.set_char_sym(c, id);
                }
            }
        }
        // Every split of a mergeable piece into two symbol texts is a merge the model allows.
        let mut merges = FxHashMap::default();
        let mut ascii_bigrams = [0u128; 128];
        let mut other_bigrams = FxHashSet::default();
        for (text, id) in &texts {
            let (text, id) = (text.as_str(), *id);
            let score = self.scores[id as usize];
            let mut prev: Option<char> = None;
            for (k, c) in text.char_indices() {
                if let Some(p) = prev {
                    if p.is_ascii() && c.is_ascii() {
                        ascii_bigrams[p as usize] |= 1u128 << (c as u32);
                    } else {
                        other_bigrams.insert(char_pair_key(p, c));
                    }
                    let (left, right) = text.split_at(k);
                    if let (Some(l), Some(r)) = (self.sym_of_text(left), self.sym_of_text(right)) {
                        merges.insert(pair_key(l, r), (id, score));
                    }
                }
                prev = Some(c);
            }
        }
        self.virtual_chars = virtual_chars;
        for a in 0..128u8 {
            for b in 0..128u8 {
                let (ca, cb) = (raw_char(a as char), raw_char(b as char));
                let inside = if ca.is_ascii() && cb.is_ascii() {
                    ascii_bigrams[a as usize] & (1u128 << b) != 0
                } else {
                    other_bigrams.contains(&char_pair_key(ca, cb))
                };
                self.raw_ascii_bigrams[a as usize * 128 + b as usize] = inside;
            }
        }
        self.merges = merges;
        self.ascii_bigrams = ascii_bigrams;
        self.other_bigrams = other_bigrams;

        // Which pieces encode to themselves when they are a whole segment.
        let mut ws = Workspace::default();
        let mut out = Vec::new();
        let mut self_encoding = vec![false; n as usize];
        for (text, id) in &texts {
            out.clear();
            bpe::encode_segment(self, text, &mut ws, &mut out);
            self_encoding[*id as usize] = out.len() == 1 && out[0] == *id;
        }
        self.self_encoding = self_encoding;
        // Those pieces, under the raw-text forms a segment of them can have, are the seed cache
        // every worker reads first: a word that is a piece is a hit from its first occurrence.
        let mut seed = bpe::SegmentCache::default();
        if !self.has_unused {
            for (text, id) in &texts {
                if self.self_encoding[*id as usize] {
                    let raw = text.replace(SPACE_SYMBOL, " ");
                    seed.insert_raw(raw.as_bytes(), false, &[*id]);
                    if let Some(rest) = raw.strip_prefix(' ') {
                        seed.insert_raw(rest.as_bytes(), true, &[*id]);
                    }
                }
            }
        }
        self.seed_cache = seed;
        self.raw_ascii_ids = (0..128u8)
            .map(|b| {
                let text = raw_char(b as char).to_string();
                out.clear();
                bpe::encode_segment(self, &text, &mut ws, &mut out);
                out.as_slice().into()
            })
            .collect();
    }

    fn set_char_sym(&mut self, c: char, id: u32) {
        if c.is_ascii() {
            self.ascii_sym[c as usize] = id;
        } else {
            self.char_sym.insert(c, id);
        }
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

    /// The symbol id of a text that a symbol can have: a mergeable piece or a single character.
    fn sym_of_text(&self, text: &str) -> Option<u32> {
        if let Some(&id) = self.mergeable.get(text) {
            return Some(id);
        }
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Some(self.sym_of_char(c)).filter(|&s| s != NO_SYM),
            _ => None,
        }
    }

    /// Whether some mergeable piece contains the two characters next to each other, for two
    /// characters of raw text (where ' ' stands for `▁`). Where none does, no symbol can ever span
    /// the boundary between them, so the text can be cut there and both sides encoded
    /// independently with the same result.
    #[inline]
    pub(crate) fn raw_bigram_in_pieces(&self, a: char, b: char) -> bool {
        if a.is_ascii() && b.is_ascii() {
            self.raw_ascii_bigrams[a as usize * 128 + b as usize]
        } else {
            self.other_bigrams
                .contains(&char_pair_key(raw_char(a), raw_char(b)))
        }
    }

    /// Number of pieces.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }
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

/// `<0xXX>` with two upper- or lower-case hex digits, as SentencePiece's `PieceToByte` reads it.
fn parse_byte_piece(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}
