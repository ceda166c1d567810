//! [`InputError`]: what went wrong with an input, and where (file, line, column, Parquet row).
//! The Display text says only that; how to fix it (a command-line flag, an API argument) is for
//! the caller to add from [`InputError::kind`].

use std::fmt;

use super::Compression;

/// A problem with an input: its [`kind`](InputErrorKind) and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub kind: InputErrorKind,
    /// The input's name as messages show it (the path as given, `<stdin>`, or `-` for the
    /// command-line argument itself); empty when the error is about no input in particular.
    pub file: String,
    /// The line (from 1) of a JSONL or text input.
    pub line: Option<u64>,
    /// The column (from 1, in characters) on that line.
    pub column: Option<u64>,
    /// The row (from 1) of a Parquet input.
    pub row: Option<u64>,
}

/// What went wrong. (Lists and second strings are boxed slices so that an [`InputError`] stays
/// under 128 bytes.) Each variant's [`InputError::kind`] name is given in its first line; the
/// example messages use a file `f`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputErrorKind {
    /// `not_found`: no such file or directory (`f: no such file or directory`).
    NotFound,
    /// `io`: the operating system refused to open, list or read a file
    /// (`f: Permission denied (os error 13)`).
    Io { message: String },
    /// `stdin_twice`: `-` given more than once (`-: stdin given more than once`).
    StdinTwice,
    /// `no_input_files`: a directory with no input file in it (`d: no input files in this
    /// directory (.jsonl, .json, .txt or .parquet, optionally .gz or .zst)`).
    NoInputFiles,
    /// `unknown_format`: a file whose name says neither JSONL, text nor Parquet, with no format
    /// forced (`f.md: cannot tell the kind of input from its name: name it .jsonl, .json, .txt or
    /// .parquet (optionally .gz or .zst)`).
    UnknownFormat,
    /// `file_name_not_utf8`: a file name that is not UTF-8 (the manifest records names as UTF-8);
    /// `file` shows it with U+FFFD for the invalid bytes (`d/a\u{FFFD}.txt: the file name is not
    /// UTF-8`).
    FileNameNotUtf8,
    /// `invalid_utf8`: bytes that are not UTF-8, in strict mode (`f:3: invalid UTF-8 (byte 0xff
    /// at column 5)`; for Parquet the location is the row).
    InvalidUtf8 { byte: u8 },
    /// `lone_surrogate`: a JSON `\ud800` escape that is half of a surrogate pair, in the text
    /// field, in strict mode (`f:3: lone surrogate U+D800 in the text (a JSON \u escape that is
    /// half of a pair)`).
    LoneSurrogate { code: u16 },
    /// `bad_conversation`: a JSONL line read as a conversation (`--chat`) that the instruct
    /// format cannot encode, or that mistral-common would refuse; `message` names the message
    /// (`f:3: bad conversation: message 2: a tool message cannot follow a user message`).
    BadConversation { message: String },
    /// `invalid_json`: a line that is not JSON; `message` is what Python's `json` module says
    /// (`f:3: invalid JSON: Expecting value (column 1)`).
    InvalidJson { message: String },
    /// `not_an_object`: a JSON line that is not an object; `got` is `an array`, `a string`, `a
    /// number`, `a boolean` or `null` (`f:3: expected a JSON object, got an array`).
    NotAnObject { got: &'static str },
    /// `missing_field`: an object without the field; `fields` are its first 8 keys as Python's
    /// `repr` shows them (`f:3: record has no field 'text' (its fields: 'a', 'b')`).
    MissingField {
        field: String,
        fields: Box<[String]>,
    },
    /// `not_a_string`: the field holds another type (`f:3: field 'text' is a number, not a
    /// string`).
    NotAString { field: String, got: &'static str },
    /// `too_deep`: JSON nested more than 1,000 levels deep, on a line that is not an object with
    /// a string field (such a line is read whatever the depth of its other values), as Python's
    /// `json` fails at its recursion limit (`f:3: cannot read this JSON: it is nested too deeply`).
    TooDeep,
    /// `decompress`: gzip or zstd data that cannot be decompressed, or a file that ends inside a
    /// frame (`f:3: cannot read (gzip): corrupt deflate stream`).
    Decompress {
        compression: Compression,
        message: String,
    },
    /// `parquet`: a Parquet file the `parquet` crate cannot read (`f: cannot read Parquet: ...`).
    Parquet { message: String },
    /// `missing_column`: a Parquet file without the column (`f: no column 'text' (its columns:
    /// 'a', 'b')`).
    MissingColumn {
        column: String,
        columns: Vec<String>,
    },
    /// `not_a_string_column`: the column is not a string column; `type_name` is its type as
    /// Arrow names it (`f: column 'text' is int64, not a string column`).
    NotAStringColumn { column: String, type_name: Box<str> },
    /// `null_value`: a null in the column (`f:row 4: column 'text' is null`).
    NullValue { column: String },
    /// `not_jsonl`: token ids asked of an input that is not JSONL (`f: expected JSONL, this is
    /// text`).
    NotJsonl { format: &'static str },
    /// `unsplittable`: a part of a file asked for that cannot be read alone (a byte range of a
    /// compressed file or of a whole-file text document, row groups of a file that is not
    /// uncompressed Parquet, row groups past its last).
    Unsplittable { reason: String },
    /// `not_a_list`: the ids field holds no list (`f:3: field 'ids' is not a list of token ids`).
    NotAList { field: String },
    /// `not_an_id`: an element of the ids list that is not an integer; `found` is its JSON text
    /// (`f:3: token ids must be integers, found 1.5`).
    NotAnId { found: String },
    /// `id_out_of_range`: an integer id outside the 64-bit signed range (`f:3: token id
    /// 99999999999999999999 is out of range (more than 64 bits)`).
    IdOutOfRange {
        found: String,
        /// The vocabulary's size, when the id was checked against one.
        vocab_size: Option<usize>,
    },
    /// `thread`: the pipeline could not start a thread (`cannot start the reading thread: ...`).
    Thread { message: String },
}

impl InputError {
    /// An error about `file` as a whole.
    pub fn new(kind: InputErrorKind, file: impl Into<String>) -> Self {
        InputError {
            kind,
            file: file.into(),
            line: None,
            column: None,
            row: None,
        }
    }

    /// An error about line `line` of `file`.
    pub fn at_line(kind: InputErrorKind, file: impl Into<String>, line: u64) -> Self {
        InputError {
            line: Some(line),
            ..InputError::new(kind, file)
        }
    }

    /// The same error, at `column` of its line.
    pub fn with_column(mut self, column: u64) -> Self {
        self.column = Some(column);
        self
    }

    /// An error about row `row` (from 1) of a Parquet file.
    pub fn at_row(kind: InputErrorKind, file: impl Into<String>, row: u64) -> Self {
        InputError {
            row: Some(row),
            ..InputError::new(kind, file)
        }
    }

    /// The stable snake_case name of the kind (see [`InputErrorKind`]).
    pub fn kind(&self) -> &'static str {
        use InputErrorKind as K;
        match &self.kind {
            K::NotFound => "not_found",
            K::Io { .. } => "io",
            K::StdinTwice => "stdin_twice",
            K::NoInputFiles => "no_input_files",
            K::UnknownFormat => "unknown_format",
            K::FileNameNotUtf8 => "file_name_not_utf8",
            K::InvalidUtf8 { .. } => "invalid_utf8",
            K::LoneSurrogate { .. } => "lone_surrogate",
            K::InvalidJson { .. } => "invalid_json",
            K::NotAnObject { .. } => "not_an_object",
            K::MissingField { .. } => "missing_field",
            K::NotAString { .. } => "not_a_string",
            K::TooDeep => "too_deep",
            K::BadConversation { .. } => "bad_conversation",
            K::Decompress { .. } => "decompress",
            K::Parquet { .. } => "parquet",
            K::MissingColumn { .. } => "missing_column",
            K::NotAStringColumn { .. } => "not_a_string_column",
            K::NullValue { .. } => "null_value",
            K::NotJsonl { .. } => "not_jsonl",
            K::Unsplittable { .. } => "unsplittable",
            K::NotAList { .. } => "not_a_list",
            K::NotAnId { .. } => "not_an_id",
            K::IdOutOfRange { .. } => "id_out_of_range",
            K::Thread { .. } => "thread",
        }
    }

    /// Where: `f:3`, `f:row 4` or `f` (empty when the error is about no input).
    pub fn location(&self) -> String {
        match (self.line, self.row) {
            (Some(line), _) => format!("{}:{line}", self.file),
            (None, Some(row)) => format!("{}:row {row}", self.file),
            (None, None) => self.file.clone(),
        }
    }
}

impl fmt::Display for InputErrorKind {
    /// What went wrong, without the location (the column of invalid JSON and invalid UTF-8
    /// excepted: [`InputError`]'s Display adds it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use InputErrorKind as K;
        match self {
            K::NotFound => f.write_str("no such file or directory"),
            K::Io { message } => f.write_str(message),
            K::StdinTwice => f.write_str("stdin given more than once"),
            K::NoInputFiles => f.write_str(
                "no input files in this directory (.jsonl, .json, .txt or .parquet, optionally \
                 .gz or .zst)",
            ),
            K::UnknownFormat => f.write_str(
                "cannot tell the kind of input from its name: name it .jsonl, .json, .txt or \
                 .parquet (optionally .gz or .zst)",
            ),
            K::FileNameNotUtf8 => f.write_str("the file name is not UTF-8"),
            K::InvalidUtf8 { byte } => write!(f, "invalid UTF-8 (byte 0x{byte:02x}"),
            K::LoneSurrogate { code } => write!(
                f,
                "lone surrogate U+{code:04X} in the text (a JSON \\u escape that is half of a pair)"
            ),
            K::InvalidJson { message } => write!(f, "invalid JSON: {message}"),
            K::BadConversation { message } => write!(f, "bad conversation: {message}"),
            K::NotAnObject { got } => write!(f, "expected a JSON object, got {got}"),
            K::MissingField { field, fields } => {
                let have = if fields.is_empty() {
                    "none".to_owned()
                } else {
                    fields.join(", ")
                };
                write!(
                    f,
                    "record has no field {} (its fields: {have})",
                    python_repr(field)
                )
            }
            K::NotAString { field, got } => {
                write!(f, "field {} is {got}, not a string", python_repr(field))
            }
            K::TooDeep => f.write_str("cannot read this JSON: it is nested too deeply"),
            K::Decompress {
                compression,
                message,
            } => write!(f, "cannot read ({}): {message}", compression.name()),
            K::Parquet { message } => write!(f, "cannot read Parquet: {message}"),
            K::MissingColumn { column, columns } => {
                let columns: Vec<String> = columns.iter().map(|c| python_repr(c)).collect();
                write!(
                    f,
                    "no column {} (its columns: {})",
                    python_repr(column),
                    columns.join(", ")
                )
            }
            K::NotAStringColumn { column, type_name } => write!(
                f,
                "column {} is {type_name}, not a string column",
                python_repr(column)
            ),
            K::NullValue { column } => write!(f, "column {} is null", python_repr(column)),
            K::NotJsonl { format } => write!(f, "expected JSONL, this is {format}"),
            K::Unsplittable { reason } => write!(f, "cannot read a part of this file: {reason}"),
            K::NotAList { field } => {
                write!(f, "field {} is not a list of token ids", python_repr(field))
            }
            K::NotAnId { found } => write!(f, "token ids must be integers, found {found}"),
            K::IdOutOfRange {
                found,
                vocab_size: Some(n),
            } => write!(
                f,
                "token id {found} is out of range: the vocabulary has {n} pieces (ids 0 to {})",
                n.saturating_sub(1)
            ),
            K::IdOutOfRange {
                found,
                vocab_size: None,
            } => write!(f, "token id {found} is out of range (more than 64 bits)"),
            K::Thread { message } => f.write_str(message),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let location = self.location();
        if !location.is_empty() {
            write!(f, "{location}: ")?;
        }
        match (&self.kind, self.column) {
            (InputErrorKind::InvalidUtf8 { .. }, Some(column)) => {
                write!(f, "{} at column {column})", self.kind)
            }
            (InputErrorKind::InvalidUtf8 { .. }, None) => write!(f, "{})", self.kind),
            (InputErrorKind::InvalidJson { .. }, Some(column)) => {
                write!(f, "{} (column {column})", self.kind)
            }
            _ => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for InputError {}

/// `s` as Python's `repr` shows a string: in single quotes (double quotes when it holds a `'`
/// and no `"`), with `\\`, `\n`, `\r`, `\t` escaped and other unprintable characters as `\xhh`,
/// `\uhhhh` or `\Uhhhhhhhh`. `s` may hold lone surrogates (WTF-8, as JSON keys may).
pub(crate) fn python_repr_wtf8(s: &[u8]) -> String {
    let units = wtf8_code_points(s);
    let quote = if units.contains(&u32::from('\'')) && !units.contains(&u32::from('"')) {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for cp in units {
        match char::from_u32(cp) {
            Some('\\') => out.push_str("\\\\"),
            Some('\n') => out.push_str("\\n"),
            Some('\r') => out.push_str("\\r"),
            Some('\t') => out.push_str("\\t"),
            Some(c) if c == quote => {
                out.push('\\');
                out.push(c);
            }
            Some(c) if is_printable(c) => out.push(c),
            _ if cp <= 0xff => out.push_str(&format!("\\x{cp:02x}")),
            _ if cp <= 0xffff => out.push_str(&format!("\\u{cp:04x}")),
            _ => out.push_str(&format!("\\U{cp:08x}")),
        }
    }
    out.push(quote);
    out
}

/// [`python_repr_wtf8`] of a string.
pub(crate) fn python_repr(s: &str) -> String {
    python_repr_wtf8(s.as_bytes())
}

/// Python's `str.isprintable` for one character. Rust's `escape_debug` leaves the same
/// characters alone (both follow Unicode: not Cc, Cf, Cs, Co, Cn, Zl, Zp, or Zs other than the
/// space), except that it also escapes a grapheme extender at the start of a string, hence the
/// leading `a`.
fn is_printable(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    let mut buf = [0u8; 8];
    let s = format!("a{}", c.encode_utf8(&mut buf));
    s.escape_debug().to_string() == s
}

/// The code points of WTF-8 bytes (UTF-8 in which a surrogate is encoded like a scalar value).
fn wtf8_code_points(s: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        let (len, init) = match b {
            0x00..=0x7f => (1, u32::from(b)),
            0xc0..=0xdf => (2, u32::from(b & 0x1f)),
            0xe0..=0xef => (3, u32::from(b & 0x0f)),
            _ => (4, u32::from(b & 0x07)),
        };
        let end = (i + len).min(s.len());
        let cp = s[i + 1..end]
            .iter()
            .fold(init, |cp, &b| (cp << 6) | u32::from(b & 0x3f));
        out.push(cp);
        i = end;
    }
    out
}
