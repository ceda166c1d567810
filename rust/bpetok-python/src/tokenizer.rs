//! `Tokenizer`: the native tokenizer class, adapting `bpetok::Tokenizer` (argument conversion,
//! the GIL released around real work).

use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyByteArray, PyBytes, PyInt, PyList, PyListMethods, PyString, PyTupleMethods};

use crate::collector;
use crate::errors::model_err as to_py_err;
use crate::int_ids::IntIds;
use crate::list_items;
use crate::str_data::{self, WideText};
use crate::text_str::Decoded;
use bpetok::{Text, PARALLEL_MIN_BYTES};

const RELEASE_GIL_BYTES: usize = 2048;
/// Ids decoded with the GIL held; longer lists release it (about 2 µs of work).
const RELEASE_GIL_IDS: usize = 1024;
/// Ids `decode_batch` decodes at a time (on its threads) before making their `str`s.
const DECODE_CHUNK_IDS: usize = 64 * 1024;

/// Texts of at least this many characters are read through CPython's UTF-8 cache (see
/// [`TextArg`]): at least [`PARALLEL_MIN_BYTES`] of UTF-8, long enough to be cut and encoded on
/// several threads, where a serial copy of the whole would be the part that does not scale.
const CACHED_UTF8_CHARS: usize = PARALLEL_MIN_BYTES;

/// The UTF-8 bytes of a `str`, or a `bytes` (whose invalid UTF-8 is read as U+FFFD per bad
/// byte), as held for encoding.
///
/// - A non-ASCII `str` shorter than [`CACHED_UTF8_CHARS`] characters is read in place where this
///   interpreter's layout of a `str` is known ([`WideText`]): its UTF-8 is made by the thread
///   that encodes it, into a buffer that thread reuses ([`TextArg::utf8`]), not by the thread
///   that holds the GIL into new memory for every text.
/// - An ASCII `str` is read in place through `PyUnicode_AsUTF8AndSize`, which makes no copy of
///   one (its characters are its UTF-8).
/// - Any other `str` shorter than [`CACHED_UTF8_CHARS`] (on an interpreter whose layout is not
///   known) is encoded into a temporary `bytes` rather than through CPython's UTF-8 cache, which
///   would keep a UTF-8 copy of every non-ASCII text alive as long as the caller keeps the text:
///   for a corpus held in memory, that doubled it.
/// - A longer one is read through the cache: the copy is made once per `str`, not on every call,
///   where it was 0.25 s of serial work per 200 MB on one thread, while the encoding itself is
///   spread over threads (a text that long is cut and encoded on every thread).
pub enum TextArg {
    Copied(PyBackedBytes),
    Cached(pyo3::pybacked::PyBackedStr),
    InPlace(WideText),
}

impl<'py> FromPyObject<'_, 'py> for TextArg {
    type Error = PyErr;

    fn extract(ob: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(s) = ob.cast::<PyString>() {
            // (A str subclass's own `__len__` that fails only means the copy.)
            let chars = s.len().unwrap_or(0);
            if chars < CACHED_UTF8_CHARS {
                if let Some(text) = WideText::of(&s) {
                    return Ok(TextArg::InPlace(text));
                }
            }
            // A str with a lone surrogate has no UTF-8 form: its UnicodeEncodeError goes up as is.
            if chars >= CACHED_UTF8_CHARS || is_ascii(&s) {
                return Ok(TextArg::Cached(s.to_owned().try_into()?));
            }
            return Ok(TextArg::Copied(PyBackedBytes::from(s.encode_utf8()?)));
        }
        if let Ok(b) = ob.cast::<PyBytes>() {
            return Ok(TextArg::Copied(PyBackedBytes::from(b.to_owned())));
        }
        Err(PyTypeError::new_err(format!(
            "expected str or bytes, got {}",
            ob.get_type().name()?
        )))
    }
}

/// Whether `s` is all ASCII (from its state where the layout is known, else `str.isascii`, which
/// CPython answers from the same flag).
fn is_ascii(s: &Bound<'_, PyString>) -> bool {
    str_data::is_ascii(s).unwrap_or_else(|| {
        s.call_method0(pyo3::intern!(s.py(), "isascii"))
            .and_then(|r| r.is_truthy())
            .unwrap_or(false)
    })
}

/// Texts' UTF-8 kept by a thread for the single-text calls of this thread (see [`with_utf8`]).
const MAX_KEPT_UTF8: usize = 1 << 20;

