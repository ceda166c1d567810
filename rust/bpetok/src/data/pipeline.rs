//! Reading, encoding and consuming documents at once: one thread reads the inputs
//! ([`crate::data::input`]) into batches, `threads` threads encode batches, and the calling thread
//! receives every document's ids in input order ([`encode_inputs`]), or only its counts
//! ([`count_inputs`]: encoded into a scratch buffer, no ids kept). How many threads encode does
//! not change what the caller receives, only how fast.
//!
//! Memory is bounded: at most [`MAX_IN_FLIGHT`] batches of about [`BATCH_BYTES`] of text and at
//! most [`BATCH_DOCUMENTS`] documents (and their ids) exist at a time, plus whatever one document
//! needs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::data::chat::ChatPlan;
use crate::data::input::{
    read_records, InputError, InputErrorKind, InputSpec, InputSummary, ReadOptions, Record,
};
use crate::{Encoder, Tokenizer, PARALLEL_MIN_BYTES};

/// Text per batch handed to an encoding thread (a batch ends after the document that reaches it).
pub const BATCH_BYTES: usize = 256 << 10;
/// Documents per batch, at most. Each document in flight costs about 100 bytes besides its text
/// (its `String`, its ids' `Vec`), so a batch of tiny or empty documents is bounded by their count:
/// without it, a corpus of empty documents was one batch holding all of them.
pub const BATCH_DOCUMENTS: usize = 4096;
/// Batches read but not yet consumed, at most.
pub const MAX_IN_FLIGHT: usize = 16;
/// The longest the calling thread goes without calling `tick`, when it is waiting.
pub const TICK: Duration = Duration::from_millis(100);

/// Progress, readable from any thread while the pipeline runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Raw (compressed) input bytes read (shared with the reading thread, which may outlive the
    /// call when it stops early).
    pub bytes_read: Arc<AtomicU64>,
    /// Documents handed to the consumer.
    pub documents: AtomicU64,
    /// Their tokens (BOS and EOS included).
    pub tokens: AtomicU64,
}

/// Encoding threads when none are asked for: every CPU this process may use (its affinity mask
/// and cgroup quota on Linux), at least 1. The one rule for that default, in Rust and Python.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How documents are encoded.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    pub add_bos: bool,
    pub add_eos: bool,
    /// Encoding threads (0: as many as the machine has CPUs).
    pub threads: usize,
    /// Records at the start of the first input that are read (and hashed) but not decoded nor
    /// handed over: a resumed run passes over what it has packed ([`read_records`]).
    pub skip_records: u64,
}

/// What the consumer of [`encode_inputs`] receives, in input order. `input` is the input's
/// position in the list given, `index` the record's within its input ([`Record`]).
#[derive(Debug)]
pub enum Event {
    /// A document's ids, and for a conversation its loss mask (`mask[i]`: `ids[i]` is a target).
    Document {
        ids: Vec<u32>,
        mask: Option<Vec<bool>>,
        input: usize,
        index: u64,
    },
    /// A record passed over ([`ReadOptions::skip_bad_records`]).
    Skipped {
        input: usize,
        index: u64,
        error: InputError,
    },
    /// An input has been read to its end: this follows its last record.
    InputEnd { input: usize, summary: InputSummary },
}

/// What an encoding thread encodes: a document's text, or a conversation written out.
pub enum Source {
    Text(String),
    Chat(ChatPlan),
}

/// An [`Event`] before encoding: a document is still text (or a conversation's plan).
enum Item {
    Doc {
        source: Source,
        input: usize,
        index: u64,
    },
    Other(Event),
}

/// An [`Item`] after encoding: a document is what the run makes of it (its ids for
/// [`encode_inputs`], its counts for [`count_inputs`]) and its number of tokens.
enum Step<D> {
    Document {
        made: D,
        tokens: u64,
        input: usize,
        index: u64,
    },
    /// Never [`Event::Document`].
    Other(Event),
}

/// A document's counts: what [`count_inputs`] makes of it instead of its ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentCount {
    /// Its tokens (BOS and EOS included when asked for).
    pub tokens: u64,
    /// Its text's UTF-8 bytes, as read (after `--errors replace`, without a byte order mark).
    pub text_bytes: u64,
}

struct Batch {
    seq: u64,
    items: Vec<Item>,
}

