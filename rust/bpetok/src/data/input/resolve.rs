//! Which files the command line's inputs name: `-` is stdin, a directory is walked, a file's
//! format and compression come from its name (see `docs/cli.md`, "Inputs").

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::stream::open_error;
use super::{Compression, FormatChoice, InputError, InputErrorKind, InputFormat, InputSpec};

/// The files `inputs` name, in order: `-` is stdin (JSONL unless `choice` forces a format; at
/// most once), a directory contributes the files under it (recursively, sorted by path
/// components in code point order, names starting with `.` skipped): those whose name says
/// their format, or with a forced format every regular file. A file named directly must say
/// its format unless one is forced. Compression always comes from a `.gz` / `.zst` suffix
/// (stdin's from its first bytes). Sizes are taken now, for a progress total.
///
/// Errors: [`NotFound`](InputErrorKind::NotFound), [`StdinTwice`](InputErrorKind::StdinTwice),
/// [`NoInputFiles`](InputErrorKind::NoInputFiles), [`UnknownFormat`](InputErrorKind::UnknownFormat),
/// [`FileNameNotUtf8`](InputErrorKind::FileNameNotUtf8), [`Io`](InputErrorKind::Io).
pub fn resolve_inputs(
    inputs: &[PathBuf],
    choice: FormatChoice,
) -> Result<Vec<InputSpec>, InputError> {
    let forced = choice.format();
    let mut specs = Vec::new();
    let mut stdin_seen = false;
    for given in inputs {
        if given.as_os_str() == "-" {
            if stdin_seen {
                return Err(InputError::new(InputErrorKind::StdinTwice, "-"));
            }
            stdin_seen = true;
            specs.push(InputSpec {
                path: None,
                name: "<stdin>".to_owned(),
                format: forced.unwrap_or(InputFormat::Jsonl),
                compression: None,
                size: None,
                range: None,
            });
            continue;
        }
        let shown = given.to_string_lossy().into_owned();
        let meta = std::fs::metadata(given).map_err(|err| open_error(&shown, &err))?;
        let paths = if meta.is_dir() {
            let mut found = Vec::new();
            walk(given, &mut Vec::new(), forced.is_some(), &mut found)?;
            if found.is_empty() {
                return Err(InputError::new(InputErrorKind::NoInputFiles, shown));
            }
            found.sort_by(|a, b| a.0.cmp(&b.0));
            found.into_iter().map(|(_, path)| path).collect()
        } else {
            vec![given.clone()]
        };
        for path in paths {
            let Some(name) = path.to_str() else {
                let shown = path.to_string_lossy().into_owned();
                return Err(InputError::new(InputErrorKind::FileNameNotUtf8, shown));
            };
            let file_name = path.file_name().map_or("", |n| n.to_str().unwrap_or(""));
            let named = kind_of(file_name);
            let (format, compression) = match (forced, named) {
                (Some(format), _) => (format, compression_of(file_name)),
                (None, Some(found)) => found,
                (None, None) => {
                    return Err(InputError::new(InputErrorKind::UnknownFormat, name));
                }
            };
            let size = std::fs::metadata(&path)
                .map_err(|err| open_error(name, &err))?
                .len();
            specs.push(InputSpec {
                name: name.to_owned(),
                path: Some(path),
                format,
                compression: Some(compression),
                size: Some(size),
                range: None,
            });
        }
    }
    Ok(specs)
}

/// The input a file name (or URL) stands for, without looking at the file: its format and
/// compression from the name (the format forced by `choice` if it forces one), as
/// [`resolve_inputs`] gives for a file named directly; its size is not known.
pub fn spec_by_name(name: &str, choice: FormatChoice) -> Result<InputSpec, InputError> {
    let file_name = name.rsplit('/').next().unwrap_or(name);
    let (format, compression) = match (choice.format(), kind_of(file_name)) {
        (Some(format), _) => (format, compression_of(file_name)),
        (None, Some(found)) => found,
        (None, None) => return Err(InputError::new(InputErrorKind::UnknownFormat, name)),
    };
    Ok(InputSpec {
        path: Some(PathBuf::from(name)),
        name: name.to_owned(),
        format,
        compression: Some(compression),
        size: None,
        range: None,
    })
}

/// The format and compression a file name says (case-insensitively): `.jsonl`, `.json`,
/// `.txt` or `.parquet`, optionally followed by `.gz` or `.zst`. `None` for other names.
pub fn kind_of(name: &str) -> Option<(InputFormat, Compression)> {
    let lower = name.to_lowercase();
    let compression = compression_of(&lower);
    let stem = match compression {
        Compression::Gzip => &lower[..lower.len() - 3],
        Compression::Zstd => &lower[..lower.len() - 4],
        Compression::None => &lower[..],
    };
    let format = if stem.ends_with(".jsonl") || stem.ends_with(".json") {
        InputFormat::Jsonl
    } else if stem.ends_with(".txt") {
        InputFormat::Text
    } else if stem.ends_with(".parquet") {
        InputFormat::Parquet
    } else {
        return None;
    };
    Some((format, compression))
}

fn compression_of(name: &str) -> Compression {
    let lower = name.to_lowercase();
    if lower.ends_with(".gz") {
        Compression::Gzip
    } else if lower.ends_with(".zst") {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Adds the input files under `dir` to `found`, each with its path components below the walked
/// directory (the sort key: byte order of UTF-8 is code point order). Names that are not UTF-8
/// are kept (with a lossy key) for `resolve_inputs` to refuse by name.
fn walk(
    dir: &Path,
    parts: &mut Vec<String>,
    every_file: bool,
    found: &mut Vec<(Vec<String>, PathBuf)>,
) -> Result<(), InputError> {
    let shown = || dir.to_string_lossy().into_owned();
    let entries = std::fs::read_dir(dir).map_err(|err| open_error(&shown(), &err))?;
    for entry in entries {
        let entry = entry.map_err(|err| open_error(&shown(), &err))?;
        let name = entry.file_name();
        if is_hidden(&name) {
            continue;
        }
        let path = entry.path();
        // Symbolic links are followed, as Python's os.walk follows them to files (not to
        // directories: it does not descend into linked directories by default).
        let file_type = entry
            .file_type()
            .map_err(|err| open_error(&path.to_string_lossy(), &err))?;
        let lossy = name.to_string_lossy().into_owned();
        if file_type.is_dir() {
            parts.push(lossy);
            walk(&path, parts, every_file, found)?;
            parts.pop();
            continue;
        }
        let is_file = if file_type.is_symlink() {
            std::fs::metadata(&path).is_ok_and(|m| m.is_file())
        } else {
            file_type.is_file()
        };
        let wanted = is_file && (every_file || name.to_str().is_none_or(|n| kind_of(n).is_some()));
        if wanted {
            let mut key = parts.clone();
            key.push(lossy);
            found.push((key, path));
        }
    }
    Ok(())
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}
