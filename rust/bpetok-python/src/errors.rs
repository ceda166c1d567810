//! The one place where errors of the core become Python exceptions: the classes of
//! `bpetok._errors` (all under `bpetok.BpetokError`, each also a `ValueError` or an `OSError`),
//! with `kind` (the core's `kind()`) and, for input errors, `file`, `line`, `column` and `row`.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;

use bpetok::data::error::DataError;
use bpetok::data::input::InputError;
use bpetok::data::ShardError;

/// An instance of `bpetok._errors.<class>` made from `args`, with `attrs` set on it.
fn bpetok_error<'py>(
    py: Python<'py>,
    class: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
    attrs: &[(&str, Bound<'py, PyAny>)],
) -> PyErr {
    let made = (|| {
        let class = py.import("bpetok._errors")?.getattr(class)?;
        let err = class.call1(args)?;
        for (name, value) in attrs {
            err.setattr(*name, value)?;
        }
        Ok::<_, PyErr>(PyErr::from_value(err))
    })();
    made.unwrap_or_else(|failed| failed)
}

fn kind_attr<'py>(py: Python<'py>, kind: &str) -> (&'static str, Bound<'py, PyAny>) {
    ("kind", kind.into_pyobject(py).expect("a str").into_any())
}

/// A model that cannot be loaded (`ModelError`), or an id out of range (`IndexError`).
pub fn model_err(err: bpetok::Error) -> PyErr {
    let message = err.to_string();
    match err {
        bpetok::Error::Io { source, path } => {
            Python::attach(|py| io_err(py, "OSError", &source, &path, "io"))
        }
        bpetok::Error::IdOutOfRange { .. } => PyIndexError::new_err(message),
        bpetok::Error::Parse(_)
        | bpetok::Error::Unsupported(_)
        | bpetok::Error::Inconsistent(_) => {
            Python::attach(|py| bpetok_error(py, "ModelError", (message,), &[]))
        }
    }
}

/// An `OSError` (or subclass `class` of `bpetok._errors`) with errno, strerror and filename.
fn io_err(
    py: Python<'_>,
    class: &str,
    source: &std::io::Error,
    path: &impl AsRef<std::ffi::OsStr>,
    kind: &str,
) -> PyErr {
    let errno = source.raw_os_error().unwrap_or(0);
    // strerror without Rust's " (os error N)" suffix, as Python's own OSError text has it.
    let text = source.to_string();
    let strerror = match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    let filename = std::path::Path::new(path.as_ref())
        .to_string_lossy()
        .into_owned();
    if class == "OSError" {
        return pyo3::exceptions::PyOSError::new_err((errno, strerror, filename));
    }
    bpetok_error(
        py,
        class,
        (errno, strerror, filename),
        &[kind_attr(py, kind)],
    )
}

fn input_err(py: Python<'_>, err: &InputError) -> PyErr {
    let mut attrs = vec![
        kind_attr(py, err.kind()),
        (
            "file",
            err.file
                .clone()
                .into_pyobject(py)
                .expect("a str")
                .into_any(),
        ),
    ];
    for (name, value) in [("line", err.line), ("column", err.column), ("row", err.row)] {
        if let Some(value) = value {
            attrs.push((name, value.into_pyobject(py).expect("an int").into_any()));
        }
    }
    bpetok_error(py, "InputError", (err.to_string(),), &attrs)
}

fn shard_err(py: Python<'_>, err: &ShardError) -> PyErr {
    if let ShardError::Io { path, source } = err {
        return io_err(py, "OutputError", source, path, err.kind());
    }
    bpetok_error(
        py,
        "ShardError",
        (err.to_string(),),
        &[kind_attr(py, err.kind())],
    )
}

/// The exception for a failed data run: the one a Python callback raised (kept in `raised`),
/// else the mapping of `err`.
pub fn data_err(err: DataError, raised: &Raised) -> PyErr {
    if let Some(original) = raised.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return original;
    }
    Python::attach(|py| match &err {
        DataError::Input(input) => input_err(py, input),
        DataError::Shard(shard) => shard_err(py, shard),
        DataError::Options(options) => bpetok_error(
            py,
            "PackOptionsError",
            (err.to_string(),),
            &[
                kind_attr(py, err.kind()),
                (
                    "option",
                    options.option.into_pyobject(py).expect("a str").into_any(),
                ),
            ],
        ),
        DataError::Output { path, source } => io_err(py, "OutputError", source, path, "output"),
        DataError::Stopped => pyo3::exceptions::PyKeyboardInterrupt::new_err("the run was stopped"),
    })
}

/// The first Python exception raised by a callback during a run, raised again as it is.
pub type Raised = Arc<Mutex<Option<PyErr>>>;

/// Keeps `err` in `raised` (the first one wins).
pub fn keep_exception(raised: &Raised, err: PyErr) {
    raised
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert(err);
}
