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
/// `each` stops the reading and is returned as it is. The summary's `sha256` is empty: ids are
/// counted as they are read but not hashed (nothing records ids-JSONL inputs).
pub fn read_id_lists<E: From<InputError>>(
    input: &InputSpec,
    field: &str,
    errors: Utf8Errors,
    bytes_read: &AtomicU64,
    mut each: impl FnMut(u64, Vec<i64>) -> Result<(), E>,
) -> Result<InputSummary, E> {
    let name = input.name.as_str();
    let mut records = 0u64;
    let summary = read_id_lines(input, bytes_read, |lineno, raw| -> Result<(), E> {
        if let Some(ids) = parse_id_line(name, lineno, raw, field, errors)? {
            records += 1;
            each(lineno, ids)?;
        }
        Ok(())
    })?;
    Ok(InputSummary {
        documents: records,
        ..summary
    })
}

/// Reads the ids-JSONL `input` to its end, handing each raw line (its `\n` included, a leading
/// byte order mark removed) to `each` with its line number, for [`parse_id_line`] to read where
/// the caller likes (`bpetok decode` parses on its decoding threads). The summary's `documents`
/// is 0: which lines are records is for the parsing to say; its `sha256` is empty, as for
/// [`read_id_lists`]. An input that is not JSONL is an error (`not_jsonl`).
pub fn read_id_lines<E: From<InputError>>(
    input: &InputSpec,
    bytes_read: &AtomicU64,
    each: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<InputSummary, E> {
    let name = input.name.as_str();
    if input.format != InputFormat::Jsonl {
        let kind = InputErrorKind::NotJsonl {
            format: input.format.name(),
        };
        return Err(InputError::new(kind, name).into());
    }
    let mut hashed = Hashed::size_only();
    let (compression, mut stream) = open(input, &mut hashed, bytes_read)?;
    for_each_line(&mut stream, name, compression, true, each)?;
    drop(stream);
    let (size, sha256) = hashed.finish();
    Ok(InputSummary {
        size,
        sha256,
        documents: 0,
        skipped_records: 0,
        compression,
    })
}

/// The ids of one line of ids-JSONL (line `lineno` of input `name`), as [`read_id_lists`] reads
/// it: `None` for a blank line, an [`InputError`] naming file and line for anything that is not
/// an object with a list of integers in `field`.
pub fn parse_id_line(
    name: &str,
    lineno: u64,
    raw: &[u8],
    field: &str,
    errors: Utf8Errors,
) -> Result<Option<Vec<i64>>, InputError> {
    if let Some(ids) = canonical_ids(raw, field) {
        return Ok(Some(ids));
    }
    id_list(name, lineno, raw, field, errors)
}

/// The ids of a line of the shape `bpetok encode` writes, `{"FIELD": [1,2,3]}` (JSON whitespace
/// allowed between tokens), read straight from its bytes; `None` for any other line, which the
/// general path then reads. It accepts only lines the general path reads the same way: ASCII
/// outside the key, the key spelled as `field` is (no escapes), integers without fraction or
/// exponent and of at most 18 digits (so within `i64`; `-0` is 0, as Python reads it).
fn canonical_ids(raw: &[u8], field: &str) -> Option<Vec<i64>> {
    if field.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return None;
    }
    let mut line = Bytes { raw, at: 0 };
    line.expect(b'{')?;
    line.expect(b'"')?;
    let key_end = line.at + field.len();
    if raw.get(line.at..key_end)? != field.as_bytes() {
        return None;
    }
    line.at = key_end;
    if raw.get(line.at) != Some(&b'"') {
        return None;
    }
    line.at += 1;
    line.expect(b':')?;
    line.expect(b'[')?;
    let mut ids = Vec::with_capacity(raw.len() / 6);
    line.skip_whitespace();
    if raw.get(line.at) != Some(&b']') {
        loop {
            // `bpetok encode` writes `1,2,3`: a short number first (read here, `line.at` kept in
            // a register), whitespace and the general reading only if it is not one.
            let id = match line.short_integer() {
                Some(id) => id,
                None => {
                    line.skip_whitespace();
                    line.integer()?
                }
            };
            ids.push(id);
            // The comma first, whitespace only if it is not.
            if raw.get(line.at) != Some(&b',') {
                line.skip_whitespace();
                if raw.get(line.at) != Some(&b',') {
                    break;
                }
            }
            line.at += 1;
        }
    }
    line.expect(b']')?;
    line.expect(b'}')?;
    line.skip_whitespace();
    (line.at == raw.len()).then_some(ids)
}

