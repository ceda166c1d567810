//! Documents from input files, in Rust alone: which files the inputs name ([`resolve_inputs`]),
//! and their documents ([`read_documents`]): JSONL (one JSON object per line, the document is
//! one string field), UTF-8 text (a file is a document, or each line is one) and Parquet (one
//! document per row of a string column), each plain, gzip or zstd, from a path or stdin; and
//! the token id lists of ids-JSONL ([`read_id_lists`]). While a file is read its raw (still
//! compressed) bytes are counted and hashed with SHA-256, for the manifest of a packing run
//! (ids-JSONL is counted only).
//!
//! The rules are those of `docs/cli.md` ("Inputs"); `tests/input.rs` pins each of them:
//! - A leading UTF-8 byte order mark is dropped. Invalid UTF-8 is an error naming file, line and
//!   column, or, with [`Utf8Errors::Replace`], each maximal invalid sequence becomes U+FFFD.
//! - JSONL: what Python's `json.loads` accepts, with its messages (`jsonl`, `pyjson`); blank
//!   lines (only whitespace, as Python's `str.isspace`) are skipped; the field must hold a
//!   string. A `\uD800`-style escape that is half of a surrogate pair is an error, or one U+FFFD
//!   with [`Utf8Errors::Replace`].
//! - Text: the whole file is one document, byte for byte (an empty file, or one holding only a
//!   BOM, is none); with `lines`, each line without its `\n` or `\r\n` is a document and empty
//!   lines are skipped (they still count for line numbers).
//! - Parquet: the column must be a string column; a null is an error naming the row.
//!
//! Errors are [`InputError`]s: a kind and a location, with no advice on command-line flags (the
//! caller adds that from [`InputError::kind`]).

mod error;
mod ids;
mod jsonl;
mod parquet;
mod parquet_footer;
pub(crate) mod pyjson;
mod resolve;
mod stream;
mod text;

use std::io::Read;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::AtomicU64;

use crate::data::chat::{ChatPlan, ChatSpec};
pub use error::{InputError, InputErrorKind};
pub use ids::{parse_id_line, read_id_lines, read_id_lists};
pub use parquet::row_group_sizes;
pub use resolve::{kind_of, resolve_inputs, spec_by_name};

use stream::{for_each_line, open, read_error, Hashed};
use text::{count_newlines, text_line_document, whole_file_document};

/// What an input holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One JSON object per line; the document is the string in the chosen field.
    Jsonl,
    /// UTF-8 text: the file is one document (or, with `lines`, each line is one).
    Text,
    /// Parquet: one document per row of the string column named like the field.
    Parquet,
}

impl InputFormat {
    /// `jsonl`, `text` or `parquet`.
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Jsonl => "jsonl",
            InputFormat::Text => "text",
            InputFormat::Parquet => "parquet",
        }
    }
}

/// How to tell an input's format (`--input-format`): from its name, or one for every input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatChoice {
    #[default]
    Auto,
    Jsonl,
    Text,
    Parquet,
}

impl FormatChoice {
    /// `auto`, `jsonl`, `text` or `parquet`.
    pub fn name(self) -> &'static str {
        match self {
            FormatChoice::Auto => "auto",
            FormatChoice::Jsonl => "jsonl",
            FormatChoice::Text => "text",
            FormatChoice::Parquet => "parquet",
        }
    }

    /// The forced format, `None` for [`FormatChoice::Auto`].
    pub fn format(self) -> Option<InputFormat> {
        match self {
            FormatChoice::Auto => None,
            FormatChoice::Jsonl => Some(InputFormat::Jsonl),
            FormatChoice::Text => Some(InputFormat::Text),
            FormatChoice::Parquet => Some(InputFormat::Parquet),
        }
    }
}

impl FromStr for FormatChoice {
    type Err = String;

    /// One of [`FormatChoice::name`]'s names; the error lists them.
    fn from_str(s: &str) -> Result<Self, String> {
        [
            FormatChoice::Auto,
            FormatChoice::Jsonl,
            FormatChoice::Text,
            FormatChoice::Parquet,
        ]
        .into_iter()
        .find(|c| c.name() == s)
        .ok_or_else(|| format!("expected auto, jsonl, text or parquet, got {s:?}"))
    }
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

impl Utf8Errors {
    /// `strict` or `replace`.
    pub fn name(self) -> &'static str {
        match self {
            Utf8Errors::Strict => "strict",
            Utf8Errors::Replace => "replace",
        }
    }
}

impl FromStr for Utf8Errors {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "strict" => Ok(Utf8Errors::Strict),
            "replace" => Ok(Utf8Errors::Replace),
            _ => Err(format!("expected strict or replace, got {s:?}")),
        }
    }
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
    /// The size on disk when the input was resolved; `None` for stdin.
    pub size: Option<u64>,
    /// Only a part of the file (a partition's piece, [`crate::data::partition`]); `None` for
    /// the whole file.
    pub range: Option<InputRange>,
}