thread_local! {
    static UTF8: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl TextArg {
    /// The text as the encoder takes it: a `str`'s UTF-8 (nothing to check: checking 3 MB of
    /// Chinese was 12 % of encoding it on one thread) or a `bytes`' (checked). A text read in
    /// place has its UTF-8 made in `scratch` (what it held is replaced).
    fn utf8<'a>(&'a self, scratch: &'a mut String) -> Text<'a> {
        match self {
            TextArg::InPlace(text) => Text::Str(text.utf8_into(scratch)),
            TextArg::Copied(bytes) => Text::Bytes(bytes),
            TextArg::Cached(text) => Text::Str(text),
        }
    }

    /// The text's UTF-8, borrowed or made, for the core's calls that take every text at once.
    fn utf8_owned(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            TextArg::InPlace(text) => {
                let mut utf8 = String::new();
                text.utf8_into(&mut utf8);
                std::borrow::Cow::Owned(utf8.into_bytes())
            }
            TextArg::Copied(bytes) => std::borrow::Cow::Borrowed(bytes),
            TextArg::Cached(text) => std::borrow::Cow::Borrowed(text.as_bytes()),
        }
    }

    /// Its length in bytes of UTF-8, or for a text read in place in characters (a lower bound).
    fn len_hint(&self) -> usize {
        match self {
            TextArg::Copied(bytes) => bytes.len(),
            TextArg::Cached(text) => text.len(),
            TextArg::InPlace(text) => text.chars(),
        }
    }

    /// `f(utf8)` of this text, made where needed in this thread's buffer (kept for the next
    /// call unless it grew past [`MAX_KEPT_UTF8`]).
    fn with_utf8<R>(&self, f: impl FnOnce(Text<'_>) -> R) -> R {
        if !matches!(self, TextArg::InPlace(_)) {
            return f(self.utf8(&mut String::new()));
        }
        UTF8.with(|cell| match cell.try_borrow_mut() {
            Ok(mut kept) => {
                let out = f(self.utf8(&mut kept));
                if kept.capacity() > MAX_KEPT_UTF8 {
                    *kept = String::new();
                }
                out
            }
            // Not reached (nothing in `f` comes back here), but a fresh buffer would do.
            Err(_) => f(self.utf8(&mut String::new())),
        })
    }
}

fn check_id(tok: &bpetok::Tokenizer, id: i64) -> PyResult<u32> {
    match u32::try_from(id) {
        Ok(id) if (id as usize) < tok.vocab_size() => Ok(id),
        _ => Err(to_py_err(bpetok::Error::IdOutOfRange {
            id,
            vocab_size: tok.vocab_size(),
        })),
    }
}

/// The ids of a Python list of ints, checked against the vocabulary: an id out of range is an
/// `IndexError` naming it, an int beyond 64 bits an `OverflowError` (the wrapper names it), anything
/// else that is not an int (or has no `__index__`) a `TypeError`.
///
/// Reading the list is most of what decoding it costs. A list of plain ints in range (what
/// `encode` returns) is read by [`ids_of_exact_ints`]: the items `encode` made (the tokenizer's
/// cached ints, told by their address) without a C call where the list's items can be read in
/// place ([`list_items`], CPython 3.8 to 3.14), with one otherwise, and three for other ints. Any
/// other list is copied to a tuple (one C loop) and read through borrowed references, with
/// `__index__` and the errors of pyo3's conversion: with the stable ABI every item of a list
/// costs a call for the item, one for its reference count and one to give it back, where a
/// tuple's borrowed item is one call. Per id on the en corpus: 7.5 ns through the tuple, 4 to 5
/// ns the direct way before the cached ints were told by their address.
fn ids_of_list(
    tok: &bpetok::Tokenizer,
    cached: Option<&IntIds>,
    list: &Bound<'_, PyList>,
) -> PyResult<Vec<u32>> {
    if let Some(ids) = ids_of_exact_ints(tok, cached, list) {
        return Ok(ids);
    }
    let items = list.to_tuple();
    let mut ids = Vec::with_capacity(items.len());
    for item in items.iter_borrowed() {
        ids.push(check_id(tok, item.extract::<i64>()?)?);
    }
    Ok(ids)
}

/// The ids of a list whose items are all exact `int`s in the vocabulary's range, read through
/// borrowed references without a reference count change; `None` at the first item that is
/// anything else (the caller then reads the list the general way, which gives the error or the
/// `__index__` conversion). An item that is one of the tokenizer's cached ints (`cached`, by its
/// address) is its id without a call or a read of the object; any other is checked to be an
/// exact `int` and read with `PyLong_AsLongAndOverflow`.
#[allow(unsafe_code)]
fn ids_of_exact_ints(
    tok: &bpetok::Tokenizer,
    cached: Option<&IntIds>,
    list: &Bound<'_, PyList>,
) -> Option<Vec<u32>> {
    use pyo3::ffi;
    let vocab_size = tok.vocab_size() as std::os::raw::c_long;
    let n = list.len();
    let mut ids = Vec::with_capacity(n);
    let ptr = list.as_ptr();
    // SAFETY: `list` is a live list and the GIL is held (`Bound`), so no other thread runs
    // Python code meanwhile. Each `i` is below the list's length `n` (the length of the item
    // array `item_array` gives, when it gives one), and the list cannot change
    // during the loop: nothing in it runs Python code, allocates or releases the GIL (an exact
    // `int` has no `__index__` to call; `PyLong_AsLongAndOverflow` of one only reads it; the
    // look-up of a cached int compares addresses). So every item pointer is a live object
    // borrowed from the list for the whole loop, and reading its type through `Py_TYPE` is
    // reading a field every object has.
    unsafe {
        let int_type = std::ptr::addr_of_mut!(ffi::PyLong_Type);
        let items = list_items::item_array(list);
        for i in 0..n {
            let item = match items {
                Some(items) => *items.add(i),
                None => ffi::PyList_GetItem(ptr, i as ffi::Py_ssize_t),
            };
            if let Some(id) = cached.and_then(|c| c.id_at(item as usize)) {
                ids.push(id);
                continue;
            }
            if item.is_null() || ffi::Py_TYPE(item) != int_type {
                return None;
            }
            let mut overflow = 0;
            let id = ffi::PyLong_AsLongAndOverflow(item, &mut overflow);
            if overflow != 0 || !(0..vocab_size).contains(&id) {
                return None;
            }
            ids.push(id as u32);
        }
    }
    Some(ids)
}

/// The ids of a buffer of little-endian integers of `itemsize` bytes (2 and 4: unsigned, 8:
/// signed; what the wrapper makes of a numpy array), checked as [`ids_of_list`] does. Plain
/// loops the compiler vectorizes, and the check on the maximum first (a `Result` collected id by
/// id took as long as decoding).
fn ids_of_bytes(tok: &bpetok::Tokenizer, data: &[u8], itemsize: usize) -> PyResult<Vec<u32>> {
    let vocab_size = tok.vocab_size();
    if itemsize == 8 {
        let values: Vec<i64> = data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect();
        let in_range = values.iter().all(|&id| (id as u64) < vocab_size as u64);
        if !in_range {
            return Err(out_of_range(tok, values.iter().copied()));
        }
        return Ok(values.iter().map(|&id| id as u32).collect());
    }
    let ids: Vec<u32> = match itemsize {
        2 => data
            .chunks_exact(2)
            .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        4 => data
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        _ => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "ids of {itemsize} bytes are not supported"
            )))
        }
    };
    if ids
        .iter()
        .max()
        .is_some_and(|&max| max as usize >= vocab_size)
    {
        return Err(out_of_range(tok, ids.iter().map(|&id| i64::from(id))));
    }
    Ok(ids)
}

/// The `IndexError` naming the first of `ids` outside the vocabulary (there is one).
fn out_of_range(tok: &bpetok::Tokenizer, mut ids: impl Iterator<Item = i64>) -> PyErr {
    let vocab_size = tok.vocab_size();
    let id = ids
        .find(|id| !(0..vocab_size as i64).contains(id))
        .unwrap_or(vocab_size as i64);
    to_py_err(bpetok::Error::IdOutOfRange { id, vocab_size })
}

fn optional_id(id: Option<u32>) -> i64 {
    id.map_or(-1, i64::from)
}

/// The chunks `decode_batch` reads and decodes at a time: consecutive lists of about
/// [`DECODE_CHUNK_IDS`] ids together (at least one list each).
fn chunk_bounds(batch: &[Bound<'_, PyList>]) -> Vec<std::ops::Range<usize>> {
    let mut chunks = Vec::new();
    let (mut start, mut ids) = (0, 0);
    for (i, list) in batch.iter().enumerate() {
        ids += list.len();
        if ids >= DECODE_CHUNK_IDS {
            chunks.push(start..i + 1);
            (start, ids) = (i + 1, 0);
        }
    }
    if start < batch.len() {
        chunks.push(start..batch.len());
    }
    chunks
}

/// Appends a `str` made from each decoded text.
fn push_strs<'py>(
    py: Python<'py>,
    texts: &[Decoded],
    strs: &mut Vec<Bound<'py, PyString>>,
) -> PyResult<()> {
    for text in texts {
        strs.push(text.to_str(py)?);
    }
    Ok(())
}

/// How a batch's list is encoded with its reading overlapped (see [`TextsRead`]): on `threads`
/// threads (0: read first, then encoded), the texts' `sizes` in characters (or bytes) for the
/// order the threads take them in ([`bpetok::Claims::by_size`]).
struct Overlap {
    threads: usize,
    sizes: Vec<usize>,
}

