//! The data functions (`pack`, `encode_files`, `decode_files`, `count_files`, `verify_shards`,
//! `inspect_shards`, `check_tokenizer`): arguments converted to the core's types, the run done
//! by the core with the GIL released, the result handed back as a dict, errors mapped once
//! (`errors.rs`). Defaults and allowed values are the Python wrapper's (`bpetok/_data.py`).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use bpetok::data::chat::{ChatFormat, ChatSpec, TrainOn};
use bpetok::data::error::DataError;
use bpetok::data::input::{self, FormatChoice, InputSpec, ReadOptions, Utf8Errors};
use bpetok::data::megatron::{MegatronDtype, MegatronWriter};
use bpetok::data::partition::{self, Partition};
use bpetok::data::pipeline::{Counters, EncodeOptions};
use bpetok::data::{EncodeReport, IdsOutput, PackConfig, PackReport, PackSession};

use crate::errors::{data_err, keep_exception, Raised};
use crate::tokenizer::PyTokenizer;

/// A Python `progress(bytes_read, total_bytes, documents, tokens)` callable.
type ProgressFn = Option<Py<PyAny>>;

fn parse<T: std::str::FromStr>(what: &str, value: &str) -> PyResult<T> {
    value
        .parse()
        .map_err(|_| PyValueError::new_err(format!("unknown {what} {value:?}")))
}

/// The inputs, resolved (directories walked, kinds found) before anything is read, and their
/// total size (None with stdin).
fn resolve(
    inputs: &[PathBuf],
    choice: FormatChoice,
) -> Result<(Vec<InputSpec>, Option<u64>), DataError> {
    let specs = input::resolve_inputs(inputs, choice)?;
    let total = specs.iter().map(|s| s.size).sum::<Option<u64>>();
    Ok((specs, total))
}

/// The tick of a run: Python signal handlers (Ctrl-C) run, and `progress` is called with the
/// counters; an exception is kept in `raised` and stops the run.
fn tick(
    progress: &ProgressFn,
    total: Option<u64>,
    counters: &Counters,
    raised: &Raised,
) -> Result<(), DataError> {
    Python::attach(|py| {
        let polled = py.check_signals().and_then(|()| match progress {
            Some(progress) => progress
                .call1(
                    py,
                    (
                        counters.bytes_read.load(Ordering::Relaxed),
                        total,
                        counters.documents.load(Ordering::Relaxed),
                        counters.tokens.load(Ordering::Relaxed),
                    ),
                )
                .map(drop),
            None => Ok(()),
        });
        polled.map_err(|err| {
            keep_exception(raised, err);
            DataError::Stopped
        })
    })
}

/// A JSON value as the Python object `json.loads` would give.
fn json_to_py<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into_pyobject(py)?.into_any(),
            (None, Some(i)) => i.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, json_to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

fn to_py<'py>(py: Python<'py>, value: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let value = serde_json::to_value(value).map_err(|e| PyValueError::new_err(e.to_string()))?;
    json_to_py(py, &value)
}

/// The reading options; with `chat` (a format name), every JSONL line is a conversation encoded
/// in that format with `train_on`'s targets.
fn read_options(
    tok: &bpetok::Tokenizer,
    field: String,
    lines: bool,
    errors: &str,
    chat: Option<&str>,
    train_on: &str,
) -> PyResult<ReadOptions> {
    let chat = match chat {
        None => None,
        Some(format) => {
            let format = parse::<ChatFormat>("chat format", format)?;
            let train_on = parse::<TrainOn>("train_on", train_on)?;
            let spec = ChatSpec::new(tok, format, train_on).map_err(|err| {
                data_err(
                    DataError::Options(bpetok::data::OptionsError::new("chat", err.reason)),
                    &Raised::default(),
                )
            })?;
            Some(spec)
        }
    };
    Ok(ReadOptions {
        field,
        lines,
        errors: parse::<Utf8Errors>("errors", errors)?,
        skip_bad_records: false,
        chat,
    })
}

