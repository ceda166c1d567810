//! Parquet inputs, with the `parquet` crate's column API (no Arrow): one document per row of
//! the string column named like the field. Parquet needs random access, so the raw bytes are
//! first read through once (hashed and counted like every input); compressed files and stdin
//! are decompressed into a temporary file on that pass.

use std::fs::File;
use std::io::{self, Seek};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicU64;

use parquet::basic::{ConvertedType, LogicalType, Repetition, TimeUnit, Type as PhysicalType};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::Type;

use super::stream::{open, open_error, read_error, Hashed};
use super::text::utf8_error;
use super::{Compression, InputError, InputErrorKind, InputRange, InputSpec, Utf8Errors};

/// Rows asked of the column reader at a time.
const BATCH_ROWS: usize = 4096;

/// Reads the Parquet input, handing `each` the document (or the error) of every row from index
/// `skip` on, and returns its raw size, SHA-256 and compression. An error for the whole file (it
/// cannot be read, the column is missing or not strings) is returned, not handed over.
pub(super) fn read_parquet<E: From<InputError>>(
    input: &InputSpec,
    column: &str,
    errors: Utf8Errors,
    bytes_read: &AtomicU64,
    skip: u64,
    mut each: impl FnMut(u64, Result<Option<String>, InputError>) -> Result<(), E>,
) -> Result<(u64, String, Compression), E> {
    if let Some(InputRange::RowGroups([first, end])) = input.range {
        return read_row_groups(input, column, errors, bytes_read, skip, (first, end), each);
    }
    let name = input.name.as_str();
    let mut hashed = Hashed::default();
    let (compression, file) = {
        let (compression, mut stream) = open(input, &mut hashed, bytes_read)?;
        let file = match (&input.path, compression) {
            (Some(path), Compression::None) => {
                io::copy(&mut stream, &mut io::sink())
                    .map_err(|err| read_error(name, None, compression, &err))?;
                File::open(path).map_err(|err| open_error(name, &err))?
            }
            _ => {
                let mut spool = tempfile::tempfile().map_err(|err| spool_error(name, &err))?;
                io::copy(&mut stream, &mut spool)
                    .map_err(|err| read_error(name, None, compression, &err))?;
                spool.rewind().map_err(|err| spool_error(name, &err))?;
                spool
            }
        };
        (compression, file)
    };
    let texts = StringColumn::open(file, column).map_err(|kind| InputError::new(kind, name))?;
    read_rows(name, texts, column, errors, skip, &mut each)?;
    let (size, sha256) = hashed.finish();
    Ok((size, sha256, compression))
}

/// [`read_parquet`] of the row groups `first..end` of an uncompressed file: its size and SHA-256
/// are those of the bytes the groups' column chunks span ([`hash_row_groups`], a first pass over
/// those bytes, as every input is hashed before Parquet reads it).
fn read_row_groups<E: From<InputError>>(
    input: &InputSpec,
    column: &str,
    errors: Utf8Errors,
    bytes_read: &AtomicU64,
    skip: u64,
    (first, end): (u64, u64),
    mut each: impl FnMut(u64, Result<Option<String>, InputError>) -> Result<(), E>,
) -> Result<(u64, String, Compression), E> {
    let name = input.name.as_str();
    let (size, sha256) = hash_row_groups(input, (first, end), bytes_read)?;
    let path = input
        .path
        .as_ref()
        .expect("hash_row_groups checked the path");
    let file = File::open(path).map_err(|err| open_error(name, &err))?;
    let mut texts = StringColumn::open(file, column).map_err(|kind| InputError::new(kind, name))?;
    texts.next_group = first as usize;
    texts.end_group = end as usize;
    read_rows(name, texts, column, errors, skip, &mut each)?;
    Ok((size, sha256, Compression::None))
}

