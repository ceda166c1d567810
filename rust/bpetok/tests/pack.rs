//! The packing core against docs/packing.md: chunking, best-fit-decreasing placement, the seeded
//! shuffle, every invariant of the output (tiling, targets exactly once, context only where
//! repeated, the sliding-window guarantee checked with explicit attention masks, chunk order,
//! determinism, the memory bound), and the worked examples of the document.

use std::convert::Infallible;

use bpetok::data::pack::{
    best_fit_decreasing, chunk_document, pack_documents, Chunk, PackOptions, Packer, ResumePoint,
    Sample, Segment, SplitMix64,
};
use proptest::prelude::*;

#[path = "support/pack_check.rs"]
mod pack_check;
use pack_check::{check_attention, check_output, naive_best_fit};

const PAD: u32 = 7_777_777;

/// Documents whose every token names its document and position, so a misplaced token shows.
fn documents(lengths: &[usize]) -> Vec<Vec<u32>> {
    lengths
        .iter()
        .enumerate()
        .map(|(d, &n)| (0..n).map(|p| (d as u32) << 16 | p as u32).collect())
        .collect()
}

fn pack(docs: &[Vec<u32>], opts: &PackOptions) -> Vec<Sample> {
    pack_documents(opts, docs.iter().map(Vec::as_slice)).unwrap()
}

fn options(seq_len: usize, window: usize) -> PackOptions {
    PackOptions {
        pad_id: PAD,
        ..PackOptions::new(seq_len, window)
    }
}

/// Random corpora and options: L in 2..=64, W = 0, below L, = L or above L, overlap default or
/// any allowed override, pack_buffer 1..=20; documents empty, of one token, short, or long.
fn case(
    max_docs: usize,
    max_len_factor: usize,
) -> impl Strategy<Value = (Vec<usize>, PackOptions)> {
    (2usize..=64).prop_flat_map(move |l| {
        let window = prop_oneof![Just(0), 1..l, Just(l), (l + 1)..=(3 * l)];
        let overlap = prop_oneof![2 => Just(None), 1 => (0..l).prop_map(Some)];
        let doc_len = prop_oneof![
            1 => Just(0usize),
            1 => Just(1usize),
            3 => 1..=l,
            3 => l..=(max_len_factor * l),
        ];
        (
            window,
            overlap,
            1usize..=20,
            any::<u64>(),
            prop::collection::vec(doc_len, 0..max_docs),
        )
            .prop_map(move |(window, overlap, pack_buffer, seed, lengths)| {
                let opts = PackOptions {
                    overlap,
                    pack_buffer,
                    seed,
                    ..options(l, window)
                };
                (lengths, opts)
            })
    })
}

fn sorted(mut samples: Vec<Sample>) -> Vec<Sample> {
    samples.sort();
    samples
}

/// Every sample with the [`ResumePoint`] it was emitted with, and the final stats.
fn pack_tracked(
    docs: &[Vec<u32>],
    opts: &PackOptions,
) -> (Vec<(Sample, ResumePoint)>, bpetok::data::pack::PackStats) {
    let mut out = Vec::new();
    let mut packer = Packer::new(opts.clone()).unwrap();
    for (d, doc) in docs.iter().enumerate() {
        let Ok(()) = packer.push_document_tracked(d as u64, doc, |s, p| {
            out.push((s, p));
            Ok::<(), Infallible>(())
        });
    }
    let Ok(stats) = packer.finish_tracked(|s, p| {
        out.push((s, p));
        Ok::<(), Infallible>(())
    });
    (out, stats)
}

