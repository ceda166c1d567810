//! Every invariant of docs/packing.md on one packer output, shared by `tests/pack.rs` and the
//! fuzz crate's `pack` target (both include this file with `#[path]`): tiling,
//! labels and positions, padding, each document token once as a non-context token, each target
//! once, context exactly the repeats, chunk order, the sliding-window guarantee, attention sets
//! against an unbroken pass, and best-fit decreasing per flush.

use std::collections::BTreeMap;

use bpetok::data::pack::{PackOptions, Sample, Segment, IGNORE_INDEX};

/// Whether token `i` of a segment is a target, from the rule itself rather than the library:
/// every token but the first, except the context-only ones; nothing in padding.
pub fn is_target(seg: &Segment, i: usize) -> bool {
    seg.doc_id.is_some() && i >= 1 && i >= seg.context as usize
}

/// Every invariant of docs/packing.md that one output must satisfy.
pub fn check_output(docs: &[Vec<u32>], opts: &PackOptions, samples: &[Sample]) {
    let l = opts.seq_len;
    let overlap = opts.overlap_tokens();
    // Per document and position: times seen as a non-context token, as context, as a target.
    let mut own: Vec<Vec<u32>> = docs.iter().map(|d| vec![0; d.len()]).collect();
    let mut context: Vec<Vec<u32>> = own.clone();
    let mut targets: Vec<Vec<u32>> = own.clone();
    let mut last_chunk_start: BTreeMap<u64, u64> = BTreeMap::new();

    for sample in samples {
        assert_eq!(sample.tokens.len(), l, "a sample is not seq_len tokens");
        let lens: Vec<usize> = sample.segments.iter().map(|s| s.len as usize).collect();
        assert!(lens.iter().all(|&n| n >= 1), "empty segment");
        assert_eq!(
            lens.iter().sum::<usize>(),
            l,
            "segments do not tile the sample"
        );

        let cu = sample.cu_seqlens();
        assert_eq!(cu[0], 0);
        assert_eq!(*cu.last().unwrap() as usize, l);
        assert_eq!(cu.len(), sample.segments.len() + 1);
        for (k, w) in cu.windows(2).enumerate() {
            assert_eq!((w[1] - w[0]) as usize, lens[k]);
        }

        let labels = sample.labels();
        let positions = sample.position_ids();
        assert_eq!(labels.len(), l);
        assert_eq!(positions.len(), l);

        let paddings = sample.segments.iter().filter(|s| s.is_padding()).count();
        assert!(paddings <= 1, "more than one padding segment");
        if paddings == 1 {
            assert!(
                sample.segments.last().unwrap().is_padding(),
                "padding not at the tail"
            );
        }

        let mut docs_in_sample = Vec::new();
        let mut at = 0;
        for seg in &sample.segments {
            let len = seg.len as usize;
            for i in 0..len {
                assert_eq!(positions[at + i], i as i64, "position ids do not restart");
                let expected = if is_target(seg, i) {
                    i64::from(sample.tokens[at + i])
                } else {
                    IGNORE_INDEX
                };
                assert_eq!(labels[at + i], expected, "label {} of {seg:?}", i);
            }
            match seg.doc_id {
                None => {
                    assert_eq!((seg.doc_start, seg.context), (0, 0));
                    assert!(sample.tokens[at..at + len]
                        .iter()
                        .all(|&t| t == opts.pad_id));
                }
                Some(doc_id) => {
                    let doc = &docs[doc_id as usize];
                    let start = seg.doc_start as usize;
                    assert!(start + len <= doc.len(), "segment runs past its document");
                    assert_eq!(
                        &sample.tokens[at..at + len],
                        &doc[start..start + len],
                        "segment tokens are not the document's"
                    );
                    // Context: none for a document's first chunk, exactly the overlap after it,
                    // and a continuation chunk always holds at least one target.
                    if start == 0 {
                        assert_eq!(seg.context, 0);
                    } else {
                        assert_eq!(seg.context as usize, overlap);
                        assert!(len > overlap);
                    }
                    // Every chunk but a document's last is exactly seq_len long.
                    if start + len < doc.len() {
                        assert_eq!(len, l);
                    }
                    for i in 0..len {
                        if i < seg.context as usize {
                            context[doc_id as usize][start + i] += 1;
                        } else {
                            own[doc_id as usize][start + i] += 1;
                        }
                        if is_target(seg, i) {
                            targets[doc_id as usize][start + i] += 1;
                            // A target's predictor, the token before it, is in its segment.
                            assert!(i >= 1);
                            // The sliding-window guarantee: with overlap >= W > 0 the target at
                            // document position p has the min(W, p) tokens before it.
                            let p = start + i;
                            if opts.window > 0 && overlap >= opts.window {
                                assert!(i >= opts.window.min(p), "target {p} lost window context");
                            }
                        }
                    }
                    // Chunk order: a document's chunks come out in document order, one per sample.
                    assert!(
                        !docs_in_sample.contains(&doc_id),
                        "two chunks of one document in a sample"
                    );
                    docs_in_sample.push(doc_id);
                    if let Some(&previous) = last_chunk_start.get(&doc_id) {
                        assert!(
                            seg.doc_start > previous,
                            "chunks of document {doc_id} out of order"
                        );
                    } else {
                        assert_eq!(
                            seg.doc_start, 0,
                            "document {doc_id} does not start with chunk 0"
                        );
                    }
                    last_chunk_start.insert(doc_id, seg.doc_start);
                }
            }
            at += len;
        }
        assert_eq!(
            sample.padding_tokens(),
            sample
                .segments
                .iter()
                .filter(|s| s.is_padding())
                .map(|s| s.len as usize)
                .sum::<usize>()
        );
        assert_eq!(
            sample.target_tokens(),
            labels.iter().filter(|&&x| x != IGNORE_INDEX).count()
        );
    }

    for (d, doc) in docs.iter().enumerate() {
        for p in 0..doc.len() {
            // No token lost or duplicated: each appears once as a non-context token.
            assert_eq!(
                own[d][p], 1,
                "doc {d} position {p} seen {} times",
                own[d][p]
            );
            // Every position but 0 is a target exactly once; position 0 never.
            assert_eq!(
                targets[d][p],
                u32::from(p > 0),
                "doc {d} position {p} targets"
            );
        }
    }
    let context_total: u32 = context.iter().flatten().sum();
    assert_eq!(
        samples.iter().map(Sample::context_tokens).sum::<usize>(),
        context_total as usize,
        "context tokens are not exactly the repeats"
    );
}

