//! A check of a Parquet file's footer before the `parquet` crate reads it.
//!
//! The footer is a Thrift struct in the compact protocol, and the crate's decoder reserves room
//! for every list as soon as it reads the list's length: a damaged footer of a few hundred bytes
//! that says a list has four billion elements makes it ask for 30 GB, and the process is aborted
//! (an allocation failure is not a panic, so `guarded` cannot turn it into an error). Every
//! element of a compact-protocol list takes at least one byte, so a list (or map, or binary
//! value) longer than the bytes left in the footer cannot be right: this walks the footer's
//! structure, without decoding its meaning, and refuses such a length, nesting deeper than
//! `MAX_DEPTH`, or a footer that ends inside a value. A footer that passes is handed to the crate,
//! which decodes it (and reports its own errors) as before.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// Structs, lists and maps nested deeper than this are refused (the crate's decoder recurses).
const MAX_DEPTH: usize = 64;

/// What is wrong with a footer, for the error message.
pub(super) type FooterError = String;

/// Checks the footer of `file` (see the module's text); the file's position is back at its start
/// afterwards. A file too short to have a footer, or without the `PAR1` magic, is left to the
/// crate, whose error says so.
pub(super) fn check(file: &mut File) -> Result<(), FooterError> {
    let len = file.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    let outcome = if len < 12 {
        Ok(())
    } else {
        let mut tail = [0u8; 8];
        file.seek(SeekFrom::Start(len - 8))
            .and_then(|_| file.read_exact(&mut tail))
            .map_err(|e| e.to_string())?;
        let meta_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
        if &tail[4..] != b"PAR1" || meta_len > len - 8 {
            Ok(())
        } else {
            let mut meta = vec![0u8; meta_len as usize];
            file.seek(SeekFrom::Start(len - 8 - meta_len))
                .and_then(|_| file.read_exact(&mut meta))
                .map_err(|e| e.to_string())?;
            check_metadata(&meta)
        }
    };
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    outcome
}

/// Checks footer bytes (the compact-protocol `FileMetaData` struct).
pub(super) fn check_metadata(meta: &[u8]) -> Result<(), FooterError> {
    let mut walk = Walk { bytes: meta, at: 0 };
    walk.strukt(0)
}

struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Compact-protocol type codes.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;

impl Walk<'_> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn byte(&mut self) -> Result<u8, FooterError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| "the footer ends inside a value".to_owned())?;
        self.at += 1;
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> Result<(), FooterError> {
        if n > self.left() {
            return Err("the footer ends inside a value".to_owned());
        }
        self.at += n;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, FooterError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7F) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a number in the footer runs on for more than 10 bytes".to_owned())
    }

    /// A length that says how many elements or bytes follow, each at least `each` bytes.
    fn length(&mut self, what: &str, each: usize) -> Result<usize, FooterError> {
        let n = self.varint()?;
        let fits = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(each))
            .is_some_and(|bytes| bytes <= self.left());
        if fits {
            Ok(n as usize)
        } else {
            Err(format!(
                "the footer has a {what} of {n} elements in {} bytes",
                self.left()
            ))
        }
    }

    fn strukt(&mut self, depth: usize) -> Result<(), FooterError> {
        if depth > MAX_DEPTH {
            return Err(format!("the footer nests deeper than {MAX_DEPTH} levels"));
        }
        loop {
            let header = self.byte()?;
            if header == 0 {
                return Ok(());
            }
            if header >> 4 == 0 {
                self.varint()?; // the field id, when it is not a delta
            }
            match header & 0x0F {
                // A field's boolean is its type.
                BOOL_TRUE | BOOL_FALSE => {}
                kind => self.value(kind, depth)?,
            }
        }
    }

    fn value(&mut self, kind: u8, depth: usize) -> Result<(), FooterError> {
        match kind {
            BOOL_TRUE | BOOL_FALSE | BYTE => self.skip(1),
            I16 | I32 | I64 => self.varint().map(drop),
            DOUBLE => self.skip(8),
            BINARY => {
                let n = self.length("binary value", 1)?;
                self.skip(n)
            }
            LIST | SET => {
                let header = self.byte()?;
                let (short, element) = (header >> 4, header & 0x0F);
                let n = if short == 15 {
                    self.length("list", 1)?
                } else {
                    usize::from(short)
                };
                if n > self.left() {
                    return Err(format!(
                        "the footer has a list of {n} elements in {} bytes",
                        self.left()
                    ));
                }
                for _ in 0..n {
                    self.value(element, depth + 1)?;
                }
                Ok(())
            }
            MAP => {
                let n = self.length("map", 2)?;
                if n > 0 {
                    let types = self.byte()?;
                    for _ in 0..n {
                        self.value(types >> 4, depth + 1)?;
                        self.value(types & 0x0F, depth + 1)?;
                    }
                }
                Ok(())
            }
            STRUCT => self.strukt(depth + 1),
            other => Err(format!("the footer has a value of unknown type {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_metadata;

    #[test]
    fn a_list_longer_than_the_footer_is_refused() {
        // Field 1 (delta 1), a list (type 9) of structs (type 12) with a long length (15) of
        // 2^32 - 1 as a varint, then nothing.
        let meta = [0x19, 0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00];
        let err = check_metadata(&meta).unwrap_err();
        assert!(err.contains("list of 4294967295 elements"), "{err}");
    }

    #[test]
    fn a_well_formed_struct_passes() {
        // Field 1: i32 5 (zigzag 10); field 2: a list of two i64 (1, 2); field 3: binary "ab";
        // field 4: a struct with a true boolean field; stop.
        let meta = [
            0x15, 0x0A, 0x19, 0x26, 0x02, 0x04, 0x18, 0x02, b'a', b'b', 0x1C, 0x11, 0x00, 0x00,
        ];
        assert_eq!(check_metadata(&meta), Ok(()));
    }

    #[test]
    fn a_footer_that_ends_inside_a_value_or_nests_too_deep_is_refused() {
        assert!(check_metadata(&[0x18, 0x05, b'a']).is_err());
        assert!(check_metadata(&[0x15]).is_err());
        let deep: Vec<u8> = std::iter::repeat_n(0x1C, 100).collect();
        assert!(check_metadata(&deep).unwrap_err().contains("nests deeper"));
    }
}