/// A packer resumed from `point`, given the documents again from the one the point names (or
/// from the first): what it emits, and its final stats.
fn resume_from(
    docs: &[Vec<u32>],
    opts: &PackOptions,
    point: ResumePoint,
) -> (Vec<Sample>, bpetok::data::pack::PackStats) {
    let mut out = Vec::new();
    let mut packer = Packer::resume(opts.clone(), point).unwrap();
    let first = point.state.document.map_or(0, |d| d.doc_id as usize);
    for (d, doc) in docs.iter().enumerate().skip(first) {
        let Ok(()) = packer.push_document(d as u64, doc, |s| {
            out.push(s);
            Ok::<(), Infallible>(())
        });
    }
    let Ok(stats) = packer.finish(|s| {
        out.push(s);
        Ok::<(), Infallible>(())
    });
    (out, stats)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Resuming from any emitted sample's point, with the documents given again from the one it
    /// names, emits exactly the samples that followed it and ends with the same stats: what
    /// `bpetok pack --resume` relies on.
    #[test]
    fn resuming_from_any_sample_gives_the_rest((lengths, opts) in case(25, 5)) {
        let docs = documents(&lengths);
        let (tracked, stats) = pack_tracked(&docs, &opts);
        let plain: Vec<Sample> = tracked.iter().map(|(s, _)| s.clone()).collect();
        prop_assert_eq!(&plain, &pack(&docs, &opts));
        for (k, (_, point)) in tracked.iter().enumerate() {
            let (rest, resumed_stats) = resume_from(&docs, &opts, *point);
            prop_assert_eq!(&rest[..], &plain[k + 1..], "resumed after sample {}", k);
            prop_assert_eq!(resumed_stats, stats);
        }
    }

    #[test]
    fn output_satisfies_every_invariant((lengths, opts) in case(25, 5)) {
        let docs = documents(&lengths);
        let samples = pack(&docs, &opts);
        check_output(&docs, &opts, &samples);
    }

    #[test]
    fn attention_matches_an_unbroken_pass((lengths, opts) in case(8, 4)) {
        let docs = documents(&lengths);
        let samples = pack(&docs, &opts);
        check_attention(&opts, &samples);
    }

    #[test]
    fn deterministic_and_seed_only_permutes((lengths, opts) in case(25, 5), other_seed in any::<u64>()) {
        let docs = documents(&lengths);
        let first = pack(&docs, &opts);
        prop_assert_eq!(&first, &pack(&docs, &opts));
        let reseeded = pack(&docs, &PackOptions { seed: other_seed, ..opts.clone() });
        prop_assert_eq!(sorted(first), sorted(reseeded));
    }

    #[test]
    fn chunks_cover_each_document(n in 0usize..400, (_, opts) in case(1, 1)) {
        let chunks = chunk_document(3, n, &opts).unwrap();
        let l = opts.seq_len;
        if n == 0 {
            prop_assert!(chunks.is_empty());
            return Ok(());
        }
        let o = opts.overlap_tokens();
        prop_assert_eq!(chunks[0], Chunk { doc_id: 3, doc_start: 0, len: n.min(l) as u32, context: 0 });
        // Expected count: 1, plus ceil((n - L) / (L - o)) for a long document.
        let expected = if n <= l { 1 } else { 1 + (n - l).div_ceil(l - o) };
        prop_assert_eq!(chunks.len(), expected);
        for pair in chunks.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            prop_assert_eq!(a.len as usize, l);
            // The next chunk's first target is where this chunk's targets end.
            prop_assert_eq!(b.doc_start + u64::from(b.context), a.doc_start + u64::from(a.len));
            prop_assert_eq!(b.context as usize, o);
        }
        let last = chunks.last().unwrap();
        prop_assert_eq!(last.doc_start as usize + last.len as usize, n);
    }

    #[test]
    fn placement_is_best_fit_decreasing_per_flush((lengths, opts) in case(25, 5)) {
        let docs = documents(&lengths);
        let samples = pack(&docs, &opts);
        let mut chunks = Vec::new();
        for (d, doc) in docs.iter().enumerate() {
            chunks.extend(chunk_document(d as u64, doc.len(), &opts).unwrap());
        }
        // Flushes take consecutive pack_buffer chunks in arrival order.
        let mut expected: Vec<Vec<(u64, u64)>> = Vec::new();
        let mut flushes = 0;
        for group in chunks.chunks(opts.pack_buffer) {
            flushes += 1;
            let lens: Vec<usize> = group.iter().map(|c| c.len as usize).collect();
            let bins = naive_best_fit(&lens, opts.seq_len);
            prop_assert_eq!(&bins, &best_fit_decreasing(lens.iter().copied(), opts.seq_len));
            for bin in bins {
                expected.push(bin.iter().map(|&i| (group[i].doc_id, group[i].doc_start)).collect());
            }
        }
        let mut got: Vec<Vec<(u64, u64)>> = samples
            .iter()
            .map(|s| s.segments.iter().filter_map(|g| Some((g.doc_id?, g.doc_start))).collect())
            .collect();
        expected.sort();
        got.sort();
        prop_assert_eq!(got, expected);
        // Any-fit packing leaves at most one sample at most half full per flush.
        let half_empty = samples.iter().filter(|s| 2 * (opts.seq_len - s.padding_tokens()) <= opts.seq_len).count();
        prop_assert!(half_empty <= flushes);
    }

    #[test]
    fn memory_is_bounded_by_the_buffer((lengths, opts) in case(25, 8)) {
        let docs = documents(&lengths);
        let mut packer = Packer::new(opts.clone()).unwrap();
        let mut emitted_segments = 0usize;
        let mut samples = Vec::new();
        for (d, doc) in docs.iter().enumerate() {
            let before = packer.buffered_chunks();
            let chunks = chunk_document(d as u64, doc.len(), &opts).unwrap().len();
            let mut during = 0;
            packer.push_document(d as u64, doc, |s: Sample| {
                during += s.segments.iter().filter(|g| !g.is_padding()).count();
                samples.push(s);
                Ok::<(), Infallible>(())
            }).unwrap();
            let after = packer.buffered_chunks();
            // A flush happens exactly when pack_buffer chunks are held, so fewer remain.
            prop_assert!(after < opts.pack_buffer);
            prop_assert_eq!(after, (before + chunks) % opts.pack_buffer);
            prop_assert_eq!(during, before + chunks - after);
            emitted_segments += during;
        }
        let stats = packer.finish(|s: Sample| { samples.push(s); Ok::<(), Infallible>(()) }).unwrap();
        prop_assert_eq!(&samples, &pack(&docs, &opts));
        prop_assert!(emitted_segments as u64 <= stats.chunks);
        // The totals agree with the samples.
        prop_assert_eq!(stats.documents, docs.len() as u64);
        prop_assert_eq!(stats.empty_documents, lengths.iter().filter(|&&n| n == 0).count() as u64);
        prop_assert_eq!(stats.documents_split, lengths.iter().filter(|&&n| n > opts.seq_len).count() as u64);
        prop_assert_eq!(stats.document_tokens, lengths.iter().sum::<usize>() as u64);
        prop_assert_eq!(stats.samples, samples.len() as u64);
        prop_assert_eq!(stats.padding_tokens, samples.iter().map(Sample::padding_tokens).sum::<usize>() as u64);
        prop_assert_eq!(stats.context_tokens, samples.iter().map(Sample::context_tokens).sum::<usize>() as u64);
        prop_assert_eq!(stats.target_tokens, lengths.iter().map(|&n| n.saturating_sub(1)).sum::<usize>() as u64);
        prop_assert_eq!(
            stats.samples * opts.seq_len as u64,
            stats.document_tokens + stats.context_tokens + stats.padding_tokens
        );
    }

    #[test]
    fn below_stays_in_range(seed in any::<u64>(), n in 1u64..=u64::MAX) {
        let mut rng = SplitMix64::new(seed);
        for _ in 0..8 {
            prop_assert!(rng.below(n) < n);
        }
    }
}