/// The texts of a batch's list, read to UTF-8 by the calling thread (which holds the GIL) one
/// after another while other threads already encode those read: the copy of the texts then
/// overlaps their encoding instead of coming before it (for Japanese or Chinese it was a fifth of
/// a 2-thread batch, all of it on one thread).
struct TextsRead {
    texts: Vec<std::sync::OnceLock<TextArg>>,
    failed: AtomicBool,
    /// Which text an encoder takes next (see [`Self::take`]).
    claims: bpetok::Claims,
}

impl TextsRead {
    /// `n` texts of these sizes for `workers` encoders (see [`bpetok::Claims::by_size`]). If
    /// the list no longer has as many texts as sizes (a `__len__` of a `str` subclass can change
    /// it), all `n` are taken in index order.
    fn new(n: usize, sizes: &[usize], workers: usize) -> Self {
        Self {
            texts: (0..n).map(|_| std::sync::OnceLock::new()).collect(),
            failed: AtomicBool::new(false),
            claims: if sizes.len() == n {
                bpetok::Claims::by_size(sizes, workers)
            } else {
                bpetok::Claims::new(n, workers)
            },
        }
    }

    /// The region of the reading thread, which encodes only once every text is read: the last
    /// (the others' encoders start on theirs at once).
    fn reader_home(&self) -> usize {
        self.claims.workers() - 1
    }

    /// The next text no encoder has taken for the encoder of region `home` (see
    /// [`bpetok::Claims`]), with its index, once it is read; `None` when every text is taken or
    /// reading stopped before this one.
    fn take(&self, home: usize) -> Option<(usize, &TextArg)> {
        let i = self.claims.next(home)?;
        self.wait(i).map(|text| (i, text))
    }

    /// Reads every item of `list`, each made visible to [`Self::wait`] at once, in the order the
    /// encoders take them ([`bpetok::Claims::ready_order`]). Stops at an item that is not a text
    /// with a UTF-8 form; the error is that of the first such item in the list (the items before
    /// it not read yet are read then), after which `wait` gives `None` for the texts not read.
    fn read_all(&self, list: &Bound<'_, PyList>) -> PyResult<()> {
        let read = |i: usize| read_text(list, i);
        for i in self.claims.ready_order() {
            match read(i) {
                Ok(text) => {
                    let _ = self.texts[i].set(text);
                }
                Err(err) => {
                    self.failed.store(true, Ordering::Release);
                    let earlier = (0..i)
                        .filter(|&j| self.texts[j].get().is_none())
                        .find_map(|j| read(j).err());
                    return Err(earlier.unwrap_or(err));
                }
            }
        }
        Ok(())
    }