/// The sets of document positions a token attends to, from a boolean attention mask built from
/// `cu_seqlens` and W alone, against one unbroken pass over each document: equal for every target
/// and every target's predictor when the overlap covers the window (and in first chunks always),
/// a subset otherwise.
pub fn check_attention(opts: &PackOptions, samples: &[Sample]) {
    let l = opts.seq_len;
    let w = opts.window;
    let covers_window = w > 0 && opts.overlap_tokens() >= w;
    for sample in samples {
        let cu = sample.cu_seqlens();
        let mut segment_of = vec![0; l];
        for k in 0..sample.segments.len() {
            for slot in &mut segment_of[cu[k] as usize..cu[k + 1] as usize] {
                *slot = k;
            }
        }
        let allowed =
            |i: usize, j: usize| segment_of[i] == segment_of[j] && j <= i && (w == 0 || i - j < w);
        for (i, &k) in segment_of.iter().enumerate() {
            let seg = &sample.segments[k];
            if seg.is_padding() {
                continue;
            }
            let offset = i - cu[k] as usize;
            let is_predictor = offset + 1 < seg.len as usize && is_target(seg, offset + 1);
            if !is_target(seg, offset) && !is_predictor {
                continue;
            }
            let doc_pos = |j: usize| seg.doc_start + (j - cu[k] as usize) as u64;
            let packed: Vec<u64> = (0..l).filter(|&j| allowed(i, j)).map(doc_pos).collect();
            let p = doc_pos(i);
            let lowest = if w == 0 {
                0
            } else {
                p.saturating_sub(w as u64 - 1)
            };
            let whole: Vec<u64> = (lowest..=p).collect();
            assert!(
                packed.iter().all(|q| whole.contains(q)),
                "attends outside its window"
            );
            if covers_window || seg.doc_start == 0 {
                assert_eq!(
                    packed, whole,
                    "token at doc position {p} lost attention context"
                );
            }
        }
    }
}

/// Reference best-fit decreasing, written the slow obvious way.
pub fn naive_best_fit(lengths: &[usize], capacity: usize) -> Vec<Vec<usize>> {
    let mut by_length: Vec<usize> = (0..lengths.len()).collect();
    by_length.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    let mut bins: Vec<(usize, Vec<usize>)> = Vec::new();
    for i in by_length {
        let mut best: Option<usize> = None;
        for (b, (free, _)) in bins.iter().enumerate() {
            if *free >= lengths[i] && best.is_none_or(|c| *free < bins[c].0) {
                best = Some(b);
            }
        }
        match best {
            Some(b) => {
                bins[b].0 -= lengths[i];
                bins[b].1.push(i);
            }
            None => bins.push((capacity - lengths[i], vec![i])),
        }
    }
    bins.into_iter()
        .map(|(_, mut items)| {
            items.sort_unstable();
            items
        })
        .collect()
}