/// Reads `inputs` in order, encodes their documents with `tok`, and calls `consume` with each
/// document's ids (and each skipped record, and each input's end), in input order, on the
/// calling thread. `tick` is called on the calling thread
/// at least every [`TICK`] while the pipeline runs (for progress and cancellation). Returns the
/// inputs' summaries. The first error (from reading, `consume` or `tick`) stops everything and is
/// returned; after an input error, every document before it has been consumed.
///
/// When `consume` or `tick` fails, this returns within about [`TICK`] even if the reading thread
/// is blocked on a read (a pipe whose writer is idle): that thread is left to end by itself at its
/// next read. A thread that cannot be started is an [`InputErrorKind::Thread`] error.
pub fn encode_inputs<E: From<InputError>>(
    tok: &Tokenizer,
    inputs: &[InputSpec],
    read: &ReadOptions,
    encode: EncodeOptions,
    counters: &Counters,
    mut consume: impl FnMut(Event) -> Result<(), E>,
    tick: impl FnMut() -> Result<(), E>,
) -> Result<Vec<InputSummary>, E> {
    let (bos, eos) = (encode.add_bos, encode.add_eos);
    let threads = encoding_threads(encode);
    run(
        tok,
        inputs,
        read,
        encode,
        counters,
        &|encoder: &mut Encoder<'_>, source: Source| {
            let (ids, mask) = match source {
                Source::Text(text) => (encoder.encode_parallel(&text, bos, eos, threads), None),
                Source::Chat(plan) => {
                    let made = plan.encode(encoder);
                    (made.ids, Some(made.mask))
                }
            };
            let tokens = ids.len() as u64;
            ((ids, mask), tokens)
        },
        |step| match step {
            Step::Document {
                made: (ids, mask),
                input,
                index,
                ..
            } => consume(Event::Document {
                ids,
                mask,
                input,
                index,
            }),
            Step::Other(event) => consume(event),
        },
        tick,
    )
}

/// Reads `inputs` and counts the tokens of their documents, as [`encode_inputs`] would encode
/// them but without making their ids: `count(input, counts)` is called for every document, in
/// input order, on the calling thread. Everything else (threads, order, `tick`, errors, the
/// summaries returned) is as for [`encode_inputs`].
pub fn count_inputs<E: From<InputError>>(
    tok: &Tokenizer,
    inputs: &[InputSpec],
    read: &ReadOptions,
    encode: EncodeOptions,
    counters: &Counters,
    mut count: impl FnMut(usize, DocumentCount),
    tick: impl FnMut() -> Result<(), E>,
) -> Result<Vec<InputSummary>, E> {
    let threads = encoding_threads(encode);
    let controls = u64::from(encode.add_bos && tok.bos_id().is_some())
        + u64::from(encode.add_eos && tok.eos_id().is_some());
    run(
        tok,
        inputs,
        read,
        encode,
        counters,
        &|encoder: &mut Encoder<'_>, source: Source| {
            let text = match source {
                Source::Text(text) => text,
                Source::Chat(plan) => {
                    let tokens = plan.count(encoder) as u64;
                    let text_bytes = plan.text_bytes() as u64;
                    return (DocumentCount { tokens, text_bytes }, tokens);
                }
            };
            let tokens = if text.len() >= PARALLEL_MIN_BYTES {
                // Possibly on every thread (`Encoder::encode_parallel`); a huge document's ids
                // are made once anyway.
                encoder.encode_parallel(&text, false, false, threads).len() as u64 + controls
            } else {
                encoder.count(text.as_bytes()) as u64 + controls
            };
            let text_bytes = text.len() as u64;
            (DocumentCount { tokens, text_bytes }, tokens)
        },
        |step| {
            if let Step::Document { made, input, .. } = step {
                count(input, made);
            }
            Ok(())
        },
        tick,
    )
}

