//! The fast path (cutting at bigrams no piece contains, the seed and per-worker segment caches,
//! the short-segment scan, the grouped agenda) against SentencePiece's algorithm written the
//! plain way (`Tokenizer::encode_reference`: the whole text in one piece, a binary heap, merges
//! looked up by text): the same ids on both vocabularies. The input is cut at 0xFF bytes into
//! several texts, encoded in turn with one warm cache, so that cache entries of one text are
//! reused by the next.
#![no_main]

use bpetok_fuzz::tokenizers;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for (name, tok) in tokenizers() {
        let mut encoder = tok.encoder();
        for text in data.split(|&b| b == 0xFF) {
            let fast = encoder.encode_bytes(text, false, false);
            let reference = tok.encode_reference(text, false, false);
            assert_eq!(fast, reference, "{name}: fast path differs on {text:?}");
        }
        // Again with every text seen before, so from the cache where it applies.
        for text in data.split(|&b| b == 0xFF) {
            let fast = encoder.encode_bytes(text, false, false);
            assert_eq!(
                fast,
                tok.encode_reference(text, false, false),
                "{name}: cached {text:?}"
            );
        }
    }
});
