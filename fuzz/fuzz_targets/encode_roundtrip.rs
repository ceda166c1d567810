//! Encoding arbitrary bytes on both reference vocabularies: no panic, every id in range, `<s>` /
//! `</s>` exactly around the ids when asked, the `&str` and bytes entry points agree, and
//! decoding gives the input back as docs/encoder.md specifies: each byte that does not start a
//! well-formed UTF-8 sequence read as U+FFFD, every `▁` (U+2581) read as a space, and nothing
//! else changed (leading spaces, NUL, tabs, newlines, other whitespace all come back).
#![no_main]

use bpetok_fuzz::{expected_round_trip, tokenizers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let expected = expected_round_trip(data);
    for (name, tok) in tokenizers() {
        let ids = tok.encode_bytes(data, false, false);
        assert_eq!(
            ids.is_empty(),
            data.is_empty(),
            "{name}: empty input <=> no ids"
        );
        let vocab = tok.vocab_size();
        assert!(
            ids.iter().all(|&id| (id as usize) < vocab),
            "{name}: id out of range"
        );
        let decoded = tok.decode(&ids).expect("ids of the encoder decode");
        assert_eq!(decoded, expected, "{name}: round trip of {data:?}");

        let with = tok.encode_bytes(data, true, true);
        let mut around = vec![tok.bos_id().unwrap()];
        around.extend_from_slice(&ids);
        around.push(tok.eos_id().unwrap());
        assert_eq!(with, around, "{name}: <s> and </s>");
        assert_eq!(
            tok.decode(&with).unwrap(),
            expected,
            "{name}: with <s> and </s>"
        );

        if let Ok(text) = std::str::from_utf8(data) {
            assert_eq!(
                tok.encode(text, false, false),
                ids,
                "{name}: &str and bytes differ"
            );
        }
    }
});
