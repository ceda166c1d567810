//! An independent reading of a shard directory for the `verify_shards` target: a small `.npy`
//! parser and the invariants of docs/shard-format.md recomputed from the arrays. When `verify_dir`
//! passes a damaged directory, this must pass too, or verify let damage through.

use std::collections::BTreeMap;
use std::path::Path;

use bpetok::data::shard::{Manifest, TokenDtype};

/// The shape and data bytes of a version 1.0 `.npy` file of dtype `descr`, C order.
fn npy<'a>(bytes: &'a [u8], descr: &str) -> Result<(Vec<u64>, &'a [u8]), String> {
    let rest = bytes
        .strip_prefix(b"\x93NUMPY\x01\x00")
        .ok_or("not npy 1.0")?;
    let len = u16::from_le_bytes([*rest.first().ok_or("short")?, *rest.get(1).ok_or("short")?]);
    let header = rest.get(2..2 + len as usize).ok_or("short header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header not UTF-8")?;
    let data = &rest[2 + len as usize..];
    // A Python literal: whitespace between its tokens does not matter (numpy reads it with
    // `ast.literal_eval`), and none of these keys or values holds any.
    let header: String = header.chars().filter(|c| !c.is_whitespace()).collect();
    if !header.contains(&format!("'descr':'{descr}'")) || !header.contains("'fortran_order':False")
    {
        return Err(format!("header {header:?}"));
    }
    let shape = header
        .split("'shape':(")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("no shape")?;
    let shape: Vec<u64> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("shape {s:?}")))
        .collect::<Result<_, _>>()?;
    Ok((shape, data))
}

