//! A `str`'s characters read in place, and their UTF-8 made on whichever thread encodes them.
//!
//! CPython keeps a `str` as fixed-width code points (PEP 393): one byte each (Latin-1), two
//! (UCS-2) or four (UCS-4). Its UTF-8 has to be made, and the limited API makes it only with the
//! GIL held, into new memory: for a batch of Japanese or Chinese texts on two threads, the
//! calling thread made every text's UTF-8 while the other encoded (3 MB of fresh memory per 3 MB
//! of text, on one thread), which cost more than the copy itself. So where this interpreter's
//! layout of a `str` is known, a non-ASCII text is held as its code points where CPython keeps
//! them ([`WideText`], with a reference to the `str`), and its UTF-8 is made by the thread that
//! encodes it, into a buffer that thread reuses from text to text.
//!
//! The layout: CPython's default build has laid a compact `str` out the same way from 3.10 to
//! 3.14 (the object header, the length in code points, the hash, a 32-bit `state` whose bits 2-4
//! are the width and bit 5 and 6 the compact and ASCII flags, then the code points right after
//! the struct, which is 72 bytes on 3.10 and 3.11 and 56 from 3.12), as the `PyUnicode_KIND`,
//! `PyUnicode_IS_COMPACT` and `PyUnicode_DATA` macros of the full API read it. On those versions,
//! and only after reading strings of every width made here that way and finding what they hold,
//! a `str` is read in place; on any other interpreter (and for a `str` subclass, or one that is
//! not compact) its UTF-8 is made by CPython as before.

use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::list_items::cpython_minor;

/// Where a compact non-ASCII `str`'s code points start, when this interpreter's layout is known.
static DATA_OFFSET: OnceLock<Option<usize>> = OnceLock::new();

/// Byte offset of `PyASCIIObject.length`.
const LENGTH_OFFSET: usize = 16;
/// Byte offset of `PyASCIIObject.state`.
const STATE_OFFSET: usize = 32;

/// The width of a `str`'s code points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Latin1 = 1,
    Ucs2 = 2,
    Ucs4 = 4,
}

/// What the `state` of a `str` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct State {
    kind: Option<Kind>,
    compact: bool,
    ascii: bool,
}

/// A non-ASCII `str` without surrogates, held as CPython keeps its characters.
pub struct WideText {
    /// Keeps the characters alive (and unchanged: a `str` is immutable) while this is.
    _owner: Py<PyString>,
    data: *const u8,
    /// Code points.
    len: usize,
    kind: Kind,
}

// SAFETY: `data` points into the `str` that `_owner` holds a reference to, so it stays valid as
// long as this value; a `str`'s characters never change once made, so reading them from any
// thread, without the GIL, reads the same bytes. Nothing here writes through the pointer.
// (`Py<PyString>` itself is `Send + Sync`.)
#[allow(unsafe_code)]
unsafe impl Send for WideText {}
#[allow(unsafe_code)]
unsafe impl Sync for WideText {}

impl WideText {
    /// `s` held in place, if this interpreter's layout is known and `s` is an exact `str`,
    /// compact, not ASCII (an ASCII `str`'s characters are its UTF-8 already: CPython hands
    /// those over without a copy) and without a surrogate (which has no UTF-8: the caller makes
    /// CPython raise its `UnicodeEncodeError`).
    #[allow(unsafe_code)]
    pub fn of(s: &Bound<'_, PyString>) -> Option<Self> {
        let offset = data_offset(s.py())?;
        // SAFETY: the layout check passed, so this interpreter's `str` objects have the fields
        // `read` reads; an exact `str` is not a subclass with another layout.
        let (state, len) = unsafe {
            if ffi::Py_TYPE(s.as_ptr()) != std::ptr::addr_of_mut!(ffi::PyUnicode_Type) {
                return None;
            }
            read(s.as_ptr())
        };
        if !state.compact || state.ascii {
            return None;
        }
        let kind = state.kind?;
        // SAFETY: a compact `str` keeps its `len` code points of `kind` bytes (and a NUL) right
        // after the struct, at `offset` on this interpreter; `s` is alive for the borrow.
        let data = unsafe { s.as_ptr().cast::<u8>().add(offset) };
        let text = Self {
            _owner: s.clone().unbind(),
            data,
            len,
            kind,
        };
        (!text.has_surrogate()).then_some(text)
    }

    /// Its length in code points.
    pub fn chars(&self) -> usize {
        self.len
    }