/// The bytes the column chunks of row groups `first..end` span (`None` for no chunk).
fn row_group_span(reader: &SerializedFileReader<File>, first: u64, end: u64) -> Option<(u64, u64)> {
    let metadata = reader.metadata();
    let mut span: Option<(u64, u64)> = None;
    for g in first..end {
        for chunk in metadata.row_group(g as usize).columns() {
            let (offset, length) = chunk.byte_range();
            let (lo, hi) = span.unwrap_or((offset, offset + length));
            span = Some((lo.min(offset), hi.max(offset + length)));
        }
    }
    span
}

/// Reads `span` of `file` into `hashed` (and `bytes_read`).
fn hash_span(
    name: &str,
    file: &mut File,
    span: Option<(u64, u64)>,
    hashed: &mut Hashed,
    bytes_read: &AtomicU64,
) -> Result<(), InputError> {
    let Some((lo, hi)) = span else {
        return Ok(());
    };
    file.seek(io::SeekFrom::Start(lo))
        .map_err(|err| read_error(name, None, Compression::None, &err))?;
    let mut left = hi - lo;
    let mut buf = vec![0u8; super::stream::READ_SIZE];
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = io::Read::read(file, &mut buf[..want])
            .map_err(|err| read_error(name, None, Compression::None, &err))?;
        if n == 0 {
            let err = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ends inside a row group",
            );
            return Err(read_error(name, None, Compression::None, &err));
        }
        hashed.update(&buf[..n]);
        bytes_read.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        left -= n as u64;
    }
    Ok(())
}

/// The size and SHA-256 that reading the row groups `first..end` of `input` records, without
/// reading its rows (a resumed run checks a piece it had read to its end).
pub(super) fn hash_row_groups(
    input: &InputSpec,
    (first, end): (u64, u64),
    bytes_read: &AtomicU64,
) -> Result<(u64, String), InputError> {
    let name = input.name.as_str();
    let (Some(path), Some(Compression::None)) = (&input.path, input.compression) else {
        let reason = "row groups of a compressed file or of standard input".to_owned();
        return Err(InputError::new(
            InputErrorKind::Unsplittable { reason },
            name,
        ));
    };
    let file = File::open(path).map_err(|err| open_error(name, &err))?;
    let mut spanned = file.try_clone().map_err(|err| open_error(name, &err))?;
    let reader = guarded(|| open_reader(file)).map_err(|kind| InputError::new(kind, name))?;
    let groups = reader.num_row_groups() as u64;
    if first > end || end > groups {
        let reason = format!("row groups {first} to {end} asked for, the file has {groups}");
        return Err(InputError::new(
            InputErrorKind::Unsplittable { reason },
            name,
        ));
    }
    let mut hashed = Hashed::default();
    hash_span(
        name,
        &mut spanned,
        row_group_span(&reader, first, end),
        &mut hashed,
        bytes_read,
    )?;
    Ok(hashed.finish())
}

/// Hands `each` the rows of `texts` from index `skip` on.
fn read_rows<E: From<InputError>>(
    name: &str,
    mut texts: StringColumn,
    column: &str,
    errors: Utf8Errors,
    skip: u64,
    each: &mut impl FnMut(u64, Result<Option<String>, InputError>) -> Result<(), E>,
) -> Result<(), E> {
    let mut row = 0u64;
    while let Some(batch) = texts
        .next_batch()
        .map_err(|kind| InputError::new(kind, name))?
    {
        for value in batch {
            row += 1;
            if row <= skip {
                continue;
            }
            let doc = match value {
                None => Err(InputError::at_row(
                    InputErrorKind::NullValue {
                        column: column.to_owned(),
                    },
                    name,
                    row,
                )),
                Some(bytes) => match String::from_utf8(bytes.data().to_vec()) {
                    Ok(text) => Ok(Some(text)),
                    Err(_) if errors == Utf8Errors::Replace => {
                        Ok(Some(String::from_utf8_lossy(bytes.data()).into_owned()))
                    }
                    Err(_) => {
                        let mut err = utf8_error(name, None, bytes.data());
                        err.line = None;
                        err.column = None;
                        err.row = Some(row);
                        Err(err)
                    }
                },
            };
            each(row - 1, doc)?;
        }
    }
    Ok(())
}

