//! JSON values as Python holds them after `json.loads`, and `json.dumps(value, ensure_ascii=False)`
//! of them, byte for byte: `mistral-common` writes tool definitions, tool calls and tool results
//! into the token stream as Python's JSON text, so the numbers, the key order, the escapes and the
//! separators (`", "`, `": "`) must be Python's.
//!
//! Parsing goes through [`pyjson`](crate::data::input::pyjson) (Python's verdicts: `NaN`, big
//! integers, repeated keys). A repeated key keeps its first position and its last value, as a
//! Python `dict` built by `json.loads` does. An integer is kept as its decimal text (`-0` is `0`,
//! as `int("-0")` is); a float is an `f64` (Python's `float(text)`, correctly rounded, as Rust's
//! parser is) and is written as Python's `repr`.

use crate::data::input::pyjson::{self, Json, JsonError, Spanned};

/// Python's limit on the digits of an `int` parsed from text (`sys.get_int_max_str_digits()`,
/// 4300 in CPython 3.11): `json.loads` raises `ValueError` past it.
pub const MAX_INT_DIGITS: usize = 4300;

/// A JSON value as Python holds it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// An `int`, as its decimal text (no leading `+`, no `-0`).
    Int(String),
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    /// Keys in first-seen order, each with its last value.
    Object(Vec<(String, Value)>),
}

/// Why a text is not a value this module can hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueError {
    /// Python's `JSONDecodeError` message and the byte offset.
    Syntax {
        message: &'static str,
        pos: usize,
    },
    TooDeep,
    /// A lone surrogate escape (`\ud800`): Python keeps it, but no tokenizer can encode it.
    LoneSurrogate {
        code: u16,
    },
    /// An integer longer than [`MAX_INT_DIGITS`] digits.
    IntTooLong {
        digits: usize,
    },
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueError::Syntax { message, pos } => write!(f, "{message} (byte {pos})"),
            ValueError::TooDeep => write!(f, "nested more than {} levels", pyjson::MAX_DEPTH),
            ValueError::LoneSurrogate { code } => write!(
                f,
                "a string holds the lone surrogate escape \\u{code:04x}, which is not text"
            ),
            ValueError::IntTooLong { digits } => write!(
                f,
                "an integer of {digits} digits is longer than the {MAX_INT_DIGITS} Python reads"
            ),
        }
    }
}

impl Value {
    /// Python's `json.loads(text)`.
    pub fn parse(text: &str) -> Result<Value, ValueError> {
        let spanned = pyjson::parse(text).map_err(|err| match err {
            JsonError::Syntax { message, pos } => ValueError::Syntax { message, pos },
            JsonError::TooDeep => ValueError::TooDeep,
        })?;
        Value::from_spanned(text, spanned)
    }

    /// The value of a parsed node of `text`.
    pub(crate) fn from_spanned(text: &str, node: Spanned) -> Result<Value, ValueError> {
        Ok(match node.value {
            Json::Null => Value::Null,
            Json::Bool => Value::Bool(text.as_bytes()[node.start] == b't'),
            Json::Number { int: true } => {
                let literal = &text[node.start..node.end];
                let digits = literal.trim_start_matches('-');
                if digits.len() > MAX_INT_DIGITS {
                    return Err(ValueError::IntTooLong {
                        digits: digits.len(),
                    });
                }
                if digits == "0" {
                    Value::Int("0".to_owned())
                } else {
                    Value::Int(literal.to_owned())
                }
            }
            Json::Number { int: false } => {
                let literal = &text[node.start..node.end];
                let x = match literal {
                    "NaN" => f64::NAN,
                    "Infinity" => f64::INFINITY,
                    "-Infinity" => f64::NEG_INFINITY,
                    _ => literal
                        .parse::<f64>()
                        .expect("the parser only passes JSON number literals"),
                };
                Value::Float(x)
            }
            Json::String(wtf8) => Value::Str(string(wtf8)?),
            Json::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|item| Value::from_spanned(text, item))
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(pairs) => {
                let mut out: Vec<(String, Value)> = Vec::with_capacity(pairs.len());
                for (key, value) in pairs {
                    let key = string(key)?;
                    let value = Value::from_spanned(text, value)?;
                    match out.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = value,
                        None => out.push((key, value)),
                    }
                }
                Value::Object(out)
            }
        })
    }

    /// How Python's JSON error messages name the type of a value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    /// Python's truth value (`bool(x)`).
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(digits) => digits != "0",
            Value::Float(x) => *x != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Array(items) => !items.is_empty(),
            Value::Object(pairs) => !pairs.is_empty(),
        }
    }

    /// `json.dumps(self, ensure_ascii=False)` appended to `out`.
    pub fn dump_into(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::Int(digits) => out.push_str(digits),
            Value::Float(x) => push_float(out, *x),
            Value::Str(s) => dump_str_into(s, out),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.dump_into(out);
                }
                out.push(']');
            }
            Value::Object(pairs) => {
                out.push('{');
                for (i, (key, value)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    dump_str_into(key, out);
                    out.push_str(": ");
                    value.dump_into(out);
                }
                out.push('}');
            }
        }
    }

    /// `json.dumps(self, ensure_ascii=False)`.
    pub fn dumps(&self) -> String {
        let mut out = String::new();
        self.dump_into(&mut out);
        out
    }
}