/// The bytes of `word` (little-endian: the first in the low bits) that are not ASCII digits, as the
/// high bit of each byte. A byte is a digit when its high nibble is 3 and its low nibble plus 6
/// stays below 16; adding 6 to every byte can carry into the next one only from a byte of 0xFA or
/// more, itself a non-digit, so the lowest flagged byte is always the first non-digit.
fn non_digits(word: u64) -> u64 {
    const NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    let bad = ((word & NIBBLES) ^ THREES)
        | ((word.wrapping_add(0x0606_0606_0606_0606) & NIBBLES) ^ THREES);
    // A byte's high bit, set when the byte is not zero (no carry leaves a byte: 0x7F + 0x7F).
    ((bad & 0x7F7F_7F7F_7F7F_7F7F).wrapping_add(0x7F7F_7F7F_7F7F_7F7F) | bad)
        & 0x8080_8080_8080_8080
}

/// The value of the `n` (1 to 8) ASCII digits at the start of `word` (little-endian), without a
/// branch per digit: the digits are moved to the top bytes (zeros before them), then pairs,
/// fours and eights of digits are combined by multiplication (as simdjson's
/// `parse_eight_digits_unrolled`).
fn digits_value(word: u64, n: u32) -> u64 {
    let digits = (word & 0x0F0F_0F0F_0F0F_0F0F) << (8 * (8 - n));
    let pairs = (digits.wrapping_mul(10 << 8 | 1) >> 8) & 0x00FF_00FF_00FF_00FF;
    let fours = (pairs.wrapping_mul(100 << 16 | 1) >> 16) & 0x0000_FFFF_0000_FFFF;
    fours.wrapping_mul(10000 << 32 | 1) >> 32
}