    /// Text `i` once it is read (waiting for it), or `None` if reading stopped before it.
    fn wait(&self, i: usize) -> Option<&TextArg> {
        let mut spins = 0u32;
        loop {
            if let Some(text) = self.texts[i].get() {
                return Some(text);
            }
            if self.failed.load(Ordering::Acquire) {
                return None;
            }
            // The reader is far quicker than an encoder, so a wait is short and rare.
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Starts the threads of a batch of `encoders.len() + 1` threads (the calling one is the last):
/// thread `k` runs `make_work(k)` with encoder `k` (see `bpetok::Tokenizer::encoders`), after
/// leaving the caller's CPU (see `bpetok::CallerCpu`). `make_work` runs on the calling thread, once
/// per thread started, so it can hand each thread what is its own.
fn start_workers<'scope, 'env, 'tok, W>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    encoders: Vec<bpetok::Encoder<'tok>>,
    mut make_work: impl FnMut(usize) -> W,
) -> Vec<std::thread::ScopedJoinHandle<'scope, bpetok::Encoder<'tok>>>
where
    'tok: 'scope,
    W: FnOnce(bpetok::Encoder<'tok>) -> bpetok::Encoder<'tok> + Send + 'scope,
{
    let caller = bpetok::CallerCpu::here();
    let threads = encoders.len() + 1;
    encoders
        .into_iter()
        .enumerate()
        .map(|(home, encoder)| {
            let work = make_work(home);
            caller.spawn(scope, threads, move || work(encoder))
        })
        .collect()
}

/// Waits for the threads [`start_workers`] started (a panic in one is raised here) and drops their
/// encoders, then `mine`, in index order, so that the next batch's thread `k` gets back the
/// scratch space (and segment cache) thread `k` had (see `bpetok::Tokenizer::encoders`).
fn join_workers<'tok>(
    workers: Vec<std::thread::ScopedJoinHandle<'_, bpetok::Encoder<'tok>>>,
    mine: bpetok::Encoder<'tok>,
) {
    for worker in workers {
        match worker.join() {
            Ok(encoder) => drop(encoder),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    drop(mine);
}

/// The texts of a list, read at once (for the calls that do not overlap reading with encoding).
fn read_texts(list: &Bound<'_, PyList>) -> PyResult<Vec<TextArg>> {
    (0..list.len()).map(|i| read_text(list, i)).collect()
}

/// Item `i` of a batch's list as a text; a `TypeError` that names the item if it is neither
/// `str` nor `bytes` (the batch calls check their items here, not in Python first: a Python loop
/// over the list in front of the threads was a seventh of a two-thread batch of 60,000 lines).
fn read_text(list: &Bound<'_, PyList>, i: usize) -> PyResult<TextArg> {
    let item = list.get_item(i)?;
    // `TextArg`'s own check, with the item's place in the list added to its TypeError.
    item.extract::<TextArg>().map_err(|err| {
        if !err.is_instance_of::<PyTypeError>(list.py()) {
            return err;
        }
        match item.get_type().name() {
            Ok(name) => {
                PyTypeError::new_err(format!("texts[{i}] is {name}, expected str or bytes"))
            }
            Err(err) => err,
        }
    })
}

/// Whether a batch read at once goes to the core's batch call, which gives each text every
/// thread and cuts a long one (there are fewer texts than threads), rather than being encoded
/// on this thread one text after another ([`PyTokenizer::serial`]).
fn fewer_texts_than_threads(texts: &[TextArg], num_threads: usize) -> bool {
    num_threads > 1 && texts.len() < num_threads
}

/// Every text's UTF-8, for the core's calls that take them all at once.
fn utf8_all(texts: &[TextArg]) -> Vec<std::borrow::Cow<'_, [u8]>> {
    texts.iter().map(TextArg::utf8_owned).collect()
}

/// `f(utf8)` of one text, without the GIL when it is long enough for that to be worth it.
fn on_text<R: Send>(py: Python<'_>, text: &TextArg, f: impl FnOnce(Text<'_>) -> R + Send) -> R {
    if text.len_hint() < RELEASE_GIL_BYTES {
        text.with_utf8(f)
    } else {
        py.detach(|| text.with_utf8(f))
    }
}

/// Output buffers smaller than this are filled by the calling thread alone. The output is
/// memory CPython has just allocated, so in a new process filling it is mostly page faults (about
/// 2 µs per 4 KiB page on the 2-CPU machine this was measured on), not copying: the 2.5 MB of ids
/// of a batch of 3 MB of Chinese or Japanese took 1.5-2.0 ms to fill on one thread after 10-15 ms
/// of encoding on two, and 1.0-1.2 ms on two threads. Where the memory is not new (in a process
/// that has made many such outputs, whose allocator keeps the memory), 1 MiB is copied in about
/// 25 µs and a second thread costs about 60 µs to start and join: from 1 MiB on, the loss there
/// is at most some 50 µs, the gain in a new process ten times that.
const MIN_PARALLEL_PACK_BYTES: usize = 1 << 20;

/// Writes `parts`, one after another, into `out` (exactly their ids' size) as little-endian ids
/// of `itemsize` bytes (2 or 4: the tokenizer's [`bpetok::Tokenizer::id_bytes`]), on up to
/// `num_threads` threads taking parts in turn (see [`fill_parts`]). Every byte of `out` is
/// written.
fn pack_parts(parts: &[&[u32]], itemsize: usize, out: &mut [MaybeUninit<u8>], num_threads: usize) {
    fill_parts(
        parts,
        |ids| ids.len() * itemsize,
        |ids, out| pack_ids(ids, itemsize, out),
        out,
        num_threads,
    );
}

/// `ids` as little-endian ids of `itemsize` bytes (2 or 4) into `out`, exactly their size.
fn pack_ids(ids: &[u32], itemsize: usize, out: &mut [MaybeUninit<u8>]) {
    if itemsize == 2 {
        for (dst, &id) in out.chunks_exact_mut(2).zip(ids) {
            put(dst, &(id as u16).to_le_bytes());
        }
    } else {
        for (dst, &id) in out.chunks_exact_mut(4).zip(ids) {
            put(dst, &id.to_le_bytes());
        }
    }
}

/// The `len + 1` little-endian int64 offsets of texts of `lengths` ids each, one after another
/// (0 first), and the number of ids in all.
fn offsets_of(lengths: impl ExactSizeIterator<Item = usize>) -> (Vec<u8>, usize) {
    let mut offsets = Vec::with_capacity((lengths.len() + 1) * 8);
    let mut end = 0usize;
    offsets.extend_from_slice(&0i64.to_le_bytes());
    for len in lengths {
        end += len;
        offsets.extend_from_slice(&(end as i64).to_le_bytes());
    }
    (offsets, end)
}

/// Writes `bytes` at the start of `dst` (a copy: the compiler makes the loop a `memcpy`).
fn put(dst: &mut [MaybeUninit<u8>], bytes: &[u8]) {
    for (d, &b) in dst.iter_mut().zip(bytes) {
        d.write(b);
    }
}

/// `ids` packed as [`pack_ids`] does, into a new vector of exactly their size.
fn packed(ids: &[u32], itemsize: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * itemsize);
    if itemsize == 2 {
        out.extend(ids.iter().flat_map(|&id| (id as u16).to_le_bytes()));
    } else {
        out.extend(ids.iter().flat_map(|&id| id.to_le_bytes()));
    }
    out
}

/// A thread filling an output takes consecutive parts of at least this many bytes in all at a
/// time (see [`fill_parts`]).
const PACK_CHUNK_BYTES: usize = 128 * 1024;

/// Writes `parts`, one after another, into `out` (exactly the sum of their `size`s), each by
/// `write(part, its slice of out)`, on up to `num_threads` threads (one below
/// `MIN_PARALLEL_PACK_BYTES`), so that the pages of a large output are first touched, and filled,
/// in parallel. The threads take runs of consecutive parts of `PACK_CHUNK_BYTES` or more in turn:
/// taken one part at a time, the many small parts of a batch of lines (80,000 lines, 2 MiB of
/// ids) cost a lock each, and the two threads' fill was slower than one thread's.
fn fill_parts<P: Sync>(
    parts: &[P],
    size: impl Fn(&P) -> usize,
    write: impl Fn(&P, &mut [MaybeUninit<u8>]) + Sync,
    out: &mut [MaybeUninit<u8>],
    num_threads: usize,
) {
    // At most a thread per half of `MIN_PARALLEL_PACK_BYTES`: each one started has at least
    // 512 KiB (128 pages) to fill, several times what starting it costs, however many threads
    // the caller allows.
    let threads = if out.len() < MIN_PARALLEL_PACK_BYTES {
        1
    } else {
        num_threads
            .min(parts.len())
            .min(out.len() / (MIN_PARALLEL_PACK_BYTES / 2))
    };
    if threads <= 1 {
        let mut rest = out;
        for part in parts {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(size(part));
            write(part, head);
            rest = tail;
        }
        return;
    }
    // Runs of consecutive parts, each with its slice of `out`.
    let mut chunks = Vec::new();
    let (mut chunk, mut chunk_bytes) = (Vec::new(), 0);
    let mut rest = out;
    for part in parts {
        let n = size(part);
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(n);
        chunk.push((part, head));
        chunk_bytes += n;
        rest = tail;
        if chunk_bytes >= PACK_CHUNK_BYTES {
            chunks.push(std::mem::take(&mut chunk));
            chunk_bytes = 0;
        }
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    let queue = std::sync::Mutex::new(chunks.into_iter());
    let worker = || loop {
        let chunk = queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .next();
        match chunk {
            Some(chunk) => chunk.into_iter().for_each(|(part, out)| write(part, out)),
            None => break,
        }
    };
    let caller = bpetok::CallerCpu::here();
    std::thread::scope(|scope| {
        for _ in 1..threads {
            caller.spawn(scope, threads, worker);
        }
        worker();
    });
}

/// A new `bytearray` of `len` bytes, every one of them written by `fill` (without the GIL) and
/// none written before: unlike `PyByteArray::new_with`, its memory is not zeroed first, so the
/// pages of a huge buffer are first touched by `fill`'s threads, not by a serial `memset`.
#[allow(unsafe_code)]
fn filled_bytearray<'py>(
    py: Python<'py>,
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]) + Send,
) -> PyResult<Bound<'py, PyByteArray>> {
    let size = pyo3::ffi::Py_ssize_t::try_from(len)
        .map_err(|_| pyo3::exceptions::PyMemoryError::new_err("output too large"))?;
    // SAFETY: a NULL source makes CPython allocate `len` bytes (plus a trailing NUL) without
    // initialising them; the new reference is owned (or NULL with an exception set).
    let array = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyByteArray_FromStringAndSize(std::ptr::null(), size),
        )?
        .cast_into_unchecked::<PyByteArray>()
    };
    // SAFETY: the buffer holds `len` bytes and no one else can see the new bytearray yet; it
    // is handed out as `MaybeUninit`, so nothing reads a byte before `fill` writes it.
    let buffer = unsafe {
        std::slice::from_raw_parts_mut(
            pyo3::ffi::PyByteArray_AsString(array.as_ptr()).cast::<MaybeUninit<u8>>(),
            len,
        )
    };
    py.detach(|| fill(buffer));
    Ok(array)
}

