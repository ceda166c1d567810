//! `Tokenizer`: the native tokenizer class, adapting `bpetok::Tokenizer` (argument conversion,
//! the GIL released around real work).

use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyByteArray, PyBytes, PyInt, PyList, PyString};

use crate::errors::model_err as to_py_err;
use bpetok::PARALLEL_MIN_BYTES;

const RELEASE_GIL_BYTES: usize = 2048;

/// The UTF-8 bytes of a `str`, or a `bytes` (whose invalid UTF-8 is read as U+FFFD per bad
/// byte). A `str` is encoded into a temporary `bytes` rather than through CPython's UTF-8 cache
/// (`PyUnicode_AsUTF8AndSize`), which would keep a UTF-8 copy of every non-ASCII text alive as long
/// as the caller keeps the text: for a corpus held in memory, that doubled it.
pub struct TextArg(PyBackedBytes);

impl<'py> FromPyObject<'_, 'py> for TextArg {
    type Error = PyErr;

    fn extract(ob: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(s) = ob.cast::<PyString>() {
            // A str with a lone surrogate has no UTF-8 form: its UnicodeEncodeError goes up as is.
            return Ok(TextArg(PyBackedBytes::from(s.encode_utf8()?)));
        }
        if let Ok(b) = ob.cast::<PyBytes>() {
            return Ok(TextArg(PyBackedBytes::from(b.to_owned())));
        }
        Err(PyTypeError::new_err(format!(
            "expected str or bytes, got {}",
            ob.get_type().name()?
        )))
    }
}

impl TextArg {
    fn as_bytes(&self) -> &[u8] {
        &self.0
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

fn check_ids(tok: &bpetok::Tokenizer, ids: &[i64]) -> PyResult<Vec<u32>> {
    ids.iter().map(|&id| check_id(tok, id)).collect()
}

fn optional_id(id: Option<u32>) -> i64 {
    id.map_or(-1, i64::from)
}

/// Writes ids as little-endian integers of `itemsize` bytes (2 or 4: the tokenizer's
/// [`bpetok::Tokenizer::id_bytes`]).
fn pack_ids<'a>(ids: impl Iterator<Item = &'a u32>, itemsize: usize, out: &mut Vec<u8>) {
    if itemsize == 2 {
        for &id in ids {
            out.extend_from_slice(&(id as u16).to_le_bytes());
        }
    } else {
        for &id in ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
}

/// The native tokenizer. Use `bpetok.Tokenizer`, which wraps it.
#[pyclass(module = "bpetok._bpetok", name = "Tokenizer", frozen)]
pub struct PyTokenizer {
    pub inner: bpetok::Tokenizer,
    /// One Python int per id, made once: a result list then costs a reference count per id
    /// instead of an int allocation per id (that allocation was ~40% of `encode_batch`).
    ints: Vec<Py<PyInt>>,
}

impl PyTokenizer {
    fn new(py: Python<'_>, inner: bpetok::Tokenizer) -> PyResult<Self> {
        let ints = (0..inner.vocab_size() as u32)
            .map(|id| PyInt::new(py, id).unbind())
            .collect();
        Ok(Self { inner, ints })
    }

    fn id_list<'py>(&self, py: Python<'py>, ids: &[u32]) -> PyResult<Bound<'py, PyList>> {
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
        let text = text.as_bytes();
        let ids = if text.len() < RELEASE_GIL_BYTES {
            tok.encode_bytes(text, add_bos, add_eos)
        } else {
            py.detach(|| tok.encode_bytes(text, add_bos, add_eos))
        };
        self.id_list(py, &ids)
    }

    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<TextArg>,
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let slices: Vec<&[u8]> = texts.iter().map(TextArg::as_bytes).collect();
        let tok = &self.inner;
        let threads = tok.batch_threads(slices.iter().map(|s| s.len()), num_threads);
        let long =
            slices.len() < num_threads && slices.iter().any(|s| s.len() >= PARALLEL_MIN_BYTES);
        if threads <= 1 || long {
            // (Fewer texts than threads, and a long one: the core gives each text every thread,
            // cutting the long ones into parts.)
            let batch = py.detach(|| tok.encode_batch(&slices, add_bos, add_eos, num_threads));
            let lists = batch
                .iter()
                .map(|ids| self.id_list(py, ids))
                .collect::<PyResult<Vec<_>>>()?;
            return PyList::new(py, lists);
        }
        // Building the Python lists needs the GIL and takes a fair share of the time. So this
        // thread is one of the `threads` encoders (releasing the GIL for texts worth it) and, between
        // two texts of its own, turns the results of the others into lists.
        let n = slices.len();
        let next = AtomicUsize::new(0);
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
        std::thread::scope(|scope| {
            for _ in 1..threads {
                let (sender, next, slices) = (sender.clone(), &next, &slices);
                scope.spawn(move || {
                    let mut encoder = tok.encoder();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        // The receiver outlives the workers: a send cannot fail.
                        let _ = sender.send((i, encoder.encode_bytes(slices[i], add_bos, add_eos)));
                    }
                });
            }
            drop(sender);
            let mut encoder = tok.encoder();
            loop {
                for (i, ids) in receiver.try_iter() {
                    keep(i, &ids, &mut lists);
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let text = slices[i];
                let ids = if text.len() < RELEASE_GIL_BYTES {
                    encoder.encode_bytes(text, add_bos, add_eos)
                } else {
                    py.detach(|| encoder.encode_bytes(text, add_bos, add_eos))
                };
                keep(i, &ids, &mut lists);
            }
            drop(encoder);
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
        });
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