/// A JSON string's unescaped WTF-8 as text, or the lone surrogate it holds.
fn string(wtf8: Vec<u8>) -> Result<String, ValueError> {
    String::from_utf8(wtf8).map_err(|err| {
        let bytes = err.as_bytes();
        let at = err.utf8_error().valid_up_to();
        // The parser writes nothing else that is not UTF-8: a surrogate is ED A0..BF 80..BF.
        let code = match bytes[at..] {
            [0xED, b1, b2, ..] => 0xD000 | (u16::from(b1 & 0x3F) << 6) | u16::from(b2 & 0x3F),
            _ => 0xFFFD,
        };
        ValueError::LoneSurrogate { code }
    })
}

/// A JSON string as Python's `json.dumps(s, ensure_ascii=False)` writes it: `"` and `\` and the
/// control characters below U+0020 escaped (`\n`, `\r`, `\t`, `\b`, `\f` by name, the others as
/// `\u00XX` in lowercase hex), everything else as it is.
pub fn dump_str_into(s: &str, out: &mut String) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0C => "\\f",
            0x00..=0x1F => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// Python's `json.dumps` of a float: `NaN`, `Infinity`, `-Infinity`, or `repr(x)`: the shortest
/// digits that read back as `x`, in positional notation when the decimal exponent is in
/// -4..16 (with `.0` for an integral value), otherwise as `d.ddde+XX` with at least two exponent
/// digits.
pub fn push_float(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("NaN");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits ("-1.2345e-7", "0e0"), but when two
    // strings of that length read back as `x` it may take the farther one; Python's `repr`
    // (David Gay's dtoa) takes the nearest, ties to even. Formatting `x` exactly to that many
    // digits gives the nearest (Rust rounds the exact value half to even, as C does); it is used
    // when it reads back as `x` (it may not, next to a power of two).
    let shortest = format!("{x:e}");
    let digits = shortest
        .split_once('e')
        .map_or(0, |(m, _)| m.bytes().filter(u8::is_ascii_digit).count());
    let nearest = format!("{x:.*e}", digits.saturating_sub(1));
    let sci = if nearest.parse::<f64>() == Ok(x) {
        nearest
    } else {
        shortest
    };
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} writes an integer exponent");
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i32;
    // The value is 0.DIGITS x 10^decpt.
    let decpt = exp + 1;
    if negative {
        out.push('-');
    }
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-decpt) as usize));
            out.push_str(&digits);
        } else if decpt >= n {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (decpt - n) as usize));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", e.abs()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(x: f64) -> String {
        let mut out = String::new();
        push_float(&mut out, x);
        out
    }

    #[test]
    fn floats_are_written_as_python_repr() {
        // Each pair is (x, Python's repr(x)) from CPython 3.11.
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e16, "1.5e+16"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (-2.5e-300, "-2.5e-300"),
            (1e308, "1e+308"),
            (5e-324, "5e-324"),
            (100.0, "100.0"),
            (12345.678, "12345.678"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (0.30000000000000004, "0.30000000000000004"),
            // Two 16-digit strings read back as this value (it is ...191.25): Python's is the
            // nearest, ties to even; Rust's `{:e}` alone writes ...191.3.
            (-872210563008191.2, "-872210563008191.2"),
        ];
        for (x, want) in cases {
            assert_eq!(repr(*x), *want, "{x:e}");
        }
    }

    #[test]
    fn dumps_is_pythons_json_dumps_without_ascii_escapes() {
        let text = r#"{"b": [1, -0, 2.50, 1E2, -0.0, true, null, "x\u0001\n\"\\é😀"], "a": {}, "b": 3, "c": []}"#;
        let value = Value::parse(text).unwrap();
        // json.dumps(json.loads(text), ensure_ascii=False) in CPython 3.11:
        assert_eq!(value.dumps(), "{\"b\": 3, \"a\": {}, \"c\": []}");
        let value = Value::parse(r#"[1, -0, 2.50, 1E2, -0.0, true, null, "x\u0001\n\"\\é😀\u007f", NaN, -Infinity, 1e400]"#).unwrap();
        assert_eq!(
            value.dumps(),
            "[1, 0, 2.5, 100.0, -0.0, true, null, \"x\\u0001\\n\\\"\\\\é😀\u{7f}\", NaN, -Infinity, Infinity]"
        );
    }

    #[test]
    fn lone_surrogates_and_huge_integers_are_refused() {
        assert_eq!(
            Value::parse(r#"["\ud800"]"#),
            Err(ValueError::LoneSurrogate { code: 0xd800 })
        );
        assert_eq!(
            Value::parse("\"\\ud83d\\ude00\"").unwrap(),
            Value::Str("😀".into())
        );
        let long = "9".repeat(MAX_INT_DIGITS + 1);
        assert_eq!(
            Value::parse(&long),
            Err(ValueError::IntTooLong {
                digits: MAX_INT_DIGITS + 1
            })
        );
        assert!(Value::parse(&"9".repeat(MAX_INT_DIGITS)).is_ok());
    }
}
