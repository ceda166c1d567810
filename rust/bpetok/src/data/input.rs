//! Documents from input files: JSONL (one JSON object per line, the document is one string
//! field) and UTF-8 text (a file is a document, or each line is one), each plain, gzip or zstd,
//! from a path or stdin. While a file is read its raw (still compressed) bytes are counted and
//! hashed with SHA-256, for the manifest of a packing run.
//!
//! The rules are those of the `bpetok` command line (`docs/cli.md`), which also has a Python
//! reader for the same formats; the two are tested against each other:
//! - A leading UTF-8 byte order mark is dropped. Invalid UTF-8 is an error naming file, line and
//!   column, or, with [`Utf8Errors::Replace`], each maximal invalid sequence becomes U+FFFD.
//! - JSONL: blank lines (only whitespace, as Python's `str.isspace`) are skipped; the field must
//!   hold a string. A `\uD800`-style escape that is half of a surrogate pair is an error, or one
//!   U+FFFD with [`Utf8Errors::Replace`].
//! - Text: the whole file is one document, byte for byte (an empty file is one empty
//!   document); with `lines`, each line without its `\n` or `\r\n` is a document and empty lines
//!   are skipped (they still count for line numbers).
//!
//! A JSONL line that this reader cannot take as it is (not JSON, not an object, no such field, a
//! field that is not a string) can be handed to a [`LineFallback`], which decides what the line
//! is; the command line uses Python's `json` there, so both readers agree on every line. Without
//! one, such a line is an error.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::{self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Bytes asked of the file (or decompressor) per read.
const READ_SIZE: usize = 1 << 20;
const BOM: &[u8] = b"\xef\xbb\xbf";

/// What an input holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One JSON object per line; the document is the string in the chosen field.
    Jsonl,
    /// UTF-8 text: the file is one document (or, with `lines`, each line is one).
    Text,
}

/// How an input's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The name used in messages and in the manifest: `gzip`, `zstd`, or `file`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "file",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// What to do with invalid UTF-8 (and, in JSON strings, lone surrogate escapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Utf8Errors {
    /// An error naming the file and line.
    #[default]
    Strict,
    /// Each maximal invalid sequence (each lone surrogate) becomes U+FFFD.
    Replace,
}

/// One input to read.
#[derive(Debug, Clone)]
pub struct InputSpec {
    /// The file, or `None` for stdin.
    pub path: Option<PathBuf>,
    /// The name messages use (the path as given, or `<stdin>`).
    pub name: String,
    pub format: InputFormat,
    /// `None` for stdin means: detected from the first bytes (gzip and zstd magic numbers).
    pub compression: Option<Compression>,
}

/// How documents are taken from inputs.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The JSONL field that holds the text.
    pub field: String,
    /// Text inputs: one document per line instead of one per file.
    pub lines: bool,
    pub errors: Utf8Errors,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            field: "text".to_owned(),
            lines: false,
            errors: Utf8Errors::Strict,
        }
    }
}

/// What was read from one input, once it has been read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSummary {
    /// Raw (compressed) bytes.
    pub size: u64,
    /// Hex SHA-256 of the raw bytes.
    pub sha256: String,
    pub documents: u64,
    pub compression: Compression,
}

/// A problem with an input: the message starts with the file, and line, it is about.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// The verdict on a JSONL line that the built-in parser could not take as a document: `Ok(None)`
/// to skip it, `Ok(Some(text))` for its document, `Err(message)` for an error (the message is
/// used as it is, so it should name the file and line). Called with the file's name, the line
/// number (from 1) and the line as text (after UTF-8 decoding, with its line ending).
pub type LineFallback<'a> = dyn Fn(&str, u64, &str) -> Result<Option<String>, String> + Sync + 'a;