    /// The code points, as slices of their width.
    #[allow(unsafe_code)]
    fn units(&self) -> Units<'_> {
        // SAFETY: `data` holds `len` code points of `kind` bytes, aligned to their width (the
        // data of a compact `str` follows a struct of pointer-sized fields), alive and
        // unchanged while `self` is (see the `Send` impl).
        unsafe {
            match self.kind {
                Kind::Latin1 => Units::Latin1(std::slice::from_raw_parts(self.data, self.len)),
                Kind::Ucs2 => Units::Ucs2(std::slice::from_raw_parts(
                    self.data.cast::<u16>(),
                    self.len,
                )),
                Kind::Ucs4 => Units::Ucs4(std::slice::from_raw_parts(
                    self.data.cast::<u32>(),
                    self.len,
                )),
            }
        }
    }

    /// Whether any code point is a surrogate (U+D800 to U+DFFF) or beyond U+10FFFF (which CPython
    /// never makes). A scan without an early exit per character, so that it is vectorised: a
    /// few hundredths of a millisecond per MB of text, on the thread that holds the GIL.
    fn has_surrogate(&self) -> bool {
        const CHUNK: usize = 256;
        match self.units() {
            Units::Latin1(_) => false,
            Units::Ucs2(units) => units.chunks(CHUNK).any(|chunk| {
                chunk
                    .iter()
                    .fold(false, |bad, &u| bad | (u & 0xF800 == 0xD800))
            }),
            Units::Ucs4(units) => units.chunks(CHUNK).any(|chunk| {
                chunk.iter().fold(false, |bad, &c| {
                    bad | (c & !0x7FF == 0xD800) | (c > 0x10_FFFF)
                })
            }),
        }
    }

    /// Appends the text's UTF-8 to `out` (replacing what it held).
    pub fn utf8_into<'a>(&self, out: &'a mut String) -> &'a str {
        out.clear();
        match self.units() {
            Units::Latin1(units) => push_utf8(units, 2, out),
            Units::Ucs2(units) => push_utf8(units, 3, out),
            Units::Ucs4(units) => push_utf8(units, 4, out),
        }
        out.as_str()
    }
}