/// Every option of a packing run, as `bpetok/_data.py` passes them (a dict, so the partition
/// functions of `bpetok.ray` take the same options as `pack`).
#[derive(FromPyObject, Clone)]
#[pyo3(from_item_all)]
pub struct PackArgs {
    seq_len: usize,
    window: usize,
    overlap: Option<usize>,
    pack_buffer: usize,
    seed: u64,
    pad_id: Option<u64>,
    samples_per_shard: usize,
    bos: bool,
    eos: bool,
    field: String,
    lines: bool,
    errors: String,
    input_format: String,
    skip_bad_records: bool,
    overwrite: bool,
    resume: bool,
    num_threads: usize,
    chat: Option<String>,
    train_on: String,
    partition_size: Option<u64>,
}

impl PackArgs {
    fn config(&self, tok: &bpetok::Tokenizer) -> PyResult<PackConfig> {
        let mut config = PackConfig::new(self.seq_len, self.window);
        config.pack.overlap = self.overlap;
        config.pack.pack_buffer = self.pack_buffer;
        config.pack.seed = self.seed;
        config.pad_id = self.pad_id;
        config.samples_per_shard = self.samples_per_shard;
        config.add_bos = self.bos;
        config.add_eos = self.eos;
        config.overwrite = self.overwrite;
        config.resume = self.resume;
        config.read = read_options(
            tok,
            self.field.clone(),
            self.lines,
            &self.errors,
            self.chat.as_deref(),
            &self.train_on,
        )?;
        config.read.skip_bad_records = self.skip_bad_records;
        config.input_format = parse::<FormatChoice>("input_format", &self.input_format)?;
        config.threads = self.num_threads;
        config.partition_size = self.partition_size;
        Ok(config)
    }
}

/// Encodes and packs the documents of `inputs` into a shard directory (`bpetok.pack`); with
/// `partition_size`, partition by partition (`bpetok pack --partition-size`).
#[pyfunction]
#[pyo3(signature = (tokenizer, inputs, output, options, progress))]
pub fn pack<'py>(
    py: Python<'py>,
    tokenizer: &PyTokenizer,
    inputs: Vec<PathBuf>,
    output: PathBuf,
    options: PackArgs,
    progress: ProgressFn,
) -> PyResult<Bound<'py, PyDict>> {
    let tok = &tokenizer.inner;
    let config = options.config(tok)?;
    let choice = config.input_format;
    let raised = Raised::default();
    let counters = Counters::default();
    let report = py.detach(|| {
        let (specs, total) = resolve(&inputs, choice)?;
        let tick = || tick(&progress, total, &counters, &raised);
        if config.partition_size.is_some() {
            return partition::pack_partitioned(tok, &output, &config, &specs, &counters, tick);
        }
        let mut session = PackSession::create(tok, &output, config, specs)?;
        session.run(&counters, tick)?;
        session.finish()
    });
    let report = report.map_err(|err| data_err(err, &raised))?;
    pack_report(py, &report)
}

/// The dict `bpetok._data.PackResult` is made from.
fn pack_report<'py>(py: Python<'py>, report: &PackReport) -> PyResult<Bound<'py, PyDict>> {
    let totals = &report.manifest.totals;
    let result = PyDict::new(py);
    result.set_item("output", report.output.to_string_lossy())?;
    result.set_item("inputs", report.manifest.inputs.len())?;
    result.set_item("documents", totals.documents)?;
    result.set_item("tokens", totals.document_tokens)?;
    result.set_item("samples", totals.samples)?;
    result.set_item("shards", report.manifest.shards.len())?;
    result.set_item("padding_tokens", totals.padding_tokens)?;
    result.set_item("context_tokens", totals.context_tokens)?;
    result.set_item("documents_split", totals.documents_split)?;
    result.set_item("overlap_tokens", report.manifest.options.overlap_tokens)?;
    result.set_item("input_bytes", report.input_bytes)?;
    result.set_item("padding_share", report.padding_share())?;
    result.set_item("context_share", report.context_share())?;
    let skipped: Option<u64> = report
        .manifest
        .inputs
        .iter()
        .map(|i| i.skipped_records)
        .sum();
    result.set_item("skipped_records", skipped)?;
    match report.resumed {
        Some(resumed) => {
            let info = PyDict::new(py);
            info.set_item("shards", resumed.shards)?;
            info.set_item("samples", resumed.samples)?;
            info.set_item("complete", resumed.complete)?;
            result.set_item("resumed", info)?;
        }
        None => result.set_item("resumed", py.None())?,
    }
    result.set_item("manifest", to_py(py, &report.manifest)?)?;
    Ok(result)
}

