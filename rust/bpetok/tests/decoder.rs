//! `Decoder` (the table-driven decoder) against `Tokenizer::decode` (the plain statement of
//! SentencePiece's rules, itself checked against ids recorded from `sentencepiece` in
//! `tests/tokenizer.rs` and against the package in `tests/test_parity_properties.py`): the same
//! text or the same error for arbitrary id lists, on both reference vocabularies and on models
//! with other decoding settings.

use bpetok::{Error, PieceType, Tokenizer, MIXTRAL_8X7B_MODEL};
use proptest::prelude::*;

fn shared_model(name: &str) -> Option<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vocab")
        .join(name);
    std::fs::read(path).ok()
}

/// Appends one length-delimited protobuf field to a serialized message (an embedded message
/// that already occurs gets the new fields merged in).
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

/// The tokenizers under test: the embedded Mixtral vocabulary, the v3 one when present, and
/// Mixtral without the dummy prefix and with another unknown surface (empty, and with a `▁`).
fn tokenizers() -> &'static [(String, Tokenizer, Vec<u32>)] {
    static TOKS: std::sync::OnceLock<Vec<(String, Tokenizer, Vec<u32>)>> =
        std::sync::OnceLock::new();
    TOKS.get_or_init(|| {
        let mut toks = vec![("mixtral".to_string(), Tokenizer::mixtral_8x7b())];
        if let Some(bytes) = shared_model("mistral-v3.model") {
            toks.push(("v3".into(), Tokenizer::from_bytes(&bytes).unwrap()));
        }
        // NormalizerSpec (field 3 of ModelProto) add_dummy_prefix (its field 3) = false.
        let no_prefix = append_field(MIXTRAL_8X7B_MODEL, 3, &[3 << 3, 0]);
        toks.push((
            "no dummy prefix".into(),
            Tokenizer::from_bytes(&no_prefix).unwrap(),
        ));
        // TrainerSpec (field 2) unk_surface (its field 44).
        for surface in ["", "\u{2581}?\u{2581} "] {
            let mut spec = Vec::new();
            push_varint(&mut spec, 44 << 3 | 2);
            push_varint(&mut spec, surface.len() as u64);
            spec.extend_from_slice(surface.as_bytes());
            let bytes = append_field(MIXTRAL_8X7B_MODEL, 2, &spec);
            toks.push((
                format!("unk {surface:?}"),
                Tokenizer::from_bytes(&bytes).unwrap(),
            ));
        }
        toks.into_iter()
            .map(|(name, tok)| {
                let pool = interesting_ids(&tok);
                (name, tok, pool)
            })
            .collect()
    })
}

#[test]
fn the_models_under_test_differ_as_intended() {
    let toks = tokenizers();
    let find = |name: &str| &toks.iter().find(|t| t.0 == name).unwrap().1;
    let hello = [22557];
    assert_eq!(find("mixtral").decode(&hello).unwrap(), "Hello");
    assert_eq!(find("no dummy prefix").decode(&hello).unwrap(), " Hello");
    assert_eq!(find("unk \"\"").decode(&[0, 22557]).unwrap(), "Hello");
    assert_eq!(
        find("unk \"\u{2581}?\u{2581} \"").decode(&[0]).unwrap(),
        "\u{2581}?\u{2581} "
    );
}

/// Ids that exercise the rules: byte pieces (valid and invalid UTF-8 runs), control and unknown
/// pieces, pieces starting with `▁`, and `▁` alone, beside arbitrary ids.
fn interesting_ids(tok: &Tokenizer) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..tok.vocab_size() as u32)
        .filter(|&id| {
            let piece = tok.id_to_piece(id).unwrap();
            tok.piece_type(id).unwrap() != PieceType::Normal
                || piece == "\u{2581}"
                || piece.starts_with("\u{2581}\u{2581}")
                // Longer than the decoder keeps in a table entry (UTF-8 or UTF-16).
                || piece.len() > 16
                || piece.encode_utf16().count() > 7
        })
        .collect();
    ids.extend(
        [
            "\u{2581}Hello",
            "\u{2581}world",
            "Hello",
            "\u{2581}\u{65e5}",
        ]
        .map(|p| tok.piece_to_id(p)),
    );
    ids
}

