//! `Tokenizer::count` and `count_batch`: the length of what `encode_bytes` gives, on arbitrary
//! text and bytes, on both reference vocabularies, on any thread count.

use bpetok::{Text, Tokenizer};
use proptest::prelude::*;

fn tokenizers() -> &'static [Tokenizer] {
    static TOKS: std::sync::OnceLock<Vec<Tokenizer>> = std::sync::OnceLock::new();
    TOKS.get_or_init(|| {
        let mut toks = vec![Tokenizer::mixtral_8x7b()];
        let v3 = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/vocab/mistral-v3.model");
        if let Ok(bytes) = std::fs::read(v3) {
            toks.push(Tokenizer::from_bytes(&bytes).unwrap());
        }
        toks
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn count_is_the_length_of_the_encoding(text in any::<String>(), which in 0usize..2) {
        let toks = tokenizers();
        let tok = &toks[which % toks.len()];
        prop_assert_eq!(tok.count(text.as_bytes()), tok.encode(&text, false, false).len());
        // The `str` forms of an encoder give what the bytes forms give.
        let mut encoder = tok.encoder();
        prop_assert_eq!(encoder.count_text(Text::Str(&text)), tok.encode(&text, false, false).len());
        let mut ids = vec![7];
        encoder.encode_text_into(Text::Str(&text), true, true, &mut ids);
        prop_assert_eq!(&ids[..1], &[7]);
        prop_assert_eq!(&ids[1..], &tok.encode_bytes(text.as_bytes(), true, true)[..]);
    }

    #[test]
    fn count_of_bytes_is_the_length_of_their_encoding(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        which in 0usize..2,
    ) {
        let toks = tokenizers();
        let tok = &toks[which % toks.len()];
        prop_assert_eq!(tok.count(&bytes), tok.encode_bytes(&bytes, false, false).len());
        let mut encoder = tok.encoder();
        prop_assert_eq!(encoder.count(&bytes), tok.encode_bytes(&bytes, false, false).len());
    }
}

#[test]
fn count_batch_is_in_order_and_the_same_on_any_thread_count() {
    for tok in tokenizers() {
        let texts: Vec<String> = (0..500)
            .map(|i| {
                format!(
                    "doc {i} \u{65e5}\u{672c} [INST] {}",
                    "Some words, and more\n\t".repeat(i * 13 % 300)
                )
            })
            .collect();
        let lengths: Vec<usize> = texts
            .iter()
            .map(|t| tok.encode(t, false, false).len())
            .collect();
        for threads in [1, 2, 3, 8] {
            assert_eq!(
                tok.count_batch(&texts, threads),
                lengths,
                "{threads} threads"
            );
        }
        assert!(tok.count_batch::<&str>(&[], 2).is_empty());
    }
}

#[test]
fn counting_a_huge_text_then_small_ones_stays_exact() {
    // The scratch buffer grows for the first text and is freed after it.
    let tok = &tokenizers()[0];
    let huge = "word ".repeat(400_000);
    assert_eq!(
        tok.count(huge.as_bytes()),
        tok.encode(&huge, false, false).len()
    );
    for text in ["", " ", "Hello world", "\u{1f916}"] {
        assert_eq!(
            tok.count(text.as_bytes()),
            tok.encode(text, false, false).len()
        );
    }
}

/// `count_to` over files: per input, the documents, the tokens `encode` makes (with `<s>` and
/// `</s>` when asked) and the text bytes, on any thread count.
#[cfg(feature = "data")]
#[test]
fn count_to_counts_every_input_as_encode_would() {
    use bpetok::data::count_to;
    use bpetok::data::input::{resolve_inputs, FormatChoice, ReadOptions, Utf8Errors};
    use bpetok::data::pipeline::{Counters, EncodeOptions};

    let tok = &tokenizers()[0];
    let dir = tempfile::tempdir().unwrap();
    let docs: Vec<String> = (0..3000)
        .map(|i| format!("doc {i}: {}", "words \u{65e5}\u{672c} ".repeat(i % 41)))
        .collect();
    let (first, second) = docs.split_at(1700);
    let write = |name: &str, docs: &[String]| {
        let path = dir.path().join(name);
        let lines: String = docs
            .iter()
            .map(|d| format!("{}\n", serde_json::json!({ "text": d })))
            .collect();
        std::fs::write(&path, lines).unwrap();
        path
    };
    let paths = [write("a.jsonl", first), write("b.jsonl", second)];
    let specs = resolve_inputs(&paths, FormatChoice::Auto).unwrap();
    let read = ReadOptions {
        field: "text".into(),
        lines: false,
        errors: Utf8Errors::Strict,
        skip_bad_records: false,
        chat: None,
    };
    let tokens = |docs: &[String]| -> u64 {
        docs.iter()
            .map(|d| tok.encode(d, true, false).len() as u64)
            .sum()
    };
    for threads in [1, 2, 3] {
        let encode = EncodeOptions {
            add_bos: true,
            add_eos: false,
            threads,
            skip_records: 0,
        };
        let counters = Counters::default();
        let report = count_to(tok, &specs, &read, encode, &counters, || Ok(())).unwrap();
        assert_eq!(report.documents, 3000);
        assert_eq!(report.tokens, tokens(&docs));
        assert_eq!(
            report.text_bytes,
            docs.iter().map(|d| d.len() as u64).sum::<u64>()
        );
        let per_input: Vec<(u64, u64)> = report
            .inputs
            .iter()
            .map(|i| (i.documents, i.tokens))
            .collect();
        assert_eq!(
            per_input,
            [(1700, tokens(first)), (1300, tokens(second))],
            "{threads} threads"
        );
        assert_eq!(
            report.inputs[1].summary.size,
            paths[1].metadata().unwrap().len()
        );
        assert_eq!(
            counters.tokens.load(std::sync::atomic::Ordering::Relaxed),
            report.tokens
        );
    }
}
