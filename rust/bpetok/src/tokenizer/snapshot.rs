//! The derived tables of one model, recorded as bytes so that loading that model does not derive
//! them again: what the `.model` file says (`ModelSpec`), the symbols and merges
//! (`MergeTables`), and the encoder's costly tables (`RecordedTables`: which pieces encode to
//! themselves, the per-character table). Everything else is derived (at load, and the encoder's
//! tables at the first encoding) by the same code whichever way the tables came, from what is
//! recorded here.
//!
//! The crate records one snapshot, of its embedded Mixtral model
//! (`data/mixtral-8x7b-v0.1.tables`), and reads it only when the bytes being loaded are that
//! model's. The tests derive the tables from the `.model` file again and fail if the recorded
//! bytes differ, and check that the tokenizer loaded from the snapshot equals the derived one in
//! every field. So the snapshot is a cache with a proof, not a second source of truth.
//!
//! The format: little-endian; a magic line and a version, then length-prefixed arrays in a fixed
//! order (see `write`). Maps are written sorted by key, so the bytes depend on the model alone.

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

#[cfg(test)]
use crate::tokenizer::bpe::EncoderTables;
use crate::tokenizer::bpe::RecordedTables;
#[cfg(test)]
use crate::tokenizer::model::Model;
use crate::tokenizer::model::{MergeTables, ModelSpec, PieceTable};
use crate::tokenizer::proto::PieceType;

const MAGIC: &[u8] = b"bpetok derived tables\n";
const VERSION: u32 = 3;
/// The seed's small table starts at a multiple of this many bytes from the start of the
/// snapshot (zeros before its length fill the gap), so that a snapshot placed at such an address
/// is read in place (see `RecordedSmallCache::recorded`).
const TABLE_ALIGN: usize = 64;

/// What a snapshot holds (the seed's small table borrowed from its bytes).
pub(crate) struct Snapshot<'a> {
    pub(crate) spec: ModelSpec,
    pub(crate) merges: MergeTables,
    pub(crate) tables: RecordedTables<'a>,
}

#[cfg(test)]
/// The snapshot of a model loaded from `spec` (which must be the spec `model` was assembled from).
pub(crate) fn write(spec: &ModelSpec, model: &Model, tables: &EncoderTables) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.0.extend_from_slice(MAGIC);
    w.u32(VERSION);
    // The spec.
    w.u32(spec.pieces.len() as u32);
    w.bytes(spec.pieces.text().as_bytes());
    spec.pieces.ends().iter().for_each(|&end| w.u32(end));
    spec.types
        .iter()
        .for_each(|&ty| w.0.push(ty.to_proto() as u8));
    spec.scores.iter().for_each(|score| w.u32(score.to_bits()));
    w.bytes(spec.unk_surface.as_bytes());
    w.0.push(u8::from(spec.add_dummy_prefix));
    for name in &spec.control_names {
        match name {
            Some(name) => {
                w.0.push(1);
                w.bytes(name.as_bytes());
            }
            None => w.0.push(0),
        }
    }
    // The symbols and merges. A merge's score is its piece's (see `MergeTables::derive`).
    let merges = model.merge_tables();
    merges.ascii_sym.iter().for_each(|&sym| w.u32(sym));
    let mut chars: Vec<_> = merges.char_sym.iter().map(|(&c, &s)| (c, s)).collect();
    chars.sort_unstable();
    w.u32(chars.len() as u32);
    for (c, sym) in chars {
        w.u32(c.into());
        w.u32(sym);
    }
    let mut pairs: Vec<_> = merges.merges.iter().map(|(&k, &(id, _))| (k, id)).collect();
    pairs.sort_unstable();
    w.u32(pairs.len() as u32);
    for (key, id) in pairs {
        w.u64(key);
        w.u32(id);
    }
    // The encoder's tables.
    let recorded = tables.recorded();
    w.bits(&recorded.raw_ascii_bigrams);
    let mut bigrams: Vec<u64> = recorded.other_bigrams.iter().copied().collect();
    bigrams.sort_unstable();
    w.u32(bigrams.len() as u32);
    bigrams.into_iter().for_each(|b| w.u64(b));
    w.bits(&recorded.self_encoding);
    // `char_info`: its length, its most frequent word, and every other entry.
    let info = &recorded.char_info;
    let mut counts: FxHashMap<u32, usize> = FxHashMap::default();
    info.iter()
        .for_each(|&word| *counts.entry(word).or_default() += 1);
    let common = counts
        .into_iter()
        .max_by_key(|&(word, count)| (count, word))
        .map_or(0, |(word, _)| word);
    w.u32(info.len() as u32);
    w.u32(common);
    let others: Vec<_> = (0..info.len()).filter(|&i| info[i] != common).collect();
    w.u32(others.len() as u32);
    for i in others {
        w.u32(i as u32);
        w.u32(info[i]);
    }
    // The seed's table of small keys, slot for slot, last (read in place at the first encoding),
    // aligned.
    w.0.resize(w.0.len() + table_padding(w.0.len()), 0);
    w.bytes(&tables.seed_small_record());
    w.0
}

