//! Output files that appear whole or not at all: written under a temporary name beside the final
//! one (`.NAME.PID-RANDOM.tmp`, as the command line has always named them) and renamed into place
//! on [`AtomicFile::commit`]; dropped uncommitted (an error, a panic, a stopped run), the
//! temporary is removed, so no partial output is ever left under the final name.

use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::data::error::DataError;

/// Bytes buffered before a write reaches the file.
const BUFFER: usize = 1 << 20;

pub(crate) struct AtomicFile {
    path: PathBuf,
    temporary: PathBuf,
    /// `None` once committed.
    out: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates the temporary file for `path` in `path`'s directory (mode 0666 less the umask, as
    /// for any new file).
    pub(crate) fn create(path: &Path) -> Result<Self, DataError> {
        let invalid = || {
            DataError::output(path)(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file name",
            ))
        };
        let name = path.file_name().ok_or_else(invalid)?.to_string_lossy();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut last = None;
        for attempt in 0..100u64 {
            let temporary = dir.join(format!(
                ".{name}.{}-{:08x}.tmp",
                std::process::id(),
                random_u32(attempt)
            ));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temporary)
            {
                Ok(file) => {
                    return Ok(AtomicFile {
                        path: path.to_path_buf(),
                        temporary,
                        out: Some(BufWriter::with_capacity(BUFFER, file)),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(DataError::output(path)(e)),
            }
        }
        Err(DataError::output(path)(last.unwrap_or_else(|| {
            io::Error::other("cannot make a temporary file")
        })))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` (to the temporary file); an error names the final path.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<(), DataError> {
        match self.out.as_mut() {
            Some(out) => out.write_all(bytes).map_err(DataError::output(&self.path)),
            None => Err(DataError::output(&self.path)(io::Error::other(
                "already committed",
            ))),
        }
    }

    /// Flushes the file and renames it to its final name.
    pub(crate) fn commit(mut self) -> Result<(), DataError> {
        if let Some(out) = self.out.take() {
            let file = out
                .into_inner()
                .map_err(|e| DataError::output(&self.path)(e.into_error()))?;
            drop(file);
            fs::rename(&self.temporary, &self.path).map_err(DataError::output(&self.path))?;
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.temporary);
        }
    }
}

/// Where lines of output go: a file written atomically, or standard output.
pub(crate) enum LinesOut {
    File(AtomicFile),
    Stdout(io::StdoutLock<'static>),
}

impl LinesOut {
    /// A file written atomically at `path`, or standard output for `None`.
    pub(crate) fn create(path: Option<&Path>) -> Result<Self, DataError> {
        Ok(match path {
            Some(path) => LinesOut::File(AtomicFile::create(path)?),
            None => LinesOut::Stdout(io::stdout().lock()),
        })
    }

    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<(), DataError> {
        match self {
            LinesOut::File(file) => file.write_all(bytes),
            LinesOut::Stdout(out) => out.write_all(bytes).map_err(DataError::output("<stdout>")),
        }
    }

    pub(crate) fn commit(self) -> Result<(), DataError> {
        match self {
            LinesOut::File(file) => file.commit(),
            LinesOut::Stdout(mut out) => out.flush().map_err(DataError::output("<stdout>")),
        }
    }
}

/// 32 random bits for a temporary name: the standard library's per-process random hash keys, over
/// the time and the attempt number (no random-number crate needed for a name that is retried on a
/// collision anyway).
fn random_u32(attempt: u64) -> u32 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u64(attempt);
    hasher.finish() as u32
}
