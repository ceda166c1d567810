//! Ids JSONL back to text JSONL (`bpetok decode`): each record's ids decoded and written as one
//! `{"text": "..."}` line, in input order. One thread reads the inputs' lines into batches
//! ([`read_id_lines`]); `threads` threads parse each batch's lines ([`parse_id_line`]), check the
//! ids, decode them ([`Decoder`]) and write the batch's JSON lines; the calling thread writes the
//! batches in input order. The output does not depend on the thread count, and the first bad
//! line in input order is the error, after every record before it has been written.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::data::encode::EncodeReport;
use crate::data::error::DataError;
use crate::data::input::{
    parse_id_line, read_id_lines, InputError, InputErrorKind, InputSpec, InputSummary, Utf8Errors,
};
use crate::data::output::LinesOut;
use crate::data::pipeline::{default_threads, Counters, TICK};
use crate::{Decoder, Tokenizer};

/// Raw JSON lines per batch, about (a batch ends after the line that reaches it). A quarter of
/// the 1 MiB it was: the batches in flight, each a buffer touched for the first time, were most
/// of the data's page faults on a 30 MB input.
const BATCH_BYTES: usize = 1 << 18;
/// Lines per batch, at most.
const BATCH_LINES: usize = 4096;

/// Batches read but not yet written, at most, for `threads` decoders: two for each (one being
/// decoded, one waiting), and at least four. Memory stays bounded by this many batches of about
/// [`BATCH_BYTES`] of ids and their text.
fn in_flight(threads: usize) -> usize {
    (2 * threads).max(4)
}
/// Buffers of at most this capacity are passed back for the next batches (see [`Spare`]).
const MAX_SPARE_CAPACITY: usize = 4 * BATCH_BYTES;

/// Batch buffers passed back for reuse once done with: the raw lines by the decoders to the
/// reader, the decoded lines by the writer to the decoders. A new buffer of about a MB for every
/// batch was fresh memory each time: of the 10,500 page faults of `bpetok decode` over 30 MB of
/// ids (13.7 MB of Japanese), 6,900 were the data's, about 2.9 µs each on this machine, an eighth
/// of the run on one thread. No more buffers are alive than batches in flight.
struct Spare {
    raw: Mutex<Vec<RawBuffers>>,
    out: Mutex<Vec<Vec<u8>>>,
    /// Spare buffers of each kind kept, at most.
    keep: usize,
}

/// A batch's raw lines and their ends (`Lines::raw`, `Lines::lines`).
type RawBuffers = (Vec<u8>, Vec<(u64, usize)>);

impl Spare {
    fn new(keep: usize) -> Self {
        Self {
            raw: Mutex::default(),
            out: Mutex::default(),
            keep,
        }
    }

    fn take_raw(&self) -> RawBuffers {
        lock(&self.raw)
            .pop()
            .unwrap_or_else(|| (Vec::with_capacity(BATCH_BYTES + (64 << 10)), Vec::new()))
    }

    fn give_raw(&self, mut raw: Vec<u8>, mut lines: Vec<(u64, usize)>) {
        if raw.capacity() <= MAX_SPARE_CAPACITY {
            raw.clear();
            lines.clear();
            let mut spare = lock(&self.raw);
            if spare.len() < self.keep {
                spare.push((raw, lines));
            }
        }
    }

    fn take_out(&self, capacity: usize) -> Vec<u8> {
        match lock(&self.out).pop() {
            Some(out) => out,
            None => Vec::with_capacity(capacity),
        }
    }

