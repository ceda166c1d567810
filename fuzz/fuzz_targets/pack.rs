//! The packer on arbitrary document lengths and options: options are validated as documented, and
//! every output satisfies every invariant of docs/packing.md (`bpetok_fuzz::pack_check`), flushes
//! happen exactly at `pack_buffer` chunks, placement is best-fit decreasing per flush, the totals
//! add up, the output is deterministic and another seed only permutes it.
#![no_main]

use std::convert::Infallible;

use bpetok::data::pack::{
    best_fit_decreasing, chunk_document, pack_documents, PackOptions, Packer, Sample,
    MAX_PACK_BUFFER, MAX_PACK_BUFFER_TOKENS, MAX_SEQ_LEN, MAX_WINDOW,
};
use bpetok_fuzz::pack_check::{check_attention, check_output, naive_best_fit};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Documents whose every token names its document and position, so a misplaced token shows.
fn documents(lengths: &[usize]) -> Vec<Vec<u32>> {
    lengths
        .iter()
        .enumerate()
        .map(|(d, &n)| (0..n).map(|p| (d as u32) << 16 | p as u32).collect())
        .collect()
}

/// Options of any value: validation must accept exactly the documented ranges.
fn check_validation(u: &mut Unstructured<'_>) -> Result<()> {
    let opts = PackOptions {
        seq_len: u.arbitrary()?,
        window: u.arbitrary()?,
        overlap: u.arbitrary()?,
        pack_buffer: u.arbitrary()?,
        seed: u.arbitrary()?,
        pad_id: u.arbitrary()?,
    };
    let valid = (2..=MAX_SEQ_LEN).contains(&opts.seq_len)
        && opts.window <= MAX_WINDOW
        && opts.overlap.is_none_or(|o| o < opts.seq_len)
        && (1..=MAX_PACK_BUFFER).contains(&opts.pack_buffer)
        && opts
            .pack_buffer
            .checked_mul(opts.seq_len)
            .is_some_and(|t| t <= MAX_PACK_BUFFER_TOKENS);
    match Packer::new(opts.clone()) {
        Ok(packer) => {
            assert!(valid, "accepted invalid options {opts:?}");
            let overlap = packer.options().overlap_tokens();
            assert!(
                (1..opts.seq_len).contains(&overlap),
                "overlap_tokens {overlap} for {opts:?}"
            );
        }
        Err(err) => {
            assert!(!valid, "refused valid options {opts:?}: {err}");
            assert!(!err.to_string().is_empty());
        }
    }
    Ok(())
}

