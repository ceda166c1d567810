//! `bpetok._bpetok`: the only PyO3 code of the project. It adapts `bpetok::Tokenizer` to Python
//! (argument conversion, the GIL released around real work, errors mapped to exceptions); the
//! argument policy and documentation live in the Python package `bpetok`.

use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::{PyIndexError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyByteArray, PyBytes, PyInt, PyList, PyString};

pyo3::create_exception!(
    _bpetok,
    ModelError,
    PyValueError,
    "The model file cannot be used: it is not a SentencePiece model, or not one bpetok implements."
);

/// Texts shorter than this are encoded without releasing the GIL (releasing costs more).
const RELEASE_GIL_BYTES: usize = 2048;

/// The one place where core errors become Python exceptions.
fn to_py_err(err: bpetok::Error) -> PyErr {
    let message = err.to_string();
    match err {
        bpetok::Error::Io { .. } => PyOSError::new_err(message),
        bpetok::Error::Parse(_)
        | bpetok::Error::Unsupported(_)
        | bpetok::Error::Inconsistent(_) => ModelError::new_err(message),
        bpetok::Error::IdOutOfRange { .. } => PyIndexError::new_err(message),
    }
}

/// The UTF-8 bytes of a `str`, or a `bytes` (whose invalid UTF-8 is read as U+FFFD per bad
/// byte). A `str` is encoded into a temporary `bytes` rather than through CPython's UTF-8 cache
/// (`PyUnicode_AsUTF8AndSize`), which would keep a UTF-8 copy of every non-ASCII text alive as long
/// as the caller keeps the text: for a corpus held in memory, that doubled it.
struct TextArg(PyBackedBytes);

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

/// Writes ids as little-endian integers of `itemsize` bytes (2 or 4).
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

/// The decimal text of every id of the vocabulary, for formatting id lists.
fn decimal_ids(tok: &bpetok::Tokenizer) -> Vec<String> {
    (0..tok.vocab_size()).map(|i| i.to_string()).collect()
}

/// Appends the line `bpetok encode` writes for one document: `{"ids": [1,2,3]}` and a newline.
fn push_ids_line(out: &mut Vec<u8>, ids: &[u32], digits: &[String]) {
    out.extend_from_slice(b"{\"ids\": [");
    for (k, &id) in ids.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(digits[id as usize].as_bytes());
    }
    out.extend_from_slice(b"]}\n");
}

fn check_itemsize(tok: &bpetok::Tokenizer, itemsize: usize) -> PyResult<()> {
    match itemsize {
        2 if tok.vocab_size() <= 1 << 16 => Ok(()),
        4 => Ok(()),
        _ => Err(PyValueError::new_err(format!(
            "itemsize {itemsize} cannot hold ids of a vocabulary of {} pieces",
            tok.vocab_size()
        ))),
    }
}

/// The native tokenizer. Use `bpetok.Tokenizer`, which wraps it.
#[pyclass(module = "bpetok._bpetok", name = "Tokenizer", frozen)]
struct PyTokenizer {
    inner: bpetok::Tokenizer,
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
        if threads <= 1 {
            let batch = py.detach(|| tok.encode_batch(&slices, add_bos, add_eos, 1));
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

    /// Encodes to little-endian ids of `itemsize` bytes, for numpy.
    fn encode_flat<'py>(
        &self,
        py: Python<'py>,
        text: TextArg,
        add_bos: bool,
        add_eos: bool,
        itemsize: usize,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        check_itemsize(&self.inner, itemsize)?;
        let data = py.detach(|| {
            let ids = self.inner.encode_bytes(text.as_bytes(), add_bos, add_eos);
            let mut data = Vec::with_capacity(ids.len() * itemsize);
            pack_ids(ids.iter(), itemsize, &mut data);
            data
        });
        Ok(PyByteArray::new(py, &data))
    }

