//! A JSON reader that gives the verdicts and messages of Python's `json.loads` (CPython 3.11's C
//! scanner, `Modules/_json.c`), for the JSONL lines the fast serde_json path does not take. Its
//! quirks are Python's: `NaN`, `Infinity` and `-Infinity` are numbers; integers of any size are
//! numbers; repeated keys are allowed (the last value wins); `\ud800` escapes that are half of a
//! pair are kept (as WTF-8) for the caller to judge; a leading U+FEFF is an error. Only the
//! JSON whitespace ` \t\n\r` separates tokens.
//!
//! Error positions are byte offsets into the line; [`column`] turns one into Python's `colno`.

/// Nesting deeper than this is [`JsonError::TooDeep`]. Python stops at its recursion limit
/// (1,000 frames, about 995 levels at the top of a program): this limit is a little above it,
/// so every line Python reads is read here too.
pub const MAX_DEPTH: usize = 1000;

/// A JSON value, with its byte span in the line.
#[derive(Debug)]
pub struct Spanned {
    pub value: Json,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug)]
pub enum Json {
    Null,
    Bool,
    /// `int`: written without fraction or exponent (and not `NaN` / `Infinity`).
    Number {
        int: bool,
    },
    /// The unescaped text as WTF-8: lone surrogate escapes encoded like scalar values.
    String(Vec<u8>),
    Array(Vec<Spanned>),
    /// Keys (WTF-8) and values in the order written, repeats included.
    Object(Vec<(Vec<u8>, Spanned)>),
}

