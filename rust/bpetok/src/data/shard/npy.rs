//! The `.npy` format, version 1.0, for the three integer arrays of a shard: writing a header the
//! way `numpy.save` does (so a shard file is byte for byte what `np.save` would write for the same
//! array), and reading one back for checking.
//!
//! Why not a crate: the maintained `.npy` crates (npyz, ndarray-npy) parse headers with
//! `py_literal`, which pulls in `num-bigint`; its blanket `Sum` impls make `.sum()` calls without
//! a type ambiguous (E0283) in every test that links this crate. The subset needed here is small
//! and fully specified (NEP 1, "A simple file format for NumPy arrays"); the tests read every
//! array back with npyz as an independent reader, and numpy reads them memory-mapped.

/// `\x93NUMPY`, then the version.
const MAGIC: &[u8] = b"\x93NUMPY";

/// numpy aligns the data to 64 bytes (`numpy.lib.format.ARRAY_ALIGN`).
const ALIGN: usize = 64;

/// numpy leaves room for the growing axis to reach 21 digits (`GROWTH_AXIS_MAX_DIGITS`).
const GROWTH_AXIS_MAX_DIGITS: usize = 21;

/// The header numpy 1.17+ writes for a C-order array of `descr` and `shape`, format 1.0: the
/// dict with sorted keys, spare spaces for the first axis to grow, then spaces and a newline up to
/// a multiple of 64 bytes.
pub(crate) fn header(descr: &str, shape: &[u64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let shape_repr = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_repr}, }}");
    if let Some(first) = dims.first() {
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(first.len())));
    }
    // Magic (6) + version (2) + length (2) + dict + padding + newline, padded as numpy does:
    // `ALIGN - (10 + len + 1) % ALIGN` spaces (a full 64 when already aligned).
    let used = MAGIC.len() + 4 + dict.len() + 1;
    let padding = ALIGN - used % ALIGN;
    let header_len = dict.len() + padding + 1;
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(
        &u16::try_from(header_len)
            .expect("a header of three integers is far below 64 KiB")
            .to_le_bytes(),
    );
    out.extend_from_slice(dict.as_bytes());
    out.resize(out.len() + padding, b' ');
    out.push(b'\n');
    out
}

/// Values stored little-endian in an array's data.
pub(crate) trait LittleEndian: Copy {
    const DESCR: &'static str;
    const SIZE: usize;
    fn put(self, out: &mut Vec<u8>);
}

impl LittleEndian for u16 {
    const DESCR: &'static str = "<u2";
    const SIZE: usize = 2;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl LittleEndian for u32 {
    const DESCR: &'static str = "<u4";
    const SIZE: usize = 4;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl LittleEndian for i64 {
    const DESCR: &'static str = "<i8";
    const SIZE: usize = 8;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// Writes a whole array: header, then the values, in 64 KiB blocks.
pub(crate) fn write_array<T: LittleEndian>(
    w: &mut impl std::io::Write,
    shape: &[u64],
    data: &[T],
) -> std::io::Result<()> {
    debug_assert_eq!(shape.iter().product::<u64>(), data.len() as u64);
    w.write_all(&header(T::DESCR, shape))?;
    let mut block = Vec::with_capacity(1 << 16);
    for values in data.chunks((1 << 16) / T::SIZE) {
        block.clear();
        for &v in values {
            v.put(&mut block);
        }
        w.write_all(&block)?;
    }
    Ok(())
}

/// An array's header and its raw data bytes.
#[derive(Debug)]
pub(crate) struct NpyView<'a> {
    /// The format version from the preamble, `(major, minor)`.
    pub version: (u8, u8),
    pub descr: String,
    pub shape: Vec<u64>,
    pub fortran_order: bool,
    pub data: &'a [u8],
}

/// Parses an `.npy` file's header (versions 1.0, 2.0 and 3.0, a simple type string as `descr`);
/// the error says what is wrong with it.
pub(crate) fn parse(bytes: &[u8]) -> Result<NpyView<'_>, String> {
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err("not an .npy file: the magic string \\x93NUMPY is missing".to_string());
    }
    let version = (bytes[6], bytes[7]);
    let (len, start): (usize, usize) = match version.0 {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => {
            return Err(format!(
                "unknown .npy format version {}.{}",
                version.0, version.1
            ))
        }
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| format!("the header claims {len} bytes, past the end of the file"))?;
    let text = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| "the header is not text".to_string())?;
    if !text.ends_with('\n') {
        return Err("the header does not end with a newline".to_string());
    }
    let dict = HeaderParser { text, at: 0 }
        .dict()
        .map_err(|e| format!("the header does not parse: {e}: {:?}", text.trim_end()))?;
    Ok(NpyView {
        version,
        descr: dict.descr,
        shape: dict.shape,
        fortran_order: dict.fortran_order,
        data: &bytes[end..],
    })
}