#[test]
fn options_are_validated_with_messages_that_give_value_bound_and_reason() {
    let cases = [
        (
            PackOptions::new(0, 0),
            "seq_len",
            "seq_len: 0 is too small: a sample needs at least 2 tokens, since the first token of \
             a segment is never a target",
        ),
        (
            PackOptions::new(1, 0),
            "seq_len",
            "seq_len: 1 is too small: a sample needs at least 2 tokens, since the first token of \
             a segment is never a target",
        ),
        (
            PackOptions::new(1 << 31, 0),
            "seq_len",
            "seq_len: 2147483648 is more than the 1048576 tokens a sample may hold",
        ),
        (
            PackOptions {
                overlap: Some(8),
                ..PackOptions::new(8, 4)
            },
            "overlap",
            "overlap: 8 is not below the sample length 8: a chunk after a document's first would \
             be all context and hold no target (at most 7 fits)",
        ),
        (
            PackOptions {
                pack_buffer: 0,
                ..PackOptions::new(8, 4)
            },
            "pack_buffer",
            "pack_buffer: 0 is too small: the packer must hold at least one chunk",
        ),
    ];
    for (opts, option, message) in cases {
        let error = opts.validate().unwrap_err();
        assert_eq!(error.option, option);
        assert_eq!(error.kind(), "invalid_option");
        assert!(error.to_string().starts_with(message), "{error}");
        assert_eq!(Packer::new(opts.clone()).err(), Some(error.clone()));
        assert_eq!(chunk_document(0, 10, &opts), Err(error.clone()));
    }
    assert_eq!(PackOptions::new(2, 0).validate(), Ok(()));
    assert_eq!(
        PackOptions {
            overlap: Some(0),
            ..PackOptions::new(2, 5)
        }
        .validate(),
        Ok(())
    );
}

