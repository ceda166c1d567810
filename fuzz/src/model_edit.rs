//! Structure-aware damage to a real `.model` file: the file is split into its top-level protobuf
//! fields (pieces, trainer spec, normalizer spec), and edits act on whole fields or inside one,
//! re-encoding the length prefix, so most damaged files still parse and reach the model's own
//! checks (types, duplicates, byte pieces, scores, normalizer settings) and, when they load, the
//! encoder.

use libfuzzer_sys::arbitrary::{Result, Unstructured};

/// One top-level field: its number, wire type and payload (the value bytes after the key, and
/// after the length for wire type 2).
#[derive(Clone, Debug)]
pub struct Field {
    pub number: u64,
    pub wire: u8,
    pub payload: Vec<u8>,
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(b & 0x7F) << shift;
        if b < 0x80 {
            return Some(value);
        }
    }
    None
}

pub fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The fields of a well-formed message (the reference models are); `None` if it does not parse.
pub fn split(bytes: &[u8]) -> Option<Vec<Field>> {
    let mut fields = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let key = read_varint(bytes, &mut at)?;
        let (number, wire) = (key >> 3, (key & 7) as u8);
        let payload = match wire {
            0 => {
                let start = at;
                read_varint(bytes, &mut at)?;
                bytes[start..at].to_vec()
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                let p = bytes.get(at..at + n)?.to_vec();
                at += n;
                p
            }
            2 => {
                let n = read_varint(bytes, &mut at)? as usize;
                let p = bytes.get(at..at.checked_add(n)?)?.to_vec();
                at += n;
                p
            }
            _ => return None,
        };
        fields.push(Field {
            number,
            wire,
            payload,
        });
    }
    Some(fields)
}

pub fn join(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        push_varint(&mut out, f.number << 3 | u64::from(f.wire));
        if f.wire == 2 {
            push_varint(&mut out, f.payload.len() as u64);
        }
        out.extend_from_slice(&f.payload);
    }
    out
}

/// A `SentencePiece` message: text (1), score (2, float), type (3, varint).
pub fn piece(text: &[u8], score: f32, ty: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(0x0A);
    push_varint(&mut out, text.len() as u64);
    out.extend_from_slice(text);
    out.push(0x15);
    out.extend_from_slice(&score.to_le_bytes());
    out.push(0x18);
    push_varint(&mut out, ty);
    out
}

/// Applies up to 8 edits chosen by `u` to the model's fields. `first_normal` is the index of the
/// first NORMAL piece (pieces before it are control, user-defined and byte pieces); a first edit
/// usually keeps only the first `first_normal + k` pieces, so that loading stays fast.
pub fn mutate(
    u: &mut Unstructured<'_>,
    fields: &mut Vec<Field>,
    first_normal: usize,
) -> Result<()> {
    if u.ratio(7, 8)? {
        let keep = first_normal + u.int_in_range(0..=3000)?;
        let mut pieces = 0;
        fields.retain(|f| {
            if f.number != 1 {
                return true;
            }
            pieces += 1;
            pieces <= keep
        });
    }
    let edits = u.int_in_range(0..=8)?;
    for _ in 0..edits {
        if fields.is_empty() {
            break;
        }
        let i = u.choose_index(fields.len())?;
        match u.int_in_range(0..=9)? {
            // A byte inside one field.
            0 => {
                if !fields[i].payload.is_empty() {
                    let at = u.choose_index(fields[i].payload.len())?;
                    fields[i].payload[at] = u.arbitrary()?;
                }
            }
            // A field dropped, repeated, or moved.
            1 => {
                fields.remove(i);
            }
            2 => {
                let f = fields[i].clone();
                let at = u.choose_index(fields.len() + 1)?;
                fields.insert(at, f);
            }
            3 => {
                let j = u.choose_index(fields.len())?;
                fields.swap(i, j);
            }
            // A field's payload replaced by fuzz bytes.
            4 => {
                let n = u.int_in_range(0..=64)?;
                fields[i].payload = u.bytes(n)?.to_vec();
            }
            // A piece replaced by one of a chosen text, score and type (any of the six, or none).
            5 => {
                let n = u.int_in_range(0..=12)?;
                let text = u.bytes(n)?.to_vec();
                let score = f32::from_bits(u.arbitrary()?);
                let ty = u.int_in_range(0..=7)?;
                fields[i] = Field {
                    number: 1,
                    wire: 2,
                    payload: piece(&text, score, ty),
                };
            }
            // A field appended inside the trainer (2) or normalizer (3) spec: protobuf merges
            // repeated messages, so this sets one of their settings.
            6 => {
                let number = if u.arbitrary()? { 2 } else { 3 };
                let tag: u64 = u.int_in_range(1..=60)?;
                let mut payload = Vec::new();
                push_varint(&mut payload, tag << 3);
                push_varint(&mut payload, u.int_in_range(0..=5)?);
                fields.push(Field {
                    number,
                    wire: 2,
                    payload,
                });
            }
            // The whole file cut short (the tail becomes one field of garbage).
            7 => {
                let mut bytes = join(fields);
                let at = u.choose_index(bytes.len().max(1))?;
                bytes.truncate(at);
                *fields = split(&bytes).unwrap_or_else(|| {
                    vec![Field {
                        number: 1,
                        wire: 2,
                        payload: Vec::new(),
                    }]
                });
            }
            // A piece's type changed, keeping its text and score.
            8 => {
                if fields[i].number == 1 {
                    let ty = u.int_in_range(0..=7)?;
                    let mut payload = fields[i].payload.clone();
                    payload.push(0x18);
                    push_varint(&mut payload, ty);
                    fields[i].payload = payload;
                }
            }
            // A piece's score changed (a later field wins in protobuf).
            _ => {
                if fields[i].number == 1 {
                    let score = f32::from_bits(u.arbitrary()?);
                    fields[i].payload.push(0x15);
                    fields[i].payload.extend_from_slice(&score.to_le_bytes());
                }
            }
        }
    }
    Ok(())
}