enum Units<'a> {
    Latin1(&'a [u8]),
    Ucs2(&'a [u16]),
    Ucs4(&'a [u32]),
}

/// Appends the UTF-8 of `units` (code points of at most `max_bytes` bytes of UTF-8 each, none a
/// surrogate nor beyond U+10FFFF) to `out`.
///
/// A branch per code point, which the predictor mostly gets right: about 1 ns per code point on
/// Japanese and Chinese text. (Computing every form and choosing by conditional moves, with
/// runs of ASCII written four or eight at a time, was 1.4 ns: the store of each code point then
/// waits for the length of the one before it. `encoding_rs` was 1.4 ns too.)
#[allow(unsafe_code)]
fn push_utf8<U: Copy + Into<u32>>(units: &[U], max_bytes: usize, out: &mut String) {
    let start = out.len();
    out.reserve(units.len() * max_bytes);
    // SAFETY: `reserve` made room for `units.len() * max_bytes` bytes after `start`, and each
    // code point below writes its UTF-8 at `p` and moves `p` on by its length, at most
    // `max_bytes` (code points below U+0100, the only ones of Latin-1, take at most 2; those
    // below U+10000, UCS-2's, at most 3), so every write is within the spare capacity. Every
    // code point is a Unicode scalar value (no surrogates, none beyond U+10FFFF: checked by
    // `WideText::of`) written as its UTF-8 sequence, so the `len` set at the end covers
    // initialised, valid UTF-8 only.
    unsafe {
        let vec = out.as_mut_vec();
        let base = vec.as_mut_ptr().add(start);
        let mut p = base;
        for &unit in units {
            let c: u32 = unit.into();
            if c < 0x80 {
                *p = c as u8;
                p = p.add(1);
            } else if c < 0x800 {
                *p = 0xC0 | (c >> 6) as u8;
                *p.add(1) = 0x80 | (c & 0x3F) as u8;
                p = p.add(2);
            } else if c < 0x1_0000 {
                *p = 0xE0 | (c >> 12) as u8;
                *p.add(1) = 0x80 | ((c >> 6) & 0x3F) as u8;
                *p.add(2) = 0x80 | (c & 0x3F) as u8;
                p = p.add(3);
            } else {
                *p = 0xF0 | (c >> 18) as u8;
                *p.add(1) = 0x80 | ((c >> 12) & 0x3F) as u8;
                *p.add(2) = 0x80 | ((c >> 6) & 0x3F) as u8;
                *p.add(3) = 0x80 | (c & 0x3F) as u8;
                p = p.add(4);
            }
        }
        let written = p.offset_from(base) as usize;
        vec.set_len(start + written);
    }
}

/// Whether `s` is all ASCII, from its `state` where the layout is known (`None` elsewhere).
#[allow(unsafe_code)]
pub fn is_ascii(s: &Bound<'_, PyString>) -> Option<bool> {
    data_offset(s.py())?;
    // SAFETY: as in `WideText::of`; a `str` subclass has the same `PyASCIIObject` head, whose
    // `state` says whether its characters are ASCII.
    let (state, _) = unsafe { read(s.as_ptr()) };
    Some(state.ascii)
}

/// The `state` and length of a `str` object.
///
/// # Safety
/// `s` is a live `str` (or subclass) of an interpreter whose layout `data_offset` found known.
#[allow(unsafe_code)]
unsafe fn read(s: *mut ffi::PyObject) -> (State, usize) {
    let base = s.cast::<u8>();
    let len = base
        .add(LENGTH_OFFSET)
        .cast::<ffi::Py_ssize_t>()
        .read()
        .max(0) as usize;
    let bits = base.add(STATE_OFFSET).cast::<u32>().read();
    let kind = match (bits >> 2) & 7 {
        1 => Some(Kind::Latin1),
        2 => Some(Kind::Ucs2),
        4 => Some(Kind::Ucs4),
        _ => None,
    };
    let state = State {
        kind,
        compact: bits & (1 << 5) != 0,
        ascii: bits & (1 << 6) != 0,
    };
    (state, len)
}

fn data_offset(py: Python<'_>) -> Option<usize> {
    *DATA_OFFSET.get_or_init(|| layout_offset(py).ok().flatten())
}

/// The offset of a compact non-ASCII `str`'s data on this interpreter, if it is CPython 3.10 to
/// 3.14 without `Py_TRACE_REFS` (which adds two pointers to every object's header) and strings
/// of each width made here read in place as they should: their width, flags, length and every
/// code point.
#[allow(unsafe_code)]
fn layout_offset(py: Python<'_>) -> PyResult<Option<usize>> {
    let Some(minor) = cpython_minor(py)?.filter(|minor| (10..=14).contains(minor)) else {
        return Ok(None);
    };
    // `sizeof(PyCompactUnicodeObject)` and `sizeof(PyASCIIObject)` (3.12 dropped the `wstr`
    // fields).
    let (offset, ascii_offset) = if minor <= 11 { (72, 48) } else { (56, 40) };
    let samples: [(&str, State); 4] = [
        ("plain ASCII text", state(Kind::Latin1, true)),
        ("caf\u{e9} cr\u{e8}me \u{ff}", state(Kind::Latin1, false)),
        (
            "\u{65e5}\u{672c}\u{8a9e} text \u{ffff}\u{100}",
            state(Kind::Ucs2, false),
        ),
        (
            "emoji \u{1f600} \u{10ffff} \u{e9}",
            state(Kind::Ucs4, false),
        ),
    ];
    for (text, expected) in samples {
        let s = PyString::new(py, text);
        let chars: Vec<u32> = text.chars().map(u32::from).collect();
        // SAFETY: a `str` object of CPython 3.10 to 3.14 is at least `PyASCIIObject`, whose
        // `length` and `state` are at these offsets in the builds checked above; the code points
        // are read only once its state says it is compact and of the width expected, and its
        // length is the text's, so the bytes read are the `str`'s own data.
        let found = unsafe {
            let (found, len) = read(s.as_ptr());
            if found != expected || len != chars.len() {
                return Ok(None);
            }
            let at = if found.ascii { ascii_offset } else { offset };
            let data = s.as_ptr().cast::<u8>().add(at);
            (0..len)
                .map(|i| match found.kind {
                    Some(Kind::Latin1) => u32::from(*data.add(i)),
                    Some(Kind::Ucs2) => u32::from(*data.cast::<u16>().add(i)),
                    _ => *data.cast::<u32>().add(i),
                })
                .collect::<Vec<u32>>()
        };
        if found != chars {
            return Ok(None);
        }
    }
    Ok(Some(offset))
}

fn state(kind: Kind, ascii: bool) -> State {
    State {
        kind: Some(kind),
        compact: true,
        ascii,
    }
}