struct HeaderDict {
    descr: String,
    fortran_order: bool,
    shape: Vec<u64>,
}

/// A strict reader of the header's Python dict literal: `{'descr': '<u2', 'fortran_order':
/// False, 'shape': (3, 16), }` with the three keys in any order, each once, and nothing else.
struct HeaderParser<'a> {
    text: &'a str,
    at: usize,
}

impl HeaderParser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start_matches([' ', '\t', '\n']);
        self.at = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(format!("expected {token:?} at byte {}", self.at))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_space();
        let quote = match self.rest().chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(format!("expected a string at byte {}", self.at)),
        };
        let body = &self.rest()[1..];
        let close = body
            .find(quote)
            .ok_or_else(|| "an unterminated string".to_string())?;
        let s = body[..close].to_string();
        if s.contains('\\') {
            return Err("a string with escapes".to_string());
        }
        self.at += close + 2;
        Ok(s)
    }

    fn integer(&mut self) -> Result<u64, String> {
        self.skip_space();
        let digits = self.rest().bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("expected an integer at byte {}", self.at));
        }
        let value = self.rest()[..digits]
            .parse::<u64>()
            .map_err(|_| "a dimension beyond 2^64".to_string())?;
        self.at += digits;
        Ok(value)
    }

    fn shape(&mut self) -> Result<Vec<u64>, String> {
        self.expect("(")?;
        let mut dims = Vec::new();
        loop {
            if self.eat(")") {
                break;
            }
            dims.push(self.integer()?);
            if !self.eat(",") {
                self.expect(")")?;
                break;
            }
        }
        Ok(dims)
    }

    fn dict(mut self) -> Result<HeaderDict, String> {
        self.expect("{")?;
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        loop {
            if self.eat("}") {
                break;
            }
            let key = self.string()?;
            self.expect(":")?;
            let duplicate = match key.as_str() {
                "descr" => descr.replace(self.string()?).is_some(),
                "fortran_order" => {
                    let value = if self.eat("True") {
                        true
                    } else if self.eat("False") {
                        false
                    } else {
                        return Err("fortran_order is not True or False".to_string());
                    };
                    fortran_order.replace(value).is_some()
                }
                "shape" => shape.replace(self.shape()?).is_some(),
                other => return Err(format!("an unexpected key {other:?}")),
            };
            if duplicate {
                return Err(format!("the key {key:?} twice"));
            }
            if !self.eat(",") {
                self.expect("}")?;
                break;
            }
        }
        self.skip_space();
        if !self.rest().is_empty() {
            return Err(format!("text after the dict at byte {}", self.at));
        }
        Ok(HeaderDict {
            descr: descr.ok_or("no 'descr' key")?,
            fortran_order: fortran_order.ok_or("no 'fortran_order' key")?,
            shape: shape.ok_or("no 'shape' key")?,
        })
    }
}