    /// Encodes a batch to one buffer of little-endian ids of `itemsize` bytes and one buffer of
    /// `len(texts) + 1` little-endian int64 offsets, for numpy.
    fn encode_batch_flat<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<TextArg>,
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
        itemsize: usize,
    ) -> PyResult<(Bound<'py, PyByteArray>, Bound<'py, PyByteArray>)> {
        check_itemsize(&self.inner, itemsize)?;
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
        Ok((PyByteArray::new(py, &data), PyByteArray::new(py, &offsets)))
    }

    /// `encode_batch`, but as the JSON lines `bpetok encode` writes (`{"ids": [1,2,3]}` per
    /// text), formatted on the encoding threads; returns (the lines, the number of tokens).
    fn encode_batch_jsonl<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<TextArg>,
        add_bos: bool,
        add_eos: bool,
        num_threads: usize,
    ) -> (Bound<'py, PyBytes>, u64) {
        let slices: Vec<&[u8]> = texts.iter().map(TextArg::as_bytes).collect();
        let tok = &self.inner;
        let (lines, tokens) = py.detach(|| {
            let digits = decimal_ids(tok);
            let done: Vec<std::sync::OnceLock<(Vec<u8>, usize)>> = (0..slices.len())
                .map(|_| std::sync::OnceLock::new())
                .collect();
            tok.encode_batch_each(&slices, add_bos, add_eos, num_threads, |i, ids| {
                let mut line = Vec::with_capacity(12 + 6 * ids.len());
                push_ids_line(&mut line, &ids, &digits);
                let _ = done[i].set((line, ids.len()));
            });
            let mut lines =
                Vec::with_capacity(done.iter().filter_map(|d| d.get()).map(|d| d.0.len()).sum());
            let mut tokens = 0u64;
            for slot in done {
                let (line, n) = slot.into_inner().expect("every text is encoded");
                lines.extend_from_slice(&line);
                tokens += n as u64;
            }
            (lines, tokens)
        });
        (PyBytes::new(py, &lines), tokens)
    }

    /// Reads `files` in Rust (as `PackWriter.add_files` does) and encodes their documents on
    /// `num_threads` threads; the ids reach `on_output(data, offsets)` in input order, in pieces
    /// of a few MB: with `itemsize` 0, `data` is JSON lines (`{"ids": [...]}` per document) and
    /// `offsets` is None; with `itemsize` 2 or 4, `data` is the ids, little-endian, and `offsets`
    /// the `len + 1` int64 offsets of the documents in it. Returns the files' summaries.
    #[pyo3(signature = (files, *, field, lines, errors, num_threads, add_bos, add_eos, itemsize,
                        on_output, progress=None, fallback=None))]
    #[allow(clippy::too_many_arguments)]
    fn encode_files(
        &self,
        py: Python<'_>,
        files: Vec<FileArg>,
        field: String,
        lines: bool,
        errors: &str,
        num_threads: usize,
        add_bos: bool,
        add_eos: bool,
        itemsize: usize,
        on_output: Py<PyAny>,
        progress: Option<Py<PyAny>>,
        fallback: Option<Py<PyAny>>,
    ) -> PyResult<Vec<SummaryTuple>> {
        /// Output gathered before it is handed to Python.
        const FLUSH_BYTES: usize = 4 << 20;
        if itemsize != 0 {
            check_itemsize(&self.inner, itemsize)?;
        }
        let specs = input_specs(files)?;
        let read = read_options(field, lines, errors)?;
        let raised = Raised::default();
        let fallback: Option<bpetok::data::pipeline::SharedFallback> =
            fallback.map(|f| std::sync::Arc::new(python_fallback(f, raised.clone())) as _);
        let encode = bpetok::data::pipeline::EncodeOptions {
            add_bos,
            add_eos,
            threads: num_threads,
        };
        let tok = &self.inner;
        let counters = bpetok::data::pipeline::Counters::default();
        let digits = if itemsize == 0 {
            decimal_ids(tok)
        } else {
            Vec::new()
        };
        let mut data: Vec<u8> = Vec::new();
        let mut offsets: Vec<u8> = 0i64.to_le_bytes().to_vec();
        let mut end = 0i64;
        let flush = |data: &mut Vec<u8>, offsets: &mut Vec<u8>, end: &mut i64| {
            Python::attach(|py| {
                let offsets_arg = (itemsize != 0).then(|| PyBytes::new(py, offsets));
                let called = on_output.call1(py, (PyBytes::new(py, data), offsets_arg));
                called
                    .map(drop)
                    .map_err(|err| PipelineError::Python(keep_exception(py, &raised, err)))
            })?;
            data.clear();
            offsets.clear();
            offsets.extend_from_slice(&0i64.to_le_bytes());
            *end = 0;
            Ok::<(), PipelineError>(())
        };
        let result = py.detach(|| {
            let summaries = bpetok::data::pipeline::encode_inputs(
                tok,
                &specs,
                &read,
                fallback,
                encode,
                &counters,
                |ids| {
                    if itemsize == 0 {
                        push_ids_line(&mut data, &ids, &digits);
                    } else {
                        pack_ids(ids.iter(), itemsize, &mut data);
                        end += ids.len() as i64;
                        offsets.extend_from_slice(&end.to_le_bytes());
                    }
                    if data.len() >= FLUSH_BYTES {
                        flush(&mut data, &mut offsets, &mut end)?;
                    }
                    Ok(())
                },
                || python_tick(progress.as_ref(), &counters, &raised),
            )?;
            if offsets.len() > 8 || !data.is_empty() {
                flush(&mut data, &mut offsets, &mut end)?;
            }
            Ok::<_, PipelineError>(summaries)
        });
        match result {
            Ok(summaries) => Ok(summaries.into_iter().map(summary_tuple).collect()),
            Err(err) => Err(pipeline_err(err, &raised)),
        }
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

    fn encode_as_pieces(&self, text: TextArg, add_bos: bool, add_eos: bool) -> Vec<String> {
        let ids = self.inner.encode_bytes(text.as_bytes(), add_bos, add_eos);
        ids.into_iter()
            .map(|id| {
                self.inner
                    .id_to_piece(id)
                    .map(str::to_owned)
                    .unwrap_or_default()
            })
            .collect()
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

    fn unk_id(&self) -> i64 {
        i64::from(self.inner.unk_id())
    }
}

type FileArg = (Option<std::path::PathBuf>, String, String, Option<String>);
type SummaryTuple = (u64, String, u64, &'static str);

fn input_specs(files: Vec<FileArg>) -> PyResult<Vec<bpetok::data::input::InputSpec>> {
    use bpetok::data::input::{Compression, InputFormat, InputSpec};
    files
        .into_iter()
        .map(|(path, name, format, compression)| {
            let format = match format.as_str() {
                "jsonl" => InputFormat::Jsonl,
                "text" => InputFormat::Text,
                other => return Err(PyValueError::new_err(format!("unknown format {other:?}"))),
            };
            let compression = match compression.as_deref() {
                None => None,
                Some("none") => Some(Compression::None),
                Some("gzip") => Some(Compression::Gzip),
                Some("zstd") => Some(Compression::Zstd),
                Some(other) => {
                    return Err(PyValueError::new_err(format!(
                        "unknown compression {other:?}"
                    )))
                }
            };
            Ok(InputSpec {
                path,
                name,
                format,
                compression,
            })
        })
        .collect()
}

fn read_options(
    field: String,
    lines: bool,
    errors: &str,
) -> PyResult<bpetok::data::input::ReadOptions> {
    use bpetok::data::input::Utf8Errors;
    let errors = match errors {
        "strict" => Utf8Errors::Strict,
        "replace" => Utf8Errors::Replace,
        other => return Err(PyValueError::new_err(format!("unknown errors {other:?}"))),
    };
    Ok(bpetok::data::input::ReadOptions {
        field,
        lines,
        errors,
    })
}

fn summary_tuple(s: bpetok::data::input::InputSummary) -> SummaryTuple {
    (s.size, s.sha256, s.documents, s.compression.name())
}

/// The first Python exception raised by a callback during a run, raised again as it is.
type Raised = std::sync::Arc<std::sync::Mutex<Option<PyErr>>>;

/// A Python callable as a [`bpetok::data::input::LineFallback`]: its first exception is kept in
/// `raised` and its text becomes the error message. It owns what it uses, as the reading thread
/// of a pipeline may outlive the call that started it.
fn python_fallback(
    f: Py<PyAny>,
    raised: Raised,
) -> impl Fn(&str, u64, &str) -> Result<Option<String>, String> + Send + Sync + 'static {
    move |name: &str, line: u64, text: &str| {
        Python::attach(|py| {
            f.call1(py, (name, line, text))
                .and_then(|v| v.extract::<Option<String>>(py))
                .map_err(|err| keep_exception(py, &raised, err))
        })
    }
}

/// The pipeline's tick: Python signal handlers (Ctrl-C) run, and `progress(bytes, documents,
/// tokens)` is called; an exception is kept in `raised` and stops the run.
fn python_tick(
    progress: Option<&Py<PyAny>>,
    counters: &bpetok::data::pipeline::Counters,
    raised: &Raised,
) -> Result<(), PipelineError> {
    Python::attach(|py| {
        let polled = py.check_signals().and_then(|()| match progress {
            Some(progress) => progress
                .call1(
                    py,
                    (
                        counters.bytes_read.load(Ordering::Relaxed),
                        counters.documents.load(Ordering::Relaxed),
                        counters.tokens.load(Ordering::Relaxed),
                    ),
                )
                .map(drop),
            None => Ok(()),
        });
        polled.map_err(|err| PipelineError::Python(keep_exception(py, raised, err)))
    })
}

/// The exception a failed pipeline run raises: a callback's own, else one for its error.
fn pipeline_err(err: PipelineError, raised: &Raised) -> PyErr {
    if let Some(original) = raised.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return original;
    }
    match err {
        PipelineError::Input(err) => PyValueError::new_err(err.to_string()),
        PipelineError::Shard(err) => shard_err(err),
        PipelineError::Python(message) => PyValueError::new_err(message),
    }
}

