//! The document on one JSONL line. Most lines are an object with a string field and take the
//! fast path (serde_json, without building a value); every other line is judged by
//! [`pyjson`](super::pyjson), which gives Python `json.loads`'s verdict and message, so what the
//! reader accepts and how it fails is Python's reader's (`jsonl_line_document` in the old
//! `bpetok/inputs.py`): blank lines (only Python whitespace, `str.isspace`) are skipped; `NaN`,
//! big integers and repeated keys (the last wins) are fine; the field must hold a string; a
//! lone surrogate escape in it is an error, or one U+FFFD with [`Utf8Errors::Replace`].

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::error::python_repr_wtf8;
use super::pyjson::{self, Json, JsonError, Pairs, Spanned};
use super::text::decode_line;
use super::{InputError, InputErrorKind, Utf8Errors};
use crate::data::chat::{ChatError, ChatPlan, ChatSpec, Conversation, Value, ValueError};

/// The document on line `lineno` of `name` (raw bytes, BOM already dropped), or `None` for a
/// blank line.
pub(super) fn jsonl_document(
    name: &str,
    lineno: u64,
    raw: &[u8],
    field: &str,
    errors: Utf8Errors,
) -> Result<Option<String>, InputError> {
    let text = decode_line(name, lineno, raw, errors)?;
    let mut de = serde_json::Deserializer::from_str(&text);
    let fast = FieldOfObject { field }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    if let Ok(Some(doc)) = fast {
        return Ok(Some(doc));
    }
    let Some(object) = json_record(name, lineno, &text)? else {
        return Ok(None);
    };
    let value = field_value(name, lineno, object, field)?;
    let Json::String(wtf8) = value.value else {
        let kind = InputErrorKind::NotAString {
            field: field.to_owned(),
            got: value.value.type_name(),
        };
        return Err(InputError::at_line(kind, name, lineno));
    };
    from_wtf8(name, lineno, wtf8, errors).map(Some)
}

/// The conversation on line `lineno` of `name`, validated and written out in `spec`'s format,
/// or `None` for a blank line. A line that is not JSON or not an object fails as for
/// [`jsonl_document`]; a conversation `spec` cannot encode is [`InputErrorKind::BadConversation`].
pub(super) fn conversation(
    name: &str,
    lineno: u64,
    raw: &[u8],
    spec: &ChatSpec,
    errors: Utf8Errors,
) -> Result<Option<ChatPlan>, InputError> {
    let text = decode_line(name, lineno, raw, errors)?;
    let bad = |err: ChatError| {
        let kind = InputErrorKind::BadConversation {
            message: err.to_string(),
        };
        InputError::at_line(kind, name, lineno)
    };
    let value = match Value::parse(&text) {
        Ok(value @ Value::Object(_)) => value,
        Ok(other) => {
            let kind = InputErrorKind::NotAnObject {
                got: other.type_name(),
            };
            return Err(InputError::at_line(kind, name, lineno));
        }
        Err(ValueError::LoneSurrogate { code }) => {
            let kind = InputErrorKind::LoneSurrogate { code };
            return Err(InputError::at_line(kind, name, lineno));
        }
        Err(err @ ValueError::IntTooLong { .. }) => {
            return Err(bad(ChatError {
                message: None,
                reason: err.to_string(),
            }))
        }
        // Not JSON (or a blank line): the general reader gives Python's verdict and message.
        Err(ValueError::Syntax { .. } | ValueError::TooDeep) => {
            return json_record(name, lineno, &text).map(|_| None);
        }
    };
    let conversation = Conversation::from_value(value, spec.format).map_err(bad)?;
    spec.plan(&conversation).map(Some).map_err(bad)
}

