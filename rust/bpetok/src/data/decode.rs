//! Ids JSONL back to text JSONL (`bpetok decode`): each record's ids (read by
//! [`crate::data::input::read_id_lists`]) decoded and written as one `{"text": "..."}` line, in
//! input order. Records are decoded in batches on `threads` threads while the calling thread
//! reads; the output does not depend on the thread count.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::data::encode::EncodeReport;
use crate::data::error::DataError;
use crate::data::input::{read_id_lists, InputError, InputErrorKind, InputSpec, Utf8Errors};
use crate::data::output::LinesOut;
use crate::data::pipeline::{Counters, TICK};
use crate::Tokenizer;

/// Records decoded per batch, at most (a batch also ends at [`BATCH_IDS`] ids).
const BATCH_RECORDS: usize = 4096;
/// Ids decoded per batch, about.
const BATCH_IDS: usize = 1 << 20;

/// Decodes the ids JSONL of `inputs` (field `field`) to `output` (a file written atomically, or
/// stdout for `None`). An id outside the vocabulary is an [`InputError`] naming file and line;
/// on any error no output file is left. `tick` is called between batches and at least every
/// 0.1 s of reading.
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
    let vocab_size = tok.vocab_size();
    let mut summaries = Vec::with_capacity(inputs.len());
    let mut batch: Vec<Vec<u32>> = Vec::new();
    let mut batch_ids = 0usize;
    let mut last_tick = Instant::now();
    let flush = |batch: &mut Vec<Vec<u32>>, out: &mut LinesOut| -> Result<(), DataError> {
        let texts = tok
            .decode_batch(batch, threads)
            .expect("every id was checked against the vocabulary");
        let mut lines = Vec::with_capacity(texts.iter().map(|t| t.len() + 12).sum());
        for text in &texts {
            lines.extend_from_slice(b"{\"text\": ");
            serde_json::to_writer(&mut lines, text).expect("a string serialises");
            lines.extend_from_slice(b"}\n");
        }
        out.write_all(&lines)?;
        batch.clear();
        Ok(())
    };
    for input in inputs {
        let name = input.name.as_str();
        let summary = read_id_lists(input, field, errors, &counters.bytes_read, |line, ids| {
            let mut checked = Vec::with_capacity(ids.len());
            for id in ids {
                match u32::try_from(id) {
                    Ok(id) if (id as usize) < vocab_size => checked.push(id),
                    _ => {
                        let kind = InputErrorKind::IdOutOfRange {
                            found: id.to_string(),
                            vocab_size: Some(vocab_size),
                        };
                        return Err(DataError::Input(InputError::at_line(kind, name, line)));
                    }
                }
            }
            counters.documents.fetch_add(1, Ordering::Relaxed);
            counters
                .tokens
                .fetch_add(checked.len() as u64, Ordering::Relaxed);
            batch_ids += checked.len();
            batch.push(checked);
            if batch.len() >= BATCH_RECORDS || batch_ids >= BATCH_IDS {
                flush(&mut batch, &mut out)?;
                batch_ids = 0;
            }
            if last_tick.elapsed() >= TICK {
                tick()?;
                last_tick = Instant::now();
            }
            Ok(())
        })?;
        summaries.push(summary);
    }
    flush(&mut batch, &mut out)?;
    tick()?;
    out.commit()?;
    Ok(EncodeReport {
        documents: counters.documents.load(Ordering::Relaxed),
        tokens: counters.tokens.load(Ordering::Relaxed),
        input_bytes: summaries.iter().map(|s| s.size).sum(),
        inputs: summaries,
    })
}