    /// Encodes to little-endian ids of [`Self::token_dtype`], for numpy.
    fn encode_flat<'py>(
        &self,
        py: Python<'py>,
        text: TextArg,
        add_bos: bool,
        add_eos: bool,
    ) -> Bound<'py, PyByteArray> {
        let itemsize = self.inner.id_bytes();
        let data = py.detach(|| {
            let ids = self.inner.encode_bytes(text.as_bytes(), add_bos, add_eos);
            let mut data = Vec::with_capacity(ids.len() * itemsize);
            pack_ids(ids.iter(), itemsize, &mut data);
            data
        });
        PyByteArray::new(py, &data)
    }

    /// Encodes a batch to one buffer of little-endian ids of [`Self::token_dtype`] and one
    /// buffer of `len(texts) + 1` little-endian int64 offsets, for numpy.
    fn encode_batch_flat<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<TextArg>,
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> (Bound<'py, PyByteArray>, Bound<'py, PyByteArray>) {
        let itemsize = self.inner.id_bytes();
        let slices: Vec<&[u8]> = texts.iter().map(TextArg::as_bytes).collect();
        let (data, offsets) = py.detach(|| {
            let batch = self
                .inner
                .encode_batch(&slices, add_bos, add_eos, num_threads);
            let total: usize = batch.iter().map(Vec::len).sum();
            let mut data = Vec::with_capacity(total * itemsize);
            let mut offsets = Vec::with_capacity((batch.len() + 1) * 8);
            let mut end = 0i64;
            offsets.extend_from_slice(&end.to_le_bytes());
            for ids in &batch {
                pack_ids(ids.iter(), itemsize, &mut data);
                end += ids.len() as i64;
                offsets.extend_from_slice(&end.to_le_bytes());
            }
            (data, offsets)
        });
        (PyByteArray::new(py, &data), PyByteArray::new(py, &offsets))
    }

    fn decode(&self, py: Python<'_>, ids: Vec<i64>) -> PyResult<String> {
        let ids = check_ids(&self.inner, &ids)?;
        py.detach(|| self.inner.decode(&ids)).map_err(to_py_err)
    }

    fn decode_batch(
        &self,
        py: Python<'_>,
        batch: Vec<Vec<i64>>,
        num_threads: usize,
    ) -> PyResult<Vec<String>> {
        let batch = batch
            .iter()
            .map(|ids| check_ids(&self.inner, ids))
            .collect::<PyResult<Vec<_>>>()?;
        py.detach(|| self.inner.decode_batch(&batch, num_threads))
            .map_err(to_py_err)
    }

    fn encode_as_pieces(&self, text: TextArg, add_bos: bool, add_eos: bool) -> Vec<&str> {
        self.inner
            .encode_bytes_as_pieces(text.as_bytes(), add_bos, add_eos)
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