fn i64s(data: &[u8]) -> Vec<i64> {
    data.chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Where a document's chunk chain stands.
struct Open {
    /// Where the last chunk ended in the document.
    end: u64,
    /// Whether the last chunk was shorter than `seq_len` (so it was the document's last).
    ended: bool,
    chunks: u64,
    /// The last chunk's tokens (for the next chunk's context).
    tail: Vec<u32>,
    /// The sample (over the directory) that held the last chunk.
    sample: u64,
}

/// Every invariant of docs/shard-format.md that the arrays and the manifest must satisfy.
pub fn check_dir(dir: &Path, m: &Manifest) -> Result<(), String> {
    let l = m.options.seq_len as usize;
    let overlap = m.options.overlap_tokens;
    let vocab = m.tokenizer.vocab_size;
    let pad = m.options.pad_id;
    let (descr, width) = match m.token_dtype {
        TokenDtype::Uint16 => ("<u2", 2),
        TokenDtype::Uint32 => ("<u4", 4),
    };
    let mut docs: BTreeMap<u64, Open> = BTreeMap::new();
    let (mut samples, mut padding, mut context, mut targets) = (0u64, 0u64, 0u64, 0u64);
    for shard in &m.shards {
        let read = |p: &str| std::fs::read(dir.join(p)).map_err(|e| format!("{p}: {e}"));
        let tokens_file = read(&shard.files.tokens.path)?;
        let segments_file = read(&shard.files.segments.path)?;
        let index_file = read(&shard.files.sample_index.path)?;
        let (tshape, tdata) = npy(&tokens_file, descr)?;
        let (gshape, gdata) = npy(&segments_file, "<i8")?;
        let (ishape, idata) = npy(&index_file, "<i8")?;
        let s = shard.samples;
        if tshape != [s, l as u64] || tdata.len() as u64 != s * l as u64 * width {
            return Err(format!("{}: tokens shape {tshape:?}", shard.name));
        }
        let g = shard.segments;
        if gshape != [g, 5] || gdata.len() as u64 != g * 40 {
            return Err(format!("{}: segments shape {gshape:?}", shard.name));
        }
        if ishape != [s + 1] || idata.len() as u64 != (s + 1) * 8 {
            return Err(format!("{}: index shape {ishape:?}", shard.name));
        }
        let tokens: Vec<u32> = if width == 2 {
            tdata
                .chunks_exact(2)
                .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
                .collect()
        } else {
            tdata
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        if let Some(t) = tokens.iter().find(|&&t| u64::from(t) >= vocab) {
            return Err(format!("{}: token {t} out of range", shard.name));
        }
        let rows = i64s(gdata);
        let index = i64s(idata);
        if index[0] != 0 || index[s as usize] != g as i64 || index.windows(2).any(|w| w[1] < w[0]) {
            return Err(format!("{}: sample index {index:?}", shard.name));
        }
        let (mut shard_padding, mut shard_context) = (0u64, 0u64);
        for i in 0..s as usize {
            let sample_tokens = &tokens[i * l..(i + 1) * l];
            let mut at = 0i64;
            let range = index[i] as usize..index[i + 1] as usize;
            let last = range.end.saturating_sub(1);
            for r in range.clone() {
                let row = &rows[r * 5..r * 5 + 5];
                let (start, len, ctx, doc_id, doc_start) = (row[0], row[1], row[2], row[3], row[4]);
                if start != at || len < 1 || start + len > l as i64 {
                    return Err(format!("{}: sample {i} does not tile", shard.name));
                }
                let seg = &sample_tokens[start as usize..(start + len) as usize];
                at += len;
                if doc_id == -1 {
                    if r != last || ctx != 0 || doc_start != 0 || seg.iter().any(|&t| t != pad) {
                        return Err(format!("{}: sample {i} bad padding", shard.name));
                    }
                    shard_padding += len as u64;
                    continue;
                }
                if doc_id < 0 || doc_start < 0 || ctx < 0 || ctx >= len {
                    return Err(format!("{}: sample {i} bad row {row:?}", shard.name));
                }
                let (doc_id, doc_start, len, ctx) =
                    (doc_id as u64, doc_start as u64, len as u64, ctx as u64);
                if doc_id >= m.totals.documents {
                    return Err(format!("doc {doc_id} not below totals.documents"));
                }
                match docs.get_mut(&doc_id) {
                    None => {
                        if doc_start != 0 || ctx != 0 {
                            return Err(format!("doc {doc_id} does not start at 0"));
                        }
                        docs.insert(
                            doc_id,
                            Open {
                                end: len,
                                ended: len < l as u64,
                                chunks: 1,
                                tail: seg.to_vec(),
                                sample: samples,
                            },
                        );
                    }
                    Some(open) => {
                        if open.ended
                            || open.sample >= samples
                            || ctx != overlap
                            || doc_start + ctx != open.end
                        {
                            return Err(format!("doc {doc_id} chunk at {doc_start} out of place"));
                        }
                        if seg[..ctx as usize] != open.tail[open.tail.len() - ctx as usize..] {
                            return Err(format!("doc {doc_id} context tokens differ"));
                        }
                        *open = Open {
                            end: doc_start + len,
                            ended: len < l as u64,
                            chunks: open.chunks + 1,
                            tail: seg.to_vec(),
                            sample: samples,
                        };
                    }
                }
                shard_context += ctx;
                targets += len - ctx.max(1);
            }
            if at != l as i64 {
                return Err(format!("{}: sample {i} does not tile", shard.name));
            }
            samples += 1;
        }
        if shard_padding != shard.padding_tokens || shard_context != shard.context_tokens {
            return Err(format!("{}: counts", shard.name));
        }
        padding += shard_padding;
        context += shard_context;
    }
    let t = &m.totals;
    let document_tokens: u64 = docs.values().map(|d| d.end).sum();
    let split = docs.values().filter(|d| d.chunks > 1).count() as u64;
    let expected = (
        samples,
        padding,
        context,
        targets,
        document_tokens,
        split,
        docs.len() as u64,
    );
    let manifest = (
        t.samples,
        t.padding_tokens,
        t.context_tokens,
        t.target_tokens,
        t.document_tokens,
        t.documents_split,
        t.documents
            .checked_sub(t.empty_documents)
            .ok_or("empty_documents > documents")?,
    );
    if expected != manifest {
        return Err(format!("totals {manifest:?}, arrays {expected:?}"));
    }
    Ok(())
}
