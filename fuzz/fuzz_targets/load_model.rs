//! Arbitrary bytes as a `.model` file: an error or a tokenizer, never a panic, an abort, a hang
//! (libFuzzer's `-timeout`) or an allocation beyond the bound (`bpetok_fuzz::MAX_ALLOCATION`,
//! `-rss_limit_mb`). A model that loads must encode and decode without panicking, and its fast
//! path must give the plain algorithm's ids.
#![no_main]

use bpetok::Tokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tok) = Tokenizer::from_bytes(data) else {
        return;
    };
    bpetok_fuzz::exercise_model(&tok, data);
});
