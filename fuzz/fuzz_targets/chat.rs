//! Arbitrary bytes as a conversation's JSON, in each instruct format and on both vocabularies:
//! a `ChatError` or ids, never a panic. When it encodes: a mask flag per id, `<s>` first and never
//! a target, `train_on=all` gives the same ids with every flag set, and the result is the same
//! twice. Any JSON value the chat reader parses is written back (Python's `json.dumps`) as text
//! that parses to the same value.
#![no_main]

use bpetok::data::chat::{ChatFormat, ChatSpec, TrainOn, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(value) = Value::parse(&text) {
        let dumped = value.dumps();
        let again = Value::parse(&dumped).expect("dumps writes JSON the reader reads");
        assert_eq!(again.dumps(), dumped, "dumps is not a fixed point");
    }
    for (_, tok) in bpetok_fuzz::tokenizers() {
        for format in [ChatFormat::V1, ChatFormat::V2, ChatFormat::V3] {
            let Ok(spec) = ChatSpec::new(tok, format, TrainOn::Assistant) else {
                continue;
            };
            let mut encoder = tok.encoder();
            let Ok(made) = spec.encode_json(&mut encoder, &text) else {
                continue;
            };
            assert_eq!(made.ids.len(), made.mask.len());
            assert_eq!(made.ids.first().copied(), tok.bos_id());
            assert!(!made.mask[0], "<s> is never a target");
            assert_eq!(spec.encode_json(&mut encoder, &text).as_ref(), Ok(&made));
            let all = ChatSpec::new(tok, format, TrainOn::All).expect("as above");
            let everything = all
                .encode_json(&mut encoder, &text)
                .expect("the same conversation");
            assert_eq!(everything.ids, made.ids);
            assert!(everything.mask.iter().all(|&m| m));
        }
    }
});
