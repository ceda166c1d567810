//! The bytes of an input: opened (a file or stdin), counted and hashed as they are read (the
//! raw, still compressed bytes), then decompressed (gzip members one after another as Python's
//! `gzip` reads them, zstd frames one after another).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::text::BOM;
use super::{Compression, InputError, InputErrorKind, InputRange, InputSpec};

/// Bytes asked of the file (or decompressor) per read.
pub(super) const READ_SIZE: usize = 1 << 20;

/// The raw bytes' count and hash so far.
pub(super) struct Hashed {
    /// `None`: counted only ([`Hashed::size_only`]).
    sha: Option<Sha256>,
    size: u64,
}

impl Default for Hashed {
    fn default() -> Self {
        Hashed {
            sha: Some(Sha256::new()),
            size: 0,
        }
    }
}

impl Hashed {
    /// Counting without hashing, for inputs whose hash nothing records (ids JSONL: hashing was
    /// 7% of `bpetok decode`'s time).
    pub(super) fn size_only() -> Self {
        Hashed { sha: None, size: 0 }
    }

    /// Counts and hashes `bytes`, read by the caller.
    pub(super) fn update(&mut self, bytes: &[u8]) {
        if let Some(sha) = &mut self.sha {
            sha.update(bytes);
        }
        self.size += bytes.len() as u64;
    }

    /// The size and hex SHA-256 of the raw bytes (empty when counted only).
    pub(super) fn finish(self) -> (u64, String) {
        let sha256 = self.sha.map_or_else(String::new, |sha| {
            sha.finalize().iter().map(|b| format!("{b:02x}")).collect()
        });
        (self.size, sha256)
    }
}

/// The raw bytes of an input, hashed and counted as they pass.
struct HashingReader<'a, R> {
    inner: R,
    hashed: &'a mut Hashed,
    progress: &'a AtomicU64,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(sha) = &mut self.hashed.sha {
            sha.update(&buf[..n]);
        }
        self.hashed.size += n as u64;
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The error for a failed read at `line` (`None`: a whole-file or Parquet read).
pub(super) fn read_error(
    name: &str,
    line: Option<u64>,
    compression: Compression,
    err: &io::Error,
) -> InputError {
    let kind = match compression {
        Compression::None => InputErrorKind::Io {
            message: err.to_string(),
        },
        _ => InputErrorKind::Decompress {
            compression,
            message: err.to_string(),
        },
    };
    InputError {
        line,
        ..InputError::new(kind, name)
    }
}

/// The raw (still compressed) bytes of `input`, counted into `hashed` and `progress` as they are
/// read: the file, the lines of its byte range, or stdin.
pub(super) fn open_raw<'a>(
    input: &InputSpec,
    hashed: &'a mut Hashed,
    progress: &'a AtomicU64,
) -> Result<impl Read + 'a, InputError> {
    let raw: Box<dyn Read> = match (&input.path, input.range) {
        (Some(path), Some(InputRange::Bytes([start, end]))) => {
            if input.compression != Some(Compression::None) {
                let reason = "a byte range of a compressed file".to_owned();
                return Err(InputError::new(
                    InputErrorKind::Unsplittable { reason },
                    &input.name,
                ));
            }
            let file = File::open(path).map_err(|err| open_error(&input.name, &err))?;
            let lines = LineRange::new(file, start, end)
                .map_err(|err| read_error(&input.name, Some(1), Compression::None, &err))?;
            Box::new(lines)
        }
        (Some(path), _) => Box::new(File::open(path).map_err(|err| open_error(&input.name, &err))?),
        (None, _) => Box::new(io::stdin()),
    };
    Ok(HashingReader {
        inner: raw,
        hashed,
        progress,
    })
}

/// Opens `input`: its compression (detected from the first bytes when not given) and its
/// decompressed bytes. Everything read through the stream is counted into `hashed` and
/// `progress`.
pub(super) fn open<'a>(
    input: &InputSpec,
    hashed: &'a mut Hashed,
    progress: &'a AtomicU64,
) -> Result<(Compression, Box<dyn BufRead + 'a>), InputError> {
    let mut hashing = open_raw(input, hashed, progress)?;
    // Detection needs the first 4 bytes, which a pipe may deliver over several reads.
    let mut head = Vec::new();
    if input.compression.is_none() {
        let mut byte = [0u8; 4];
        while head.len() < 4 {
            match hashing.read(&mut byte[..4 - head.len()]) {
                Ok(0) => break,
                Ok(n) => head.extend_from_slice(&byte[..n]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(read_error(&input.name, Some(1), Compression::None, &err)),
            }
        }
    }
    let compression = input
        .compression
        .unwrap_or(if head.starts_with(b"\x1f\x8b") {
            Compression::Gzip
        } else if head.starts_with(b"\x28\xb5\x2f\xfd") {
            Compression::Zstd
        } else {
            Compression::None
        });
    let mut buffered = BufReader::with_capacity(READ_SIZE, io::Cursor::new(head).chain(hashing));
    let stream: Box<dyn BufRead + 'a> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            READ_SIZE,
            GzipMembers::Between {
                input: buffered,
                first: true,
            },
        )),
        Compression::Zstd => {
            let empty = buffered
                .fill_buf()
                .map_err(|err| read_error(&input.name, Some(1), Compression::None, &err))?
                .is_empty();
            if empty {
                // An empty file holds no frame: no data, as Python's zstandard reads it.
                Box::new(buffered)
            } else {
                let decoder = zstd::stream::read::Decoder::with_buffer(buffered)
                    .map_err(|err| read_error(&input.name, Some(1), compression, &err))?;
                Box::new(BufReader::with_capacity(READ_SIZE, decoder))
            }
        }
    };
    Ok((compression, stream))
}