#[test]
fn default_overlap_follows_the_window() {
    let overlap = |l: usize, w: usize, o: Option<usize>| {
        PackOptions {
            overlap: o,
            ..PackOptions::new(l, w)
        }
        .overlap_tokens()
    };
    assert_eq!(overlap(8, 3, None), 3); // 0 < W < L: W
    assert_eq!(overlap(8, 1, None), 1);
    assert_eq!(overlap(8, 7, None), 7);
    assert_eq!(overlap(8, 0, None), 1); // full attention: 0, raised to 1
    assert_eq!(overlap(8, 8, None), 1); // W >= L: 0, raised to 1
    assert_eq!(overlap(8, 100, None), 1);
    assert_eq!(overlap(8, 3, Some(0)), 1);
    assert_eq!(overlap(8, 3, Some(5)), 5);
    assert_eq!(overlap(8, 0, Some(6)), 6);
}

/// docs/packing.md, "Chunking": L = 8, W = 3, a 20-token document.
#[test]
fn worked_example_chunking() {
    let chunks = chunk_document(0, 20, &PackOptions::new(8, 3)).unwrap();
    let bounds: Vec<(u64, u32, u32)> = chunks
        .iter()
        .map(|c| (c.doc_start, c.len, c.context))
        .collect();
    assert_eq!(bounds, [(0, 8, 0), (5, 8, 3), (10, 8, 3), (15, 5, 3)]);
    // W = 0 and W >= L: one token of context.
    for w in [0, 8, 4096] {
        let chunks = chunk_document(0, 20, &PackOptions::new(8, w)).unwrap();
        let bounds: Vec<(u64, u32, u32)> = chunks
            .iter()
            .map(|c| (c.doc_start, c.len, c.context))
            .collect();
        assert_eq!(bounds, [(0, 8, 0), (7, 8, 1), (14, 6, 1)]);
    }
}

