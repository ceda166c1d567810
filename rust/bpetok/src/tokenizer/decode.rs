//! Ids back to text, as `SentencePieceProcessor::Decode` does it: runs of byte pieces are
//! decoded together with the strict UTF-8 decoder (U+FFFD per invalid byte), control pieces
//! render nothing, the unknown piece renders the model's unknown surface, `▁` becomes a space,
//! and the leading `▁` of the first piece is dropped (the dummy prefix).

use crate::tokenizer::error::{Error, Result};
use crate::tokenizer::model::Model;
use crate::tokenizer::normalize::{for_each_utf8_run, SPACE_SYMBOL, SPACE_SYMBOL_STR};
use crate::tokenizer::proto::PieceType;

/// Checks that every id is in range.
pub(crate) fn check_ids(model: &Model, ids: &[u32]) -> Result<()> {
    match ids.iter().find(|&&id| id as usize >= model.vocab_size()) {
        Some(&id) => Err(Error::IdOutOfRange {
            id: i64::from(id),
            vocab_size: model.vocab_size(),
        }),
        None => Ok(()),
    }
}

pub(crate) fn decode(model: &Model, ids: &[u32]) -> Result<String> {
    check_ids(model, ids)?;
    let mut text = String::with_capacity(ids.len() * 4);
    let mut bytes: Vec<u8> = Vec::new();
    let flush = |bytes: &mut Vec<u8>, text: &mut String| {
        if !bytes.is_empty() {
            for_each_utf8_run(bytes, |run| text.push_str(run));
            bytes.clear();
        }
    };
    // SentencePiece's `is_bos_ws`: true until a piece has had its leading `▁` consumed or
    // anything has been output.
    let mut is_bos_ws = true;
    let mut bos_ws_seen = false;
    for &id in ids {
        let id = id as usize;
        if let Some(b) = model.byte_of_id[id] {
            bytes.push(b);
            continue;
        }
        flush(&mut bytes, &mut text);
        if bos_ws_seen || !text.is_empty() {
            is_bos_ws = false;
        }
        bos_ws_seen = false;
        match model.types[id] {
            PieceType::Control => {}
            PieceType::Unknown => text.push_str(&model.unk_surface),
            _ => {
                let mut piece = model.pieces[id].as_str();
                if is_bos_ws && model.add_dummy_prefix {
                    if let Some(rest) = piece.strip_prefix(SPACE_SYMBOL) {
                        piece = rest;
                        bos_ws_seen = true;
                    }
                }
                push_unescaped(&mut text, piece);
            }
        }
    }
    flush(&mut bytes, &mut text);
    Ok(text)
}

fn push_unescaped(text: &mut String, piece: &str) {
    let mut parts = piece.split(SPACE_SYMBOL_STR);
    if let Some(first) = parts.next() {
        text.push_str(first);
    }
    for part in parts {
        text.push(' ');
        text.push_str(part);
    }
}
