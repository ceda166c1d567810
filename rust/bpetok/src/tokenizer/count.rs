//! Counting tokens without keeping them: the encoder runs as for [`Tokenizer::encode_bytes`], into
//! a scratch buffer of ids that each thread reuses from text to text, and only the length is
//! returned. No result is allocated per text, and a batch of counts is one `Vec<usize>`.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::tokenizer::{bpe, run_parallel, Encoder, Text, Tokenizer};

/// A scratch buffer of ids larger than this (in bytes of capacity) is freed after the text that
/// grew it, as the encoder's own scratch buffers are: a thread keeps at most this much.
const MAX_KEPT_SCRATCH_BYTES: usize = 1 << 20;

thread_local! {
    /// The ids of the text being counted on this thread, reused from text to text.
    static SCRATCH: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

impl Tokenizer {
    /// The number of tokens of `text`: `encode_bytes(text, false, false).len()` (invalid UTF-8
    /// read as U+FFFD per bad byte), without building the ids. Add one for `<s>` and one for
    /// `</s>` where the model has them and they are wanted.
    pub fn count(&self, text: &[u8]) -> usize {
        self.encoder().count(text)
    }

    /// [`Tokenizer::count`] of every text, on up to `num_threads` threads (the calling one
    /// included), in input order; the counts do not depend on the number of threads.
    pub fn count_batch<T: AsRef<[u8]> + Sync>(
        &self,
        texts: &[T],
        num_threads: usize,
    ) -> Vec<usize> {
        let counts: Vec<AtomicUsize> = texts.iter().map(|_| AtomicUsize::new(0)).collect();
        let sizes: Vec<usize> = texts.iter().map(|t| t.as_ref().len()).collect();
        let threads = self.batch_threads(sizes.iter().copied(), num_threads);
        run_parallel(&sizes, self.encoders(threads), |i, encoder| {
            counts[i].store(encoder.count(texts[i].as_ref()), Ordering::Relaxed)
        });
        counts.into_iter().map(AtomicUsize::into_inner).collect()
    }
}

impl Encoder<'_> {
    /// [`Tokenizer::count`] with this encoder's scratch space.
    pub fn count(&mut self, text: &[u8]) -> usize {
        self.count_text(Text::Bytes(text))
    }

    /// [`Encoder::count`] of a [`Text`] of either kind (a `str` has no UTF-8 to check).
    pub fn count_text(&mut self, text: Text<'_>) -> usize {
        let text = text.valid();
        let tokenizer = self.tokenizer;
        let ws = self.workspace();
        SCRATCH.with_borrow_mut(|ids| {
            ids.clear();
            bpe::encode_text(&tokenizer.model, tokenizer.tables(), &text, ws, ids);
            ws.release_large_buffers();
            let count = ids.len();
            if ids.capacity() * std::mem::size_of::<u32>() > MAX_KEPT_SCRATCH_BYTES {
                *ids = Vec::new();
            }
            count
        })
    }
}
