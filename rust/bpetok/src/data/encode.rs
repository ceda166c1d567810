//! `bpetok encode` in the core: documents to token ids, one output record per document, as JSON
//! lines (`{"ids": [1,2,3]}` and a newline each) or Megatron-LM `.bin`/`.idx` files
//! ([`crate::data::megatron`]). Output to a path is atomic (written beside it under a temporary
//! name, renamed into place when complete, removed on any error); `None` is standard output.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use crate::data::error::{DataError, OptionsError};
use crate::data::input::{InputSpec, InputSummary, ReadOptions};
use crate::data::megatron::{MegatronDtype, MegatronWriter};
use crate::data::output::LinesOut;
use crate::data::pipeline::{encode_inputs, Counters, EncodeOptions, Event};
use crate::Tokenizer;

/// JSON lines gathered before they are written.
const FLUSH_BYTES: usize = 4 << 20;

/// The output format of [`encode_to`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdsOutput {
    /// One line per document: `{"ids": [1,2,3]}`.
    Jsonl,
    /// Megatron-LM's `PREFIX.bin` and `PREFIX.idx`, one sequence per document.
    Megatron,
}

/// What [`encode_to`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeReport {
    pub documents: u64,
    /// Tokens written (BOS and EOS included).
    pub tokens: u64,
    /// Raw (compressed) input bytes read.
    pub input_bytes: u64,
    /// Per input, in order.
    pub inputs: Vec<InputSummary>,
}

/// Appends the line `bpetok encode` writes for one document: `{"ids": [1,2,3]}` and a newline.
/// `digits` holds the decimal text of every id of the vocabulary ([`decimal_ids`]).
pub fn push_ids_line(out: &mut Vec<u8>, ids: &[u32], digits: &[String]) {
    out.extend_from_slice(b"{\"ids\": [");
    for (k, &id) in ids.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(digits[id as usize].as_bytes());
    }
    out.extend_from_slice(b"]}\n");
}

/// Appends the line `bpetok encode --chat` writes for one conversation: `{"ids": [1,2,3],
/// "mask": [0,1,1]}` and a newline (`mask`: 1 where the token is a training target).
pub fn push_ids_mask_line(out: &mut Vec<u8>, ids: &[u32], mask: &[bool], digits: &[String]) {
    push_ids_line(out, ids, digits);
    out.truncate(out.len() - 2);
    out.extend_from_slice(b", \"mask\": [");
    for (k, &m) in mask.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.push(if m { b'1' } else { b'0' });
    }
    out.extend_from_slice(b"]}\n");
}

/// The decimal text of every id of `tok`'s vocabulary, for [`push_ids_line`].
pub fn decimal_ids(tok: &Tokenizer) -> Vec<String> {
    (0..tok.vocab_size()).map(|i| i.to_string()).collect()
}

/// Reads `inputs`, encodes every document with `tok` and writes its ids in `format` to `output`
/// (`None`: standard output; Megatron needs a prefix, and refuses one ending in `.bin`/`.idx`).
/// `tick` is called on this thread at least every [`crate::data::pipeline::TICK`]; an error from
/// it stops the run and is returned. On any error no output file is left under its final name
/// (what was already written to standard output stays written).
#[allow(clippy::too_many_arguments)]
pub fn encode_to(
    tok: &Tokenizer,
    inputs: &[InputSpec],
    read: &ReadOptions,
    encode: EncodeOptions,
    format: IdsOutput,
    output: Option<&Path>,
    counters: &Counters,
    tick: impl FnMut() -> Result<(), DataError>,
) -> Result<EncodeReport, DataError> {
    let mut sink = match format {
        IdsOutput::Jsonl => IdsSink::Lines {
            out: LinesOut::create(output)?,
            digits: decimal_ids(tok),
            lines: Vec::with_capacity(FLUSH_BYTES + (64 << 10)),
        },
        IdsOutput::Megatron if read.chat.is_some() => {
            return Err(OptionsError::new(
                "format",
                "Megatron-LM files hold no loss mask, so conversations cannot go there: write \
                 JSONL (ids and mask per conversation) or pack them into shards",
            )
            .into());
        }
        IdsOutput::Megatron => {
            let Some(prefix) = output else {
                return Err(OptionsError::new(
                    "output",
                    "Megatron-LM output needs a prefix (PREFIX.bin and PREFIX.idx are written), \
                     not standard output",
                )
                .into());
            };
            let vocab_size = tok.vocab_size() as u64;
            let dtype = MegatronDtype::for_vocab_size(vocab_size).ok_or_else(|| {
                OptionsError::new(
                    "vocab_size",
                    format!("{vocab_size} pieces fit no Megatron-LM token dtype"),
                )
            })?;
            IdsSink::Megatron(MegatronWriter::create(prefix, dtype)?)
        }
    };
    let (documents, tokens) = (
        counters.documents.load(Relaxed),
        counters.tokens.load(Relaxed),
    );
    let summaries = encode_inputs(
        tok,
        inputs,
        read,
        encode,
        counters,
        |event| match event {
            Event::Document { ids, mask, .. } => sink.add(&ids, mask.as_deref()),
            Event::Skipped { .. } | Event::InputEnd { .. } => Ok(()),
        },
        tick,
    )?;
    sink.finish()?;
    Ok(EncodeReport {
        // The pipeline counts what it hands to the consumer.
        documents: counters.documents.load(Relaxed) - documents,
        tokens: counters.tokens.load(Relaxed) - tokens,
        input_bytes: summaries.iter().map(|s| s.size).sum(),
        inputs: summaries,
    })
}

/// Where [`encode_to`] puts each document's ids.
enum IdsSink {
    /// JSON lines, gathered up to [`FLUSH_BYTES`] before each write.
    Lines {
        out: LinesOut,
        digits: Vec<String>,
        lines: Vec<u8>,
    },
    Megatron(MegatronWriter),
}

impl IdsSink {
    fn add(&mut self, ids: &[u32], mask: Option<&[bool]>) -> Result<(), DataError> {
        match self {
            IdsSink::Lines { out, digits, lines } => {
                match mask {
                    None => push_ids_line(lines, ids, digits),
                    Some(mask) => push_ids_mask_line(lines, ids, mask, digits),
                }
                if lines.len() >= FLUSH_BYTES {
                    out.write_all(lines)?;
                    lines.clear();
                }
                Ok(())
            }
            IdsSink::Megatron(writer) => writer.add_document(ids),
        }
    }

    fn finish(self) -> Result<(), DataError> {
        match self {
            IdsSink::Lines { mut out, lines, .. } => {
                out.write_all(&lines)?;
                out.commit()
            }
            IdsSink::Megatron(writer) => writer.finish(),
        }
    }
}