    fn give_out(&self, mut out: Vec<u8>) {
        if out.capacity() <= MAX_SPARE_CAPACITY {
            out.clear();
            let mut spare = lock(&self.out);
            if spare.len() < self.keep {
                spare.push(out);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A list of empty buffers is valid whatever a panicking holder did.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Decodes the ids JSONL of `inputs` (field `field`) to `output` (a file written atomically, or
/// stdout for `None`). An id outside the vocabulary is an [`InputError`] naming file and line;
/// on any error no output file is left. `tick` is called on this thread at least every
/// [`TICK`] while the run lasts.
#[allow(clippy::too_many_arguments)]
pub fn decode_to(
    tok: &Tokenizer,
    inputs: &[InputSpec],
    field: &str,
    errors: Utf8Errors,
    threads: usize,
    output: Option<&Path>,
    counters: &Counters,
    mut tick: impl FnMut() -> Result<(), DataError>,
) -> Result<EncodeReport, DataError> {
    let mut out = LinesOut::create(output)?;
    let threads = if threads == 0 {
        default_threads()
    } else {
        threads
    };
    let decoder = tok.decoder();
    let stop = Arc::new(AtomicBool::new(false));
    let in_flight = in_flight(threads);
    let spare = Arc::new(Spare::new(in_flight + threads + 1));
    let (work_tx, work_rx) = sync_channel::<Lines>(in_flight);
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = sync_channel::<Decoded>(in_flight);
    let (credit_tx, credit_rx) = sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        credit_tx
            .send(())
            .expect("the channel has room for every credit");
    }
    // The reader is not a scoped thread: after an error elsewhere this returns at once, even
    // when the reader is blocked reading a pipe; it ends by itself at its next read.
    let reader = {
        let inputs = inputs.to_vec();
        let (stop, bytes_read) = (Arc::clone(&stop), Arc::clone(&counters.bytes_read));
        let spare = Arc::clone(&spare);
        std::thread::Builder::new()
            .name("bpetok-reader".into())
            .spawn(move || read_lines(&inputs, &bytes_read, &stop, &work_tx, &credit_rx, &spare))
            .map_err(|err| thread_error("reading", &err))?
    };
    let line_work = LineWork {
        decoder: &decoder,
        inputs,
        field,
        errors,
        spare: &spare,
    };
    let written = std::thread::scope(|scope| {
        for i in 0..threads {
            let (done_tx, work_rx, stop, line_work) =
                (done_tx.clone(), &work_rx, &*stop, &line_work);
            let spawned = std::thread::Builder::new()
                .name("bpetok-decoder".into())
                .spawn_scoped(scope, move || {
                    decode_batches(line_work, work_rx, &done_tx, stop)
                });
            if let Err(err) = spawned {
                // Fewer decoders than asked for still decode everything; none at all cannot.
                if i == 0 {
                    stop.store(true, Ordering::Relaxed);
                    return Err(thread_error("decoding", &err).into());
                }
                break;
            }
        }
        drop(done_tx);
        let written = write_in_order(
            &done_rx, &credit_tx, &stop, &mut out, counters, &spare, &mut tick,
        );
        // However the writing ended, the decoders and the reader stop.
        stop.store(true, Ordering::Relaxed);
        drop(credit_tx);
        written
    });
    let summaries = written?;
    // The reader has sent every batch (the last one came with the last input's end), so it is
    // ending; its errors came with its batches.
    let _ = reader.join();
    tick()?;
    out.commit()?;
    Ok(EncodeReport {
        documents: summaries.iter().map(|s| s.documents).sum(),
        tokens: counters.tokens.load(Ordering::Relaxed),
        input_bytes: summaries.iter().map(|s| s.size).sum(),
        inputs: summaries,
    })
}

fn thread_error(role: &str, err: &std::io::Error) -> InputError {
    let message = format!("cannot start the {role} thread: {err}");
    InputError::new(InputErrorKind::Thread { message }, "")
}

/// Raw lines of one input, read but not yet parsed.
struct Lines {
    seq: u64,
    input: usize,
    /// The lines back to back.
    raw: Vec<u8>,
    /// Each line's number and where it ends in `raw`.
    lines: Vec<(u64, usize)>,
    /// With an input's last batch: its summary (`documents` still 0), or the error that ended
    /// its reading, after these lines.
    end: Option<Result<InputSummary, InputError>>,
}

/// A batch decoded: its JSON lines, what they hold, and how it ended.
struct Decoded {
    seq: u64,
    out: Vec<u8>,
    records: u64,
    tokens: u64,
    /// The first bad line of the batch: `out` holds the lines before it.
    error: Option<InputError>,
    end: Option<Result<InputSummary, InputError>>,
}

/// The reading thread: every input's lines, in batches, each sent when a credit allows.
fn read_lines(
    inputs: &[InputSpec],
    bytes_read: &AtomicU64,
    stop: &AtomicBool,
    work: &SyncSender<Lines>,
    credits: &Receiver<()>,
    spare: &Spare,
) {
    // False once the rest of the run has gone away.
    let send = |batch: Lines| {
        !stop.load(Ordering::Relaxed) && credits.recv().is_ok() && work.send(batch).is_ok()
    };
    let mut seq = 0u64;
    let mut next_batch = |input: usize| {
        seq += 1;
        let (raw, lines) = spare.take_raw();
        Lines {
            seq: seq - 1,
            input,
            raw,
            lines,
            end: None,
        }
    };
    /// Why reading stopped early: an input error, or the rest of the run went away.
    enum Halt {
        Input(InputError),
        Stopped,
    }
    impl From<InputError> for Halt {
        fn from(err: InputError) -> Self {
            Halt::Input(err)
        }
    }
    for (input, spec) in inputs.iter().enumerate() {
        let mut batch = next_batch(input);
        let read = read_id_lines(spec, bytes_read, |lineno, raw| {
            batch.raw.extend_from_slice(raw);
            batch.lines.push((lineno, batch.raw.len()));
            if batch.raw.len() >= BATCH_BYTES || batch.lines.len() >= BATCH_LINES {
                let full = std::mem::replace(&mut batch, next_batch(input));
                if !send(full) {
                    return Err(Halt::Stopped);
                }
            }
            Ok(())
        });
        let (end, failed) = match read {
            Ok(summary) => (Ok(summary), false),
            Err(Halt::Input(err)) => (Err(err), true),
            Err(Halt::Stopped) => return,
        };
        batch.end = Some(end);
        if !send(batch) || failed {
            return;
        }
    }
}

/// What decoding threads share.
struct LineWork<'a> {
    decoder: &'a Decoder,
    inputs: &'a [InputSpec],
    field: &'a str,
    errors: Utf8Errors,
    spare: &'a Spare,
}

fn decode_batches(
    work: &LineWork<'_>,
    batches: &Mutex<Receiver<Lines>>,
    done: &SyncSender<Decoded>,
    stop: &AtomicBool,
) {
    let mut ids = Vec::new();
    let mut text = Vec::new();
    loop {
        let batch = {
            let rx = batches
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            rx.recv_timeout(TICK)
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let batch = match batch {
            Ok(batch) => batch,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let decoded = work.decode(batch, &mut ids, &mut text);
        if done.send(decoded).is_err() {
            return;
        }
    }
}

impl LineWork<'_> {
    fn decode(&self, batch: Lines, ids: &mut Vec<u32>, text: &mut Vec<u8>) -> Decoded {
        let name = self.inputs[batch.input].name.as_str();
        let vocab_size = self.decoder.vocab_size();
        let mut decoded = Decoded {
            seq: batch.seq,
            out: self.spare.take_out(batch.raw.len()),
            records: 0,
            tokens: 0,
            error: None,
            end: batch.end,
        };
        let mut start = 0;
        for &(lineno, end) in &batch.lines {
            let raw = &batch.raw[start..end];
            start = end;
            let parsed = parse_id_line(name, lineno, raw, self.field, self.errors);
            let listed = match parsed {
                Ok(None) => continue,
                Ok(Some(listed)) => listed,
                Err(err) => {
                    decoded.error = Some(err);
                    break;
                }
            };
            ids.clear();
            let bad = listed.iter().find(|&&id| match u32::try_from(id) {
                Ok(id) if (id as usize) < vocab_size => {
                    ids.push(id);
                    false
                }
                _ => true,
            });
            if let Some(bad) = bad {
                let kind = InputErrorKind::IdOutOfRange {
                    found: bad.to_string(),
                    vocab_size: Some(vocab_size),
                };
                decoded.error = Some(InputError::at_line(kind, name, lineno));
                break;
            }
            text.clear();
            // Every id was checked just above.
            let _ = self.decoder.decode_into(ids, text);
            decoded.out.extend_from_slice(b"{\"text\": ");
            push_json_string(&mut decoded.out, text);
            decoded.out.extend_from_slice(b"}\n");
            decoded.records += 1;
            decoded.tokens += ids.len() as u64;
        }
        self.spare.give_raw(batch.raw, batch.lines);
        decoded
    }
}

/// The calling thread: each batch's lines written in input order, counted, and the first error
/// in input order returned after the lines before it. Returns the inputs' summaries.
fn write_in_order(
    done: &Receiver<Decoded>,
    credits: &SyncSender<()>,
    stop: &AtomicBool,
    out: &mut LinesOut,
    counters: &Counters,
    spare: &Spare,
    tick: &mut impl FnMut() -> Result<(), DataError>,
) -> Result<Vec<InputSummary>, DataError> {
    let mut next = 0u64;
    let mut waiting: BTreeMap<u64, Decoded> = BTreeMap::new();
    let mut summaries = Vec::new();
    // Records of the input being written (batches come in input order).
    let mut records = 0u64;
    let mut last_tick = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(summaries); // a decoder panicked; the scope raises its panic
        }
        match done.recv_timeout(TICK) {
            Ok(batch) => {
                waiting.insert(batch.seq, batch);
            }
            Err(RecvTimeoutError::Timeout) => {}
            // The reader has read everything and the decoders have decoded it.
            Err(RecvTimeoutError::Disconnected) => return Ok(summaries),
        }
        while let Some(batch) = waiting.remove(&next) {
            next += 1;
            out.write_all(&batch.out)?;
            spare.give_out(batch.out);
            counters
                .documents
                .fetch_add(batch.records, Ordering::Relaxed);
            counters.tokens.fetch_add(batch.tokens, Ordering::Relaxed);
            records += batch.records;
            if let Some(err) = batch.error {
                return Err(err.into());
            }
            match batch.end {
                Some(Ok(summary)) => summaries.push(InputSummary {
                    documents: std::mem::take(&mut records),
                    ..summary
                }),
                Some(Err(err)) => return Err(err.into()),
                None => {}
            }
            // The reader may read one more batch; a send can only fail once it has stopped.
            let _ = credits.send(());
        }
        if last_tick.elapsed() >= TICK {
            tick()?;
            last_tick = Instant::now();
        }
    }
}

/// Appends `text` (UTF-8) as a JSON string, as `serde_json` writes one: `"` and `\` escaped,
/// `\b \t \n \f \r` for those control characters and `\u00XX` (lowercase hex) for the others
/// below U+0020, everything else as it is. Runs that need no escape are copied whole; they are
/// found eight bytes at a time (a byte-at-a-time scan was half of the decoding threads' time
/// outside decoding itself).
fn push_json_string(out: &mut Vec<u8>, text: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(text.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        if let Some(word) = text.get(i..i + 8) {
            let word = u64::from_le_bytes([
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ]);
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let b = text[i];
        i += 1;
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&text[start..i - 1]);
        start = i;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\x08' => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\x0c' => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
        }
    }
    out.extend_from_slice(&text[start..]);
    out.push(b'"');
}

/// Whether any of the eight bytes of `word` is below 0x20, `"` or `\` (the classic tests for a
/// zero byte, `(v - 0x01..) & !v & 0x80..`, on `word` and on `word` xor each byte repeated; a
/// byte of 0x80 or more never sets its high bit in the results, so UTF-8 passes).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGH;
    let zero = |v: u64| below(v, 1);
    (below(word, 0x20)
        | zero(word ^ (ONES * u64::from(b'"')))
        | zero(word ^ (ONES * u64::from(b'\\'))))
        != 0
}

#[cfg(test)]
mod tests {
    use super::push_json_string;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        #[test]
        fn json_strings_are_what_serde_json_writes(text in any::<String>(), controls in prop::collection::vec(0u8..0x30, 0..8)) {
            let mut text = text;
            for c in controls {
                text.push(char::from(c));
                text.push('\u{e9}');
            }
            let mut ours = Vec::new();
            push_json_string(&mut ours, text.as_bytes());
            prop_assert_eq!(ours, serde_json::to_vec(&text).unwrap());
        }
    }
}