/// What an encoding thread makes of a document's text: the result and its number of tokens.
type Make<'m, D> = &'m (dyn Fn(&mut Encoder<'_>, Source) -> (D, u64) + Sync);

/// [`encode_inputs`] and [`count_inputs`]: documents made into `D` by `make` on the encoding
/// threads, and handed to `consume` in input order.
#[allow(clippy::too_many_arguments)]
fn run<D: Send, E: From<InputError>>(
    tok: &Tokenizer,
    inputs: &[InputSpec],
    read: &ReadOptions,
    encode: EncodeOptions,
    counters: &Counters,
    make: Make<'_, D>,
    mut consume: impl FnMut(Step<D>) -> Result<(), E>,
    mut tick: impl FnMut() -> Result<(), E>,
) -> Result<Vec<InputSummary>, E> {
    let threads = encoding_threads(encode);
    let stop = Arc::new(AtomicBool::new(false));
    let (work_tx, work_rx) = sync_channel::<Batch>(MAX_IN_FLIGHT);
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = sync_channel::<(u64, Vec<Step<D>>)>(MAX_IN_FLIGHT);
    let (credit_tx, credit_rx) = sync_channel::<()>(MAX_IN_FLIGHT);
    for _ in 0..MAX_IN_FLIGHT {
        credit_tx
            .send(())
            .expect("the channel has room for every credit");
    }
    let reader = {
        let (inputs, read) = (inputs.to_vec(), read.clone());
        let (stop, bytes_read) = (Arc::clone(&stop), Arc::clone(&counters.bytes_read));
        let skip = encode.skip_records;
        std::thread::Builder::new()
            .name("bpetok-reader".into())
            .spawn(move || {
                let reading = Reading {
                    inputs: &inputs,
                    opts: &read,
                    skip,
                    bytes_read: &bytes_read,
                    stop: &stop,
                };
                reading.read_all(work_tx, credit_rx)
            })
            .map_err(|err| thread_error("reading", &err))?
    };

    let consumed = std::thread::scope(|scope| {
        for i in 0..threads {
            let done_tx = done_tx.clone();
            let (work_rx, stop) = (&work_rx, &*stop);
            let spawned = std::thread::Builder::new()
                .name("bpetok-encoder".into())
                .spawn_scoped(scope, move || {
                    encode_batches(tok, make, work_rx, done_tx, stop)
                });
            if let Err(err) = spawned {
                // Fewer encoders than asked for still encode everything; none at all cannot.
                if i == 0 {
                    stop.store(true, Ordering::Relaxed);
                    return Err(thread_error("encoding", &err).into());
                }
                break;
            }
        }
        drop(done_tx);
        // However this closure ends (a panic in `consume` included), the encoders stop, so the
        // scope's join cannot wait on them forever.
        let _stop_encoders = SetOnDrop {
            flag: &stop,
            only_when_panicking: false,
        };
        let consumed = consume_in_order(
            done_rx,
            &credit_tx,
            (counters, &stop),
            &mut consume,
            &mut tick,
        );
        if consumed.is_err() {
            // The encoders see this within a TICK, the reader at its next document or read.
            stop.store(true, Ordering::Relaxed);
        }
        drop(credit_tx);
        consumed
    });
    consumed?;
    let read = reader
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    Ok(read?)
}

/// The number of encoding threads `encode` asks for (0: [`default_threads`]). A document of at
/// least [`PARALLEL_MIN_BYTES`] is encoded on that many threads of its own
/// (`Encoder::encode_parallel`).
fn encoding_threads(encode: EncodeOptions) -> usize {
    if encode.threads == 0 {
        default_threads()
    } else {
        encode.threads
    }
}

fn thread_error(role: &str, err: &std::io::Error) -> InputError {
    let message = format!("cannot start the {role} thread: {err}");
    InputError::new(InputErrorKind::Thread { message }, "")
}

/// What the reading thread reads.
struct Reading<'a> {
    inputs: &'a [InputSpec],
    opts: &'a ReadOptions,
    /// Records of the first input passed over.
    skip: u64,
    bytes_read: &'a AtomicU64,
    stop: &'a AtomicBool,
}

impl Reading<'_> {
    fn read_all(
        &self,
        work_tx: SyncSender<Batch>,
        credits: Receiver<()>,
    ) -> Result<Vec<InputSummary>, InputError> {
        /// Why the reading stopped early: an input error, or the rest of the pipeline went away.
        enum Halt {
            Input(InputError),
            Stopped,
        }
        impl From<InputError> for Halt {
            fn from(err: InputError) -> Self {
                Halt::Input(err)
            }
        }
        let stop = self.stop;
        let mut seq = 0u64;
        let mut send = |items: Vec<Item>| -> Result<(), Halt> {
            if stop.load(Ordering::Relaxed) || credits.recv().is_err() {
                return Err(Halt::Stopped);
            }
            work_tx
                .send(Batch { seq, items })
                .map_err(|_| Halt::Stopped)?;
            seq += 1;
            Ok(())
        };
        let mut items = Vec::new();
        let mut bytes = 0usize;
        let mut summaries = Vec::with_capacity(self.inputs.len());
        let mut read = || -> Result<(), Halt> {
            for (input, spec) in self.inputs.iter().enumerate() {
                let skip = if input == 0 { self.skip } else { 0 };
                let summary = read_records(spec, self.opts, self.bytes_read, skip, |record| {
                    items.push(match record {
                        Record::Document { index, text } => {
                            bytes += text.len();
                            Item::Doc {
                                source: Source::Text(text),
                                input,
                                index,
                            }
                        }
                        Record::Conversation { index, plan } => {
                            bytes += plan.text_bytes();
                            Item::Doc {
                                source: Source::Chat(plan),
                                input,
                                index,
                            }
                        }
                        Record::Skipped { index, error } => Item::Other(Event::Skipped {
                            input,
                            index,
                            error,
                        }),
                    });
                    if bytes >= BATCH_BYTES || items.len() >= BATCH_DOCUMENTS {
                        bytes = 0;
                        send(std::mem::take(&mut items))?;
                    }
                    Ok::<(), Halt>(())
                })?;
                items.push(Item::Other(Event::InputEnd {
                    input,
                    summary: summary.clone(),
                }));
                summaries.push(summary);
            }
            Ok(())
        };
        let outcome = read();
        // The documents read before the end (or before an input error) go to the consumer too.
        let sent = match &outcome {
            Ok(()) | Err(Halt::Input(_)) if !items.is_empty() => send(items),
            _ => Ok(()),
        };
        match (outcome, sent) {
            (Err(Halt::Input(err)), _) => Err(err),
            // Stopped: the consumer stopped; it returns its own error.
            _ => Ok(summaries),
        }
    }
}

