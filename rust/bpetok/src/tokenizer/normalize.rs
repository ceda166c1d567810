//! SentencePiece's identity normalizer for the models `bpetok` accepts: invalid UTF-8 becomes
//! U+FFFD one byte at a time, the dummy prefix `▁` goes in front of non-empty input, and every
//! space (0x20, nothing else) becomes `▁` (U+2581).

/// The meta symbol SentencePiece writes for a space.
pub const SPACE_SYMBOL: char = '\u{2581}';
pub(crate) const SPACE_SYMBOL_STR: &str = "\u{2581}";

/// Calls `f` with the input split into valid UTF-8 runs and one `"\u{FFFD}"` for every byte that
/// does not start a valid character. This is SentencePiece's strict decoder (`IsValidDecodeUTF8`:
/// no overlong forms, no surrogates, nothing above U+10FFFF, truncated sequences invalid), which
/// always consumes exactly one byte when it finds an invalid one; Rust's `from_utf8` accepts and
/// rejects the same sequences, so it finds the same first invalid byte.
pub(crate) fn for_each_utf8_run(mut bytes: &[u8], mut f: impl FnMut(&str)) {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(valid) => {
                if !valid.is_empty() {
                    f(valid);
                }
                return;
            }
            Err(err) => {
                let (valid, rest) = bytes.split_at(err.valid_up_to());
                if !valid.is_empty() {
                    // SAFETY-free: `valid_up_to` guarantees this prefix is UTF-8.
                    f(std::str::from_utf8(valid).unwrap_or_default());
                }
                f("\u{FFFD}");
                bytes = &rest[1..];
            }
        }
    }
}

/// Appends `text` with every ' ' written as `▁`.
pub(crate) fn push_escaped(out: &mut String, text: &str) {
    // A plain byte scan: spaces come every few bytes, where `split(' ')` pays for its iterator.
    let mut last = 0;
    for (i, &b) in text.as_bytes().iter().enumerate() {
        if b == b' ' {
            out.push_str(&text[last..i]);
            out.push_str(SPACE_SYMBOL_STR);
            last = i + 1;
        }
    }
    out.push_str(&text[last..]);
}

/// Normalizes bytes into `out`: invalid UTF-8 as U+FFFD per bad byte, then as `normalize_str_into`.
#[cfg(test)]
pub(crate) fn normalize_bytes_into(input: &[u8], add_dummy_prefix: bool, out: &mut String) {
    let mut valid = String::with_capacity(input.len());
    for_each_utf8_run(input, |run| valid.push_str(run));
    normalize_str_into(&valid, add_dummy_prefix, out);
}

/// Normalizes a `&str` (already valid UTF-8) into `out` (cleared first).
pub(crate) fn normalize_str_into(input: &str, add_dummy_prefix: bool, out: &mut String) {
    out.clear();
    if input.is_empty() {
        return;
    }
    out.reserve(input.len() + input.len() / 4 + 3);
    if add_dummy_prefix {
        out.push(SPACE_SYMBOL);
    }
    push_escaped(out, input);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(bytes: &[u8]) -> String {
        let mut out = String::new();
        normalize_bytes_into(bytes, true, &mut out);
        out
    }

    #[test]
    fn empty_input_gets_no_prefix() {
        assert_eq!(norm(b""), "");
    }

    #[test]
    fn only_the_space_byte_is_escaped() {
        assert_eq!(norm(b" a\tb\n\xc2\xa0c"), "\u{2581}\u{2581}a\tb\n\u{a0}c");
    }

    #[test]
    fn every_invalid_byte_becomes_one_replacement_character() {
        // A truncated 3-byte sequence is two invalid bytes, not one (unlike from_utf8_lossy).
        assert_eq!(norm(b"\xe2\x96"), "\u{2581}\u{FFFD}\u{FFFD}");
        // Overlong encoding, encoded surrogate, beyond U+10FFFF.
        assert_eq!(norm(b"\xc0\xaf"), "\u{2581}\u{FFFD}\u{FFFD}");
        assert_eq!(norm(b"\xed\xa0\x80"), "\u{2581}\u{FFFD}\u{FFFD}\u{FFFD}");
        assert_eq!(
            norm(b"\xf4\x90\x80\x80x"),
            "\u{2581}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}x"
        );
    }
}