impl NpyView<'_> {
    /// Checks version 1.0, the dtype, C order and the data length for `shape`, where `None` in
    /// `shape` accepts any length on that axis. Returns the actual shape.
    pub(crate) fn expect(
        &self,
        descr: &str,
        shape: &[Option<u64>],
        item_size: usize,
    ) -> Result<Vec<u64>, Vec<String>> {
        let mut problems = Vec::new();
        if self.version != (1, 0) {
            problems.push(format!(
                "format version {}.{}, expected 1.0",
                self.version.0, self.version.1
            ));
        }
        if self.descr != descr {
            problems.push(format!("dtype {:?}, expected {descr:?}", self.descr));
        }
        if self.fortran_order {
            problems.push("fortran_order is True, expected C order".to_string());
        }
        let shape_ok = self.shape.len() == shape.len()
            && self
                .shape
                .iter()
                .zip(shape)
                .all(|(&got, want)| want.is_none_or(|w| w == got));
        if !shape_ok {
            let want: Vec<String> = shape
                .iter()
                .map(|d| d.map_or("*".to_string(), |d| d.to_string()))
                .collect();
            problems.push(format!(
                "shape {:?}, expected ({})",
                self.shape,
                want.join(", ")
            ));
        }
        if problems.is_empty() {
            let expected = self
                .shape
                .iter()
                .try_fold(item_size as u64, |acc, &d| acc.checked_mul(d));
            if expected != Some(self.data.len() as u64) {
                problems.push(format!(
                    "{} data bytes, but the shape {:?} needs {}",
                    self.data.len(),
                    self.shape,
                    expected.map_or("more than 2^64".to_string(), |n| n.to_string())
                ));
            }
        }
        if problems.is_empty() {
            Ok(self.shape.clone())
        } else {
            Err(problems)
        }
    }
}

/// Little-endian `u16`/`u32` tokens widened to `u32`, into `out` (cleared first).
pub(crate) fn decode_tokens_into(data: &[u8], item_size: usize, out: &mut Vec<u32>) {
    out.clear();
    match item_size {
        2 => out.extend(
            data.chunks_exact(2)
                .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]]))),
        ),
        _ => out.extend(
            data.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
    }
}

/// Little-endian `i64`s.
pub(crate) fn decode_i64(data: &[u8]) -> Vec<i64> {
    data.chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("chunks of 8")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Headers exactly as `numpy.save` (numpy 2.4.6) writes them.
    #[test]
    fn headers_match_numpy_save() {
        let cases: [(&str, &[u64], &str); 3] = [
            (
                "<u2",
                &[3, 16],
                "{'descr': '<u2', 'fortran_order': False, 'shape': (3, 16), }",
            ),
            (
                "<i8",
                &[4],
                "{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }",
            ),
            (
                "<i8",
                &[0, 5],
                "{'descr': '<i8', 'fortran_order': False, 'shape': (0, 5), }",
            ),
        ];
        for (descr, shape, dict) in cases {
            let h = header(descr, shape);
            assert_eq!(h.len(), 128);
            assert_eq!(&h[..10], b"\x93NUMPY\x01\x00v\x00");
            let text = std::str::from_utf8(&h[10..]).unwrap();
            assert_eq!(text.trim_end(), dict);
            assert!(text.ends_with(" \n"));
            let view = parse(&h).unwrap();
            assert_eq!((view.descr.as_str(), view.shape.as_slice()), (descr, shape));
            assert!(!view.fortran_order && view.data.is_empty());
        }
        // A header that lands exactly on 64 bytes gets a whole 64 more, as numpy pads.
        for rows in [1u64, 10, 123_456_789, u64::MAX] {
            let h = header("<u4", &[rows, 4096]);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(parse(&h).unwrap().shape, vec![rows, 4096]);
        }
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        let good = header("<u2", &[3, 16]);
        let text_at = 10;
        for i in 0..good.len() {
            for flip in [0x01u8, 0x20, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                let _ = parse(&bad);
            }
        }
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
        }
        let mut twice = good.clone();
        let dict = b"{'shape': (3,), 'shape': (3,)}";
        twice[text_at..text_at + dict.len()].copy_from_slice(dict);
        for b in &mut twice[text_at + dict.len()..127] {
            *b = b' ';
        }
        assert!(parse(&twice).unwrap_err().contains("twice"));
        let mut huge = header("<u2", &[3, 16]);
        let dict =
            b"{'descr': '<u2', 'fortran_order': False, 'shape': (99999999999999999999999, 16), }";
        huge[text_at..text_at + dict.len()].copy_from_slice(dict);
        assert!(parse(&huge).unwrap_err().contains("2^64"));
    }
}