fn keep_exception(py: Python<'_>, raised: &Raised, err: PyErr) -> String {
    let message = err.value(py).to_string();
    raised
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert(err);
    message
}

/// Reads `files` as `PackWriter.add_files` does and returns every document with the files'
/// summaries: what `bpetok pack` reads, for tests and inspection.
#[pyfunction]
#[pyo3(signature = (files, *, field, lines, errors, fallback=None))]
fn read_documents(
    py: Python<'_>,
    files: Vec<FileArg>,
    field: String,
    lines: bool,
    errors: &str,
    fallback: Option<Py<PyAny>>,
) -> PyResult<(Vec<String>, Vec<SummaryTuple>)> {
    let specs = input_specs(files)?;
    let read = read_options(field, lines, errors)?;
    let raised = Raised::default();
    let fallback_fn = fallback.map(|f| python_fallback(f, raised.clone()));
    let fallback_ref: Option<&bpetok::data::input::LineFallback<'_>> = fallback_fn
        .as_ref()
        .map(|f| f as &bpetok::data::input::LineFallback<'_>);
    let progress = std::sync::atomic::AtomicU64::new(0);
    let result = py.detach(|| {
        let mut docs = Vec::new();
        let mut summaries = Vec::new();
        for spec in &specs {
            let summary =
                bpetok::data::input::read_documents(spec, &read, fallback_ref, &progress, |t| {
                    docs.push(t);
                    Ok::<(), bpetok::data::input::InputError>(())
                })?;
            summaries.push(summary_tuple(summary));
        }
        Ok::<_, bpetok::data::input::InputError>((docs, summaries))
    });
    result.map_err(|err| {
        raised
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| PyValueError::new_err(err.to_string()))
    })
}

