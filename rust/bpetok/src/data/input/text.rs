//! UTF-8 text: decoding lines and whole files in either [`Utf8Errors`] mode, with the error for
//! the first invalid byte naming its line and column; and the documents of text inputs.

use std::borrow::Cow;

use super::{InputError, InputErrorKind, Utf8Errors};

pub(super) const BOM: &[u8] = b"\xef\xbb\xbf";

/// `bytes` as text, or the error for its first invalid sequence. `lineno` is `None` for a whole
/// file, whose line and column are then found from the offset.
pub(super) fn decode_text(
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

/// One line as text (borrowed when it is valid UTF-8).
pub(super) fn decode_line<'b>(
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

/// The error for the first invalid byte of `bytes` (which must hold one).
pub(super) fn utf8_error(name: &str, lineno: Option<u64>, bytes: &[u8]) -> InputError {
    let start = match std::str::from_utf8(bytes) {
        Err(err) => err.valid_up_to(),
        Ok(_) => bytes.len(),
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
    let byte = bytes.get(start).copied().unwrap_or(0);
    InputError::at_line(InputErrorKind::InvalidUtf8 { byte }, name, line).with_column(column as u64)
}

pub(super) fn count_newlines(data: &[u8]) -> u64 {
    data.iter().filter(|&&b| b == b'\n').count() as u64
}

/// The document of a whole text file: `None` when it is empty (no bytes, or a BOM alone).
pub(super) fn whole_file_document(
    name: &str,
    mut data: Vec<u8>,
    errors: Utf8Errors,
) -> Result<Option<String>, InputError> {
    if data.starts_with(BOM) {
        data.drain(..BOM.len());
    }
    if data.is_empty() {
        return Ok(None);
    }
    decode_text(name, None, data, errors).map(Some)
}

/// The document of one line of a text file read by line: the line without its `\n` or `\r\n`,
/// `None` when that is empty.
pub(super) fn text_line_document(
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