/// The JSON object on a line (as text), `None` for a blank line, or the error for a line that
/// is not JSON or not an object (Python's `_json_record`).
pub(super) fn json_record(
    name: &str,
    lineno: u64,
    text: &str,
) -> Result<Option<Pairs>, InputError> {
    match pyjson::parse(text) {
        Ok(Spanned {
            value: Json::Object(pairs),
            ..
        }) => Ok(Some(pairs)),
        Ok(other) => Err(InputError::at_line(
            InputErrorKind::NotAnObject {
                got: other.value.type_name(),
            },
            name,
            lineno,
        )),
        Err(JsonError::Syntax { .. }) if text.chars().all(is_python_space) => Ok(None),
        Err(JsonError::Syntax { message, pos }) => Err(InputError::at_line(
            InputErrorKind::InvalidJson {
                message: message.to_owned(),
            },
            name,
            lineno,
        )
        .with_column(pyjson::column(text, pos))),
        Err(JsonError::TooDeep) => Err(InputError::at_line(InputErrorKind::TooDeep, name, lineno)),
    }
}

/// The value of `field` in an object (the last, if the key repeats), or the error naming the
/// object's first 8 keys.
pub(super) fn field_value(
    name: &str,
    lineno: u64,
    pairs: Pairs,
    field: &str,
) -> Result<Spanned, InputError> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut found = None;
    for (key, value) in pairs {
        if key == field.as_bytes() {
            found = Some(value);
        } else if keys.len() < 8 && !keys.contains(&key) {
            keys.push(key);
        }
    }
    found.ok_or_else(|| {
        let kind = InputErrorKind::MissingField {
            field: field.to_owned(),
            fields: keys.iter().map(|k| python_repr_wtf8(k)).collect(),
        };
        InputError::at_line(kind, name, lineno)
    })
}

/// Python's `str.isspace`: Unicode White_Space plus the separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Text from a JSON string's unescaped bytes: UTF-8, except that a lone surrogate escape is
/// encoded like a scalar value (WTF-8, `ED A0..BF 80..BF`): an error, or U+FFFD.
fn from_wtf8(
    name: &str,
    lineno: u64,
    bytes: Vec<u8>,
    errors: Utf8Errors,
) -> Result<String, InputError> {
    let bytes = match String::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(err) => err.into_bytes(),
    };
    let mut out = String::with_capacity(bytes.len());
    let mut rest = &bytes[..];
    loop {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(valid) => {
                out.push_str(valid);
                return Ok(out);
            }
            Err(err) => rest.split_at(err.valid_up_to()),
        };
        out.push_str(&String::from_utf8_lossy(valid));
        // The parser writes nothing else that is not UTF-8.
        let surrogate = match bad {
            [0xED, b1 @ 0xA0..=0xBF, b2 @ 0x80..=0xBF, ..] => {
                0xD000 | (u16::from(b1 & 0x3F) << 6) | u16::from(b2 & 0x3F)
            }
            _ => 0xFFFD,
        };
        if errors == Utf8Errors::Strict {
            let kind = InputErrorKind::LoneSurrogate { code: surrogate };
            return Err(InputError::at_line(kind, name, lineno));
        }
        out.push(char::REPLACEMENT_CHARACTER);
        rest = &bad[bad.len().min(3)..];
    }
}

/// Deserializes a JSON object and returns its string field `field` (the last one, if the key
/// repeats), or `None` when the field is missing. Any other shape is an error (the slow path then
/// says what it is).
struct FieldOfObject<'f> {
    field: &'f str,
}

impl<'de> DeserializeSeed<'de> for FieldOfObject<'_> {
    type Value = Option<String>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldOfObject<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is_field) = map.next_key_seed(KeyIs(self.field))? {
            if is_field {
                found = map.next_value_seed(StringField)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A map key, compared with the field name.
pub(super) struct KeyIs<'f>(pub(super) &'f str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// The field's value if it is a string that is valid Unicode; anything else (another type, a
/// lone surrogate escape) is a (serde_json) error, for the slow path.
struct StringField;

impl<'de> DeserializeSeed<'de> for StringField {
    type Value = Option<String>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for StringField {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }
}