/// A position in a line, for [`canonical_ids`].
struct Bytes<'a> {
    raw: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    /// [`Bytes::integer`] for a non-negative integer of at most 7 digits with 8 bytes of the line
    /// from it on, read eight bytes at a time (a branch per digit mispredicted once per id at the
    /// number's end, and was a fifth of `bpetok decode`); `None` for anything else, which the
    /// digit-by-digit reading then judges.
    #[inline(always)]
    fn short_integer(&mut self) -> Option<i64> {
        let bytes = self.raw.get(self.at..self.at + 8)?;
        let word = u64::from_le_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
        ]);
        // Digits before the first non-digit; 8 (no non-digit) is left to the general reading.
        let n = non_digits(word).trailing_zeros() / 8;
        let after = bytes.get(n as usize).copied();
        if n == 0
            || n == 8
            || (n > 1 && bytes[0] == b'0')
            || matches!(after, Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        self.at += n as usize;
        Some(digits_value(word, n) as i64)
    }

    /// JSON's whitespace, which Python's `json` also allows: space, tab, newline, return.
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.raw.get(self.at) {
            self.at += 1;
        }
    }

    /// Whitespace, then `byte`.
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_whitespace();
        (self.raw.get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    /// `-?(0|[1-9][0-9]*)` of at most 18 digits, not followed by a fraction or exponent.
    #[inline(never)]
    fn integer(&mut self) -> Option<i64> {
        if let Some(value) = self.short_integer() {
            return Some(value);
        }
        let rest = &self.raw[self.at..];
        let (negative, digits) = match rest.split_first() {
            Some((b'-', digits)) => (true, digits),
            _ => (false, rest),
        };
        let mut value = 0i64;
        let mut n = 0;
        for &b in digits {
            if !b.is_ascii_digit() {
                break;
            }
            if n == 18 {
                return None;
            }
            value = value * 10 + i64::from(b - b'0');
            n += 1;
        }
        let leading_zero = n > 1 && digits[0] == b'0';
        let continues = matches!(digits.get(n), Some(b'.' | b'e' | b'E'));
        if n == 0 || leading_zero || continues {
            return None;
        }
        self.at += usize::from(negative) + n;
        Some(if negative { -value } else { value })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of lines: the canonical shape's tokens and the near misses around it.
    const PARTS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"ids\"",
        "\"id\"",
        "\"text\"",
        "\"i\\u0064s\"",
        " ",
        "\t",
        "\r",
        "\n",
        "\u{a0}",
        "0",
        "-0",
        "7",
        "-3",
        "01",
        "00",
        "1.5",
        "1e3",
        "2E1",
        "31999",
        "32000",
        "123456789012345678",
        "1234567890123456789",
        "-123456789012345678",
        "99999999999999999999",
        "true",
        "null",
        "\"3\"",
        "\u{feff}",
        "x",
        "\u{e9}",
        "\\",
    ];

    fn line(parts: &[usize]) -> String {
        parts.iter().map(|&p| PARTS[p % PARTS.len()]).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// What the fast path reads, the general path reads the same.
        #[test]
        fn canonical_ids_agree_with_the_general_path(
            parts in prop::collection::vec(any::<usize>(), 0..16),
            canonical in prop::collection::vec(
                prop_oneof![-40i64..40_000, 0i64..100_000_000, -99_999_999_999_999_999i64..1_000_000_000_000_000_000],
                0..6,
            ),
            mangle in any::<usize>(),
        ) {
            let mut lines = vec![line(&parts)];
            let list: Vec<String> = canonical.iter().map(i64::to_string).collect();
            let good = format!("{{\"ids\": [{}]}}\n", list.join(","));
            // The canonical line with one piece put somewhere into it.
            let at = mangle % (good.len() + 1);
            let mut mangled = good.clone();
            if good.is_char_boundary(at) {
                mangled.insert_str(at, PARTS[mangle / 64 % PARTS.len()]);
            }
            lines.push(good);
            lines.push(mangled);
            for text in &lines {
                let raw = text.as_bytes();
                if let Some(fast) = canonical_ids(raw, "ids") {
                    let general = id_list("f", 1, raw, "ids", Utf8Errors::Strict);
                    prop_assert_eq!(general.ok(), Some(Some(fast)), "{:?}", text);
                }
            }
            let ids = canonical_ids(lines[1].as_bytes(), "ids");
            prop_assert_eq!(ids, Some(canonical));
        }
    }

    #[test]
    fn canonical_ids_read_what_encode_writes_and_leave_the_rest() {
        let read = |line: &str| canonical_ids(line.as_bytes(), "ids");
        assert_eq!(read("{\"ids\": [1,2,3]}\n"), Some(vec![1, 2, 3]));
        assert_eq!(read(" { \"ids\" : [ ] } \r\n"), Some(vec![]));
        assert_eq!(read("{\"ids\": [-0, 5]}"), Some(vec![0, 5]));
        // Every length of number, at the end of the line and not.
        let mut n = 0i64;
        for digits in 1..=18 {
            n = n * 10 + digits % 10;
            assert_eq!(
                read(&format!("{{\"ids\":[{n},{n}]}}")),
                Some(vec![n, n]),
                "{n}"
            );
            assert_eq!(
                read(&format!("{{\"ids\": [ {n} ] }}\r\n")),
                Some(vec![n]),
                "{n}"
            );
        }
        for other in [
            "",
            "\n",
            "{\"ids\": [1], \"n\": 2}",
            "{\"ids\": [01]}",
            "{\"ids\": [1.0]}",
            "{\"ids\": [1234567890123456789]}",
            "{\"ids\": [1,]}",
            "{\"i\\u0064s\": [1]}",
            "[1, 2]",
        ] {
            assert_eq!(read(other), None, "{other:?}");
        }
    }
}