fn json_err(what: &str, err: serde_json::Error) -> PyErr {
    PyValueError::new_err(format!("{what}: {err}"))
}

/// The partitions of a partitioned run (`bpetok.ray`), as JSON: of local `inputs` (resolved as
/// `pack` resolves them), or, with `layouts` (JSON, one `{"size", "row_groups"}` per input), of
/// files named by `inputs` that this machine may not see (remote URLs), their format and
/// compression from their names (or `input_format`).
#[pyfunction]
#[pyo3(signature = (inputs, *, input_format, lines, partition_size, layouts=None))]
pub fn plan_partitions(
    py: Python<'_>,
    inputs: Vec<String>,
    input_format: &str,
    lines: bool,
    partition_size: u64,
    layouts: Option<String>,
) -> PyResult<String> {
    let choice = parse::<FormatChoice>("input_format", input_format)?;
    let raised = Raised::default();
    let plan = py.detach(|| -> Result<Vec<Partition>, DataError> {
        let (specs, layouts) = match layouts {
            None => {
                let paths: Vec<PathBuf> = inputs.iter().map(PathBuf::from).collect();
                let (specs, _) = resolve(&paths, choice)?;
                let layouts = partition::file_layouts(&specs)?;
                (specs, layouts)
            }
            Some(json) => {
                let layouts: Vec<partition::FileLayout> = serde_json::from_str(&json)
                    .map_err(|e| bpetok::data::OptionsError::new("layouts", e.to_string()))?;
                let specs = inputs
                    .iter()
                    .map(|name| input::spec_by_name(name, choice))
                    .collect::<Result<Vec<_>, _>>()?;
                (specs, layouts)
            }
        };
        partition::plan_partitions(&specs, &layouts, lines, partition_size)
    });
    let plan = plan.map_err(|err| data_err(err, &raised))?;
    serde_json::to_string(&plan).map_err(|e| json_err("partitions", e))
}

/// The format and compression a file name says (`("jsonl", "gzip")`, ...), or `None`: what
/// decides which files of a directory are inputs (`docs/cli.md`, "Inputs").
#[pyfunction]
pub fn input_kind(name: &str) -> Option<(&'static str, &'static str)> {
    input::kind_of(name).map(|(format, compression)| (format.name(), compression.name()))
}

fn partitions_of(json: &str) -> PyResult<Vec<Partition>> {
    serde_json::from_str(json).map_err(|e| json_err("partitions", e))
}

/// Opens `output` for a partitioned run of `partitions` (JSON): `None` when it is ready, or the
/// report of a finished run (`resume`).
#[pyfunction]
pub fn prepare_partitioned<'py>(
    py: Python<'py>,
    tokenizer: &PyTokenizer,
    output: PathBuf,
    partitions: &str,
    options: PackArgs,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let tok = &tokenizer.inner;
    let config = options.config(tok)?;
    let partitions = partitions_of(partitions)?;
    let raised = Raised::default();
    let prepared = py.detach(|| partition::prepare_output(tok, &output, &config, &partitions));
    match prepared.map_err(|err| data_err(err, &raised))? {
        partition::Prepared::Ready => Ok(None),
        partition::Prepared::Complete(report) => Ok(Some(pack_report(py, &report)?)),
    }
}

