//! The core crate's public API without Python: loading (and refusing) models, encoding and
//! decoding against ids recorded from `sentencepiece` 0.2.x, batch determinism.

use bpetok::{Error, PieceType, Tokenizer, MIXTRAL_8X7B_MODEL};
use proptest::prelude::*;

/// The reference models beside the repository (`../shared/vocab`), if present.
fn shared_model(name: &str) -> Option<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vocab")
        .join(name);
    std::fs::read(path).ok()
}

fn mixtral() -> &'static Tokenizer {
    static TOK: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
    TOK.get_or_init(Tokenizer::mixtral_8x7b)
}

/// Appends one protobuf field (length-delimited) to a serialized message; for an embedded
/// message that already occurs, protobuf merges the new fields into it.
fn append_field(model: &[u8], field: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = model.to_vec();
    push_varint(&mut out, u64::from(field << 3 | 2));
    push_varint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[test]
fn embedded_model_is_the_mixtral_vocabulary() {
    let tok = mixtral();
    assert_eq!(tok.vocab_size(), 32000);
    assert_eq!(
        (tok.unk_id(), tok.bos_id(), tok.eos_id(), tok.pad_id()),
        (0, Some(1), Some(2), None)
    );
    assert_eq!(tok.id_to_piece(3).unwrap(), "<0x00>");
    assert_eq!(tok.piece_type(3).unwrap(), PieceType::Byte);
    assert_eq!(tok.piece_to_id("\u{2581}Hello"), 22557);
    assert_eq!(tok.piece_to_id("no such piece"), 0);
    if let Some(shared) = shared_model("mixtral-8x7b-v0.1.model") {
        assert_eq!(
            shared, MIXTRAL_8X7B_MODEL,
            "the embedded copy differs from ../shared/vocab"
        );
    }
}

#[test]
fn encodes_like_sentencepiece() {
    let tok = mixtral();
    let cases: &[(&str, &[u32])] = &[
        ("", &[]),
        (" ", &[259]),
        ("a ", &[264, 28705]),
        ("hello world", &[6312, 28709, 1526]),
        // CJK after a lone `▁`, an emoji by byte fallback, NUL passes through, literal `▁` is a space.
        (
            "\u{65e5}\u{672c}\u{8a9e}\u{306e}\u{30c6}\u{30ad}\u{30b9}\u{30c8} \u{1f916} \u{0} \u{2581}x",
            &[28705, 29142, 29119, 30321, 28993, 29610, 29753, 29109, 29123, 28705, 243, 162, 167, 153, 28705, 3, 28705, 1318],
        ),
    ];
    for (text, ids) in cases {
        assert_eq!(tok.encode(text, false, false), *ids, "{text:?}");
    }
    assert_eq!(tok.encode("", true, true), [1, 2]);
    assert_eq!(tok.encode("Hello world", true, false), [1, 22557, 1526]);
    // Invalid UTF-8: one U+FFFD (id 29137) per bad byte.
    assert_eq!(
        tok.encode_bytes(b"\xe2\x96", false, false),
        [28705, 29137, 29137]
    );
}

#[test]
fn decodes_like_sentencepiece() {
    let tok = mixtral();
    let cases: &[(&[u32], &str)] = &[
        (&[28705, 22557], " Hello"),
        (&[1, 22557], "Hello"),
        (&[1, 28705, 22557], " Hello"),
        (&[259, 22557], "  Hello"),
        (&[68, 22557], "A Hello"),
        (&[1, 1, 22557], "Hello"),
        (&[0, 22557], " \u{2047}  Hello"),
        (&[229, 153, 132, 22557], "\u{2581} Hello"),
        (&[229, 22557], "\u{fffd} Hello"),
        (&[35, 22557], "  Hello"),
        (&[], ""),
    ];
    for (ids, text) in cases {
        assert_eq!(tok.decode(ids).unwrap(), *text, "{ids:?}");
    }
    match tok.decode(&[5, 32000]) {
        Err(Error::IdOutOfRange {
            id: 32000,
            vocab_size: 32000,
        }) => {}
        other => panic!("expected IdOutOfRange, got {other:?}"),
    }
}

#[test]
fn v3_vocabulary_with_user_defined_and_control_pieces() {
    let Some(bytes) = shared_model("mistral-v3.model") else {
        eprintln!("../shared/vocab/mistral-v3.model not found; skipped");
        return;
    };
    let tok = Tokenizer::from_bytes(&bytes).unwrap();
    assert_eq!(tok.vocab_size(), 32768);
    assert_eq!(tok.piece_to_id("[INST]"), 3);
    // User-defined pieces are matched whole; control pieces typed as text are ordinary text.
    assert_eq!(
        tok.encode("[REFERENCE_DOC_1] x", false, false),
        [29473, 769, 2086]
    );
    assert_eq!(
        tok.encode("a[REFERENCE_DOC_12]b [REFERENCE_DOC_1", false, false),
        [1032, 758, 29494, 1501, 15097, 1493, 16451, 29498, 5938, 29511, 29498, 29508]
    );
    assert_eq!(
        tok.encode("[INST] hi [/INST]", false, false),
        [1501, 17057, 29561, 12782, 1501, 29516, 17057, 29561]
    );
    assert_eq!(tok.encode("<s>", false, false), [1291, 29481, 29535]);
}

#[test]
fn refuses_what_it_does_not_implement() {
    let model = MIXTRAL_8X7B_MODEL;
    let check = |bytes: &[u8], want: &str| match Tokenizer::from_bytes(bytes) {
        Err(err) => assert!(
            err.to_string().contains(want),
            "{err} does not mention {want:?}"
        ),
        Ok(_) => panic!("loaded a model that should be refused ({want})"),
    };
    check(b"", "no pieces");
    check(
        b"this is not a protobuf at all \xff\xff\xff",
        "not a SentencePiece model",
    );
    check(&model[..1000], "not a SentencePiece model");
    // trainer_spec { model_type: UNIGRAM }
    check(&append_field(model, 2, &[0x18, 0x01]), "UNIGRAM");
    // trainer_spec { byte_fallback: false } (field 35, varint)
    check(
        &append_field(model, 2, &[0x98, 0x02, 0x00]),
        "byte_fallback",
    );
    // normalizer_spec { precompiled_charsmap: "x" }
    check(
        &append_field(model, 3, &[0x12, 0x01, b'x']),
        "character map",
    );
    // normalizer_spec { remove_extra_whitespaces: true }
    check(
        &append_field(model, 3, &[0x20, 0x01]),
        "remove_extra_whitespaces",
    );
    // one more piece "▁the" (a duplicate), and an empty one
    check(
        &append_field(model, 1, &[0x0a, 0x06, 0xe2, 0x96, 0x81, b't', b'h', b'e']),
        "defined twice",
    );
    check(&append_field(model, 1, &[0x0a, 0x00]), "empty");
    match Tokenizer::from_file("/nonexistent/bpetok.model") {
        Err(Error::Io { path, .. }) => assert_eq!(path, "/nonexistent/bpetok.model"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn batch_is_deterministic_across_thread_counts() {
    let tok = mixtral();
    let texts: Vec<String> = (0..400)
        .map(|i| {
            format!(
                "document {i}: {}",
                "The quick brown fox jumps over the lazy dog. ".repeat(i % 37 + 1)
            )
        })
        .collect();
    let sequential: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t, true, true)).collect();
    for threads in [1, 2, 3, 8] {
        assert_eq!(
            tok.encode_batch(&texts, true, true, threads),
            sequential,
            "{threads} threads"
        );
    }
    let decoded = tok.decode_batch(&sequential, 2).unwrap();
    assert_eq!(decoded, texts);
}

#[test]
fn pathological_inputs_finish_and_round_trip() {
    let tok = mixtral();
    for text in [
        "a".repeat(200_000),
        " ".repeat(200_000),
        "ab1".repeat(70_000),
    ] {
        let ids = tok.encode(&text, false, false);
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A damaged model file is refused with an error or loads and encodes: never a panic.
    #[test]
    fn damaged_models_never_panic(flips in prop::collection::vec((0usize..MIXTRAL_8X7B_MODEL.len(), any::<u8>()), 1..6),
                                  cut in prop::option::of(0usize..MIXTRAL_8X7B_MODEL.len())) {
        let mut bytes = MIXTRAL_8X7B_MODEL.to_vec();
        for (pos, value) in flips {
            bytes[pos] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut);
        }
        if let Ok(tok) = Tokenizer::from_bytes(&bytes) {
            let ids = tok.encode("Hello world, \u{65e5}\u{672c} \u{1f916}  x", true, true);
            let _ = tok.decode(&ids);
        }
    }

    #[test]
    fn decode_of_encode_restores_the_text(text in any::<String>()) {
        // SentencePiece drops the dummy prefix on decode, so text comes back unchanged except
        // that a literal `▁` comes back as a space.
        let tok = mixtral();
        let ids = tok.encode(&text, false, false);
        prop_assert_eq!(tok.decode(&ids).unwrap(), text.replace('\u{2581}', " "));
    }

    #[test]
    fn any_bytes_encode_like_their_replacement_text(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let tok = mixtral();
        let replaced: String = {
            // SentencePiece: one U+FFFD per byte that does not start a valid character.
            let mut s = String::new();
            let mut rest = bytes.as_slice();
            loop {
                match std::str::from_utf8(rest) {
                    Ok(v) => { s.push_str(v); break; }
                    Err(e) => {
                        s.push_str(std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap());
                        s.push('\u{fffd}');
                        rest = &rest[e.valid_up_to() + 1..];
                    }
                }
            }
            s
        };
        prop_assert_eq!(tok.encode_bytes(&bytes, false, false), tok.encode(&replaced, false, false));
    }
}

/// A long text of many scripts, cut points of every kind, and (when `invalid`) bytes that are not
/// UTF-8, built from `seed`.
fn long_mixed_text(seed: u64, bytes: usize, invalid: bool) -> Vec<u8> {
    const PARTS: &[&str] = &[
        "The quick brown fox ",
        "jumps",
        " over\n\n",
        "    indented(code) ",
        "数据获取一个",
        "的中文文本。",
        "日本語のテキスト、",
        "ひらがな",
        "😀🚀",
        "\u{2581}",
        "   ",
        "\t",
        "émigré ",
        "[INST]",
        "aaaaaaa",
    ];
    let mut state = seed;
    let mut out = Vec::with_capacity(bytes + 64);
    while out.len() < bytes {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pick = (state >> 33) as usize;
        out.extend_from_slice(PARTS[pick % PARTS.len()].as_bytes());
        if invalid && pick % 97 == 0 {
            out.extend_from_slice(&[0xE6, 0x95]); // a truncated three-byte sequence
        }
    }
    out
}

/// One long text cut into parts on several threads gives the ids of encoding it whole, on both
/// vocabularies, whatever the number of threads; so does a batch with fewer texts than threads.
#[test]
fn a_long_text_on_several_threads_gives_the_same_ids() {
    let mut tokenizers = vec![Tokenizer::mixtral_8x7b()];
    if let Some(v3) = shared_model("mistral-v3.model") {
        tokenizers.push(Tokenizer::from_bytes(&v3).unwrap());
    }
    for tok in &tokenizers {
        for (seed, invalid) in [(1, false), (2, true), (3, false)] {
            let text = long_mixed_text(seed, bpetok::PARALLEL_MIN_BYTES * 3 + 12_345, invalid);
            let whole = tok.encode_bytes(&text, true, true);
            for threads in [2, 3, 8] {
                assert_eq!(
                    tok.encode_bytes_parallel(&text, true, true, threads),
                    whole,
                    "{threads}"
                );
            }
            let batch = tok.encode_batch(&[&text[..], b"short"], false, false, 4);
            assert_eq!(batch[0], whole[1..whole.len() - 1]);
            assert_eq!(batch[1], tok.encode_bytes(b"short", false, false));
            // The parts, unjoined: several of them, and together the whole text's ids.
            let parts = tok.encode_bytes_parts(&text, true, true, 2);
            assert!(parts.len() > 1, "{}", parts.len());
            assert_eq!(parts.concat(), whole);
            let batch = tok.encode_batch_parts(&[&text[..], b"short"], false, false, 4);
            assert_eq!(batch[0].concat(), whole[1..whole.len() - 1]);
            assert_eq!(batch[1].concat(), tok.encode_bytes(b"short", false, false));
        }
    }
}

/// A text with nowhere to cut (one run of spaces merges from the left as a whole) is encoded in
/// one part, with the same ids.
#[test]
fn a_long_text_without_a_cut_is_one_part() {
    let tok = mixtral();
    let text = vec![b' '; bpetok::PARALLEL_MIN_BYTES + 7];
    assert_eq!(
        tok.encode_bytes_parallel(&text, false, false, 2),
        tok.encode_bytes(&text, false, false)
    );
}