#[pymodule]
fn _bpetok(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTokenizer>()?;
    m.add_class::<PyPackWriter>()?;
    m.add_function(wrap_pyfunction!(verify_shards, m)?)?;
    m.add_function(wrap_pyfunction!(read_documents, m)?)?;
    m.add_function(wrap_pyfunction!(inspect_shards, m)?)?;
    m.add("ModelError", m.py().get_type::<ModelError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// One packing run: documents are encoded, packed (`bpetok::data::pack`) and written as shards
/// (`bpetok::data::shard`) as they come. Used by `bpetok pack`; see `docs/shard-format.md`.
#[pyclass(module = "bpetok._bpetok", name = "PackWriter")]
struct PyPackWriter {
    tokenizer: Py<PyTokenizer>,
    run: Option<PackRun>,
}

struct PackRun {
    packer: bpetok::data::Packer,
    writer: bpetok::data::ShardWriter,
    add_bos: bool,
    add_eos: bool,
    next_doc_id: u64,
}

/// Why [`PyPackWriter::add_files`] stopped.
enum PipelineError {
    Input(bpetok::data::input::InputError),
    Shard(bpetok::data::ShardError),
    /// A Python callback raised (the exception itself is kept aside).
    Python(String),
}

impl From<bpetok::data::input::InputError> for PipelineError {
    fn from(err: bpetok::data::input::InputError) -> Self {
        PipelineError::Input(err)
    }
}

impl From<bpetok::data::ShardError> for PipelineError {
    fn from(err: bpetok::data::ShardError) -> Self {
        PipelineError::Shard(err)
    }
}

fn pack_err(err: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(err.to_string())
}

fn shard_err(err: bpetok::data::ShardError) -> PyErr {
    match err {
        bpetok::data::ShardError::Io { .. } => PyOSError::new_err(err.to_string()),
        other => PyValueError::new_err(other.to_string()),
    }
}

impl PyPackWriter {
    fn run(&mut self) -> PyResult<&mut PackRun> {
        self.run
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("this PackWriter is finished or closed"))
    }
}

#[pymethods]
impl PyPackWriter {
    #[new]
    #[pyo3(signature = (tokenizer, out_dir, *, seq_len, window, overlap, pack_buffer, seed, pad_id,
                        samples_per_shard, add_bos, add_eos, overwrite))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        tokenizer: Py<PyTokenizer>,
        out_dir: std::path::PathBuf,
        seq_len: usize,
        window: usize,
        overlap: Option<usize>,
        pack_buffer: usize,
        seed: u64,
        pad_id: u32,
        samples_per_shard: usize,
        add_bos: bool,
        add_eos: bool,
        overwrite: bool,
    ) -> PyResult<Self> {
        let vocab_size = tokenizer.get().inner.vocab_size() as u64;
        let mut opts = bpetok::data::PackOptions::new(seq_len, window);
        opts.overlap = overlap;
        opts.pack_buffer = pack_buffer;
        opts.seed = seed;
        opts.pad_id = pad_id;
        let packer = bpetok::data::Packer::new(opts).map_err(pack_err)?;
        let mut writer_opts = bpetok::data::ShardWriterOptions::new(vocab_size, seq_len, pad_id);
        writer_opts.samples_per_shard = samples_per_shard;
        writer_opts.overwrite = overwrite;
        let writer = bpetok::data::ShardWriter::create(&out_dir, writer_opts).map_err(shard_err)?;
        Ok(Self {
            tokenizer,
            run: Some(PackRun {
                packer,
                writer,
                add_bos,
                add_eos,
                next_doc_id: 0,
            }),
        })
    }

    /// Encodes `texts` on `num_threads` threads and packs them, in order; their document ids
    /// continue from the previous call. Returns the number of tokens they had.
    fn add_texts(
        &mut self,
        py: Python<'_>,
        texts: Vec<TextArg>,
        num_threads: usize,
    ) -> PyResult<u64> {
        let tokenizer = self.tokenizer.clone_ref(py);
        let tok = &tokenizer.get().inner;
        let run = self.run()?;
        let slices: Vec<&[u8]> = texts.iter().map(TextArg::as_bytes).collect();
        let result = py.detach(|| {
            let batch = tok.encode_batch(&slices, run.add_bos, run.add_eos, num_threads);
            let mut tokens = 0u64;
            for ids in &batch {
                let writer = &mut run.writer;
                run.packer
                    .push_document(run.next_doc_id, ids, |s| writer.write_sample(&s))?;
                run.next_doc_id += 1;
                tokens += ids.len() as u64;
            }
            Ok::<u64, bpetok::data::ShardError>(tokens)
        });
        result.map_err(|err| {
            self.run = None; // the output is incomplete: no manifest will be written
            shard_err(err)
        })
    }

    /// Reads `files` (JSONL or text, plain, gzip or zstd, or stdin) in Rust, encodes their
    /// documents on `num_threads` threads and packs them, in order; document ids continue from
    /// the previous call. `files` are `(path or None for stdin, name for messages, "jsonl" or
    /// "text", "none" / "gzip" / "zstd" or None to detect)`. `progress(bytes, documents, tokens)`
    /// is called about every 0.1 s with this call's totals; `fallback(name, line, text)` decides
    /// the JSONL lines the Rust parser does not take (see `bpetok::data::input`). Returns per file
    /// `(size, sha256, documents, compression)`.
    #[pyo3(signature = (files, *, field, lines, errors, num_threads, progress=None, fallback=None))]
    #[allow(clippy::too_many_arguments)]
    fn add_files(
        &mut self,
        py: Python<'_>,
        files: Vec<FileArg>,
        field: String,
        lines: bool,
        errors: &str,
        num_threads: usize,
        progress: Option<Py<PyAny>>,
        fallback: Option<Py<PyAny>>,
    ) -> PyResult<Vec<SummaryTuple>> {
        let specs = input_specs(files)?;
        let read = read_options(field, lines, errors)?;
        let tokenizer = self.tokenizer.clone_ref(py);
        let tok = &tokenizer.get().inner;
        let run = self.run()?;
        let counters = bpetok::data::pipeline::Counters::default();
        let raised = Raised::default();
        let fallback: Option<bpetok::data::pipeline::SharedFallback> =
            fallback.map(|f| std::sync::Arc::new(python_fallback(f, raised.clone())) as _);
        let encode = bpetok::data::pipeline::EncodeOptions {
            add_bos: run.add_bos,
            add_eos: run.add_eos,
            threads: num_threads,
        };
        let result = py.detach(|| {
            let PackRun {
                packer,
                writer,
                next_doc_id,
                ..
            } = run;
            bpetok::data::pipeline::encode_inputs(
                tok,
                &specs,
                &read,
                fallback,
                encode,
                &counters,
                |ids| {
                    packer.push_document(*next_doc_id, &ids, |s| writer.write_sample(&s))?;
                    *next_doc_id += 1;
                    Ok(())
                },
                || python_tick(progress.as_ref(), &counters, &raised),
            )
        });
        match result {
            Ok(summaries) => Ok(summaries.into_iter().map(summary_tuple).collect()),
            Err(err) => {
                self.run = None; // the output is incomplete: no manifest will be written
                Err(pipeline_err(err, &raised))
            }
        }
    }

    /// Documents added so far.
    fn documents(&self) -> u64 {
        self.run.as_ref().map_or(0, |run| run.next_doc_id)
    }

    /// Flushes the packer, writes the last shard and `manifest.json`, and returns the manifest as
    /// JSON. `inputs` are (path, size, sha256, documents) per input file in order.
    fn finish(
        &mut self,
        py: Python<'_>,
        tokenizer_sha256: String,
        inputs: Vec<(String, u64, String, u64)>,
        input_options_json: &str,
    ) -> PyResult<String> {
        let mut run = self
            .run
            .take()
            .ok_or_else(|| PyValueError::new_err("this PackWriter is finished or closed"))?;
        let tok = &self.tokenizer.get().inner;
        let input_options = serde_json::from_str(input_options_json).map_err(|e| {
            PyValueError::new_err(format!("input options are not a JSON object: {e}"))
        })?;
        let tokenizer = bpetok::data::shard::TokenizerInfo {
            sha256: tokenizer_sha256,
            vocab_size: tok.vocab_size() as u64,
            bos_id: tok.bos_id(),
            eos_id: tok.eos_id(),
        };
        let inputs = inputs
            .into_iter()
            .map(
                |(path, size, sha256, documents)| bpetok::data::shard::InputFile {
                    path,
                    size,
                    sha256,
                    documents,
                },
            )
            .collect();
        let manifest = py.detach(move || {
            let pack = run.packer.options().clone();
            let writer = &mut run.writer;
            let stats = run.packer.finish(|s| writer.write_sample(&s))?;
            run.writer.finish(bpetok::data::ManifestInfo {
                tokenizer,
                pack,
                bos: run.add_bos,
                eos: run.add_eos,
                input_options,
                inputs,
                stats,
            })
        });
        let manifest = manifest.map_err(shard_err)?;
        String::from_utf8(manifest.to_json()).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Abandons the run: completed shards stay, but no manifest is written.
    fn close(&mut self) {
        self.run = None;
    }
}

/// Checks a shard directory (`bpetok verify`): returns (ok, summary, violations).
#[pyfunction]
fn verify_shards(py: Python<'_>, path: std::path::PathBuf) -> (bool, String, Vec<String>) {
    match py.detach(|| bpetok::data::verify_dir(&path)) {
        Ok(report) => (
            true,
            format!(
                "{} shards, {} samples, {} segments, {} documents, {} bytes checked",
                report.shards, report.samples, report.segments, report.documents, report.bytes
            ),
            Vec::new(),
        ),
        Err(err) => (
            false,
            format!("{} violations found", err.count()),
            err.violations.iter().map(ToString::to_string).collect(),
        ),
    }
}

/// Summarises a shard directory (`bpetok inspect`) as JSON.
#[pyfunction]
fn inspect_shards(py: Python<'_>, path: std::path::PathBuf) -> PyResult<String> {
    let summary = py
        .detach(|| bpetok::data::shard::inspect_dir(&path))
        .map_err(shard_err)?;
    serde_json::to_string(&summary).map_err(|e| PyValueError::new_err(e.to_string()))
}