/// The error for a file that cannot be opened (or listed, or measured).
pub(super) fn open_error(name: &str, err: &io::Error) -> InputError {
    let kind = if err.kind() == io::ErrorKind::NotFound {
        InputErrorKind::NotFound
    } else {
        InputErrorKind::Io {
            message: err.to_string(),
        }
    };
    InputError::new(kind, name)
}

/// Gzip data as Python's `gzip` module reads it: members one after the other, with any `\0`
/// padding between and after them skipped, and an empty input as no data.
enum GzipMembers<R: BufRead> {
    Between { input: R, first: bool },
    Member(Box<flate2::bufread::GzDecoder<R>>),
    Done,
}

impl<R: BufRead> Read for GzipMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match std::mem::replace(self, GzipMembers::Done) {
                GzipMembers::Done => return Ok(0),
                GzipMembers::Member(mut decoder) => {
                    let n = decoder.read(buf)?;
                    if n > 0 || buf.is_empty() {
                        *self = GzipMembers::Member(decoder);
                        return Ok(n);
                    }
                    *self = GzipMembers::Between {
                        input: decoder.into_inner(),
                        first: false,
                    };
                }
                GzipMembers::Between { mut input, first } => {
                    loop {
                        let available = input.fill_buf()?;
                        if available.is_empty() {
                            return Ok(0); // end of input, between members
                        }
                        let zeros = if first {
                            0
                        } else {
                            available.iter().take_while(|&&b| b == 0).count()
                        };
                        if zeros == 0 {
                            break;
                        }
                        input.consume(zeros);
                    }
                    *self = GzipMembers::Member(Box::new(flate2::bufread::GzDecoder::new(input)));
                }
            }
        }
    }
}

/// Calls `each(line_number, line)` for every line of `stream` (from 1, with its `\n`; the first
/// line's byte order mark dropped when `bom`: the stream starts the file), the one line loop of
/// the JSONL, text-lines and ids readers. A read error names the line it stopped in.
pub(super) fn for_each_line<E: From<InputError>>(
    stream: &mut dyn BufRead,
    name: &str,
    compression: Compression,
    bom: bool,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut line = Vec::new();
    let mut lineno = 0u64;
    let without_bom = |lineno: u64, raw: &[u8]| -> usize {
        usize::from(bom && lineno == 1 && raw.starts_with(BOM)) * BOM.len()
    };
    loop {
        // A line whole in the stream's buffer is handed over from there; one that runs past it
        // is copied together first. (Copying every line was a tenth of the reading thread's
        // time in `bpetok decode`.)
        let buffered = match stream.fill_buf() {
            Ok(buffered) => buffered,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(read_error(name, Some(lineno + 1), compression, &err).into()),
        };
        if buffered.is_empty() {
            return Ok(());
        }
        if let Some(end) = memchr::memchr(b'\n', buffered) {
            lineno += 1;
            let raw = &buffered[..=end];
            each(lineno, &raw[without_bom(lineno, raw)..])?;
            stream.consume(end + 1);
            continue;
        }
        line.clear();
        match stream.read_until(b'\n', &mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(err) => return Err(read_error(name, Some(lineno + 1), compression, &err).into()),
        }
        lineno += 1;
        each(lineno, &line[without_bom(lineno, &line)..])?;
    }
}

/// The lines of a file that begin at an offset in `start..end` ([`InputRange::Bytes`]): reading
/// skips to the first line that begins at `start` or later, and stops after the line that
/// begins before `end` (or at the end of the file).
struct LineRange<R> {
    inner: BufReader<R>,
    /// Offset of the next byte.
    pos: u64,
    end: u64,
    /// The last byte given ended a line (or nothing was given and `pos` begins one).
    at_line_start: bool,
    done: bool,
}

impl<R: Read + Seek> LineRange<R> {
    fn new(mut file: R, start: u64, end: u64) -> io::Result<Self> {
        let mut pos = 0;
        if start > 0 {
            // The line that begins at `start` or later: after the first `\n` at `start - 1` or
            // later.
            pos = file.seek(SeekFrom::Start(start - 1))?;
        }
        let mut inner = BufReader::with_capacity(READ_SIZE, file);
        if start > 0 {
            loop {
                let available = inner.fill_buf()?;
                if available.is_empty() {
                    break;
                }
                match available.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        inner.consume(i + 1);
                        pos += i as u64 + 1;
                        break;
                    }
                    None => {
                        let n = available.len();
                        inner.consume(n);
                        pos += n as u64;
                    }
                }
            }
        }
        Ok(LineRange {
            inner,
            pos,
            end,
            at_line_start: true,
            done: false,
        })
    }
}

impl<R: Read> Read for LineRange<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.end && self.at_line_start {
            self.done = true;
            return Ok(0);
        }
        let available = self.inner.fill_buf()?;
        if available.is_empty() {
            self.done = true;
            return Ok(0);
        }
        let n = if self.pos >= self.end {
            // Past the end: finish the line that began before it.
            match available.iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => available.len(),
            }
        } else {
            available.len().min((self.end - self.pos) as usize)
        }
        .min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.at_line_start = available[n - 1] == b'\n';
        self.inner.consume(n);
        self.pos += n as u64;
        Ok(n)
    }
}