/// Reads `input` to its end, handing each document to `each` in order, and returns the input's
/// summary. `bytes_read` is increased as raw bytes are read (for a progress display). An error
/// from `each` stops the reading and is returned as it is.
pub fn read_documents<E: From<InputError>>(
    input: &InputSpec,
    opts: &ReadOptions,
    fallback: Option<&LineFallback<'_>>,
    bytes_read: &AtomicU64,
    mut each: impl FnMut(String) -> Result<(), E>,
) -> Result<InputSummary, E> {
    let mut hashed = Hashed::default();
    let name = input.name.as_str();
    let (compression, mut stream) = open(input, &mut hashed, bytes_read)?;
    let mut documents = 0u64;
    let cannot_read = |line: u64, err: io::Error| {
        InputError(format!(
            "{name}:{line}: cannot read ({}): {err}",
            compression.name()
        ))
    };
    match (input.format, opts.lines) {
        (InputFormat::Text, false) => {
            let mut data = Vec::new();
            stream
                .read_to_end(&mut data)
                .map_err(|err| cannot_read(1 + count_newlines(&data), err))?;
            let text = decode_text(name, None, strip_bom(data), opts.errors)?;
            documents += 1;
            each(text)?;
        }
        (format, _) => {
            let mut line = Vec::new();
            let mut lineno = 0u64;
            loop {
                line.clear();
                match stream.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(err) => return Err(cannot_read(lineno + 1, err).into()),
                }
                lineno += 1;
                let raw: &[u8] = if lineno == 1 && line.starts_with(BOM) {
                    &line[BOM.len()..]
                } else {
                    &line
                };
                let doc = if format == InputFormat::Jsonl {
                    jsonl_document(name, lineno, raw, opts, fallback)?
                } else {
                    text_line_document(name, lineno, raw, opts.errors)?
                };
                if let Some(text) = doc {
                    documents += 1;
                    each(text)?;
                }
            }
        }
    }
    drop(stream);
    Ok(InputSummary {
        size: hashed.size,
        sha256: hex(&hashed.sha.finalize()),
        documents,
        compression,
    })
}

#[derive(Default)]
struct Hashed {
    sha: Sha256,
    size: u64,
}

/// The raw bytes of an input, hashed and counted as they pass.
struct HashingReader<'a, R> {
    inner: R,
    hashed: &'a mut Hashed,
    progress: &'a AtomicU64,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hashed.sha.update(&buf[..n]);
        self.hashed.size += n as u64;
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn open<'a>(
    input: &InputSpec,
    hashed: &'a mut Hashed,
    progress: &'a AtomicU64,
) -> Result<(Compression, Box<dyn BufRead + 'a>), InputError> {
    let raw: Box<dyn Read> = match &input.path {
        Some(path) => Box::new(
            File::open(path).map_err(|err| InputError(format!("{}: {}", input.name, err)))?,
        ),
        None => Box::new(io::stdin()),
    };
    let mut hashing = HashingReader {
        inner: raw,
        hashed,
        progress,
    };
    // Detection needs the first 4 bytes, which a pipe may deliver over several reads.
    let mut head = Vec::new();
    if input.compression.is_none() {
        let mut byte = [0u8; 4];
        while head.len() < 4 {
            match hashing.read(&mut byte[..4 - head.len()]) {
                Ok(0) => break,
                Ok(n) => head.extend_from_slice(&byte[..n]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(InputError(format!("{}:1: cannot read: {err}", input.name)))
                }
            }
        }
    }
    let compression = input
        .compression
        .unwrap_or(if head.starts_with(b"\x1f\x8b") {
            Compression::Gzip
        } else if head.starts_with(b"\x28\xb5\x2f\xfd") {
            Compression::Zstd
        } else {
            Compression::None
        });
    let mut buffered = BufReader::with_capacity(READ_SIZE, io::Cursor::new(head).chain(hashing));
    let stream: Box<dyn BufRead + 'a> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            READ_SIZE,
            GzipMembers::Between {
                input: buffered,
                first: true,
            },
        )),
        Compression::Zstd => {
            let empty = buffered
                .fill_buf()
                .map_err(|err| InputError(format!("{}:1: cannot read: {err}", input.name)))?
                .is_empty();
            if empty {
                // An empty file holds no frame: no data, as Python's zstandard reads it.
                Box::new(buffered)
            } else {
                let decoder =
                    zstd::stream::read::Decoder::with_buffer(buffered).map_err(|err| {
                        InputError(format!("{}:1: cannot read (zstd): {err}", input.name))
                    })?;
                Box::new(BufReader::with_capacity(READ_SIZE, decoder))
            }
        }
    };
    Ok((compression, stream))
}

/// Gzip data as Python's `gzip` module reads it: members one after the other, with any `\0`
/// padding between and after them skipped, and an empty input as no data.
enum GzipMembers<R: BufRead> {
    Between { input: R, first: bool },
    Member(flate2::bufread::GzDecoder<R>),
    Done,
}