/// Packs one partition (JSON) of the run in `output` into `output/NAME/` (a worker's task),
/// reading piece `k` from `local[k]` when given; `attempt` names its temporary directory.
#[pyfunction]
#[pyo3(signature = (tokenizer, output, partition, options, *, local=None, attempt=None))]
pub fn pack_partition<'py>(
    py: Python<'py>,
    tokenizer: &PyTokenizer,
    output: PathBuf,
    partition: &str,
    options: PackArgs,
    local: Option<Vec<PathBuf>>,
    attempt: Option<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let tok = &tokenizer.inner;
    let config = options.config(tok)?;
    let partition: Partition =
        serde_json::from_str(partition).map_err(|e| json_err("partition", e))?;
    let raised = Raised::default();
    let counters = Counters::default();
    let outcome = py.detach(|| {
        partition::pack_partition(
            tok,
            &output,
            &config,
            &partition,
            local.as_deref(),
            attempt.as_deref(),
            &counters,
            || tick(&None, None, &counters, &raised),
        )
    });
    let outcome = outcome.map_err(|err| data_err(err, &raised))?;
    let result = PyDict::new(py);
    result.set_item("name", &partition.name)?;
    result.set_item("already_complete", outcome.already_complete)?;
    result.set_item("lost_race", outcome.lost_race)?;
    result.set_item("documents", outcome.manifest.totals.documents)?;
    result.set_item("samples", outcome.manifest.totals.samples)?;
    result.set_item("shards", outcome.manifest.shards.len())?;
    let bytes: u64 = outcome.manifest.inputs.iter().map(|i| i.size).sum();
    result.set_item("input_bytes", bytes)?;
    Ok(result)
}

/// Writes `output/manifest.json` of a partitioned run whose partitions (JSON) are complete.
#[pyfunction]
pub fn finish_partitions<'py>(
    py: Python<'py>,
    tokenizer: &PyTokenizer,
    output: PathBuf,
    partitions: &str,
    options: PackArgs,
) -> PyResult<Bound<'py, PyDict>> {
    let tok = &tokenizer.inner;
    let config = options.config(tok)?;
    let partitions = partitions_of(partitions)?;
    let raised = Raised::default();
    let report = py.detach(|| partition::finish_partitions(tok, &output, &config, &partitions));
    let report = report.map_err(|err| data_err(err, &raised))?;
    pack_report(py, &report)
}

fn run_report<'py>(
    py: Python<'py>,
    output: Option<&Path>,
    report: &EncodeReport,
) -> PyResult<Bound<'py, PyDict>> {
    let result = PyDict::new(py);
    result.set_item("output", output.map(|p| p.to_string_lossy().into_owned()))?;
    result.set_item("inputs", report.inputs.len())?;
    result.set_item("documents", report.documents)?;
    result.set_item("tokens", report.tokens)?;
    result.set_item("input_bytes", report.input_bytes)?;
    Ok(result)
}

/// Encodes the documents of `inputs` to JSONL ids or Megatron files (`bpetok.encode_files`).
#[pyfunction]
#[pyo3(signature = (tokenizer, inputs, output, *, format, bos, eos, field, lines, errors,
                    input_format, num_threads, progress, chat=None, train_on="assistant"))]
#[allow(clippy::too_many_arguments)]
pub fn encode_files<'py>(
    py: Python<'py>,
    tokenizer: &PyTokenizer,
    inputs: Vec<PathBuf>,
    output: Option<PathBuf>,
    format: &str,
    bos: bool,
    eos: bool,
    field: String,
    lines: bool,
    errors: &str,
    input_format: &str,
    num_threads: usize,
    progress: ProgressFn,
    chat: Option<&str>,
    train_on: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let format = match format {
        "jsonl" => IdsOutput::Jsonl,
        "megatron" => IdsOutput::Megatron,
        other => return Err(PyValueError::new_err(format!("unknown format {other:?}"))),
    };
    let read = read_options(&tokenizer.inner, field, lines, errors, chat, train_on)?;
    let choice = parse::<FormatChoice>("input_format", input_format)?;
    let tok = &tokenizer.inner;
    let raised = Raised::default();
    let counters = Counters::default();
    let encode = EncodeOptions {
        add_bos: bos,
        add_eos: eos,
        threads: num_threads,
        skip_records: 0,
    };
    let report = py.detach(|| {
        let (specs, total) = resolve(&inputs, choice)?;
        bpetok::data::encode_to(
            tok,
            &specs,
            &read,
            encode,
            format,
            output.as_deref(),
            &counters,
            || tick(&progress, total, &counters, &raised),
        )
    });
    let report = report.map_err(|err| data_err(err, &raised))?;
    run_report(py, output.as_deref(), &report)
}

/// Decodes ids JSONL to text JSONL (`bpetok.decode_files`).
#[pyfunction]
#[pyo3(signature = (tokenizer, inputs, output, *, field, errors, input_format, num_threads,
                    progress))]