/// Reads a snapshot written by `write`; `None` if the bytes are not one.
pub(crate) fn read(bytes: &[u8]) -> Option<Snapshot<'_>> {
    let mut r = Reader(bytes.strip_prefix(MAGIC)?);
    if r.u32()? != VERSION {
        return None;
    }
    let n = r.u32()? as usize;
    let text = String::from_utf8(r.bytes()?.to_vec()).ok()?;
    let ends = r.u32s(n)?;
    let pieces = PieceTable::from_parts(text, ends)?;
    let types = r
        .take(n)?
        .iter()
        .map(|&ty| PieceType::from_proto(i32::from(ty)))
        .collect::<Option<Vec<_>>>()?;
    let scores: Vec<f32> = r.u32s(n)?.into_iter().map(f32::from_bits).collect();
    if scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let unk_surface = String::from_utf8(r.bytes()?.to_vec()).ok()?;
    let add_dummy_prefix = r.take(1)?[0] != 0;
    let mut control_names: [Option<String>; 3] = Default::default();
    for name in &mut control_names {
        if r.take(1)?[0] != 0 {
            *name = Some(String::from_utf8(r.bytes()?.to_vec()).ok()?);
        }
    }
    let ascii_sym: [u32; 128] = r.u32s(128)?.try_into().ok()?;
    let count = r.u32()? as usize;
    let mut char_sym = FxHashMap::with_capacity_and_hasher(count, Default::default());
    for _ in 0..count {
        let c = char::from_u32(r.u32()?)?;
        char_sym.insert(c, r.u32()?);
    }
    let count = r.u32()? as usize;
    let mut merges = FxHashMap::with_capacity_and_hasher(count, Default::default());
    for _ in 0..count {
        let key = r.u64()?;
        let id = r.u32()?;
        merges.insert(key, (id, *scores.get(id as usize)?));
    }
    let raw_ascii_bigrams = r.bits()?.into_boxed_slice();
    let count = r.u32()? as usize;
    let mut other_bigrams = FxHashSet::with_capacity_and_hasher(count, Default::default());
    for _ in 0..count {
        other_bigrams.insert(r.u64()?);
    }
    let self_encoding = r.bits()?;
    let len = r.u32()? as usize;
    let common = r.u32()?;
    let mut char_info: Arc<[u32]> = std::iter::repeat_n(common, len).collect();
    let info = Arc::get_mut(&mut char_info)?;
    for _ in 0..r.u32()? {
        let i = r.u32()? as usize;
        *info.get_mut(i)? = r.u32()?;
    }
    let padding = table_padding(bytes.len() - r.0.len());
    if r.take(padding)?.iter().any(|&b| b != 0) {
        return None;
    }
    let seed_small = r.bytes()?;
    if !r.0.is_empty() {
        return None;
    }
    Some(Snapshot {
        spec: ModelSpec {
            pieces,
            types,
            scores,
            unk_surface,
            add_dummy_prefix,
            control_names,
        },
        merges: MergeTables {
            ascii_sym,
            char_sym,
            merges,
        },
        tables: RecordedTables {
            raw_ascii_bigrams: raw_ascii_bigrams.into(),
            other_bigrams: Arc::new(other_bigrams),
            self_encoding: self_encoding.into(),
            char_info,
            seed_small: Some(seed_small),
        },
    })
}

/// The zeros before the seed's small table's length at byte `at` of a snapshot, so that the table
/// (after its four-byte length) starts at a multiple of `TABLE_ALIGN`.
fn table_padding(at: usize) -> usize {
    (TABLE_ALIGN - (at + 4) % TABLE_ALIGN) % TABLE_ALIGN
}

#[cfg(test)]
struct Writer(Vec<u8>);

