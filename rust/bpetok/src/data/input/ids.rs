//! Token id lists from ids-JSONL (what `bpetok encode` writes and `bpetok decode` reads): one
//! object per line, the ids a list of integers in one field. Lines of the usual shape take a
//! serde_json fast path; any other line is judged by [`pyjson`](super::pyjson) for the message.

use std::fmt;
use std::sync::atomic::AtomicU64;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::jsonl::{field_value, json_record, KeyIs};
use super::pyjson::Json;
use super::stream::{for_each_line, open, Hashed};
use super::text::decode_line;
use super::{InputError, InputErrorKind, InputFormat, InputSpec, InputSummary, Utf8Errors};

/// Reads the ids-JSONL `input` to its end, handing each record's ids in `field` to `each` with
/// its line number (from 1), and returns the input's summary (`documents` counts records).
/// Blank lines are skipped. A line that is not JSON or not an object, lacks the field, holds no
/// list there, or a list with an element that is not an integer (`true`, `1.5`, `"3"`, `null`)
/// or an integer outside `i64`, is an [`InputError`] naming the file and line. An error from
/// `each` stops the reading and is returned as it is.
pub fn read_id_lists<E: From<InputError>>(
    input: &InputSpec,
    field: &str,
    errors: Utf8Errors,
    bytes_read: &AtomicU64,
    mut each: impl FnMut(u64, Vec<i64>) -> Result<(), E>,
) -> Result<InputSummary, E> {
    let name = input.name.as_str();
    if input.format != InputFormat::Jsonl {
        let kind = InputErrorKind::NotJsonl {
            format: input.format.name(),
        };
        return Err(InputError::new(kind, name).into());
    }
    let mut hashed = Hashed::default();
    let (compression, mut stream) = open(input, &mut hashed, bytes_read)?;
    let mut records = 0u64;
    for_each_line(
        &mut stream,
        name,
        compression,
        |lineno, raw| -> Result<(), E> {
            if let Some(ids) = id_list(name, lineno, raw, field, errors)? {
                records += 1;
                each(lineno, ids)?;
            }
            Ok(())
        },
    )?;
    drop(stream);
    let (size, sha256) = hashed.finish();
    Ok(InputSummary {
        size,
        sha256,
        documents: records,
        skipped_records: 0,
        compression,
    })
}

fn id_list(
    name: &str,
    lineno: u64,
    raw: &[u8],
    field: &str,
    errors: Utf8Errors,
) -> Result<Option<Vec<i64>>, InputError> {
    let text = decode_line(name, lineno, raw, errors)?;
    let mut de = serde_json::Deserializer::from_str(&text);
    let fast = IdsOfObject { field }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    if let Ok(Some(ids)) = fast {
        return Ok(Some(ids));
    }
    let Some(pairs) = json_record(name, lineno, &text)? else {
        return Ok(None);
    };
    let at_line = |kind| InputError::at_line(kind, name, lineno);
    let value = field_value(name, lineno, pairs, field)?;
    let Json::Array(items) = value.value else {
        return Err(at_line(InputErrorKind::NotAList {
            field: field.to_owned(),
        }));
    };
    let raw_text = |item: &super::pyjson::Spanned| text[item.start..item.end].to_owned();
    if let Some(bad) = items
        .iter()
        .find(|item| !matches!(item.value, Json::Number { int: true }))
    {
        return Err(at_line(InputErrorKind::NotAnId {
            found: raw_text(bad),
        }));
    }
    items
        .iter()
        .map(|item| {
            text[item.start..item.end].parse::<i64>().map_err(|_| {
                at_line(InputErrorKind::IdOutOfRange {
                    found: raw_text(item),
                    vocab_size: None,
                })
            })
        })
        .collect::<Result<Vec<i64>, _>>()
        .map(Some)
}

/// An object's list of integers in `field` (the last, if the key repeats), `None` when the
/// field is missing; any other shape is an error (the slow path then says what it is).
struct IdsOfObject<'f> {
    field: &'f str,
}

impl<'de> DeserializeSeed<'de> for IdsOfObject<'_> {
    type Value = Option<Vec<i64>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for IdsOfObject<'_> {
    type Value = Option<Vec<i64>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is_field) = map.next_key_seed(KeyIs(self.field))? {
            if is_field {
                found = Some(map.next_value_seed(Ids)?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A list of JSON integers that fit `i64` (serde_json refuses floats, booleans and the rest).
struct Ids;

impl<'de> DeserializeSeed<'de> for Ids {
    type Value = Vec<i64>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Ids {
    type Value = Vec<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of integers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(64));
        while let Some(id) = seq.next_element::<i64>()? {
            ids.push(id);
        }
        Ok(ids)
    }
}