fn options(u: &mut Unstructured<'_>) -> Result<PackOptions> {
    let l: usize = u.int_in_range(2..=80)?;
    let window = match u.int_in_range(0..=3)? {
        0 => 0,
        1 => u.int_in_range(1..=l - 1)?,
        2 => l,
        _ => u.int_in_range(l + 1..=4 * l)?,
    };
    let overlap = if u.ratio(1, 3)? {
        Some(u.int_in_range(0..=l - 1)?)
    } else {
        None
    };
    Ok(PackOptions {
        overlap,
        pack_buffer: u.int_in_range(1..=24)?,
        seed: u.arbitrary()?,
        pad_id: u.arbitrary()?,
        ..PackOptions::new(l, window)
    })
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    if u.ratio(1, 8)? {
        return check_validation(&mut u);
    }
    let opts = options(&mut u)?;
    let l = opts.seq_len;
    let mut lengths = Vec::new();
    while !u.is_empty() && lengths.len() < 40 {
        lengths.push(match u.int_in_range(0..=3)? {
            0 => u.int_in_range(0..=1)?,
            1 | 2 => u.int_in_range(1..=l)?,
            _ => u.int_in_range(l..=8 * l)?,
        });
    }
    let docs = documents(&lengths);

    // Streaming, with the flush points and the totals checked on the way.
    let mut packer = Packer::new(opts.clone()).expect("valid options");
    let mut samples: Vec<Sample> = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        let before = packer.buffered_chunks();
        let chunks = chunk_document(d as u64, doc.len(), &opts).unwrap().len();
        let mut during = 0;
        packer
            .push_document(d as u64, doc, |s: Sample| {
                during += s.segments.iter().filter(|g| !g.is_padding()).count();
                samples.push(s);
                Ok::<(), Infallible>(())
            })
            .unwrap();
        let after = packer.buffered_chunks();
        assert!(after < opts.pack_buffer, "the buffer holds {after} chunks");
        assert_eq!(after, (before + chunks) % opts.pack_buffer, "flush point");
        assert_eq!(
            during,
            before + chunks - after,
            "a flush emits exactly what it held"
        );
    }
    let stats = packer
        .finish(|s: Sample| {
            samples.push(s);
            Ok::<(), Infallible>(())
        })
        .unwrap();

    check_output(&docs, &opts, &samples);
    check_attention(&opts, &samples);

    assert_eq!(stats.documents, docs.len() as u64);
    assert_eq!(
        stats.empty_documents,
        lengths.iter().filter(|&&n| n == 0).count() as u64
    );
    assert_eq!(
        stats.documents_split,
        lengths.iter().filter(|&&n| n > l).count() as u64
    );
    assert_eq!(stats.document_tokens, lengths.iter().sum::<usize>() as u64);
    assert_eq!(stats.samples, samples.len() as u64);
    assert_eq!(
        stats.padding_tokens,
        samples.iter().map(Sample::padding_tokens).sum::<usize>() as u64
    );
    assert_eq!(
        stats.context_tokens,
        samples.iter().map(Sample::context_tokens).sum::<usize>() as u64
    );
    assert_eq!(
        stats.target_tokens,
        lengths.iter().map(|&n| n.saturating_sub(1)).sum::<usize>() as u64
    );
    assert_eq!(
        stats.samples * l as u64,
        stats.document_tokens + stats.context_tokens + stats.padding_tokens
    );

    // Placement: best-fit decreasing over each flush's consecutive pack_buffer chunks.
    let mut chunks = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        chunks.extend(chunk_document(d as u64, doc.len(), &opts).unwrap());
    }
    let mut expected: Vec<Vec<(u64, u64)>> = Vec::new();
    let mut flushes = 0;
    for group in chunks.chunks(opts.pack_buffer) {
        flushes += 1;
        let lens: Vec<usize> = group.iter().map(|c| c.len as usize).collect();
        let bins = naive_best_fit(&lens, l);
        assert_eq!(
            bins,
            best_fit_decreasing(lens.iter().copied(), l),
            "best fit"
        );
        for bin in bins {
            expected.push(
                bin.iter()
                    .map(|&i| (group[i].doc_id, group[i].doc_start))
                    .collect(),
            );
        }
    }
    let mut got: Vec<Vec<(u64, u64)>> = samples
        .iter()
        .map(|s| {
            s.segments
                .iter()
                .filter_map(|g| Some((g.doc_id?, g.doc_start)))
                .collect()
        })
        .collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "placement per flush");
    let half_empty = samples
        .iter()
        .filter(|s| 2 * (l - s.padding_tokens()) <= l)
        .count();
    assert!(
        half_empty <= flushes,
        "{half_empty} samples half empty in {flushes} flushes"
    );

    // Deterministic; another seed only permutes the samples.
    let again = pack_documents(&opts, docs.iter().map(Vec::as_slice)).unwrap();
    assert_eq!(again, samples, "not deterministic");

    // Resumable: from each emitted sample's point (what `bpetok pack --resume` restarts from),
    // a resumed packer given the documents again from the one the point names emits exactly the
    // samples that followed, and ends with the same statistics.
    let mut tracked = Packer::new(opts.clone()).expect("valid options");
    let mut points = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        let Ok(()) = tracked.push_document_tracked(d as u64, doc, |_, p| {
            points.push(p);
            Ok::<(), Infallible>(())
        });
    }
    let Ok(_) = tracked.finish_tracked(|_, p| {
        points.push(p);
        Ok::<(), Infallible>(())
    });
    assert_eq!(points.len(), samples.len(), "tracked and plain runs differ");
    for (k, point) in points.iter().enumerate() {
        let mut resumed = Packer::resume(opts.clone(), *point).expect("valid options");
        let first = point.state.document.map_or(0, |d| d.doc_id as usize);
        let mut rest: Vec<Sample> = Vec::new();
        for (d, doc) in docs.iter().enumerate().skip(first) {
            let Ok(()) = resumed.push_document(d as u64, doc, |s| {
                rest.push(s);
                Ok::<(), Infallible>(())
            });
        }
        let Ok(resumed_stats) = resumed.finish(|s| {
            rest.push(s);
            Ok::<(), Infallible>(())
        });
        assert_eq!(rest[..], again[k + 1..], "resumed after sample {k}");
        assert_eq!(resumed_stats, stats, "resumed statistics after sample {k}");
    }
    let other = PackOptions {
        seed: opts.seed ^ 0x5DEECE66D,
        ..opts.clone()
    };
    let mut permuted = pack_documents(&other, docs.iter().map(Vec::as_slice)).unwrap();
    let mut sorted = samples;
    permuted.sort();
    sorted.sort();
    assert_eq!(permuted, sorted, "another seed changed more than the order");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