impl InputSpec {
    /// Whether reading starts at the file's first byte (a byte order mark is dropped only there).
    pub fn starts_file(&self) -> bool {
        !matches!(self.range, Some(InputRange::Bytes([start, _])) if start > 0)
    }
}

/// The part of a file a partition reads (see `docs/distributed.md`).
///
/// - `Bytes([start, end])`: the lines that begin at a byte offset in `start..end` of an
///   uncompressed JSONL or text-lines file (a line begins at offset 0 and after each `\n`), so
///   that the byte ranges of a file, cut anywhere, share out its lines with none lost or read
///   twice.
/// - `RowGroups([start, end])`: the row groups `start..end` of an uncompressed Parquet file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum InputRange {
    Bytes([u64; 2]),
    RowGroups([u64; 2]),
}

/// How documents are taken from inputs.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The JSONL field, or the Parquet column, that holds the text.
    pub field: String,
    /// Text inputs: one document per line instead of one per file.
    pub lines: bool,
    pub errors: Utf8Errors,
    /// A JSONL line that is not JSON, not an object, lacks the field or holds a non-string
    /// there, and a Parquet null, is a [`Record::Skipped`] instead of an error. Invalid UTF-8
    /// and lone surrogate escapes follow `errors`; read errors always stop.
    pub skip_bad_records: bool,
    /// Read every JSONL line as a conversation (`{"messages": [...], "tools": [...]}`) in this
    /// instruct format, validated and written out when read ([`Record::Conversation`]); `field`
    /// is not used. Text and Parquet inputs are refused.
    pub chat: Option<ChatSpec>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            field: "text".to_owned(),
            lines: false,
            errors: Utf8Errors::Strict,
            skip_bad_records: false,
            chat: None,
        }
    }
}

/// One record of an input, in order: a document, or (with [`ReadOptions::skip_bad_records`]) a
/// record passed over. `index` counts the input's records from 0: its lines (blank ones
/// included), or its Parquet rows; a whole text file is record 0.
#[derive(Debug)]
pub enum Record {
    Document {
        index: u64,
        text: String,
    },
    /// With [`ReadOptions::chat`]: a conversation, validated and written out.
    Conversation {
        index: u64,
        plan: ChatPlan,
    },
    Skipped {
        index: u64,
        error: InputError,
    },
}

impl InputErrorKind {
    /// Whether [`ReadOptions::skip_bad_records`] passes over a record with this error: a JSONL
    /// line that is not JSON, not an object, lacks the field or holds a non-string there, or a
    /// Parquet null.
    pub fn is_bad_record(&self) -> bool {
        matches!(
            self,
            InputErrorKind::InvalidJson { .. }
                | InputErrorKind::NotAnObject { .. }
                | InputErrorKind::MissingField { .. }
                | InputErrorKind::NotAString { .. }
                | InputErrorKind::TooDeep
                | InputErrorKind::NullValue { .. }
                | InputErrorKind::BadConversation { .. }
        )
    }
}

/// What a record holds: a document's text, or a conversation.
enum Doc {
    Text(String),
    Chat(ChatPlan),
}

/// What was read from one input, once it has been read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSummary {
    /// Raw (compressed) bytes.
    pub size: u64,
    /// Hex SHA-256 of the raw bytes.
    pub sha256: String,
    pub documents: u64,
    /// Records passed over ([`ReadOptions::skip_bad_records`]).
    pub skipped_records: u64,
    pub compression: Compression,
}

/// Reads `input` to its end, handing each document to `each` in order, and returns the input's
/// summary. `bytes_read` is increased as raw bytes are read (for a progress display). An error
/// from `each` stops the reading and is returned as it is. Records passed over
/// ([`ReadOptions::skip_bad_records`]) are only counted.
pub fn read_documents<E: From<InputError>>(
    input: &InputSpec,
    opts: &ReadOptions,
    bytes_read: &AtomicU64,
    mut each: impl FnMut(String) -> Result<(), E>,
) -> Result<InputSummary, E> {
    read_records(input, opts, bytes_read, 0, |record| match record {
        Record::Document { text, .. } => each(text),
        Record::Conversation { .. } | Record::Skipped { .. } => Ok(()),
    })
}