/// The native tokenizer. Use `bpetok.Tokenizer`, which wraps it.
#[pyclass(module = "bpetok._bpetok", name = "Tokenizer", frozen)]
pub struct PyTokenizer {
    pub inner: bpetok::Tokenizer,
    /// The table of piece texts, made once per model on the first decode (a tokenizer that only
    /// encodes never makes it): decoding is a copy per id.
    decoder: std::sync::OnceLock<bpetok::Decoder>,
    /// One Python int per id, made once: a result list then costs a reference count per id
    /// instead of an int allocation per id (that allocation was ~40% of `encode_batch`).
    ints: Vec<Py<PyInt>>,
    /// Which of `ints` an object is, by its address: decoding a list `encode` made reads its
    /// ids without a call per id (see [`IntIds`]). Made on the first decode of a list, as
    /// `decoder`; `None` inside if the ints are spread too thin.
    cached_ints: std::sync::OnceLock<Option<IntIds>>,
}

impl PyTokenizer {
    fn new(py: Python<'_>, inner: bpetok::Tokenizer) -> PyResult<Self> {
        let ints: Vec<Py<PyInt>> = (0..inner.vocab_size() as u32)
            .map(|id| PyInt::new(py, id).unbind())
            .collect();
        Ok(Self {
            inner,
            ints,
            decoder: std::sync::OnceLock::new(),
            cached_ints: std::sync::OnceLock::new(),
        })
    }

    fn decoder(&self) -> &bpetok::Decoder {
        self.decoder.get_or_init(|| self.inner.decoder())
    }

    fn cached_ints(&self) -> Option<&IntIds> {
        self.cached_ints
            .get_or_init(|| {
                let addresses: Vec<usize> =
                    self.ints.iter().map(|int| int.as_ptr() as usize).collect();
                IntIds::new(&addresses)
            })
            .as_ref()
    }

    /// Decodes ids already checked against the vocabulary, without the GIL when worth it, into a
    /// `str` made straight from the decoded UTF-8 or UTF-16 (see [`Decoded`]; one copy, by
    /// CPython).
    fn decode_checked<'py>(&self, py: Python<'py>, ids: &[u32]) -> PyResult<Bound<'py, PyString>> {
        let decoded = if ids.len() < RELEASE_GIL_IDS {
            Decoded::of(self.decoder(), ids)
        } else {
            py.detach(|| Decoded::of(self.decoder(), ids))
        };
        decoded.map_err(to_py_err)?.to_str(py)
    }

    /// The ids of each list, checked (see [`ids_of_list`]).
    fn read_lists(&self, lists: &[Bound<'_, PyList>]) -> PyResult<Vec<Vec<u32>>> {
        lists
            .iter()
            .map(|ids| ids_of_list(&self.inner, self.cached_ints(), ids))
            .collect()
    }

    /// The text of each list of ids, all of them checked already.
    fn decode_chunk(&self, chunk: &[Vec<u32>]) -> Vec<Decoded> {
        chunk
            .iter()
            .map(|ids| {
                // Checked when the list was read: cannot fail.
                Decoded::of(self.decoder(), ids).unwrap_or(Decoded::Utf8(Vec::new()))
            })
            .collect()
    }

    /// Encodes a batch into one bytearray of little-endian ids of `id_bytes` each and one of
    /// `len(texts) + 1` little-endian int64 offsets (see [`Self::flat_output`]).
    fn flat_batch<'py>(
        &self,
        py: Python<'py>,
        slices: &[&[u8]],
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> PyResult<(Bound<'py, PyByteArray>, Bound<'py, PyByteArray>)> {
        let batch = py.detach(|| {
            self.inner
                .encode_batch_parts(slices, add_bos, add_eos, num_threads)
        });
        let parts: Vec<Vec<&[u32]>> = batch
            .iter()
            .map(|parts| parts.iter().map(Vec::as_slice).collect())
            .collect();
        self.flat_output(py, &parts, num_threads)
    }

    /// Each text's ids, given as the consecutive parts they were encoded in, as one bytearray of
    /// little-endian ids of `id_bytes` each and one of `len + 1` little-endian int64 offsets. The
    /// ids are written into the bytearray by up to `num_threads` threads, straight from the
    /// parts: a huge text's ids are never joined into one vector first (a serial copy of the
    /// whole).
    fn flat_output<'py>(
        &self,
        py: Python<'py>,
        texts: &[Vec<&[u32]>],
        num_threads: usize,
    ) -> PyResult<(Bound<'py, PyByteArray>, Bound<'py, PyByteArray>)> {
        let itemsize = self.inner.id_bytes();
        let (offsets, end) = offsets_of(
            texts
                .iter()
                .map(|parts| parts.iter().map(|ids| ids.len()).sum()),
        );
        let parts: Vec<&[u32]> = texts.iter().flatten().copied().collect();
        let data = filled_bytearray(py, end * itemsize, |buf| {
            pack_parts(&parts, itemsize, buf, num_threads);
        })?;
        Ok((data, PyByteArray::new(py, &offsets)))
    }

    /// [`Self::flat_output`] for texts whose ids are packed already (see [`packed`]): the
    /// bytearray is their bytes one after another, copied on up to `num_threads` threads.
    fn flat_packed<'py>(
        &self,
        py: Python<'py>,
        texts: &[Vec<u8>],
        num_threads: usize,
    ) -> PyResult<(Bound<'py, PyByteArray>, Bound<'py, PyByteArray>)> {
        let itemsize = self.inner.id_bytes();
        let (offsets, end) = offsets_of(texts.iter().map(|bytes| bytes.len() / itemsize));
        let data = filled_bytearray(py, end * itemsize, |buf| {
            fill_parts(
                texts,
                Vec::len,
                |bytes, out| put(out, bytes),
                buf,
                num_threads,
            );
        })?;
        Ok((data, PyByteArray::new(py, &offsets)))
    }

    /// `each(encoder, utf8)` of every text, in order, on this thread without the GIL: one
    /// encoder, and one buffer for the UTF-8 of the texts read in place, made just before each
    /// is encoded (a batch on one thread, as the core's batch calls encode it then).
    fn serial<R: Send>(
        &self,
        py: Python<'_>,
        texts: &[TextArg],
        mut each: impl FnMut(&mut bpetok::Encoder<'_>, Text<'_>) -> R + Send,
    ) -> Vec<R> {
        py.detach(|| {
            let (mut encoder, mut utf8) = (self.inner.encoder(), String::new());
            texts
                .iter()
                .map(|text| each(&mut encoder, text.utf8(&mut utf8)))
                .collect()
        })
    }

    /// How many threads encode `list` with its reading overlapped (see [`TextsRead`]), and the
    /// texts' sizes: 0 threads (and no sizes) when it is read first instead, because there are
    /// fewer texts than threads (a long one may be cut and given every thread) or the batch is
    /// worth one thread only. The texts' lengths in characters stand for their UTF-8 bytes here
    /// (never more than those).
    fn overlapped_threads(&self, list: &Bound<'_, PyList>, num_threads: usize) -> Overlap {
        let none = Overlap {
            threads: 0,
            sizes: Vec::new(),
        };
        if list.len() < num_threads || num_threads <= 1 {
            return none;
        }
        let sizes: Vec<usize> = list.iter().map(|item| item.len().unwrap_or(0)).collect();
        match self.inner.batch_threads(sizes.iter().copied(), num_threads) {
            1 => none,
            threads => Overlap { threads, sizes },
        }
    }

    /// `each(encoder, text)` of every text of `list`, in order, on `threads` threads (at least
    /// 2) while this one reads the texts (see [`TextsRead`]), then works too, without the GIL.
    fn overlapped<R: Send + Sync>(
        &self,
        py: Python<'_>,
        list: &Bound<'_, PyList>,
        overlap: &Overlap,
        each: impl Fn(&mut bpetok::Encoder<'_>, Text<'_>, &mut Vec<u32>) -> R + Sync,
    ) -> PyResult<Vec<R>> {
        let (n, threads) = (list.len(), overlap.threads);
        let read = TextsRead::new(n, &overlap.sizes, threads);
        let results: Vec<std::sync::OnceLock<R>> =
            (0..n).map(|_| std::sync::OnceLock::new()).collect();
        // Encoder k for the thread of stretch k (see `bpetok::Tokenizer::encoders`). Each thread
        // works with its own on its stack (side by side in one vector, threads would share their
        // cache lines) and gives it back, and they are dropped in index order.
        let mut encoders = self.inner.encoders(threads);
        let reader_encoder = encoders
            .pop()
            .expect("overlapped runs on at least 2 threads");
        let work = |home: usize, mut encoder| {
            // The thread's scratch vector, for `each` to reuse from one text to the next, and
            // its buffer for the UTF-8 of texts read in place.
            let (mut scratch, mut utf8) = (Vec::new(), String::new());
            while let Some((i, text)) = read.take(home) {
                let _ = results[i].set(each(&mut encoder, text.utf8(&mut utf8), &mut scratch));
            }
            encoder
        };
        let outcome = std::thread::scope(|scope| {
            let work = &work;
            let workers = start_workers(scope, encoders, |home| move |e| work(home, e));
            let outcome = read.read_all(list);
            let read_ok = outcome.is_ok();
            py.detach(|| {
                let mine = if read_ok {
                    work(read.reader_home(), reader_encoder)
                } else {
                    reader_encoder
                };
                join_workers(workers, mine);
            });
            outcome
        });
        outcome?;
        // Every text was read, so every one has its result.
        Ok(results.into_iter().filter_map(|r| r.into_inner()).collect())
    }

    /// The `<s>` and `</s>` that `encode` would add (none where the model has no such piece).
    fn control_tokens(&self, add_bos: bool, add_eos: bool) -> usize {
        usize::from(add_bos && self.inner.bos_id().is_some())
            + usize::from(add_eos && self.inner.eos_id().is_some())
    }

    /// The list of `ids`, made with the cyclic collector held off (see `collector.rs`): a batch
    /// makes one per text, and on 3.10 and 3.11 collections would run inside those allocations.
    fn id_list<'py>(&self, py: Python<'py>, ids: &[u32]) -> PyResult<Bound<'py, PyList>> {
        let _paused = collector::Paused::new(py);
        // Every id comes from the encoder, so it is below vocab_size.
        PyList::new(py, ids.iter().map(|&id| self.ints[id as usize].bind(py)))
    }
}