/// docs/packing.md, "Labels, positions and boundaries": the second chunk above alone in a sample,
/// and a short document with padding.
#[test]
fn worked_example_sample_arrays() {
    let doc: Vec<u32> = (100..120).collect();
    let samples = pack(&[doc], &options(8, 3));
    let second = samples
        .iter()
        .find(|s| s.segments[0].doc_start == 5)
        .unwrap();
    assert_eq!(second.tokens, (105..113).collect::<Vec<u32>>());
    assert_eq!(second.labels(), [-100, -100, -100, 108, 109, 110, 111, 112]);
    assert_eq!(second.position_ids(), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(second.cu_seqlens(), [0, 8]);
    assert_eq!((second.context_tokens(), second.target_tokens()), (3, 5));

    let short = pack(
        &[vec![1, 50, 51, 2], vec![1, 60, 2]],
        &PackOptions::new(8, 3),
    );
    assert_eq!(short.len(), 1);
    let s = &short[0];
    assert_eq!(s.tokens, [1, 50, 51, 2, 1, 60, 2, 0]);
    assert_eq!(s.labels(), [-100, 50, 51, 2, -100, 60, 2, -100]);
    assert_eq!(s.position_ids(), [0, 1, 2, 3, 0, 1, 2, 0]);
    assert_eq!(s.cu_seqlens(), [0, 4, 7, 8]);
    assert_eq!(
        s.segments,
        [
            Segment {
                doc_id: Some(0),
                doc_start: 0,
                len: 4,
                context: 0
            },
            Segment {
                doc_id: Some(1),
                doc_start: 0,
                len: 3,
                context: 0
            },
            Segment {
                doc_id: None,
                doc_start: 0,
                len: 1,
                context: 0
            },
        ]
    );
}

/// docs/packing.md, "Placement": lengths 6, 5, 3, 2 (arrival order 3, 6, 2, 5) into L = 8.
#[test]
fn worked_example_best_fit() {
    assert_eq!(
        best_fit_decreasing([3, 6, 2, 5], 8),
        [vec![1, 2], vec![0, 3]]
    );
    // Best fit, not first fit: with 8 + 2 (free 2) and 6 + 5 (free 1) open, the 1 goes to the
    // tighter second sample; first fit would put it in the first.
    assert_eq!(
        best_fit_decreasing([8, 6, 5, 2, 1], 12),
        [vec![0, 3], vec![1, 2, 4]]
    );
    assert_eq!(best_fit_decreasing([4, 5, 3], 8), [vec![1, 2], vec![0]]);
    assert_eq!(
        best_fit_decreasing([5, 4, 3, 1], 8),
        [vec![0, 2], vec![1, 3]]
    );
    // Equal lengths keep arrival order; an exact fit fills a bin.
    assert_eq!(
        best_fit_decreasing([2, 2, 2, 2, 2], 4),
        [vec![0, 1], vec![2, 3], vec![4]]
    );
    assert_eq!(best_fit_decreasing([], 4), Vec::<Vec<usize>>::new());
}

/// The shuffle is pinned forever: SplitMix64's published outputs, Lemire's bounded integers, and
/// the order of one packed corpus. If this test changes, every shard written before changes.
#[test]
fn shuffle_is_pinned() {
    let mut rng = SplitMix64::new(1234567);
    let outputs: Vec<u64> = (0..5).map(|_| rng.next_u64()).collect();
    assert_eq!(
        outputs,
        [
            6457827717110365317,
            3203168211198807973,
            9817491932198370423,
            4593380528125082431,
            16408922859458223821
        ]
    );
    assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    let mut rng = SplitMix64::new(42);
    let draws: Vec<u64> = (0..8).map(|_| rng.below(10)).collect();
    assert_eq!(draws, PINNED_DRAWS);

    let lengths: Vec<usize> = (0..12).map(|i| 1 + (i * 7) % 11).collect();
    let docs = documents(&lengths);
    let opts = PackOptions {
        seed: 42,
        ..options(12, 0)
    };
    let order: Vec<Vec<u64>> = pack(&docs, &opts)
        .iter()
        .map(|s| s.segments.iter().filter_map(|g| g.doc_id).collect())
        .collect();
    assert_eq!(order, PINNED_ORDER);

    // With split documents and two flushes, the document-order step pinned as well.
    let docs = documents(&[30, 5, 40, 7, 2, 9]);
    let opts = PackOptions {
        seed: 7,
        pack_buffer: 6,
        ..options(12, 4)
    };
    let order: Vec<Vec<(u64, u64)>> = pack(&docs, &opts)
        .iter()
        .map(|s| {
            s.segments
                .iter()
                .filter_map(|g| Some((g.doc_id?, g.doc_start)))
                .collect()
        })
        .collect();
    assert_eq!(order, PINNED_SPLIT_ORDER);
}

const PINNED_SPLIT_ORDER: [&[(u64, u64)]; 11] = [
    &[(2, 0)],
    &[(0, 0)],
    &[(0, 8)],
    &[(0, 16)],
    &[(0, 24), (1, 0)],
    &[(3, 0)],
    &[(2, 8)],
    &[(2, 16)],
    &[(2, 24)],
    &[(2, 32), (4, 0)],
    &[(5, 0)],
];

const PINNED_DRAWS: [u64; 8] = [7, 1, 2, 3, 0, 8, 2, 8];
/// Checked against an independent Python implementation of SplitMix64, Lemire and Fisher-Yates.
const PINNED_ORDER: [&[u64]; 6] = [&[5, 9], &[7, 11], &[1, 2], &[6, 8], &[0, 3], &[4, 10]];

#[test]
fn seeds_change_the_order() {
    let lengths: Vec<usize> = (0..60).map(|i| 1 + (i * 37) % 30).collect();
    let docs = documents(&lengths);
    let a = pack(&docs, &options(32, 8));
    let b = pack(
        &docs,
        &PackOptions {
            seed: 1,
            ..options(32, 8)
        },
    );
    assert_ne!(a, b);
    assert_eq!(sorted(a), sorted(b));
}

/// A document far longer than the buffer: its chunks cross many flushes and stay in order.
#[test]
fn long_document_across_flushes() {
    let docs = documents(&[5000, 3, 700, 1, 0, 64]);
    for pack_buffer in [1, 2, 7, 64] {
        for window in [0, 5, 16, 17] {
            let opts = PackOptions {
                pack_buffer,
                seed: 9,
                ..options(16, window)
            };
            let samples = pack(&docs, &opts);
            check_output(&docs, &opts, &samples);
            check_attention(&opts, &samples);
        }
    }
}

/// Every document of one token, and L = 2 (the smallest sample).
#[test]
fn smallest_cases() {
    let docs = documents(&[1, 1, 1]);
    let opts = options(2, 1);
    let samples = pack(&docs, &opts);
    check_output(&docs, &opts, &samples);
    assert_eq!(samples.iter().map(Sample::target_tokens).sum::<usize>(), 0);

    let docs = documents(&[5]);
    let samples = pack(&docs, &opts);
    check_output(&docs, &opts, &samples);
    assert_eq!(samples.len(), 4); // [0,2) [1,3) [2,4) [3,5): one target each
    assert!(pack(&[], &opts).is_empty());
    assert!(pack(&documents(&[0, 0]), &opts).is_empty());
}

/// The padding figures of docs/packing.md ("Memory"):
/// `cargo test -p bpetok --release --test pack padding_by_buffer_size -- --ignored --nocapture`
#[test]
#[ignore]
fn padding_by_buffer_size() {
    let mut rng = SplitMix64::new(1);
    let lengths: Vec<usize> = (0..200_000).map(|_| 1 + rng.below(2000) as usize).collect();
    let docs = documents(&lengths);
    for pack_buffer in [64, 4096] {
        let opts = PackOptions {
            pack_buffer,
            ..PackOptions::new(4096, 4096)
        };
        let mut packer = Packer::new(opts).unwrap();
        let mut count = |_: Sample| Ok::<(), Infallible>(());
        for (d, doc) in docs.iter().enumerate() {
            packer.push_document(d as u64, doc, &mut count).unwrap();
        }
        let stats = packer.finish(&mut count).unwrap();
        println!(
            "pack_buffer {pack_buffer}: {} samples, padding {:.2}%",
            stats.samples,
            100.0 * stats.padding_tokens as f64 / (stats.samples * 4096) as f64
        );
    }
}