/// Reads `input` to its end, handing each of its records from index `skip` on to `each` in
/// order (the first `skip` are read, hashed and counted in `bytes_read`, but not decoded:
/// a resumed run passes over what it has packed), and returns the input's summary, whose
/// `documents` and `skipped_records` count only the records handed over.
pub fn read_records<E: From<InputError>>(
    input: &InputSpec,
    opts: &ReadOptions,
    bytes_read: &AtomicU64,
    skip: u64,
    mut each: impl FnMut(Record) -> Result<(), E>,
) -> Result<InputSummary, E> {
    let mut documents = 0u64;
    let mut skipped = 0u64;
    let mut hand_over = |index: u64, doc: Result<Option<Doc>, InputError>| -> Result<(), E> {
        match doc {
            Ok(Some(Doc::Text(text))) => {
                documents += 1;
                each(Record::Document { index, text })
            }
            Ok(Some(Doc::Chat(plan))) => {
                documents += 1;
                each(Record::Conversation { index, plan })
            }
            Ok(None) => Ok(()),
            Err(error) if opts.skip_bad_records && error.kind.is_bad_record() => {
                skipped += 1;
                each(Record::Skipped { index, error })
            }
            Err(error) => Err(error.into()),
        }
    };
    if opts.chat.is_some() && input.format != InputFormat::Jsonl {
        let kind = InputErrorKind::NotJsonl {
            format: input.format.name(),
        };
        return Err(InputError::new(kind, input.name.as_str()).into());
    }
    check_range(input, opts)?;
    if input.format == InputFormat::Parquet {
        let (size, sha256, compression) = parquet::read_parquet(
            input,
            &opts.field,
            opts.errors,
            bytes_read,
            skip,
            |index, doc| hand_over(index, doc.map(|d| d.map(Doc::Text))),
        )?;
        return Ok(InputSummary {
            size,
            sha256,
            documents,
            skipped_records: skipped,
            compression,
        });
    }
    let mut hashed = Hashed::default();
    let name = input.name.as_str();
    let (compression, mut stream) = open(input, &mut hashed, bytes_read)?;
    if input.format == InputFormat::Text && !opts.lines {
        let mut data = Vec::new();
        stream
            .read_to_end(&mut data)
            .map_err(|err| read_error(name, Some(1 + count_newlines(&data)), compression, &err))?;
        if skip == 0 {
            hand_over(
                0,
                whole_file_document(name, data, opts.errors).map(|d| d.map(Doc::Text)),
            )?;
        }
    } else {
        for_each_line(
            &mut stream,
            name,
            compression,
            input.starts_file(),
            |lineno, raw| -> Result<(), E> {
                if lineno <= skip {
                    return Ok(());
                }
                let doc = match (input.format, &opts.chat) {
                    (InputFormat::Jsonl, Some(spec)) => {
                        jsonl::conversation(name, lineno, raw, spec, opts.errors)
                            .map(|d| d.map(Doc::Chat))
                    }
                    (InputFormat::Jsonl, None) => {
                        jsonl::jsonl_document(name, lineno, raw, &opts.field, opts.errors)
                            .map(|d| d.map(Doc::Text))
                    }
                    _ => {
                        text_line_document(name, lineno, raw, opts.errors).map(|d| d.map(Doc::Text))
                    }
                };
                hand_over(lineno - 1, doc)
            },
        )?;
    }
    drop(stream);
    let (size, sha256) = hashed.finish();
    Ok(InputSummary {
        size,
        sha256,
        documents,
        skipped_records: skipped,
        compression,
    })
}

/// The size and SHA-256 of the raw bytes that reading `input` records (its summary's), read
/// again without decoding a record: how a resumed run checks an input it had read to its end, a
/// part of a file included. `tick` is called about every [`crate::data::pipeline::TICK`] (an
/// error from it stops the reading).
pub fn hash_input<E: From<InputError>>(
    input: &InputSpec,
    bytes_read: &AtomicU64,
    mut tick: impl FnMut() -> Result<(), E>,
) -> Result<(u64, String), E> {
    if let Some(InputRange::RowGroups([first, end])) = input.range {
        tick()?;
        return Ok(parquet::hash_row_groups(input, (first, end), bytes_read)?);
    }
    let mut hashed = Hashed::default();
    {
        let mut raw = stream::open_raw(input, &mut hashed, bytes_read)?;
        let mut buf = vec![0u8; stream::READ_SIZE];
        let mut last = std::time::Instant::now();
        loop {
            let n = raw
                .read(&mut buf)
                .map_err(|err| read_error(&input.name, None, Compression::None, &err))?;
            if n == 0 {
                break;
            }
            if last.elapsed() >= crate::data::pipeline::TICK {
                tick()?;
                last = std::time::Instant::now();
            }
        }
    }
    Ok(hashed.finish())
}

/// Refuses a part of a file that cannot be read alone.
fn check_range(input: &InputSpec, opts: &ReadOptions) -> Result<(), InputError> {
    let reason = match (input.range, input.format) {
        (None, _) => return Ok(()),
        (Some(InputRange::Bytes(_)), InputFormat::Parquet) => "a byte range of a Parquet file",
        (Some(InputRange::Bytes(_)), InputFormat::Text) if !opts.lines => {
            "a byte range of a text file read as one document"
        }
        (Some(InputRange::RowGroups(_)), InputFormat::Parquet) => return Ok(()),
        (Some(InputRange::RowGroups(_)), _) => "row groups of a file that is not Parquet",
        (Some(InputRange::Bytes([start, end])), _) if start > end => {
            "a byte range that ends before it starts"
        }
        (Some(InputRange::Bytes(_)), _) => return Ok(()),
    };
    let reason = reason.to_owned();
    Err(InputError::new(
        InputErrorKind::Unsplittable { reason },
        input.name.as_str(),
    ))
}
