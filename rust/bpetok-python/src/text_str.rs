//! The `str` of decoded text, from UTF-8 or from UTF-16, whichever CPython makes faster.
//!
//! CPython makes a `str` from UTF-8 (`PyUnicode_FromStringAndSize`) with an ASCII fast path, but
//! it reads other text one character at a time: for Japanese that was 1.7-2.3 ms per MB of
//! text, more than decoding the ids (about 1.2 ms). From UTF-16 (`PyUnicode_DecodeUTF16`, also in
//! the stable ABI) the same `str` takes about 0.6 ms per MB. So ids whose pieces are largely
//! non-ASCII (`Decoder::mostly_non_ascii`) are decoded to UTF-16 by the core
//! (`Decoder::decode_utf16_into`, the same text) and handed over as that; the rest keep UTF-8,
//! which is faster for mostly-ASCII text. Both give the same `str`: each is a lossless reading of
//! the same valid text, and the byte order is given explicitly, so a U+FEFF at the start is kept
//! as a character, not taken for a byte order mark.

use std::os::raw::{c_char, c_int};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// Ids below this many always go the UTF-8 way (too short for the choice to matter).
const UTF16_MIN_IDS: usize = 16;

/// A decoded text in the form it was decoded to.
pub enum Decoded {
    Utf8(Vec<u8>),
    Utf16(Vec<u16>),
}

impl Decoded {
    /// The text of `ids` (all in range, or the decoder's error), decoded to the form CPython
    /// makes a `str` from faster.
    pub fn of(decoder: &bpetok::Decoder, ids: &[u32]) -> bpetok::Result<Self> {
        if ids.len() >= UTF16_MIN_IDS && decoder.mostly_non_ascii(ids) {
            let mut units = Vec::new();
            decoder.decode_utf16_into(ids, &mut units)?;
            Ok(Decoded::Utf16(units))
        } else {
            let mut text = Vec::new();
            decoder.decode_into(ids, &mut text)?;
            Ok(Decoded::Utf8(text))
        }
    }

    /// The `str` of the text.
    pub fn to_str<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        match self {
            Decoded::Utf8(text) => PyString::from_bytes(py, text),
            Decoded::Utf16(units) => str_of_utf16(py, units),
        }
    }
}

/// The `str` of UTF-16 code units (an error if they are not valid UTF-16).
#[allow(unsafe_code)]
fn str_of_utf16<'py>(py: Python<'py>, units: &[u16]) -> PyResult<Bound<'py, PyString>> {
    let mut byte_order: c_int = if cfg!(target_endian = "little") {
        -1
    } else {
        1
    };
    // SAFETY: `units` is initialised memory of `2 * units.len()` bytes, read during the call
    // only; `errors` is a NUL-terminated string; `byte_order` is a live `c_int`. The GIL is held
    // (`py`). The result is a new reference to a `str`, or NULL with an exception set, which
    // `from_owned_ptr_or_err` takes over.
    unsafe {
        let s = ffi::PyUnicode_DecodeUTF16(
            units.as_ptr().cast::<c_char>(),
            (2 * units.len()) as ffi::Py_ssize_t,
            c"strict".as_ptr(),
            &mut byte_order,
        );
        Bound::from_owned_ptr_or_err(py, s).map(|s| s.cast_into_unchecked::<PyString>())
    }
}