#[pymethods]
impl PyTokenizer {
    /// Loads a model from the bytes of a SentencePiece `.model` file.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let inner = py
            .detach(|| bpetok::Tokenizer::from_bytes(data))
            .map_err(to_py_err)?;
        Self::new(py, inner)
    }

    /// The embedded Mistral 7B / Mixtral 8x7B model.
    #[staticmethod]
    fn mixtral_8x7b(py: Python<'_>) -> PyResult<Self> {
        let inner = py.detach(bpetok::Tokenizer::mixtral_8x7b);
        Self::new(py, inner)
    }

    /// The bytes of the `.model` file.
    fn model_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.model_bytes())
    }

    fn encode<'py>(
        &self,
        py: Python<'py>,
        text: TextArg,
        add_bos: bool,
        add_eos: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let tok = &self.inner;
        let ids = on_text(py, &text, |text| {
            tok.encoder().encode_text(text, add_bos, add_eos)
        });
        self.id_list(py, &ids)
    }

    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'_, PyList>,
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let tok = &self.inner;
        let overlap = self.overlapped_threads(texts, num_threads);
        let threads = overlap.threads;
        if threads == 0 {
            // One thread, or fewer texts than threads (the core gives each text every thread,
            // cutting the long ones into parts).
            let texts = read_texts(texts)?;
            let batch = if fewer_texts_than_threads(&texts, num_threads) {
                py.detach(|| tok.encode_batch(&utf8_all(&texts), add_bos, add_eos, num_threads))
            } else {
                self.serial(py, &texts, |encoder, text| {
                    encoder.encode_text(text, add_bos, add_eos)
                })
            };
            let lists = batch
                .iter()
                .map(|ids| self.id_list(py, ids))
                .collect::<PyResult<Vec<_>>>()?;
            return PyList::new(py, lists);
        }
        // The other threads encode each text as soon as this one has read it (see `TextsRead`).
        // Building the Python lists needs the GIL and takes a fair share of the time, so this
        // thread, once every text is read, is one of the encoders (releasing the GIL for texts
        // worth it) and, between two texts of its own, turns the others' results into lists.
        let n = texts.len();
        let read = TextsRead::new(n, &overlap.sizes, threads);
        let mut lists: Vec<Option<Bound<'py, PyList>>> = vec![None; n];
        let mut first_error = None;
        let mut keep =
            |i: usize, ids: &[u32], lists: &mut Vec<Option<Bound<'py, PyList>>>| match self
                .id_list(py, ids)
            {
                Ok(list) => lists[i] = Some(list),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            };
        let (sender, receiver) = std::sync::mpsc::channel::<(usize, Vec<u32>)>();
        // Encoder k for the thread of stretch k (see `bpetok::Tokenizer::encoders`), moved to
        // its thread and given back as in `overlapped`.
        let mut encoders = tok.encoders(threads);
        let mut encoder = encoders
            .pop()
            .expect("a batch of lists runs on at least 2 threads here");
        let mut utf8 = String::new();
        let read_outcome = std::thread::scope(|scope| {
            let read = &read;
            let workers = start_workers(scope, encoders, |home| {
                let sender = sender.clone();
                move |mut encoder: bpetok::Encoder<'_>| {
                    let mut utf8 = String::new();
                    while let Some((i, text)) = read.take(home) {
                        let ids = encoder.encode_text(text.utf8(&mut utf8), add_bos, add_eos);
                        // The receiver outlives the workers: a send cannot fail.
                        let _ = sender.send((i, ids));
                    }
                    encoder
                }
            });
            drop(sender);
            let read_outcome = read.read_all(texts);
            while read_outcome.is_ok() {
                for (i, ids) in receiver.try_iter() {
                    keep(i, &ids, &mut lists);
                }
                let Some((i, text)) = read.take(read.reader_home()) else {
                    break;
                };
                let ids = if text.len_hint() < RELEASE_GIL_BYTES {
                    encoder.encode_text(text.utf8(&mut utf8), add_bos, add_eos)
                } else {
                    py.detach(|| encoder.encode_text(text.utf8(&mut utf8), add_bos, add_eos))
                };
                keep(i, &ids, &mut lists);
            }
            // The others' last texts: wait for them without the GIL.
            let mut receiver = Some(receiver);
            while let Some(rx) = receiver.take() {
                let (ready, rx) = py.detach(move || match rx.recv() {
                    Ok(first) => {
                        let mut ready = vec![first];
                        ready.extend(rx.try_iter());
                        (ready, Some(rx))
                    }
                    Err(_) => (Vec::new(), None), // every worker has finished
                });
                receiver = rx;
                for (i, ids) in ready {
                    keep(i, &ids, &mut lists);
                }
            }
            // Every worker has dropped its sender, so has finished.
            join_workers(workers, encoder);
            read_outcome
        });
        read_outcome?;
        if let Some(err) = first_error {
            return Err(err);
        }
        PyList::new(
            py,
            lists
                .into_iter()
                .map(|list| list.unwrap_or_else(|| PyList::empty(py))),
        )
    }

    /// The number of tokens `encode` would give, without making them.
    fn count(&self, py: Python<'_>, text: TextArg, add_bos: bool, add_eos: bool) -> usize {
        let tok = &self.inner;
        on_text(py, &text, |text| tok.encoder().count_text(text))
            + self.control_tokens(add_bos, add_eos)
    }

    /// The counts of a batch as `len(texts)` little-endian int64, for numpy.
    fn count_batch<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'_, PyList>,
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let extra = self.control_tokens(add_bos, add_eos) as i64;
        let overlap = self.overlapped_threads(texts, num_threads);
        let counts = if overlap.threads == 0 {
            let texts = read_texts(texts)?;
            if fewer_texts_than_threads(&texts, num_threads) {
                py.detach(|| self.inner.count_batch(&utf8_all(&texts), num_threads))
            } else {
                self.serial(py, &texts, |encoder, text| encoder.count_text(text))
            }
        } else {
            self.overlapped(py, texts, &overlap, |encoder, text, _| {
                encoder.count_text(text)
            })?
        };
        let data: Vec<u8> = counts
            .into_iter()
            .flat_map(|count| (count as i64 + extra).to_le_bytes())
            .collect();
        Ok(PyByteArray::new(py, &data))
    }

    /// Encodes to little-endian ids of [`Self::token_dtype`], for numpy.
    fn encode_flat<'py>(
        &self,
        py: Python<'py>,
        text: TextArg,
        add_bos: bool,
        add_eos: bool,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let itemsize = self.inner.id_bytes();
        let ids = py.detach(|| {
            text.with_utf8(|text| self.inner.encoder().encode_text(text, add_bos, add_eos))
        });
        filled_bytearray(py, ids.len() * itemsize, |buf| {
            pack_parts(&[&ids], itemsize, buf, 1);
        })
    }

    /// Encodes the texts `data[offsets[i]..offsets[i + 1]]` (the bytes of an Arrow string
    /// column's values, and its offsets as little-endian int64 bytes) into one flat id buffer
    /// and int64 offsets, as `encode_batch_flat`, without a Python object per text. The offsets
    /// must not decrease and must lie inside `data`.
    #[pyo3(signature = (data, offsets, add_bos, add_eos, num_threads))]
    fn encode_offsets_flat<'py>(
        &self,
        py: Python<'py>,
        data: PyBackedBytes,
        offsets: PyBackedBytes,
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> PyResult<(Bound<'py, PyByteArray>, Bound<'py, PyByteArray>)> {
        let bytes: &[u8] = &data;
        if offsets.len() % 8 != 0 || offsets.is_empty() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "offsets must be little-endian int64 values, at least one",
            ));
        }
        let bounds: Vec<i64> = offsets
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let mut slices = Vec::with_capacity(bounds.len() - 1);
        for (k, pair) in bounds.windows(2).enumerate() {
            let (a, b) = (pair[0], pair[1]);
            if a < 0 || b < a || b as usize > bytes.len() {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "offsets[{k}..{}] = {a}..{b} is not a range inside the {} bytes of data",
                    k + 1,
                    bytes.len()
                )));
            }
            slices.push(&bytes[a as usize..b as usize]);
        }
        self.flat_batch(py, &slices, add_bos, add_eos, num_threads)
    }

    /// Encodes a batch to one buffer of little-endian ids of [`Self::token_dtype`] and one
    /// buffer of `len(texts) + 1` little-endian int64 offsets, for numpy.
    fn encode_batch_flat<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'_, PyList>,
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> PyResult<(Bound<'py, PyByteArray>, Bound<'py, PyByteArray>)> {
        let overlap = self.overlapped_threads(texts, num_threads);
        let itemsize = self.inner.id_bytes();
        // Each text's ids are encoded into the thread's scratch vector and kept packed (half
        // the memory of the ids for a uint16 vocabulary, and touched once): a vector of ids
        // per text grew as it was filled (Chinese gives more ids per byte than it reserved)
        // and was most of a first call's page faults.
        let encode_packed =
            |encoder: &mut bpetok::Encoder<'_>, text: Text<'_>, ids: &mut Vec<u32>| {
                ids.clear();
                encoder.encode_text_into(text, add_bos, add_eos, ids);
                packed(ids, itemsize)
            };
        if overlap.threads == 0 {
            let texts = read_texts(texts)?;
            if fewer_texts_than_threads(&texts, num_threads) {
                // Fewer texts than threads: a long one is cut and given every thread.
                let owned = py.detach(|| utf8_all(&texts));
                let slices: Vec<&[u8]> = owned.iter().map(|text| &**text).collect();
                return self.flat_batch(py, &slices, add_bos, add_eos, num_threads);
            }
            let mut ids = Vec::new();
            let batch = self.serial(py, &texts, |encoder, text| {
                encode_packed(encoder, text, &mut ids)
            });
            return self.flat_packed(py, &batch, 1);
        }
        let batch = self.overlapped(py, texts, &overlap, encode_packed)?;
        self.flat_packed(py, &batch, overlap.threads)
    }

    fn decode<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'_, PyList>,
    ) -> PyResult<Bound<'py, PyString>> {
        let ids = ids_of_list(&self.inner, self.cached_ints(), ids)?;
        self.decode_checked(py, &ids)
    }

    /// Decodes little-endian ids of `itemsize` bytes (2, 4: unsigned; 8: signed), for numpy.
    fn decode_flat<'py>(
        &self,
        py: Python<'py>,
        data: &[u8],
        itemsize: usize,
    ) -> PyResult<Bound<'py, PyString>> {
        let ids = ids_of_bytes(&self.inner, data, itemsize)?;
        self.decode_checked(py, &ids)
    }

    fn decode_batch<'py>(
        &self,
        py: Python<'py>,
        batch: Vec<Bound<'_, PyList>>,
        num_threads: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        // Reading the lists needs the GIL and is most of the work. So the batch goes in chunks:
        // this thread reads a chunk's lists while `num_threads - 1` others decode the chunks
        // before it, and makes the `str`s of each decoded chunk as it comes back (its texts still
        // in the cache). On one thread it does the three in turn. The result is the same either
        // way; an id out of range anywhere raises, and nothing is returned.
        let chunks = chunk_bounds(&batch);
        let threads = num_threads.min(chunks.len()).max(1);
        let mut strs = Vec::with_capacity(batch.len());
        if threads == 1 {
            for range in &chunks {
                let ids = self.read_lists(&batch[range.clone()])?;
                let texts = py.detach(|| self.decode_chunk(&ids));
                push_strs(py, &texts, &mut strs)?;
            }
            return PyList::new(py, strs);
        }
        let ended = || pyo3::exceptions::PyRuntimeError::new_err("a decoding thread ended");
        let (work_tx, work_rx) = mpsc::sync_channel::<(usize, Vec<Vec<u32>>)>(threads);
        let work_rx = Mutex::new(work_rx);
        let (done_tx, done_rx) = mpsc::channel::<(usize, Vec<Decoded>)>();
        // In a mutex only to be waited on without the GIL (a receiver cannot be shared).
        let done_rx = Mutex::new(done_rx);
        let caller = bpetok::CallerCpu::here();
        std::thread::scope(|scope| -> PyResult<()> {
            for _ in 1..threads {
                let (work_rx, done_tx) = (&work_rx, done_tx.clone());
                caller.spawn(scope, threads, move || loop {
                    let Ok(Ok((index, ids))) = work_rx.lock().map(|rx| rx.recv()) else {
                        return; // every chunk is sent, or this thread's caller has stopped
                    };
                    let _ = done_tx.send((index, self.decode_chunk(&ids)));
                });
            }
            drop(done_tx);
            let mut waiting = BTreeMap::new();
            let mut next = 0;
            for (index, range) in chunks.iter().enumerate() {
                let ids = self.read_lists(&batch[range.clone()])?;
                py.detach(|| work_tx.send((index, ids)))
                    .map_err(|_| ended())?;
                waiting.extend(done_rx.lock().map_err(|_| ended())?.try_iter());
                while let Some(texts) = waiting.remove(&next) {
                    push_strs(py, &texts, &mut strs)?;
                    next += 1;
                }
            }
            drop(work_tx);
            while next < chunks.len() {
                let (index, texts) = py
                    .detach(|| done_rx.lock().ok().and_then(|rx| rx.recv().ok()))
                    .ok_or_else(ended)?;
                waiting.insert(index, texts);
                while let Some(texts) = waiting.remove(&next) {
                    push_strs(py, &texts, &mut strs)?;
                    next += 1;
                }
            }
            Ok(())
        })?;
        PyList::new(py, strs)
    }

    /// Encodes conversations given as JSON texts (`{"messages": [...], "tools": [...]}`): a
    /// list of `(ids, mask)` in order, or `ValueError((index, message_index, reason))` for the
    /// first conversation that cannot be encoded (the Python wrapper raises `ChatError`).
    fn encode_chat<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        format: &str,
        train_on: &str,
        num_threads: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        use bpetok::data::chat::{ChatFormat, ChatSpec, TrainOn};
        let bad = |reason: String| {
            pyo3::exceptions::PyValueError::new_err((None::<usize>, None::<usize>, reason))
        };
        let format: ChatFormat = format.parse().map_err(bad)?;
        let train_on: TrainOn = train_on.parse().map_err(bad)?;
        let spec = ChatSpec::new(&self.inner, format, train_on).map_err(|e| bad(e.to_string()))?;
        let tok = &self.inner;
        let total: usize = texts.iter().map(String::len).sum();
        let made = if total < RELEASE_GIL_BYTES && texts.len() == 1 {
            spec.encode_json_batch(tok, &texts, 1)
        } else {
            py.detach(|| spec.encode_json_batch(tok, &texts, num_threads))
        };
        let _paused = collector::Paused::new(py);
        let mut out = Vec::with_capacity(made.len());
        for (i, result) in made.into_iter().enumerate() {
            match result {
                Ok(tokens) => {
                    let ids = self.id_list(py, &tokens.ids)?;
                    let mask = PyList::new(
                        py,
                        tokens.mask.iter().map(|&m| pyo3::types::PyBool::new(py, m)),
                    )?;
                    out.push((ids, mask).into_pyobject(py)?.into_any());
                }
                Err(err) => {
                    return Err(pyo3::exceptions::PyValueError::new_err((
                        Some(i),
                        err.message,
                        err.reason,
                    )))
                }
            }
        }
        PyList::new(py, out)
    }

    /// The instruct format a vocabulary is for: `v3` with the control piece `[INST]`, else `v1`.
    fn chat_format(&self) -> &'static str {
        bpetok::data::chat::ChatFormat::for_tokenizer(&self.inner).name()
    }

    fn encode_as_pieces(&self, text: TextArg, add_bos: bool, add_eos: bool) -> Vec<&str> {
        text.with_utf8(|text| self.inner.encode_text_as_pieces(text, add_bos, add_eos))
    }

    fn id_to_piece(&self, id: i64) -> PyResult<String> {
        let id = check_id(&self.inner, id)?;
        self.inner
            .id_to_piece(id)
            .map(str::to_owned)
            .map_err(to_py_err)
    }

    fn piece_to_id(&self, piece: &str) -> u32 {
        self.inner.piece_to_id(piece)
    }

    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn bos_id(&self) -> i64 {
        optional_id(self.inner.bos_id())
    }

    fn eos_id(&self) -> i64 {
        optional_id(self.inner.eos_id())
    }

    fn pad_id(&self) -> i64 {
        optional_id(self.inner.pad_id())
    }

    /// The numpy dtype of ids: `<u2` up to 65,536 pieces, else `<u4`.
    fn token_dtype(&self) -> &'static str {
        if self.inner.id_bytes() == 2 {
            "<u2"
        } else {
            "<u4"
        }
    }

    /// Lowercase hex SHA-256 of the `.model` file, as shard manifests record it.
    fn sha256(&self) -> String {
        bpetok::data::shard::tokenizer_sha256(&self.inner)
    }

    fn unk_id(&self) -> i64 {
        i64::from(self.inner.unk_id())
    }
}