/// The `total_byte_size` of each row group of the uncompressed Parquet file at `path` (named
/// `name` in messages), from its footer.
pub fn row_group_sizes(path: &std::path::Path, name: &str) -> Result<Vec<u64>, InputError> {
    let file = File::open(path).map_err(|err| open_error(name, &err))?;
    guarded(|| {
        let reader = open_reader(file)?;
        Ok(reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.total_byte_size().max(0) as u64)
            .collect())
    })
    .map_err(|kind| InputError::new(kind, name))
}

fn spool_error(name: &str, err: &io::Error) -> InputError {
    let message = format!("cannot write a temporary file: {err}");
    InputError::new(InputErrorKind::Io { message }, name)
}

/// The values of one top-level string column, a batch at a time. The `parquet` crate may panic
/// on a malformed file; such a panic is an error like its other errors.
struct StringColumn {
    reader: SerializedFileReader<File>,
    index: usize,
    max_def: i16,
    next_group: usize,
    /// The group after the last to read.
    end_group: usize,
    current: Option<ColumnReaderImpl<ByteArrayType>>,
    values: Vec<ByteArray>,
    defs: Vec<i16>,
}

fn parquet_error(err: impl std::fmt::Display) -> InputErrorKind {
    InputErrorKind::Parquet {
        message: err.to_string(),
    }
}

/// The crate's reader of `file`, once its footer has passed `parquet_footer::check` (a footer
/// whose lengths cannot be right would make the crate's decoder ask for gigabytes and abort).
fn open_reader(mut file: File) -> Result<SerializedFileReader<File>, InputErrorKind> {
    super::parquet_footer::check(&mut file)
        .map_err(|message| InputErrorKind::Parquet { message })?;
    SerializedFileReader::new(file).map_err(parquet_error)
}

fn guarded<T>(f: impl FnOnce() -> Result<T, InputErrorKind>) -> Result<T, InputErrorKind> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "malformed file".to_owned());
        Err(parquet_error(what))
    })
}

impl StringColumn {
    fn open(file: File, column: &str) -> Result<Self, InputErrorKind> {
        guarded(|| {
            let reader = open_reader(file)?;
            let schema = reader.metadata().file_metadata().schema_descr_ptr();
            let fields = schema.root_schema().get_fields();
            let Some(field) = fields.iter().find(|f| f.name() == column) else {
                return Err(InputErrorKind::MissingColumn {
                    column: column.to_owned(),
                    columns: fields.iter().map(|f| f.name().to_owned()).collect(),
                });
            };
            let not_a_string = || InputErrorKind::NotAStringColumn {
                column: column.to_owned(),
                type_name: arrow_type_name(field).into(),
            };
            let is_string = field.is_primitive()
                && field.get_physical_type() == PhysicalType::BYTE_ARRAY
                && field.get_basic_info().repetition() != Repetition::REPEATED
                && (matches!(
                    field.get_basic_info().logical_type(),
                    Some(LogicalType::String)
                ) || field.get_basic_info().converted_type() == ConvertedType::UTF8);
            if !is_string {
                return Err(not_a_string());
            }
            let index = (0..schema.num_columns())
                .find(|&i| schema.column(i).path().parts() == [column])
                .ok_or_else(not_a_string)?;
            Ok(StringColumn {
                max_def: schema.column(index).max_def_level(),
                end_group: reader.num_row_groups(),
                reader,
                index,
                next_group: 0,
                current: None,
                values: Vec::new(),
                defs: Vec::new(),
            })
        })
    }