#[cfg(test)]
impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }

    fn bits(&mut self, bits: &[bool]) {
        let mut bytes = vec![0u8; bits.len().div_ceil(8)];
        for (i, _) in bits.iter().enumerate().filter(|(_, &set)| set) {
            bytes[i / 8] |= 1 << (i % 8);
        }
        self.u32(bits.len() as u32);
        self.0.extend_from_slice(&bytes);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn u32s(&mut self, n: usize) -> Option<Vec<u32>> {
        let bytes = self.take(n.checked_mul(4)?)?;
        Some(
            bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A count and that many bits, packed 8 a byte, lowest bit first.
    fn bits(&mut self) -> Option<Vec<bool>> {
        let n = self.u32()? as usize;
        let bytes = self.take(n.div_ceil(8))?;
        Some((0..n).map(|i| bytes[i / 8] & (1 << (i % 8)) != 0).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{MIXTRAL_8X7B_MODEL, MIXTRAL_8X7B_TABLES};

    /// A model's tables, derived from its `.model` bytes without any snapshot.
    fn derive(bytes: &[u8]) -> (ModelSpec, Model, EncoderTables) {
        let spec = ModelSpec::from_bytes(bytes).unwrap();
        let model = Model::from_bytes(bytes).unwrap();
        let tables = EncoderTables::build_with(&model, None);
        (spec, model, tables)
    }

    /// The model and tables assembled from a snapshot, as `Tokenizer::from_bytes` does.
    fn load(snapshot: &'static [u8]) -> (Model, EncoderTables) {
        let Snapshot {
            spec,
            merges,
            tables,
        } = read(snapshot).expect("the snapshot reads");
        let model = Model::assemble(spec, Some(merges)).unwrap();
        let tables = EncoderTables::build_with(&model, Some(tables));
        (model, tables)
    }

    /// `data/mixtral-8x7b-v0.1.tables` is what the derivation gives for the embedded model today.
    /// `BPETOK_WRITE_TABLES=1` writes it anew.
    #[test]
    fn the_recorded_tables_are_the_derived_ones() {
        let (spec, model, tables) = derive(MIXTRAL_8X7B_MODEL);
        let derived = write(&spec, &model, &tables);
        if std::env::var_os("BPETOK_WRITE_TABLES").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mixtral-8x7b-v0.1.tables");
            std::fs::write(path, &derived).unwrap();
        }
        assert!(
            derived == MIXTRAL_8X7B_TABLES,
            "data/mixtral-8x7b-v0.1.tables is stale: run this test with BPETOK_WRITE_TABLES=1"
        );
    }

    /// Loading the recorded snapshot gives the derived model and tables in every field, so the
    /// embedded tokenizer encodes exactly as one derived from the `.model` file.
    #[test]
    fn the_snapshot_loads_as_the_derived_tokenizer() {
        let (_, model, tables) = derive(MIXTRAL_8X7B_MODEL);
        let (loaded_model, loaded_tables) = load(MIXTRAL_8X7B_TABLES);
        model.assert_same(&loaded_model);
        tables.assert_same(&loaded_tables);
        let tok = crate::Tokenizer::mixtral_8x7b();
        // (Only a tokenizer loaded from a snapshot has recorded tables. The address of the
        // embedded bytes is no test: a debug build does not merge the copies of a `const`.)
        assert!(
            tok.recorded.is_some(),
            "the embedded tokenizer was loaded from its snapshot"
        );
        tok.model.assert_same(&model);
        tok.tables().assert_same(&tables);
        // The seed's small table (1 MiB) is read in place from the embedded bytes, not copied.
        assert!(tok.tables().seed_small_is_borrowed());
    }

    /// The format holds any model, not only the embedded one: the v3 vocabulary of
    /// `../shared/vocab`, when it is there, round-trips in every field.
    #[test]
    fn a_snapshot_of_another_model_round_trips() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/vocab/mistral-v3.model"
        );
        let Ok(bytes) = std::fs::read(path) else {
            eprintln!("skipped: {path} is not there");
            return;
        };
        let (spec, model, tables) = derive(&bytes);
        // (Leaked: the tables a tokenizer keeps borrow from bytes that live as long as it.)
        let snapshot = Vec::leak(write(&spec, &model, &tables));
        let (loaded_model, loaded_tables) = load(snapshot);
        model.assert_same(&loaded_model);
        tables.assert_same(&loaded_tables);
    }

    /// Cut anywhere or with a byte changed in its header, a snapshot is refused, never misread:
    /// then the model is derived from its `.model` bytes instead.
    #[test]
    fn a_damaged_snapshot_is_refused() {
        let bytes = MIXTRAL_8X7B_TABLES;
        for cut in (0..bytes.len())
            .step_by(4099)
            .chain(bytes.len() - 64..bytes.len())
        {
            assert!(read(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(read(&longer).is_none());
        let mut other_version = bytes.to_vec();
        other_version[MAGIC.len()] ^= 1;
        assert!(read(&other_version).is_none());
    }
}
