//! `bpetok count` in the core: the documents, tokens and text bytes of every input, counted on the
//! read-encode pipeline ([`crate::data::pipeline::count_inputs`]) without making any ids and
//! without writing anything.

use std::sync::atomic::Ordering::Relaxed;

use crate::data::error::DataError;
use crate::data::input::{InputSpec, InputSummary, ReadOptions};
use crate::data::pipeline::{count_inputs, Counters, EncodeOptions};
use crate::Tokenizer;

/// What one input holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputCount {
    /// Its name, as [`InputSpec::name`] (`<stdin>` for standard input).
    pub name: String,
    pub documents: u64,
    /// Tokens of its documents (BOS and EOS included when asked for).
    pub tokens: u64,
    /// UTF-8 bytes of its documents' text, as read.
    pub text_bytes: u64,
    /// How it was read: raw (compressed) size, SHA-256, compression.
    pub summary: InputSummary,
}

/// What [`count_to`] counted: every input, and the totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountReport {
    pub documents: u64,
    pub tokens: u64,
    pub text_bytes: u64,
    /// Raw (compressed) input bytes read.
    pub input_bytes: u64,
    /// Per input, in order.
    pub inputs: Vec<InputCount>,
}

impl CountReport {
    /// Tokens per byte of text (0 for no text): how well the vocabulary compresses these inputs.
    pub fn tokens_per_byte(&self) -> f64 {
        tokens_per_byte(self.tokens, self.text_bytes)
    }
}

impl InputCount {
    /// Tokens per byte of this input's text (0 for no text).
    pub fn tokens_per_byte(&self) -> f64 {
        tokens_per_byte(self.tokens, self.text_bytes)
    }
}

fn tokens_per_byte(tokens: u64, bytes: u64) -> f64 {
    if bytes == 0 {
        0.0
    } else {
        tokens as f64 / bytes as f64
    }
}

/// Reads `inputs` and counts each one's documents, tokens (as `encode` with the same options
/// would make them) and text bytes. `tick` is called on this thread at least every
/// [`crate::data::pipeline::TICK`]; an error from it stops the run and is returned.
pub fn count_to(
    tok: &Tokenizer,
    inputs: &[InputSpec],
    read: &ReadOptions,
    encode: EncodeOptions,
    counters: &Counters,
    tick: impl FnMut() -> Result<(), DataError>,
) -> Result<CountReport, DataError> {
    let mut counted = vec![(0u64, 0u64); inputs.len()];
    let (documents, tokens) = (
        counters.documents.load(Relaxed),
        counters.tokens.load(Relaxed),
    );
    let summaries = count_inputs(
        tok,
        inputs,
        read,
        encode,
        counters,
        |input, count| {
            counted[input].0 += count.tokens;
            counted[input].1 += count.text_bytes;
        },
        tick,
    )?;
    let inputs: Vec<InputCount> = inputs
        .iter()
        .zip(summaries)
        .zip(counted)
        .map(|((spec, summary), (tokens, text_bytes))| InputCount {
            name: spec.name.clone(),
            documents: summary.documents,
            tokens,
            text_bytes,
            summary,
        })
        .collect();
    Ok(CountReport {
        // The pipeline counts what it hands to the consumer.
        documents: counters.documents.load(Relaxed) - documents,
        tokens: counters.tokens.load(Relaxed) - tokens,
        text_bytes: inputs.iter().map(|i| i.text_bytes).sum(),
        input_bytes: inputs.iter().map(|i| i.summary.size).sum(),
        inputs,
    })
}
