//! The reference `.model` files, damaged by structure-aware edits (`bpetok_fuzz::model_edit`:
//! pieces dropped, repeated, moved, retyped, rescored or replaced, spec settings appended, the
//! file cut short, bytes changed inside a field): an error naming the problem, or a tokenizer,
//! never a panic, abort, hang or allocation beyond the bound. A model that loads must encode and
//! decode, and its fast path must give the plain algorithm's ids on a fixed set of texts and on
//! the fuzz input's tail.
#![no_main]

use std::sync::OnceLock;

use bpetok::Tokenizer;
use bpetok_fuzz::model_edit::{self, Field};
use bpetok_fuzz::{model_bytes, MIXTRAL, V3};
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

/// Each reference model split into fields, with the index of its first NORMAL piece.
fn bases() -> &'static [(Vec<Field>, usize); 2] {
    static BASES: OnceLock<[(Vec<Field>, usize); 2]> = OnceLock::new();
    BASES.get_or_init(|| {
        [MIXTRAL, V3].map(|name| {
            let bytes = model_bytes(name);
            let fields = model_edit::split(&bytes).expect("a reference model parses");
            let tok = Tokenizer::from_bytes(&bytes).expect("a reference model loads");
            let first_normal = (0..tok.vocab_size() as u32)
                .position(|id| tok.piece_type(id).unwrap() == bpetok::PieceType::Normal)
                .unwrap();
            (fields, first_normal)
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(which) = u.arbitrary::<bool>() else {
        return;
    };
    let (base, first_normal) = &bases()[usize::from(which)];
    let mut fields = base.clone();
    if model_edit::mutate(&mut u, &mut fields, *first_normal).is_err() {
        return;
    }
    let bytes = model_edit::join(&fields);
    match Tokenizer::from_bytes(&bytes) {
        Ok(tok) => bpetok_fuzz::exercise_model(&tok, u.take_rest()),
        Err(err) => assert!(!err.to_string().is_empty()),
    }
});