/// Sets `flag` when dropped (only while unwinding from a panic, if `only_when_panicking`).
struct SetOnDrop<'a> {
    flag: &'a AtomicBool,
    only_when_panicking: bool,
}

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        if !self.only_when_panicking || std::thread::panicking() {
            self.flag.store(true, Ordering::Relaxed);
        }
    }
}

fn encode_batches<D>(
    tok: &Tokenizer,
    make: Make<'_, D>,
    work: &Mutex<Receiver<Batch>>,
    done: SyncSender<(u64, Vec<Step<D>>)>,
    stop: &AtomicBool,
) {
    // A panic here loses a batch: stop the run (the scope then raises the panic again).
    let _stop_on_panic = SetOnDrop {
        flag: stop,
        only_when_panicking: true,
    };
    let mut encoder = tok.encoder();
    loop {
        let batch = {
            let rx = work.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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
        let events = batch
            .items
            .into_iter()
            .map(|item| match item {
                Item::Doc {
                    source,
                    input,
                    index,
                } => {
                    let (made, tokens) = make(&mut encoder, source);
                    Step::Document {
                        made,
                        tokens,
                        input,
                        index,
                    }
                }
                Item::Other(event) => Step::Other(event),
            })
            .collect();
        if done.send((batch.seq, events)).is_err() {
            return;
        }
    }
}

fn consume_in_order<D, E>(
    done: Receiver<(u64, Vec<Step<D>>)>,
    credits: &SyncSender<()>,
    (counters, stop): (&Counters, &AtomicBool),
    consume: &mut impl FnMut(Step<D>) -> Result<(), E>,
    tick: &mut impl FnMut() -> Result<(), E>,
) -> Result<(), E> {
    let mut next = 0u64;
    let mut waiting: BTreeMap<u64, Vec<Step<D>>> = BTreeMap::new();
    let mut last_tick = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            break; // an encoder panicked; the scope raises its panic
        }
        match done.recv_timeout(TICK) {
            Ok((seq, batch)) => {
                waiting.insert(seq, batch);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while let Some(batch) = waiting.remove(&next) {
            next += 1;
            for step in batch {
                let tokens = match &step {
                    Step::Document { tokens, .. } => Some(*tokens),
                    Step::Other(_) => None,
                };
                consume(step)?;
                if let Some(tokens) = tokens {
                    counters.tokens.fetch_add(tokens, Ordering::Relaxed);
                    counters.documents.fetch_add(1, Ordering::Relaxed);
                }
            }
            // The reader may start one more batch; a send can only fail once it has stopped.
            let _ = credits.send(());
        }
        if last_tick.elapsed() >= TICK {
            tick()?;
            last_tick = Instant::now();
        }
    }
    debug_assert!(
        stop.load(Ordering::Relaxed) || waiting.is_empty(),
        "batches left after the encoders ended"
    );
    tick()
}
