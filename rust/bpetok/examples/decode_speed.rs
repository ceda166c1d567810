//! Decoding speed of the core, without Python: `cargo run --release --example decode_speed --
//! IDS.u32 OFFSETS.u64 [REPEAT]` (ids as little-endian u32, documents as u64 offsets into them).
//! Prints MB/s of decoded text for `Tokenizer::decode` (the plain rules) and `Decoder::decode`.

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let read = |path: &str| std::fs::read(path).expect("readable");
    let ids: Vec<u32> = read(&args[1])
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let offsets: Vec<usize> = read(&args[2])
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
        .collect();
    let repeat: usize = args.get(3).map_or(5, |r| r.parse().unwrap());
    let docs: Vec<&[u32]> = offsets.windows(2).map(|w| &ids[w[0]..w[1]]).collect();
    let tok = bpetok::Tokenizer::mixtral_8x7b();
    let start = Instant::now();
    let decoder = tok.decoder();
    println!(
        "decoder table: {:.2} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let bytes: usize = docs.iter().map(|d| tok.decode(d).unwrap().len()).sum();
    let time = |f: &dyn Fn() -> usize| {
        let mut best = f64::MAX;
        for _ in 0..repeat {
            let start = Instant::now();
            assert_eq!(f(), bytes);
            best = best.min(start.elapsed().as_secs_f64());
        }
        best
    };
    let plain = time(&|| docs.iter().map(|d| tok.decode(d).unwrap().len()).sum());
    let table = time(&|| docs.iter().map(|d| decoder.decode(d).unwrap().len()).sum());
    let into = time(&|| {
        let mut buf: Vec<u8> = Vec::new();
        docs.iter()
            .map(|d| {
                buf.clear();
                decoder.decode_into(d, &mut buf).unwrap();
                buf.len()
            })
            .sum()
    });
    let n = ids.len() as f64;
    for (name, secs) in [
        ("Tokenizer::decode", plain),
        ("Decoder::decode", table),
        ("Decoder::decode_into (reused buffer)", into),
    ] {
        println!(
            "{name}: {:.0} MB/s, {:.2} ns/id (best of {repeat})",
            bytes as f64 / 1e6 / secs,
            secs / n * 1e9
        );
    }
}