#[allow(clippy::too_many_arguments)]
pub fn decode_files<'py>(
    py: Python<'py>,
    tokenizer: &PyTokenizer,
    inputs: Vec<PathBuf>,
    output: Option<PathBuf>,
    field: String,
    errors: &str,
    input_format: &str,
    num_threads: usize,
    progress: ProgressFn,
) -> PyResult<Bound<'py, PyDict>> {
    let errors = parse::<Utf8Errors>("errors", errors)?;
    let choice = parse::<FormatChoice>("input_format", input_format)?;
    let tok = &tokenizer.inner;
    let raised = Raised::default();
    let counters = Counters::default();
    let report = py.detach(|| {
        let (specs, total) = resolve(&inputs, choice)?;
        bpetok::data::decode_to(
            tok,
            &specs,
            &field,
            errors,
            num_threads,
            output.as_deref(),
            &counters,
            || tick(&progress, total, &counters, &raised),
        )
    });
    let report = report.map_err(|err| data_err(err, &raised))?;
    run_report(py, output.as_deref(), &report)
}

/// Counts the documents, tokens and text bytes of `inputs` (`bpetok.count_files`).
#[pyfunction]
#[pyo3(signature = (tokenizer, inputs, *, bos, eos, field, lines, errors, input_format,
                    num_threads, progress, chat=None, train_on="assistant"))]
#[allow(clippy::too_many_arguments)]
pub fn count_files<'py>(
    py: Python<'py>,
    tokenizer: &PyTokenizer,
    inputs: Vec<PathBuf>,
    bos: bool,
    eos: bool,
    field: String,
    lines: bool,
    errors: &str,
    input_format: &str,
    num_threads: usize,
    progress: ProgressFn,
    chat: Option<&str>,
    train_on: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let read = read_options(&tokenizer.inner, field, lines, errors, chat, train_on)?;
    let choice = parse::<FormatChoice>("input_format", input_format)?;
    let tok = &tokenizer.inner;
    let raised = Raised::default();
    let counters = Counters::default();
    let encode = EncodeOptions {
        add_bos: bos,
        add_eos: eos,
        threads: num_threads,
        skip_records: 0,
    };
    let report = py.detach(|| {
        let (specs, total) = resolve(&inputs, choice)?;
        bpetok::data::count_to(tok, &specs, &read, encode, &counters, || {
            tick(&progress, total, &counters, &raised)
        })
    });
    let report = report.map_err(|err| data_err(err, &raised))?;
    let per_input = PyList::empty(py);
    for input in &report.inputs {
        let item = PyDict::new(py);
        item.set_item("name", &input.name)?;
        item.set_item("documents", input.documents)?;
        item.set_item("tokens", input.tokens)?;
        item.set_item("text_bytes", input.text_bytes)?;
        item.set_item("input_bytes", input.summary.size)?;
        item.set_item("tokens_per_byte", input.tokens_per_byte())?;
        per_input.append(item)?;
    }
    let result = PyDict::new(py);
    result.set_item("inputs", report.inputs.len())?;
    result.set_item("documents", report.documents)?;
    result.set_item("tokens", report.tokens)?;
    result.set_item("text_bytes", report.text_bytes)?;
    result.set_item("input_bytes", report.input_bytes)?;
    result.set_item("tokens_per_byte", report.tokens_per_byte())?;
    result.set_item("per_input", per_input)?;
    Ok(result)
}

/// (shards, samples, segments, documents, bytes) that `verify_shards` checked.
type VerifiedCounts = (u64, u64, u64, u64, u64);

/// Checks a shard directory (`bpetok verify`): returns (counts, violations) where counts are
/// (shards, samples, segments, documents, bytes) checked, None when any violation was found,
/// and violations are the first ones found with their total count.
#[pyfunction]
#[pyo3(signature = (path, tokenizer=None))]
pub fn verify_shards(
    py: Python<'_>,
    path: PathBuf,
    tokenizer: Option<&PyTokenizer>,
) -> (Option<VerifiedCounts>, Vec<String>, u64) {
    let tok = tokenizer.map(|t| &t.inner);
    match py.detach(|| bpetok::data::verify_dir_with(&path, tok)) {
        Ok(r) => (
            Some((r.shards, r.samples, r.segments, r.documents, r.bytes)),
            Vec::new(),
            0,
        ),
        Err(err) => (
            None,
            err.violations.iter().map(ToString::to_string).collect(),
            err.count(),
        ),
    }
}