fn check_same(tok: &Tokenizer, ids: &[u32]) -> Result<(), TestCaseError> {
    let decoder = tok.decoder();
    match (tok.decode(ids), decoder.decode(ids)) {
        (Ok(want), Ok(got)) => {
            let mut appended = b"x".to_vec();
            decoder.decode_into(ids, &mut appended).unwrap();
            prop_assert_eq!(&appended[1..], want.as_bytes());
            let mut units = vec![u16::from(b'x')];
            decoder.decode_utf16_into(ids, &mut units).unwrap();
            let want16: Vec<u16> = want.encode_utf16().collect();
            prop_assert_eq!(&units[1..], &want16[..], "{:?}", ids);
            prop_assert_eq!(got, want, "{:?}", ids)
        }
        (Err(Error::IdOutOfRange { id: a, .. }), Err(Error::IdOutOfRange { id: b, .. })) => {
            let mut units = vec![7u16];
            let utf16 = decoder.decode_utf16_into(ids, &mut units);
            let refused = matches!(utf16, Err(Error::IdOutOfRange { id, .. }) if id == a);
            prop_assert!(refused, "{:?}", ids);
            prop_assert_eq!(units, vec![7u16]);
            prop_assert_eq!(a, b)
        }
        (want, got) => prop_assert!(false, "{:?}: {:?} but {:?}", ids, want, got),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoder_decodes_as_the_plain_rules(
        which in 0usize..8,
        picks in prop::collection::vec((any::<bool>(), any::<u32>()), 0..24),
    ) {
        let toks = tokenizers();
        let (_, tok, pool) = &toks[which % toks.len()];
        let vocab = tok.vocab_size() as u32;
        let ids: Vec<u32> = picks
            .iter()
            .map(|&(special, r)| if special { pool[r as usize % pool.len()] } else { r % vocab })
            .collect();
        check_same(tok, &ids)?;
    }

    /// An id out of range anywhere is the same error, naming the first such id.
    #[test]
    fn decoder_refuses_ids_out_of_range(
        ids in prop::collection::vec(0u32..32010, 1..12),
    ) {
        check_same(&tokenizers()[0].1, &ids)?;
    }
}

#[test]
fn decoder_handles_the_dummy_prefix_cases() {
    let tok = Tokenizer::mixtral_8x7b();
    let d = tok.decoder();
    let space = tok.piece_to_id("\u{2581}");
    let hello = tok.piece_to_id("\u{2581}Hello");
    let a = tok.piece_to_id("<0x41>");
    for (ids, want) in [
        (vec![space, hello], " Hello"),
        (vec![1, hello], "Hello"),
        (vec![1, 2, 1, hello, hello], "Hello Hello"),
        (vec![a, hello], "A Hello"),
        (vec![0, hello], " \u{2047}  Hello"),
        (vec![hello, space, hello], "Hello  Hello"),
        (vec![], ""),
    ] {
        assert_eq!(d.decode(&ids).unwrap(), want, "{ids:?}");
        assert_eq!(tok.decode(&ids).unwrap(), want, "{ids:?}");
        let mut units = Vec::new();
        d.decode_utf16_into(&ids, &mut units).unwrap();
        assert_eq!(String::from_utf16(&units).unwrap(), want, "{ids:?}");
    }
}

#[test]
fn decode_into_appends_and_leaves_the_text_on_error() {
    let tok = Tokenizer::mixtral_8x7b();
    let d = tok.decoder();
    let ids = tok.encode("Hello world", false, false);
    let mut text = b"> ".to_vec();
    d.decode_into(&ids, &mut text).unwrap();
    assert_eq!(text, b"> Hello world");
    assert!(d.decode_into(&[5, 40_000, 6], &mut text).is_err());
    assert_eq!(text, b"> Hello world");
}

#[test]
fn decoder_batch_is_the_same_on_any_thread_count() {
    let tok = Tokenizer::mixtral_8x7b();
    let d = tok.decoder();
    let texts: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "doc {i} \u{65e5}\u{672c} {}",
                "words and \u{1f916} ".repeat(i * 7 % 500)
            )
        })
        .collect();
    let batch: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| tok.encode(t, i_bos(t), false))
        .collect();
    for threads in [1, 2, 5] {
        assert_eq!(
            d.decode_batch(&batch, threads).unwrap(),
            texts,
            "{threads} threads"
        );
    }
    let mut bad = batch.clone();
    bad[250].push(32_000);
    match d.decode_batch(&bad, 2) {
        Err(Error::IdOutOfRange { id: 32_000, .. }) => {}
        other => panic!("expected IdOutOfRange, got {other:?}"),
    }
}

/// Half the documents with `<s>`, which decodes to nothing.
fn i_bos(text: &str) -> bool {
    text.len() % 2 == 0
}

#[test]
fn utf16_decoding_gives_the_text_of_real_documents() {
    // Japanese and Chinese with rare characters (byte pieces), emoji (surrogate pairs), a byte
    // order mark, long ASCII pieces between them, and the dummy prefix at the start.
    let tok = Tokenizer::mixtral_8x7b();
    let d = tok.decoder();
    for text in [
        "\u{feff}\u{65e5}\u{672c}\u{8a9e}\u{306e}\u{6587}\u{7ae0} internationalization \u{1f916}\u{1f600}!",
        " \u{9f98}\u{9f98}\u{5c5e}\u{6027} configuration\n\u{30c6}\u{30b9}\u{30c8}\u{3002}",
        "plain ASCII text with no other characters at all, long pieces: understanding",
        "\u{1f600}",
        "",
    ] {
        for bos in [false, true] {
            let ids = tok.encode(text, bos, false);
            let mut units = Vec::new();
            d.decode_utf16_into(&ids, &mut units).unwrap();
            assert_eq!(String::from_utf16(&units).unwrap(), text, "{ids:?}");
        }
    }
    let ja = tok.encode(
        "\u{65e5}\u{672c}\u{8a9e}\u{306e}\u{6587}\u{7ae0}\u{3067}\u{3059}",
        false,
        false,
    );
    assert!(d.mostly_non_ascii(&ja));
    assert!(!d.mostly_non_ascii(&tok.encode("Hello world, how are you", false, false)));
    assert!(!d.mostly_non_ascii(&[]));
}