impl<R: BufRead> Read for GzipMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match std::mem::replace(self, GzipMembers::Done) {
                GzipMembers::Done => return Ok(0),
                GzipMembers::Member(mut decoder) => {
                    let n = decoder.read(buf)?;
                    if n > 0 || buf.is_empty() {
                        *self = GzipMembers::Member(decoder);
                        return Ok(n);
                    }
                    *self = GzipMembers::Between {
                        input: decoder.into_inner(),
                        first: false,
                    };
                }
                GzipMembers::Between { mut input, first } => {
                    loop {
                        let available = input.fill_buf()?;
                        if available.is_empty() {
                            return Ok(0); // end of input, between members
                        }
                        let zeros = if first {
                            0
                        } else {
                            available.iter().take_while(|&&b| b == 0).count()
                        };
                        if zeros == 0 {
                            break;
                        }
                        input.consume(zeros);
                    }
                    *self = GzipMembers::Member(flate2::bufread::GzDecoder::new(input));
                }
            }
        }
    }
}

fn strip_bom(mut data: Vec<u8>) -> Vec<u8> {
    if data.starts_with(BOM) {
        data.drain(..BOM.len());
    }
    data
}

fn count_newlines(data: &[u8]) -> u64 {
    data.iter().filter(|&&b| b == b'\n').count() as u64
}

/// `bytes` as text, or the error for its first invalid sequence. `lineno` is `None` for a whole
/// file, whose line and column are then found from the offset.
fn decode_text(
    name: &str,
    lineno: Option<u64>,
    bytes: Vec<u8>,
    errors: Utf8Errors,
) -> Result<String, InputError> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(err) => {
            let bytes = err.into_bytes();
            if errors == Utf8Errors::Replace {
                return Ok(String::from_utf8_lossy(&bytes).into_owned());
            }
            Err(utf8_error(name, lineno, &bytes))
        }
    }
}

fn decode_line<'b>(
    name: &str,
    lineno: u64,
    bytes: &'b [u8],
    errors: Utf8Errors,
) -> Result<Cow<'b, str>, InputError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(Cow::Borrowed(text)),
        Err(_) if errors == Utf8Errors::Replace => Ok(String::from_utf8_lossy(bytes)),
        Err(_) => Err(utf8_error(name, Some(lineno), bytes)),
    }
}

fn utf8_error(name: &str, lineno: Option<u64>, bytes: &[u8]) -> InputError {
    let start = match std::str::from_utf8(bytes) {
        Err(err) => err.valid_up_to(),
        Ok(_) => unreachable!("utf8_error on valid UTF-8"),
    };
    let (line, column) = match lineno {
        Some(line) => (line, start + 1),
        None => {
            let before = &bytes[..start];
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            (1 + count_newlines(before), start - line_start + 1)
        }
    };
    InputError(format!(
        "{name}:{line}: invalid UTF-8 (byte 0x{:02x} at column {column}); pass --errors replace \
         to read invalid bytes as U+FFFD",
        bytes[start]
    ))
}

fn text_line_document(
    name: &str,
    lineno: u64,
    mut raw: &[u8],
    errors: Utf8Errors,
) -> Result<Option<String>, InputError> {
    if let Some(rest) = raw.strip_suffix(b"\n") {
        raw = rest.strip_suffix(b"\r").unwrap_or(rest);
    }
    if raw.is_empty() {
        return Ok(None);
    }
    Ok(Some(decode_line(name, lineno, raw, errors)?.into_owned()))
}

fn jsonl_document(
    name: &str,
    lineno: u64,
    raw: &[u8],
    opts: &ReadOptions,
    fallback: Option<&LineFallback<'_>>,
) -> Result<Option<String>, InputError> {
    let text = decode_line(name, lineno, raw, opts.errors)?;
    let mut de = serde_json::Deserializer::from_str(&text);
    let fast = FieldOfObject { field: &opts.field }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    match fast {
        Ok(Some(text)) => Ok(Some(text)),
        _ => match fallback {
            Some(fallback) => fallback(name, lineno, &text).map_err(InputError),
            None => slow_jsonl_document(name, lineno, &text, opts),
        },
    }
}