/// Summarises a shard directory (`bpetok inspect`).
#[pyfunction]
pub fn inspect_shards<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let summary = py.detach(|| bpetok::data::shard::inspect_dir(&path));
    let summary = summary.map_err(|err| data_err(err.into(), &Raised::default()))?;
    to_py(py, &summary)
}

/// Raises `ShardError` (kind `tokenizer_mismatch`) unless the shards in `path` were packed with
/// `tokenizer`.
#[pyfunction]
pub fn check_tokenizer(py: Python<'_>, path: PathBuf, tokenizer: &PyTokenizer) -> PyResult<()> {
    let tok = &tokenizer.inner;
    let checked = py.detach(|| bpetok::data::shard::check_dir_tokenizer(&path, tok));
    checked.map_err(|err| data_err(err.into(), &Raised::default()))
}

/// Encoding threads when none are asked for: every CPU this process may use.
#[pyfunction]
pub fn default_threads() -> usize {
    bpetok::data::pipeline::default_threads()
}

/// Megatron-LM `.bin`/`.idx` files written from Python (`bpetok.megatron.MegatronWriter`): the
/// core's writer, fed little-endian buffers.
#[pyclass(module = "bpetok._bpetok", name = "MegatronWriter")]
pub struct PyMegatronWriter {
    inner: Option<MegatronWriter>,
    dtype: MegatronDtype,
}

fn megatron_dtype(vocab_size: u64) -> PyResult<MegatronDtype> {
    MegatronDtype::for_vocab_size(vocab_size).ok_or_else(|| {
        PyValueError::new_err(format!(
            "no Megatron-LM token dtype holds {vocab_size} pieces"
        ))
    })
}

#[pymethods]
impl PyMegatronWriter {
    #[new]
    fn new(prefix: PathBuf, vocab_size: u64) -> PyResult<Self> {
        let dtype = megatron_dtype(vocab_size)?;
        let inner = MegatronWriter::create(&prefix, dtype)
            .map_err(|err| data_err(err, &Raised::default()))?;
        Ok(Self {
            inner: Some(inner),
            dtype,
        })
    }

    /// The numpy name of the token dtype (`uint16`, `int32`, `int64`).
    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype.name()
    }

    fn documents(&self) -> u64 {
        self.inner.as_ref().map_or(0, MegatronWriter::documents)
    }

    /// Adds documents given as little-endian `u32` ids and `len + 1` little-endian `i64` offsets.
    fn add_documents(&mut self, py: Python<'_>, ids: &[u8], offsets: &[u8]) -> PyResult<()> {
        let writer = self
            .inner
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("this MegatronWriter is closed"))?;
        let ids: Vec<u32> = ids
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let bounds: Vec<usize> = offsets
            .chunks_exact(8)
            .map(|b| {
                let mut le = [0u8; 8];
                le.copy_from_slice(b);
                usize::try_from(i64::from_le_bytes(le)).unwrap_or(usize::MAX)
            })
            .collect();
        py.detach(|| {
            for pair in bounds.windows(2) {
                let doc = ids.get(pair[0]..pair[1]).ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "offsets {}..{} are not within the {} ids",
                        pair[0],
                        pair[1],
                        ids.len()
                    ))
                })?;
                writer
                    .add_document(doc)
                    .map_err(|err| data_err(err, &Raised::default()))?;
            }
            Ok(())
        })
    }

    /// Writes the index and puts both files in place.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        match self.inner.take() {
            Some(writer) => py
                .detach(|| writer.finish())
                .map_err(|err| data_err(err, &Raised::default())),
            None => Ok(()),
        }
    }

    /// Removes the temporary files: nothing is left under the prefix's names.
    fn abort(&mut self) {
        self.inner = None;
    }
}

/// The numpy name of the Megatron-LM token dtype for a vocabulary of `vocab_size` pieces.
#[pyfunction]
pub fn megatron_dtype_for(vocab_size: u64) -> PyResult<&'static str> {
    Ok(megatron_dtype(vocab_size)?.name())
}
