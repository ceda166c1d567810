//! What the fuzz targets share: the two reference tokenizers, an allocation bound, an independent
//! strict UTF-8 decoder, and the checkers the targets assert with (`model_edit`, `pack_check`,
//! `shard_check`). docs/fuzzing.md says what each target asserts.

pub mod model_edit;
#[path = "../../rust/bpetok/tests/support/pack_check.rs"]
pub mod pack_check;
pub mod shard_check;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::OnceLock;

use bpetok::Tokenizer;

/// The largest single allocation a target may make: 256 MiB (docs/fuzzing.md, "Bounds").
/// libFuzzer's `-malloc_limit_mb` needs a sanitizer's malloc hooks, and the targets build without
/// one (`fuzz/run.sh`), so the bound is enforced here; `-rss_limit_mb` bounds the total.
pub const MAX_ALLOCATION: usize = 256 << 20;

/// The system allocator, aborting (a libFuzzer crash, with the size in the message) on any
/// single allocation above [`MAX_ALLOCATION`].
pub struct BoundedAllocator;

fn too_large(size: usize) -> ! {
    // No allocation here: write the message with a fixed buffer.
    use std::io::Write;
    let mut buf = [0u8; 128];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = writeln!(
        cursor,
        "bpetok-fuzz: allocation of {size} bytes exceeds the bound of {MAX_ALLOCATION}"
    );
    let n = cursor.position() as usize;
    let _ = std::io::stderr().write_all(&buf[..n]);
    std::process::abort();
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, after a check
// that only reads `layout.size()` / `new_size`; `System` upholds the `GlobalAlloc` contract.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for BoundedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            too_large(layout.size());
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            too_large(layout.size());
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOCATION {
            too_large(new_size);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: BoundedAllocator = BoundedAllocator;

/// Where the reference models are: `$BPETOK_VOCAB_DIR`, else `../shared/vocab` beside the
/// repository (as for the tests and CI).
pub fn vocab_dir() -> PathBuf {
    match std::env::var_os("BPETOK_VOCAB_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vocab"),
    }
}

/// The bytes of a reference model (`mixtral-8x7b-v0.1.model` or `mistral-v3.model`). The Mixtral
/// one is also embedded in the crate and used when the folder is absent; the v3 one must be there.
pub fn model_bytes(name: &str) -> Vec<u8> {
    let path = vocab_dir().join(name);
    match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(_) if name == MIXTRAL => bpetok::MIXTRAL_8X7B_MODEL.to_vec(),
        Err(err) => {
            eprintln!(
                "bpetok-fuzz: cannot read {}: {err} (set BPETOK_VOCAB_DIR to the folder with the \
                 reference models)",
                path.display()
            );
            std::process::exit(2);
        }
    }
}

pub const MIXTRAL: &str = "mixtral-8x7b-v0.1.model";
pub const V3: &str = "mistral-v3.model";

/// Both reference tokenizers, loaded once per process: (name, tokenizer).
pub fn tokenizers() -> &'static [(&'static str, Tokenizer); 2] {
    static TOKENIZERS: OnceLock<[(&'static str, Tokenizer); 2]> = OnceLock::new();
    TOKENIZERS.get_or_init(|| {
        [MIXTRAL, V3].map(|name| {
            let tok = Tokenizer::from_bytes(&model_bytes(name))
                .unwrap_or_else(|err| panic!("the reference model {name} must load: {err}"));
            (name, tok)
        })
    })
}

/// Bytes to text as SentencePiece's strict decoder reads them, written from the Unicode standard's
/// table of well-formed byte sequences (Table 3-7) rather than with `str::from_utf8`: a well-formed
/// sequence is its character; any other byte is one U+FFFD, and decoding resumes at the next byte.
pub fn strict_utf8_lossy(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b0 = bytes[i];
        let cont =
            |k: usize, lo: u8, hi: u8| bytes.get(i + k).is_some_and(|&b| (lo..=hi).contains(&b));
        let len = match b0 {
            0x00..=0x7F => 1,
            0xC2..=0xDF if cont(1, 0x80, 0xBF) => 2,
            0xE0 if cont(1, 0xA0, 0xBF) && cont(2, 0x80, 0xBF) => 3,
            0xE1..=0xEC | 0xEE..=0xEF if cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) => 3,
            0xED if cont(1, 0x80, 0x9F) && cont(2, 0x80, 0xBF) => 3,
            0xF0 if cont(1, 0x90, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) => 4,
            0xF1..=0xF3 if cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) => 4,
            0xF4 if cont(1, 0x80, 0x8F) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) => 4,
            _ => 0,
        };
        if len == 0 {
            out.push('\u{FFFD}');
            i += 1;
        } else {
            let mut c: u32 = match len {
                1 => u32::from(b0),
                2 => u32::from(b0 & 0x1F),
                3 => u32::from(b0 & 0x0F),
                _ => u32::from(b0 & 0x07),
            };
            for k in 1..len {
                c = (c << 6) | u32::from(bytes[i + k] & 0x3F);
            }
            out.push(char::from_u32(c).expect("a well-formed sequence is a scalar value"));
            i += len;
        }
    }
    out
}

/// What decoding the encoding of `bytes` must give (docs/encoder.md): the strictly decoded text
/// with every `▁` read as a space. The dummy prefix and the leading `▁` it puts in front are
/// dropped again by the decoder, so leading spaces, NUL and all other whitespace come back as they
/// were; nothing else is normalized.
pub fn expected_round_trip(bytes: &[u8]) -> String {
    strict_utf8_lossy(bytes).replace('\u{2581}', " ")
}

/// Texts every loaded model is tried on: words, spaces, runs, digits, CJK, emoji, control
/// characters, piece-like text, and the v3 vocabulary's user-defined and control pieces as text.
pub const PROBE_TEXTS: &[&str] = &[
    "",
    " ",
    "Hello world",
    "  leading and trailing  ",
    "a\tb\nc\r\n\u{0}d",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "                                                                  x",
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "\u{65e5}\u{672c}\u{8a9e}\u{306e}\u{6587}\u{7ae0}",
    "\u{1f600}\u{2581}\u{2581}x\u{fffd}",
    "<s></s><unk><0x41>[INST][/INST][REFERENCE_DOC_0][TOOL_CALLS]",
    "def f(x):\n    return x ** 2  # comment\n",
];

/// What every model that loads must do: encode (the fast path giving the plain algorithm's ids,
/// every id in range), decode its own ids, and answer the piece queries, without panicking.
/// `extra` is one more text (any bytes).
pub fn exercise_model(tok: &Tokenizer, extra: &[u8]) {
    let vocab = tok.vocab_size();
    assert!(vocab > 0);
    let texts = PROBE_TEXTS.iter().map(|t| t.as_bytes()).chain([extra]);
    for text in texts {
        let ids = tok.encode_bytes(text, true, true);
        assert!(
            ids.iter().all(|&id| (id as usize) < vocab),
            "id out of range"
        );
        assert_eq!(
            ids,
            tok.encode_reference(text, true, true),
            "fast path differs from the plain algorithm on {text:?}"
        );
        // Decoding never fails on ids in range; its text is whatever the model says.
        tok.decode(&ids).expect("ids in range decode");
    }
    for id in [0, 1, 2, vocab as u32 - 1] {
        let piece = tok.id_to_piece(id).unwrap();
        let _ = tok.piece_to_id(piece);
        let _ = tok.piece_type(id).unwrap();
    }
    assert!(tok.decode(&[vocab as u32]).is_err());
}