    /// The next rows' values (`None` for a null), or `None` after the last row.
    fn next_batch(&mut self) -> Result<Option<Vec<Option<ByteArray>>>, InputErrorKind> {
        guarded(|| loop {
            let Some(current) = &mut self.current else {
                if self.next_group >= self.end_group {
                    return Ok(None);
                }
                let group = self
                    .reader
                    .get_row_group(self.next_group)
                    .map_err(parquet_error)?;
                self.next_group += 1;
                match group.get_column_reader(self.index).map_err(parquet_error)? {
                    ColumnReader::ByteArrayColumnReader(reader) => self.current = Some(reader),
                    _ => return Err(parquet_error("the column's pages are not byte arrays")),
                }
                continue;
            };
            self.values.clear();
            self.defs.clear();
            let defs = (self.max_def > 0).then_some(&mut self.defs);
            let (rows, _, _) = current
                .read_records(BATCH_ROWS, defs, None, &mut self.values)
                .map_err(parquet_error)?;
            if rows == 0 {
                self.current = None;
                continue;
            }
            let mut values = self.values.drain(..);
            let batch: Vec<Option<ByteArray>> = if self.max_def > 0 {
                self.defs[..rows]
                    .iter()
                    .map(|&def| {
                        if def == self.max_def {
                            values.next()
                        } else {
                            None
                        }
                    })
                    .collect()
            } else {
                values.by_ref().take(rows).map(Some).collect()
            };
            return Ok(Some(batch));
        })
    }
}

/// A column's type as pyarrow names it, for messages (the common types; others by their
/// Parquet name).
fn arrow_type_name(field: &Type) -> String {
    let info = field.get_basic_info();
    let logical = info.logical_type();
    if info.repetition() == Repetition::REPEATED {
        return "list".to_owned();
    }
    if field.is_group() {
        return match (logical, info.converted_type()) {
            (Some(LogicalType::List), _) | (_, ConvertedType::LIST) => "list".to_owned(),
            (Some(LogicalType::Map), _) | (_, ConvertedType::MAP) => "map".to_owned(),
            _ => "struct".to_owned(),
        };
    }
    let unit = |unit: &TimeUnit| match unit {
        TimeUnit::MILLIS(_) => "ms",
        TimeUnit::MICROS(_) => "us",
        TimeUnit::NANOS(_) => "ns",
    };
    match (field.get_physical_type(), logical) {
        (
            _,
            Some(LogicalType::Integer {
                bit_width,
                is_signed,
            }),
        ) => {
            format!("{}int{bit_width}", if is_signed { "" } else { "u" })
        }
        (_, Some(LogicalType::Decimal { scale, precision })) => {
            format!("decimal128({precision}, {scale})")
        }
        (_, Some(LogicalType::Date)) => "date32[day]".to_owned(),
        (PhysicalType::INT32, Some(LogicalType::Time { unit: u, .. })) => {
            format!("time32[{}]", unit(&u))
        }
        (_, Some(LogicalType::Time { unit: u, .. })) => format!("time64[{}]", unit(&u)),
        (_, Some(LogicalType::Timestamp { unit: u, .. })) => format!("timestamp[{}]", unit(&u)),
        (_, Some(LogicalType::Float16)) => "halffloat".to_owned(),
        (PhysicalType::BOOLEAN, _) => "bool".to_owned(),
        (PhysicalType::INT32, _) => "int32".to_owned(),
        (PhysicalType::INT64, _) => "int64".to_owned(),
        (PhysicalType::INT96, _) => "timestamp[ns]".to_owned(),
        (PhysicalType::FLOAT, _) => "float".to_owned(),
        (PhysicalType::DOUBLE, _) => "double".to_owned(),
        (PhysicalType::BYTE_ARRAY, _) => "binary".to_owned(),
        (PhysicalType::FIXED_LEN_BYTE_ARRAY, _) => {
            let length = match field {
                Type::PrimitiveType { type_length, .. } => *type_length,
                Type::GroupType { .. } => 0,
            };
            format!("fixed_size_binary[{length}]")
        }
    }
}