/// A JSONL line the fast path did not take: skip it if blank, else say what is wrong with it.
fn slow_jsonl_document(
    name: &str,
    lineno: u64,
    text: &str,
    opts: &ReadOptions,
) -> Result<Option<String>, InputError> {
    let where_ = format!("{name}:{lineno}");
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = FieldsOf { field: &opts.field }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    let fields = match parsed {
        Ok(fields) => fields,
        Err(_) if text.chars().all(is_python_space) => return Ok(None),
        Err(err) => {
            // Valid JSON that is not an object, or not JSON at all.
            let (err, got) = match serde_json::from_str::<&RawValue>(text) {
                Ok(raw) if err.is_data() => (err, json_type(raw.get())),
                Ok(_) => (err, ""),
                Err(syntax) => (syntax, ""),
            };
            if !got.is_empty() {
                return Err(InputError(format!(
                    "{where_}: expected a JSON object, got {got}"
                )));
            }
            let message = err.to_string();
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(m, _)| m);
            return Err(InputError(format!(
                "{where_}: invalid JSON: {message} (column {})",
                err.column()
            )));
        }
    };
    let Some(raw) = fields.value else {
        let mut have: Vec<String> = fields.keys.iter().map(|k| quoted(k)).collect();
        if have.is_empty() {
            have.push("none".to_owned());
        }
        return Err(InputError(format!(
            "{where_}: record has no field {} (its fields: {}); name the text field with --field",
            quoted(&opts.field),
            have.join(", ")
        )));
    };
    let got = json_type(raw.get());
    if got != "a string" {
        return Err(InputError(format!(
            "{where_}: field {} is {got}, not a string",
            quoted(&opts.field)
        )));
    }
    if raw.get().bytes().any(|b| b < 0x20) {
        return Err(InputError(format!(
            "{where_}: invalid JSON: a control character in a string must be escaped"
        )));
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let wtf8 = (&mut de)
        .deserialize_bytes(WtfBytes)
        .map_err(|err| InputError(format!("{where_}: invalid JSON: {err}")))?;
    Ok(Some(from_wtf8(name, lineno, wtf8, opts.errors)?))
}

/// Python's `str.isspace`: Unicode White_Space plus the separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn json_type(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Text from the bytes serde_json unescapes a JSON string to: UTF-8, except that a lone
/// surrogate escape is encoded like a scalar value (WTF-8, `ED A0..BF 80..BF`).
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
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                out.push_str(valid);
                break;
            }
            Err(err) => {
                let (valid, bad) = rest.split_at(err.valid_up_to());
                out.push_str(std::str::from_utf8(valid).expect("checked prefix"));
                let surrogate = match bad {
                    [0xED, b1 @ 0xA0..=0xBF, b2 @ 0x80..=0xBF, ..] => {
                        0xD000 | (u32::from(b1 & 0x3F) << 6) | u32::from(b2 & 0x3F)
                    }
                    _ => {
                        return Err(InputError(format!(
                            "{name}:{lineno}: a JSON string unescaped to invalid text"
                        )))
                    }
                };
                if errors == Utf8Errors::Strict {
                    return Err(InputError(format!(
                        "{name}:{lineno}: lone surrogate U+{surrogate:04X} in the text (a JSON \\u \
                         escape that is half of a pair); pass --errors replace to read it as U+FFFD"
                    )));
                }
                out.push(char::REPLACEMENT_CHARACTER);
                rest = &bad[3..];
            }
        }
    }
    Ok(out)
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
struct KeyIs<'f>(&'f str);

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

/// A JSON string's unescaped bytes (WTF-8 for lone surrogates).
struct WtfBytes;

impl<'de> Visitor<'de> for WtfBytes {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        Ok(v.as_bytes().to_vec())
    }
}

/// Every key of an object in order (the first 8, for messages) and the raw value of the field.
struct Fields<'a> {
    keys: Vec<String>,
    value: Option<&'a RawValue>,
}

struct FieldsOf<'f> {
    field: &'f str,
}

impl<'de, 'f> DeserializeSeed<'de> for FieldsOf<'f> {
    type Value = Fields<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'f> Visitor<'de> for FieldsOf<'f> {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields {
            keys: Vec::new(),
            value: None,
        };
        while let Some(key) = map.next_key_seed(KeyBytes)? {
            let value: &'de RawValue = map.next_value()?;
            if key == self.field.as_bytes() {
                fields.value = Some(value);
            }
            let key = String::from_utf8_lossy(&key).into_owned();
            if fields.keys.len() < 8 && !fields.keys.contains(&key) {
                fields.keys.push(key);
            }
        }
        Ok(fields)
    }
}

/// A map key's unescaped bytes (WTF-8 for a lone surrogate escape, which Python accepts).
struct KeyBytes;

impl<'de> DeserializeSeed<'de> for KeyBytes {
    type Value = Vec<u8>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_bytes(WtfBytes)
    }
}

/// `s` quoted as Python's `repr` quotes a plain string.
fn quoted(s: &str) -> String {
    format!("'{}'", s.escape_debug())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