impl Json {
    /// How Python's reader names the type of a value (`_json_type` in `inputs.py`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool => "a boolean",
            Json::Number { .. } => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum JsonError {
    /// Python's `JSONDecodeError`: its `msg`, and the byte offset of its `pos`.
    Syntax { message: &'static str, pos: usize },
    /// Python's `RecursionError`.
    TooDeep,
}

/// Python's `json.loads(text)`.
pub fn parse(text: &str) -> Result<Spanned, JsonError> {
    let s = text.as_bytes();
    if text.starts_with('\u{feff}') {
        return Err(syntax("Unexpected UTF-8 BOM (decode using utf-8-sig)", 0));
    }
    let mut p = Parser { s };
    let start = p.skip_ws(0);
    let value = p.scan_once(start)?;
    let end = p.skip_ws(value.end);
    if end != s.len() {
        return Err(syntax("Extra data", end));
    }
    Ok(value)
}

/// Python's `colno` of the error at byte `pos`: characters since the last `\n` before it, from 1.
pub fn column(text: &str, pos: usize) -> u64 {
    let pos = pos.min(text.len());
    let before = &text[..pos];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    before[line_start..].chars().count() as u64 + 1
}

fn syntax(message: &'static str, pos: usize) -> JsonError {
    JsonError::Syntax { message, pos }
}

/// `StopIteration(idx)` of the scanner, which its callers turn into "Expecting value".
fn expecting_value(pos: usize) -> JsonError {
    syntax("Expecting value", pos)
}

/// An object's keys (WTF-8) and values, in the order written.
pub type Pairs = Vec<(Vec<u8>, Spanned)>;

struct Parser<'s> {
    s: &'s [u8],
}

impl Parser<'_> {
    fn skip_ws(&self, mut i: usize) -> usize {
        while i < self.s.len() && matches!(self.s[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        i
    }

    fn at(&self, i: usize) -> Option<u8> {
        self.s.get(i).copied()
    }

    /// `scan_once_unicode` at `idx`, without recursion (containers being read are on a stack of
    /// their own, so no input can overflow the thread's stack), in the order Python checks.
    fn scan_once(&mut self, mut idx: usize) -> Result<Spanned, JsonError> {
        enum Open {
            Array(usize, Vec<Spanned>),
            Object(usize, Pairs, Vec<u8>),
        }
        let mut open: Vec<Open> = Vec::new();
        'value: loop {
            let s = self.s;
            let Some(c) = self.at(idx) else {
                return Err(expecting_value(idx));
            };
            let leaf = |value, end| Spanned {
                value,
                start: idx,
                end,
            };
            let mut done = match c {
                b'"' => {
                    let (text, end) = self.scan_string(idx + 1)?;
                    leaf(Json::String(text), end)
                }
                b'{' | b'[' => {
                    if open.len() >= MAX_DEPTH {
                        return Err(JsonError::TooDeep);
                    }
                    let inner = self.skip_ws(idx + 1);
                    let close = if c == b'{' { b'}' } else { b']' };
                    if self.at(inner) == Some(close) {
                        let empty = if c == b'{' {
                            Json::Object(Vec::new())
                        } else {
                            Json::Array(Vec::new())
                        };
                        leaf(empty, inner + 1)
                    } else if c == b'{' {
                        let (key, next) = self.key(inner)?;
                        open.push(Open::Object(idx, Vec::new(), key));
                        idx = next;
                        continue 'value;
                    } else {
                        open.push(Open::Array(idx, Vec::new()));
                        idx = inner;
                        continue 'value;
                    }
                }
                b'n' if s[idx..].starts_with(b"null") => leaf(Json::Null, idx + 4),
                b't' if s[idx..].starts_with(b"true") => leaf(Json::Bool, idx + 4),
                b'f' if s[idx..].starts_with(b"false") => leaf(Json::Bool, idx + 5),
                b'N' if s[idx..].starts_with(b"NaN") => leaf(Json::Number { int: false }, idx + 3),
                b'I' if s[idx..].starts_with(b"Infinity") => {
                    leaf(Json::Number { int: false }, idx + 8)
                }
                b'-' if s[idx..].starts_with(b"-Infinity") => {
                    leaf(Json::Number { int: false }, idx + 9)
                }
                _ => {
                    let (int, end) = self.match_number(idx)?;
                    leaf(Json::Number { int }, end)
                }
            };
            // Hand the value to the container it is in, closing the containers it ends.
            loop {
                let Some(mut top) = open.pop() else {
                    return Ok(done);
                };
                let next = self.skip_ws(done.end);
                match &mut top {
                    Open::Array(_, items) => {
                        items.push(done);
                        match self.at(next) {
                            Some(b']') => {}
                            Some(b',') => {
                                open.push(top);
                                idx = self.skip_ws(next + 1);
                                continue 'value;
                            }
                            _ => return Err(syntax("Expecting ',' delimiter", next)),
                        }
                    }
                    Open::Object(_, pairs, key) => {
                        pairs.push((std::mem::take(key), done));
                        match self.at(next) {
                            Some(b'}') => {}
                            Some(b',') => {
                                let (new_key, value_at) = self.key(self.skip_ws(next + 1))?;
                                *key = new_key;
                                open.push(top);
                                idx = value_at;
                                continue 'value;
                            }
                            _ => return Err(syntax("Expecting ',' delimiter", next)),
                        }
                    }
                }
                done = match top {
                    Open::Array(start, items) => Spanned {
                        value: Json::Array(items),
                        start,
                        end: next + 1,
                    },
                    Open::Object(start, pairs, _) => Spanned {
                        value: Json::Object(pairs),
                        start,
                        end: next + 1,
                    },
                };
            }
        }
    }

    /// An object's key at `idx` and its `:`: the key and where its value starts.
    fn key(&self, idx: usize) -> Result<(Vec<u8>, usize), JsonError> {
        if self.at(idx) != Some(b'"') {
            return Err(syntax(
                "Expecting property name enclosed in double quotes",
                idx,
            ));
        }
        let (key, next) = self.scan_string(idx + 1)?;
        let colon = self.skip_ws(next);
        if self.at(colon) != Some(b':') {
            return Err(syntax("Expecting ':' delimiter", colon));
        }
        Ok((key, self.skip_ws(colon + 1)))
    }

    /// `match_number_unicode`: the number at `start` (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`).
    fn match_number(&self, start: usize) -> Result<(bool, usize), JsonError> {
        let digit = |i: usize| self.at(i).is_some_and(|b| b.is_ascii_digit());
        let mut idx = start;
        if self.at(idx) == Some(b'-') {
            idx += 1;
        }
        match self.at(idx) {
            Some(b'1'..=b'9') => {
                idx += 1;
                while digit(idx) {
                    idx += 1;
                }
            }
            Some(b'0') => idx += 1,
            _ => return Err(expecting_value(start)),
        }
        let mut int = true;
        if self.at(idx) == Some(b'.') && digit(idx + 1) {
            int = false;
            idx += 2;
            while digit(idx) {
                idx += 1;
            }
        }
        // The exponent is only read when a character follows the `e` (`idx < end_idx` in C).
        if matches!(self.at(idx), Some(b'e' | b'E')) && idx + 1 < self.s.len() {
            let e_start = idx;
            idx += 1;
            if matches!(self.at(idx), Some(b'-' | b'+')) && idx + 1 < self.s.len() {
                idx += 1;
            }
            while digit(idx) {
                idx += 1;
            }
            if self.s[idx - 1].is_ascii_digit() {
                int = false;
            } else {
                idx = e_start;
            }
        }
        Ok((int, idx))
    }

    /// `scanstring_unicode` from just after the opening quote at `end - 1`: the unescaped text
    /// (WTF-8) and the index after the closing quote.
    fn scan_string(&self, mut end: usize) -> Result<(Vec<u8>, usize), JsonError> {
        let s = self.s;
        let len = s.len();
        let begin = end - 1;
        let mut out = Vec::new();
        loop {
            let mut next = end;
            while next < len && s[next] != b'"' && s[next] != b'\\' {
                if s[next] <= 0x1f {
                    return Err(syntax("Invalid control character at", next));
                }
                next += 1;
            }
            if next >= len {
                return Err(syntax("Unterminated string starting at", begin));
            }
            out.extend_from_slice(&s[end..next]);
            if s[next] == b'"' {
                return Ok((out, next + 1));
            }
            next += 1; // past the backslash
            let Some(&c) = s.get(next) else {
                return Err(syntax("Unterminated string starting at", begin));
            };
            if c != b'u' {
                end = next + 1;
                let unescaped = match c {
                    b'"' | b'\\' | b'/' => c,
                    b'b' => b'\x08',
                    b'f' => b'\x0c',
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    _ => return Err(syntax("Invalid \\escape", end - 2)),
                };
                out.push(unescaped);
                continue;
            }
            next += 1;
            end = next + 4;
            if end >= len {
                return Err(syntax("Invalid \\uXXXX escape", next - 1));
            }
            let mut code = hex4(&s[next..end]).ok_or(syntax("Invalid \\uXXXX escape", end - 5))?;
            if (0xd800..=0xdbff).contains(&code)
                && end + 6 < len
                && s[end] == b'\\'
                && s[end + 1] == b'u'
            {
                let low =
                    hex4(&s[end + 2..end + 6]).ok_or(syntax("Invalid \\uXXXX escape", end + 1))?;
                if (0xdc00..=0xdfff).contains(&low) {
                    code = 0x10000 + (((code - 0xd800) << 10) | (low - 0xdc00));
                    end += 6;
                }
            }
            push_wtf8(&mut out, code);
        }
    }
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |code, &d| {
        let v = char::from(d).to_digit(16)?;
        Some((code << 4) | v)
    })
}

/// Appends code point `code` (a surrogate included) in UTF-8's encoding.
fn push_wtf8(out: &mut Vec<u8>, code: u32) {
    match char::from_u32(code) {
        Some(c) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        None => out.extend_from_slice(&[
            0xe0 | (code >> 12) as u8,
            0x80 | ((code >> 6) & 0x3f) as u8,
            0x80 | (code & 0x3f) as u8,
        ]),
    }
}
