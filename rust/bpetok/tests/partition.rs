//! Partitioned packing ([`bpetok::data::partition`], `docs/distributed.md`): byte ranges of a
//! file share out its lines with none lost or read twice wherever the cuts fall, the planning
//! rule (grouping, what is cut and what never is), a partitioned run holds exactly the documents
//! and tokens of an unpartitioned one and verifies, `verify_dir` catches damage to it, and two
//! attempts at one partition leave one complete copy.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bpetok::data::error::DataError;
use bpetok::data::input::{
    read_records, Compression, InputError, InputFormat, InputRange, InputSpec, InputSummary,
    ReadOptions, Record,
};
use bpetok::data::partition::{
    file_layouts, finish_partitions, pack_partition, pack_partitioned, plan_partitions,
    prepare_output, FileLayout, Partition, Prepared,
};
use bpetok::data::pipeline::Counters;
use bpetok::data::shard::{verify_dir, Manifest, ShardEntry, ViolationKind};
use bpetok::data::{PackConfig, PackSession};
use bpetok::Tokenizer;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const BOM: &[u8] = b"\xef\xbb\xbf";

fn no_tick() -> Result<(), DataError> {
    Ok(())
}

fn hex_sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A record as the tests compare them: a document's text, or a record passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rec {
    Doc(String),
    Skipped,
}

fn file_spec(path: &Path, format: InputFormat, range: Option<InputRange>) -> InputSpec {
    InputSpec {
        path: Some(path.to_path_buf()),
        name: path.display().to_string(),
        format,
        compression: Some(Compression::None),
        size: Some(fs::metadata(path).unwrap().len()),
        range,
    }
}

/// The records of `input`, in order, and its summary.
fn read(input: &InputSpec, opts: &ReadOptions) -> (Vec<Rec>, InputSummary) {
    let mut records = Vec::new();
    let progress = AtomicU64::new(0);
    let summary = read_records(input, opts, &progress, 0, |record| {
        records.push(match record {
            Record::Document { text, .. } => Rec::Doc(text),
            Record::Skipped { .. } => Rec::Skipped,
            Record::Conversation { .. } => panic!("no conversations here"),
        });
        Ok::<(), InputError>(())
    })
    .unwrap_or_else(|e| panic!("reading {:?} of {}: {e}", input.range, input.name));
    assert_eq!(
        summary.documents + summary.skipped_records,
        records.len() as u64
    );
    (records, summary)
}

/// The offsets at which the lines of `bytes` begin (0 and after each `\n`, before the end).
fn line_starts(bytes: &[u8]) -> Vec<u64> {
    let mut starts = vec![0u64];
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && i + 1 < bytes.len() {
            starts.push(i as u64 + 1);
        }
    }
    if bytes.is_empty() {
        starts.clear();
    }
    starts
}

/// The bytes of the lines that begin in `start..end`, found from the rule alone.
fn owned_bytes(bytes: &[u8], start: u64, end: u64) -> &[u8] {
    let starts = line_starts(bytes);
    let len = bytes.len() as u64;
    let first = starts.iter().copied().find(|&s| s >= start).unwrap_or(len);
    let after = starts.iter().copied().find(|&s| s >= end).unwrap_or(len);
    let after = after.max(first);
    &bytes[first as usize..after as usize]
}

/// Reads the ranges `cuts[0]..cuts[1]`, `cuts[1]..cuts[2]`, ... of `path` (holding `bytes`) and
/// checks each range's summary against the bytes of the lines it owns; the records, in order.
fn read_ranges(
    path: &Path,
    bytes: &[u8],
    format: InputFormat,
    opts: &ReadOptions,
    cuts: &[u64],
) -> Vec<Rec> {
    let mut all = Vec::new();
    let mut total = 0u64;
    for w in cuts.windows(2) {
        let (start, end) = (w[0], w[1]);
        let spec = file_spec(path, format, Some(InputRange::Bytes([start, end])));
        let (records, summary) = read(&spec, opts);
        let owned = owned_bytes(bytes, start, end);
        assert_eq!(
            summary.size,
            owned.len() as u64,
            "size of range {start}..{end}"
        );
        assert_eq!(
            summary.sha256,
            hex_sha256(owned),
            "sha256 of {start}..{end}"
        );
        assert_eq!(summary.compression, Compression::None);
        total += summary.size;
        all.extend(records);
    }
    assert_eq!(
        total,
        bytes.len() as u64,
        "range sizes do not add up, cuts {cuts:?}"
    );
    all
}

/// Lines with what each must read as: a BOM at the file's start, empty lines, CRLF endings,
/// multi-byte characters (so cuts fall inside them), a U+FEFF starting a line in the middle
/// (which is the line's text, not a BOM), a long line, and (unless `final_newline`) no newline
/// at the end.
fn text_entries(final_newline: bool) -> Vec<(Vec<u8>, Option<Rec>)> {
    let doc = |s: &str| Some(Rec::Doc(s.to_owned()));
    let long = "long line Größe 東京 😀 ".repeat(12);
    let mut entries: Vec<(Vec<u8>, Option<Rec>)> = vec![(
        [BOM, "first line, after a byte order mark\n".as_bytes()].concat(),
        doc("first line, after a byte order mark"),
    )];
    for round in 0..4 {
        let lines: Vec<(String, Option<Rec>)> = vec![
            (format!("plain {round}\n"), doc(&format!("plain {round}"))),
            ("\n".to_owned(), None),
            (format!("crlf {round}\r\n"), doc(&format!("crlf {round}"))),
            ("\r\n".to_owned(), None),
            (
                format!("Größe 東京 😀 {round}\n"),
                doc(&format!("Größe 東京 😀 {round}")),
            ),
            (
                format!("\u{feff}U+FEFF begins line {round}\n"),
                doc(&format!("\u{feff}U+FEFF begins line {round}")),
            ),
            ("x\n".to_owned(), doc("x")),
            ("   \n".to_owned(), doc("   ")),
            (format!("{long}{round}\n"), doc(&format!("{long}{round}"))),
            ("😀😀😀\r\n".to_owned(), doc("😀😀😀")),
            ("\n".to_owned(), None),
            ("\n".to_owned(), None),
        ];
        entries.extend(lines.into_iter().map(|(l, r)| (l.into_bytes(), r)));
    }
    if final_newline {
        entries.push((b"last line\n".to_vec(), doc("last line")));
    } else {
        entries.push((
            b"last line, no newline".to_vec(),
            doc("last line, no newline"),
        ));
    }
    entries
}

/// JSONL lines with what each must read as (bad records passed over): a BOM at the file's start,
/// blank and whitespace-only lines, CRLF, multi-byte characters and escapes, an empty document,
/// and a line starting with U+FEFF in the middle (a JSON error, as for Python's `json.loads`:
/// only the file's first bytes may be a BOM).
fn jsonl_entries(final_newline: bool) -> Vec<(Vec<u8>, Option<Rec>)> {
    let doc = |s: &str| Some(Rec::Doc(s.to_owned()));
    let mut entries: Vec<(Vec<u8>, Option<Rec>)> = vec![(
        [BOM, b"{\"text\": \"after a BOM\"}\n"].concat(),
        doc("after a BOM"),
    )];
    for round in 0..4 {
        let lines: Vec<(String, Option<Rec>)> = vec![
            (
                format!("{{\"text\": \"plain {round}\"}}\n"),
                doc(&format!("plain {round}")),
            ),
            ("\n".to_owned(), None),
            (" \t \n".to_owned(), None),
            (
                format!("{{\"text\": \"crlf {round}\"}}\r\n"),
                doc(&format!("crlf {round}")),
            ),
            ("\r\n".to_owned(), None),
            (
                format!("{{\"id\": {round}, \"text\": \"Größe 東京 😀\"}}\n"),
                doc("Größe 東京 😀"),
            ),
            (
                "{\"text\": \"esc \\u00e9 \\ud83d\\ude00\"}\n".to_owned(),
                doc("esc é 😀"),
            ),
            (
                format!("\u{feff}{{\"text\": \"U+FEFF first {round}\"}}\n"),
                Some(Rec::Skipped),
            ),
            ("{\"text\": \"\"}\n".to_owned(), doc("")),
            ("[1, 2]\n".to_owned(), Some(Rec::Skipped)),
            (
                format!("{{\"text\": \"{}\"}}\n", "東京 ".repeat(40)),
                doc(&"東京 ".repeat(40)),
            ),
        ];
        entries.extend(lines.into_iter().map(|(l, r)| (l.into_bytes(), r)));
    }
    let last = "{\"text\": \"last\"}";
    let tail = if final_newline {
        format!("{last}\n")
    } else {
        last.to_owned()
    };
    entries.push((tail.into_bytes(), doc("last")));
    entries
}

/// Every way of cutting: two ranges at every offset (with an empty range at the cut), and
/// equal ranges of many sizes; each must read the whole file's records, once each, in order.
fn check_every_cut(name: &str, entries: Vec<(Vec<u8>, Option<Rec>)>, opts: &ReadOptions) {
    let format = if name.ends_with(".jsonl") {
        InputFormat::Jsonl
    } else {
        InputFormat::Text
    };
    let dir = TempDir::new().unwrap();
    let path = dir.path().join(name);
    let bytes: Vec<u8> = entries.iter().flat_map(|(l, _)| l.clone()).collect();
    let expected: Vec<Rec> = entries.into_iter().filter_map(|(_, r)| r).collect();
    fs::write(&path, &bytes).unwrap();
    let len = bytes.len() as u64;

    let (whole, summary) = read(&file_spec(&path, format, None), opts);
    assert_eq!(whole, expected, "the whole file");
    assert_eq!(summary.size, len);

    for cut in 0..=len {
        let got = read_ranges(&path, &bytes, format, opts, &[0, cut, cut, len]);
        assert_eq!(
            got,
            expected,
            "{name}: cut at {cut} (byte {:?})",
            bytes.get(cut as usize)
        );
    }
    let mut sizes: Vec<u64> = (1..=80).collect();
    sizes.extend([97, 128, 255, 256, 257, 500, len - 1, len, len + 1, 10 * len]);
    for size in sizes {
        let mut cuts: Vec<u64> = (0..len).step_by(size as usize).collect();
        cuts.push(len);
        let got = read_ranges(&path, &bytes, format, opts, &cuts);
        assert_eq!(got, expected, "{name}: ranges of {size} bytes");
    }
}

#[test]
fn byte_ranges_share_out_the_lines_of_a_text_file() {
    let opts = ReadOptions {
        lines: true,
        ..ReadOptions::default()
    };
    for final_newline in [true, false] {
        check_every_cut("lines.txt", text_entries(final_newline), &opts);
    }
}

#[test]
fn byte_ranges_share_out_the_records_of_a_jsonl_file() {
    let opts = ReadOptions {
        skip_bad_records: true,
        ..ReadOptions::default()
    };
    for final_newline in [true, false] {
        check_every_cut("docs.jsonl", jsonl_entries(final_newline), &opts);
    }
}

#[test]
fn a_range_starting_at_a_line_that_begins_with_u_feff_keeps_it() {
    // The range begins exactly where the U+FEFF line begins: its text keeps the character.
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("f.txt");
    let bytes = "one\n\u{feff}two\nthree\n".as_bytes();
    fs::write(&path, bytes).unwrap();
    let opts = ReadOptions {
        lines: true,
        ..ReadOptions::default()
    };
    let spec = file_spec(&path, InputFormat::Text, Some(InputRange::Bytes([4, 8])));
    let (records, summary) = read(&spec, &opts);
    assert_eq!(records, vec![Rec::Doc("\u{feff}two".to_owned())]);
    assert_eq!(summary.size, "\u{feff}two\n".len() as u64);
    // And a range starting at 0 of a file with a BOM drops it.
    let bom_path = dir.path().join("bom.txt");
    fs::write(&bom_path, [BOM, b"a\nb\n"].concat()).unwrap();
    let spec = file_spec(
        &bom_path,
        InputFormat::Text,
        Some(InputRange::Bytes([0, 1])),
    );
    assert_eq!(read(&spec, &opts).0, vec![Rec::Doc("a".to_owned())]);
    let spec = file_spec(
        &bom_path,
        InputFormat::Text,
        Some(InputRange::Bytes([1, 100])),
    );
    assert_eq!(read(&spec, &opts).0, vec![Rec::Doc("b".to_owned())]);
}

#[test]
fn a_range_of_what_cannot_be_cut_is_refused() {
    let dir = TempDir::new().unwrap();
    let text = dir.path().join("whole.txt");
    fs::write(&text, "a\nb\n").unwrap();
    let progress = AtomicU64::new(0);
    let refuse = |spec: &InputSpec, opts: &ReadOptions| {
        let err = read_records(spec, opts, &progress, 0, |_| Ok::<(), InputError>(()))
            .expect_err("a range that cannot be read alone");
        assert_eq!(err.kind(), "unsplittable", "{err}");
    };
    // A text file read as one document.
    let whole = file_spec(&text, InputFormat::Text, Some(InputRange::Bytes([0, 2])));
    refuse(&whole, &ReadOptions::default());
    // Row groups of a file that is not Parquet.
    let lines = ReadOptions {
        lines: true,
        ..ReadOptions::default()
    };
    refuse(
        &file_spec(
            &text,
            InputFormat::Text,
            Some(InputRange::RowGroups([0, 1])),
        ),
        &lines,
    );
    // A byte range of a compressed file.
    let gz = dir.path().join("c.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b"{\"text\": \"a\"}\n").unwrap();
    fs::write(&gz, enc.finish().unwrap()).unwrap();
    let mut spec = file_spec(&gz, InputFormat::Jsonl, Some(InputRange::Bytes([0, 5])));
    spec.compression = Some(Compression::Gzip);
    refuse(&spec, &ReadOptions::default());
}

// ---- planning -------------------------------------------------------------------------------

fn spec_named(name: &str, format: InputFormat, compression: Compression) -> InputSpec {
    InputSpec {
        path: Some(PathBuf::from(name)),
        name: name.to_owned(),
        format,
        compression: Some(compression),
        size: None,
        range: None,
    }
}

fn layout(size: u64) -> FileLayout {
    FileLayout {
        size,
        row_groups: None,
    }
}

/// A plan as `(path, range, size)` per piece, per partition; checks the names.
fn plan(
    inputs: &[(InputSpec, FileLayout)],
    lines: bool,
    size: u64,
) -> Vec<Vec<(String, Option<InputRange>, u64)>> {
    let (specs, layouts): (Vec<_>, Vec<_>) = inputs.iter().cloned().unzip();
    let partitions = plan_partitions(&specs, &layouts, lines, size).unwrap();
    for (i, p) in partitions.iter().enumerate() {
        assert_eq!(p.name, format!("part-{i:05}"));
        assert!(!p.pieces.is_empty());
    }
    partitions
        .into_iter()
        .map(|p| {
            p.pieces
                .into_iter()
                .map(|piece| (piece.path, piece.range, piece.size))
                .collect()
        })
        .collect()
}

fn whole(name: &str, size: u64) -> (String, Option<InputRange>, u64) {
    (name.to_owned(), None, size)
}

fn bytes(name: &str, start: u64, end: u64) -> (String, Option<InputRange>, u64) {
    (
        name.to_owned(),
        Some(InputRange::Bytes([start, end])),
        end - start,
    )
}

#[test]
fn small_files_are_grouped_while_they_fit() {
    use Compression::None as Plain;
    use InputFormat::Jsonl;
    let files: Vec<(InputSpec, FileLayout)> = ["a", "b", "c", "d", "e"]
        .iter()
        .zip([3, 3, 3, 4, 7])
        .map(|(n, s)| (spec_named(n, Jsonl, Plain), layout(s)))
        .collect();
    // 3 + 3 <= 7, + 3 > 7; 3 + 4 = 7 fits exactly; 7 alone.
    assert_eq!(
        plan(&files, false, 7),
        vec![
            vec![whole("a", 3), whole("b", 3)],
            vec![whole("c", 3), whole("d", 4)],
            vec![whole("e", 7)],
        ]
    );
    // Everything in one partition when it fits.
    assert_eq!(
        plan(&files, false, 20),
        vec![files
            .iter()
            .map(|(s, l)| whole(&s.name, l.size))
            .collect::<Vec<_>>()]
    );
    // Empty files are pieces too (of no bytes).
    let empties = vec![
        (spec_named("e1", Jsonl, Plain), layout(0)),
        (spec_named("e2", Jsonl, Plain), layout(0)),
    ];
    assert_eq!(
        plan(&empties, false, 1),
        vec![vec![whole("e1", 0), whole("e2", 0)]]
    );
}

#[test]
fn what_is_cut_into_byte_ranges_and_what_never_is() {
    use Compression::{Gzip, None as Plain, Zstd};
    use InputFormat::{Jsonl, Parquet, Text};
    let inputs = vec![
        (spec_named("small.jsonl", Jsonl, Plain), layout(2)),
        // Compressed: one piece however large, a partition alone.
        (spec_named("big.jsonl.gz", Jsonl, Gzip), layout(20)),
        (spec_named("big.txt.zst", Text, Zstd), layout(30)),
        // Uncompressed JSONL larger than the size: ranges, the last shorter.
        (spec_named("big.jsonl", Jsonl, Plain), layout(20)),
        // Joins the last range's partition (6 + 1 <= 7).
        (spec_named("tiny.jsonl", Jsonl, Plain), layout(1)),
        // Exactly the size: not cut.
        (spec_named("exact.jsonl", Jsonl, Plain), layout(7)),
        // Text: cut only when read by lines.
        (spec_named("big.txt", Text, Plain), layout(15)),
        // Parquet without its row groups (compressed): one piece.
        (spec_named("big.parquet.gz", Parquet, Gzip), layout(40)),
    ];
    let by_file = plan(&inputs, false, 7);
    assert_eq!(
        by_file,
        vec![
            vec![whole("small.jsonl", 2)],
            vec![whole("big.jsonl.gz", 20)],
            vec![whole("big.txt.zst", 30)],
            vec![bytes("big.jsonl", 0, 7)],
            vec![bytes("big.jsonl", 7, 14)],
            vec![bytes("big.jsonl", 14, 20), whole("tiny.jsonl", 1)],
            vec![whole("exact.jsonl", 7)],
            vec![whole("big.txt", 15)],
            vec![whole("big.parquet.gz", 40)],
        ]
    );
    let by_lines = plan(&inputs, true, 7);
    assert_eq!(by_lines[..7], by_file[..7]);
    assert_eq!(
        by_lines[7..],
        vec![
            vec![bytes("big.txt", 0, 7)],
            vec![bytes("big.txt", 7, 14)],
            vec![bytes("big.txt", 14, 15)],
            vec![whole("big.parquet.gz", 40)],
        ]
    );
    // A compressed text file read by lines is still one piece.
    let zst = vec![(spec_named("big.txt.zst", Text, Zstd), layout(30))];
    assert_eq!(plan(&zst, true, 7), vec![vec![whole("big.txt.zst", 30)]]);
    // A size of 1 byte cuts into ranges of one byte, each a partition.
    let one = vec![(spec_named("f.jsonl", Jsonl, Plain), layout(3))];
    assert_eq!(
        plan(&one, false, 1),
        vec![
            vec![bytes("f.jsonl", 0, 1)],
            vec![bytes("f.jsonl", 1, 2)],
            vec![bytes("f.jsonl", 2, 3)],
        ]
    );
}

#[test]
fn parquet_is_cut_by_runs_of_row_groups() {
    use Compression::None as Plain;
    use InputFormat::Parquet;
    let pq = |name: &str, size: u64, groups: &[u64]| {
        (
            spec_named(name, Parquet, Plain),
            FileLayout {
                size,
                row_groups: Some(groups.to_vec()),
            },
        )
    };
    let groups = |name: &str, start: u64, end: u64, size: u64| {
        (
            name.to_owned(),
            Some(InputRange::RowGroups([start, end])),
            size,
        )
    };
    // Runs closed once they reach the size; the last one takes what is left.
    assert_eq!(
        plan(&[pq("a.parquet", 20, &[3, 3, 3, 3, 1])], false, 5),
        vec![
            vec![groups("a.parquet", 0, 2, 6)],
            vec![groups("a.parquet", 2, 4, 6)],
            vec![groups("a.parquet", 4, 5, 1)],
        ]
    );
    assert_eq!(
        plan(&[pq("b.parquet", 20, &[10, 1, 1])], false, 5),
        vec![
            vec![groups("b.parquet", 0, 1, 10)],
            vec![groups("b.parquet", 1, 3, 2)]
        ]
    );
    // One row group, or a file no larger than the size: the whole file.
    assert_eq!(
        plan(&[pq("c.parquet", 20, &[18])], false, 5),
        vec![vec![whole("c.parquet", 20)]]
    );
    assert_eq!(
        plan(&[pq("d.parquet", 5, &[2, 2])], false, 5),
        vec![vec![whole("d.parquet", 5)]]
    );
}

#[test]
fn standard_input_and_a_zero_size_are_refused() {
    let stdin = InputSpec {
        path: None,
        name: "<stdin>".to_owned(),
        format: InputFormat::Jsonl,
        compression: None,
        size: None,
        range: None,
    };
    let err = plan_partitions(std::slice::from_ref(&stdin), &[layout(0)], false, 10).unwrap_err();
    assert!(err.to_string().contains("standard input"), "{err}");
    let err = file_layouts(std::slice::from_ref(&stdin)).unwrap_err();
    assert!(err.to_string().contains("standard input"), "{err}");
    let file = spec_named("a.jsonl", InputFormat::Jsonl, Compression::None);
    let err = plan_partitions(std::slice::from_ref(&file), &[layout(5)], false, 0).unwrap_err();
    assert!(err.to_string().contains("partition_size"), "{err}");
    // A layout per input.
    assert!(plan_partitions(&[file], &[], false, 10).is_err());
}

/// Writes a Parquet file of one required string column `text`, one row group per `groups` entry.
fn write_parquet(path: &Path, groups: &[Vec<String>]) {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    let schema = Arc::new(
        parse_message_type("message schema { REQUIRED BYTE_ARRAY text (UTF8); }").unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_dictionary_enabled(false)
            .build(),
    );
    let mut writer =
        SerializedFileWriter::new(fs::File::create(path).unwrap(), schema, props).unwrap();
    for group in groups {
        let mut rg = writer.next_row_group().unwrap();
        while let Some(mut column) = rg.next_column().unwrap() {
            let values: Vec<ByteArray> =
                group.iter().map(|s| ByteArray::from(s.as_str())).collect();
            column
                .typed::<ByteArrayType>()
                .write_batch(&values, None, None)
                .unwrap();
            column.close().unwrap();
        }
        rg.close().unwrap();
    }
    writer.close().unwrap();
}

fn parquet_groups(groups: usize, rows: usize) -> Vec<Vec<String>> {
    (0..groups)
        .map(|g| {
            (0..rows)
                .map(|r| {
                    format!(
                        "group {g} row {r}: {}",
                        "Größe 東京 😀 words ".repeat(r % 7)
                    )
                })
                .collect()
        })
        .collect()
}

#[test]
fn a_real_parquet_file_is_cut_by_row_groups_and_its_pieces_read_all_rows() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("t.parquet");
    let groups = parquet_groups(7, 30);
    write_parquet(&path, &groups);
    let spec = file_spec(&path, InputFormat::Parquet, None);
    let layouts = file_layouts(std::slice::from_ref(&spec)).unwrap();
    let size = fs::metadata(&path).unwrap().len();
    assert_eq!(layouts[0].size, size);
    let row_groups = layouts[0]
        .row_groups
        .clone()
        .expect("row groups of Parquet");
    assert_eq!(row_groups.len(), 7);
    assert!(row_groups.iter().all(|&s| s > 0));

    let opts = ReadOptions::default();
    let (whole_rows, _) = read(&spec, &opts);
    let expected: Vec<Rec> = groups
        .iter()
        .flatten()
        .map(|s| Rec::Doc(s.clone()))
        .collect();
    assert_eq!(whole_rows, expected);

    let grouped: u64 = row_groups.iter().sum();
    for partition_size in [1, grouped / 5, grouped / 3, grouped / 2, size - 1] {
        let partitions =
            plan_partitions(std::slice::from_ref(&spec), &layouts, false, partition_size).unwrap();
        // Runs close once their groups' sizes reach the partition size.
        if partition_size <= grouped / 2 {
            assert!(partitions.len() > 1, "size {partition_size}");
        }
        let mut next_group = 0u64;
        let mut rows = Vec::new();
        for partition in &partitions {
            for input in partition.inputs(None).unwrap() {
                let Some(InputRange::RowGroups([start, end])) = input.range else {
                    panic!("a piece of Parquet not by row groups: {:?}", input.range);
                };
                assert_eq!(start, next_group);
                assert!(end > start);
                next_group = end;
                rows.extend(read(&input, &opts).0);
            }
        }
        assert_eq!(next_group, 7);
        assert_eq!(rows, expected, "size {partition_size}");
    }
}

// ---- packing --------------------------------------------------------------------------------

const WORDS: [&str; 12] = [
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "Größe", "東京", "😀",
];

/// A document of `n` words, deterministic in `seed`.
fn words(seed: u64, n: usize) -> String {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            WORDS[(x >> 33) as usize % WORDS.len()]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn doc_length(i: u64) -> usize {
    [0usize, 1, 5, 20, 60, 150][(i * 7 % 6) as usize]
}

/// A corpus of several kinds of input, and the inputs naming it.
struct Corpus {
    _dir: TempDir,
    inputs: Vec<InputSpec>,
}

fn corpus() -> Corpus {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    let mut inputs = Vec::new();
    let jsonl = |seed: u64, n: u64| {
        let mut body = String::new();
        for i in 0..n {
            if i % 17 == 5 {
                body.push('\n'); // a blank line
            }
            let text = words(seed * 1000 + i, doc_length(i));
            body.push_str(&serde_json::json!({ "text": text }).to_string());
            body.push_str(if i % 3 == 0 { "\r\n" } else { "\n" });
        }
        body.into_bytes()
    };
    let big = root.join("big.jsonl");
    fs::write(&big, jsonl(1, 400)).unwrap();
    inputs.push(file_spec(&big, InputFormat::Jsonl, None));
    for k in 0..3 {
        let small = root.join(format!("small{k}.jsonl"));
        fs::write(&small, jsonl(10 + k, 6)).unwrap();
        inputs.push(file_spec(&small, InputFormat::Jsonl, None));
    }
    let gz = root.join("packed.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&jsonl(3, 200)).unwrap();
    fs::write(&gz, enc.finish().unwrap()).unwrap();
    let mut gz_spec = file_spec(&gz, InputFormat::Jsonl, None);
    gz_spec.compression = Some(Compression::Gzip);
    inputs.push(gz_spec);
    let lines = root.join("lines.txt");
    let mut text = String::from("\u{feff}");
    for i in 0..150u64 {
        text.push_str(&words(5000 + i, doc_length(i + 1)));
        text.push('\n');
    }
    fs::write(&lines, text).unwrap();
    inputs.push(file_spec(&lines, InputFormat::Text, None));
    let pq = root.join("rows.parquet");
    write_parquet(&pq, &parquet_groups(6, 25));
    inputs.push(file_spec(&pq, InputFormat::Parquet, None));
    Corpus { _dir: dir, inputs }
}

fn config() -> PackConfig {
    let mut config = PackConfig::new(64, 16);
    config.samples_per_shard = 8;
    config.threads = 2;
    config.read.lines = true;
    config
}

fn partitioned_config(size: u64) -> PackConfig {
    let mut config = config();
    config.partition_size = Some(size);
    config
}

fn manifest_of(dir: &Path) -> Manifest {
    Manifest::from_json(&fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// The npy payload of `path` as little-endian integers of `width` bytes (after the header).
fn npy_ints(path: &Path) -> Vec<i64> {
    let bytes = fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let descr = npy.header().dtype().descr();
    match descr.trim_matches('\'') {
        "<u2" => npy
            .into_vec::<u16>()
            .unwrap()
            .into_iter()
            .map(i64::from)
            .collect(),
        "<u4" => npy
            .into_vec::<u32>()
            .unwrap()
            .into_iter()
            .map(i64::from)
            .collect(),
        "<i8" => npy.into_vec::<i64>().unwrap(),
        other => panic!("unexpected dtype {other}"),
    }
}

/// Every document's tokens, by doc_id, from the shards of the (unpartitioned) shard directory
/// `dir`, read with npyz: each position of each document must be a non-context token exactly once.
fn documents_of(dir: &Path) -> Vec<Vec<u32>> {
    let manifest = manifest_of(dir);
    let seq_len = manifest.options.seq_len as usize;
    let mut docs: BTreeMap<u64, BTreeMap<u64, u32>> = BTreeMap::new();
    for shard in &manifest.shards {
        let ShardEntry { files, .. } = shard;
        let tokens = npy_ints(&dir.join(&files.tokens.path));
        let rows = npy_ints(&dir.join(&files.segments.path));
        let index = npy_ints(&dir.join(&files.sample_index.path));
        for s in 0..index.len() - 1 {
            for r in index[s] as usize..index[s + 1] as usize {
                let row = &rows[r * 5..r * 5 + 5];
                let (start, len, context, doc_id, doc_start) =
                    (row[0], row[1], row[2], row[3], row[4]);
                if doc_id < 0 {
                    continue;
                }
                let doc = docs.entry(doc_id as u64).or_default();
                for i in context..len {
                    let token = tokens[s * seq_len + (start + i) as usize] as u32;
                    let at = (doc_start + i) as u64;
                    assert!(
                        doc.insert(at, token).is_none(),
                        "token {at} of document {doc_id} twice"
                    );
                }
            }
        }
    }
    assert_eq!(
        docs.keys().copied().collect::<Vec<_>>(),
        (0..docs.len() as u64).collect::<Vec<_>>(),
        "doc_ids of {} are not 0..n",
        dir.display()
    );
    docs.into_values()
        .map(|positions| {
            assert_eq!(
                positions.keys().copied().collect::<Vec<_>>(),
                (0..positions.len() as u64).collect::<Vec<_>>()
            );
            positions.into_values().collect()
        })
        .collect()
}

/// The documents of a partitioned output, partition after partition.
fn partitioned_documents(out: &Path) -> Vec<Vec<u32>> {
    let manifest = manifest_of(out);
    let partitions = manifest.partitions.expect("a partitioned output");
    partitions
        .iter()
        .flat_map(|p| documents_of(&out.join(&p.name)))
        .collect()
}

/// What the documents of `inputs` encode to, in order.
fn expected_documents(tok: &Tokenizer, inputs: &[InputSpec], opts: &ReadOptions) -> Vec<Vec<u32>> {
    inputs
        .iter()
        .flat_map(|spec| read(spec, opts).0)
        .map(|r| match r {
            Rec::Doc(text) => tok.encode(&text, true, true),
            Rec::Skipped => panic!("no bad records here"),
        })
        .collect()
}

fn pack_plain(tok: &Tokenizer, out: &Path, inputs: &[InputSpec]) -> Manifest {
    let mut session = PackSession::create(tok, out, config(), inputs.to_vec()).unwrap();
    session.run(&Counters::default(), no_tick).unwrap();
    session.finish().unwrap().manifest
}

/// Every file under `dir` (relative path, bytes), sorted.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for (rel, bytes) in tree(from) {
        let path = to.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
}

/// The entries of `dir` itself, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_partitioned_run_holds_the_documents_of_an_unpartitioned_one_and_verifies() {
    let tok = Tokenizer::mixtral_8x7b();
    let corpus = corpus();
    let root = TempDir::new().unwrap();
    let plain_dir = root.path().join("plain");
    let plain = pack_plain(&tok, &plain_dir, &corpus.inputs);
    let plain_docs = documents_of(&plain_dir);
    assert_eq!(
        plain_docs,
        expected_documents(&tok, &corpus.inputs, &config().read)
    );
    assert!(
        plain.totals.documents_split > 0,
        "the corpus should have long documents"
    );

    for size in [3000u64, 8192, 50_000] {
        let out = root.path().join(format!("part-{size}"));
        let config = partitioned_config(size);
        let report = pack_partitioned(
            &tok,
            &out,
            &config,
            &corpus.inputs,
            &Counters::default(),
            no_tick,
        )
        .unwrap();
        let m = manifest_of(&out);
        assert_eq!(report.manifest, m);
        let t = &m.totals;
        let p = &plain.totals;
        assert_eq!(
            (
                t.documents,
                t.empty_documents,
                t.document_tokens,
                t.documents_split,
                t.context_tokens,
                t.target_tokens
            ),
            (
                p.documents,
                p.empty_documents,
                p.document_tokens,
                p.documents_split,
                p.context_tokens,
                p.target_tokens
            ),
            "partition size {size}"
        );
        assert_eq!(
            t.samples * 64,
            t.document_tokens + t.context_tokens + t.padding_tokens
        );
        assert_eq!(m.options.partition_size, Some(size));
        let partitions = m.partitions.clone().unwrap();
        assert!(
            partitions.len() > 1,
            "size {size}: {} partitions",
            partitions.len()
        );
        assert_eq!(
            listing(&out).len(),
            partitions.len() + 1,
            "{:?}",
            listing(&out)
        );

        // Every document once, in input order, with its tokens.
        assert_eq!(
            partitioned_documents(&out),
            plain_docs,
            "partition size {size}"
        );

        // Per file: the pieces' documents add up to the file's; the byte ranges' sizes to its size.
        for input in &plain.inputs {
            let pieces: Vec<_> = m.inputs.iter().filter(|i| i.path == input.path).collect();
            assert!(!pieces.is_empty(), "{} not in the manifest", input.path);
            let docs: u64 = pieces.iter().map(|i| i.documents).sum();
            assert_eq!(docs, input.documents, "{}", input.path);
            match pieces[0].range {
                None => {
                    assert_eq!(pieces.len(), 1);
                    assert_eq!(
                        (pieces[0].size, &pieces[0].sha256),
                        (input.size, &input.sha256)
                    );
                }
                Some(InputRange::Bytes(_)) => {
                    let sizes: u64 = pieces.iter().map(|i| i.size).sum();
                    assert_eq!(sizes, input.size, "{}", input.path);
                }
                Some(InputRange::RowGroups(_)) => assert!(input.path.ends_with(".parquet")),
            }
        }
        // The compressed file is never cut.
        assert_eq!(
            m.inputs.iter().filter(|i| i.path.ends_with(".gz")).count(),
            1
        );

        let verified = verify_dir(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verified.samples, t.samples);
        assert_eq!(verified.shards, m.shards.len() as u64);
        assert_eq!(verified.documents, t.documents - t.empty_documents);
        for part in &partitions {
            verify_dir(out.join(&part.name)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn a_partitioned_run_is_deterministic() {
    let tok = Tokenizer::mixtral_8x7b();
    let corpus = corpus();
    let root = TempDir::new().unwrap();
    let mut trees = Vec::new();
    for (k, threads) in [(0, 1), (1, 3)] {
        let out = root.path().join(format!("out{k}"));
        let mut config = partitioned_config(4000);
        config.threads = threads;
        pack_partitioned(
            &tok,
            &out,
            &config,
            &corpus.inputs,
            &Counters::default(),
            no_tick,
        )
        .unwrap();
        trees.push(tree(&out));
    }
    assert_eq!(trees[0], trees[1]);
}

#[test]
fn verify_finds_damage_to_a_partitioned_output() {
    let tok = Tokenizer::mixtral_8x7b();
    let corpus = corpus();
    let root = TempDir::new().unwrap();
    let good = root.path().join("good");
    pack_partitioned(
        &tok,
        &good,
        &partitioned_config(8192),
        &corpus.inputs,
        &Counters::default(),
        no_tick,
    )
    .unwrap();
    verify_dir(&good).unwrap();
    let fresh = |name: &str| {
        let dir = root.path().join(name);
        copy_tree(&good, &dir);
        verify_dir(&dir).unwrap();
        dir
    };

    // The top manifest's totals edited.
    let dir = fresh("totals");
    let path = dir.join("manifest.json");
    let mut value: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let documents = value["totals"]["documents"].as_u64().unwrap();
    value["totals"]["documents"] = (documents + 1).into();
    fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    let err = verify_dir(&dir).unwrap_err();
    assert!(
        err.violations
            .iter()
            .any(|v| v.kind == ViolationKind::Manifest && v.message.contains("totals")),
        "{err}"
    );

    // A partition's shard count in the top manifest edited.
    let dir = fresh("entry");
    let path = dir.join("manifest.json");
    let mut value: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let samples = value["partitions"][0]["samples"].as_u64().unwrap();
    value["partitions"][0]["samples"] = (samples + 1).into();
    fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    let err = verify_dir(&dir).unwrap_err();
    assert!(
        err.violations
            .iter()
            .any(|v| v.kind == ViolationKind::Manifest),
        "{err}"
    );

    // A partition directory deleted.
    let dir = fresh("deleted");
    fs::remove_dir_all(dir.join("part-00001")).unwrap();
    let err = verify_dir(&dir).unwrap_err();
    assert!(
        err.violations
            .iter()
            .any(|v| v.file.starts_with("part-00001/")),
        "{err}"
    );

    // One byte of a partition's shard changed.
    let dir = fresh("byte");
    let shard = dir.join("part-00002/shard-00000.tokens.npy");
    let mut bytes = fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&shard, bytes).unwrap();
    let err = verify_dir(&dir).unwrap_err();
    assert!(
        err.violations
            .iter()
            .any(|v| v.kind == ViolationKind::Checksum
                && v.file == "part-00002/shard-00000.tokens.npy"),
        "{err}"
    );

    // A partition's manifest replaced by another partition's (each verifies alone).
    let dir = fresh("swapped");
    let other = fs::read(dir.join("part-00001/manifest.json")).unwrap();
    fs::write(dir.join("part-00000/manifest.json"), other).unwrap();
    assert!(verify_dir(&dir).is_err());

    // Two partitions' manifests edited to claim u64::MAX samples each: their sum is reported,
    // by verify and by finishing the run again, never wrapped around (nor a panic).
    let dir = fresh("overflow");
    for part in ["part-00000", "part-00001"] {
        let path = dir.join(part).join("manifest.json");
        let mut value: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        value["totals"]["samples"] = u64::MAX.into();
        fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    }
    let err = verify_dir(&dir).unwrap_err();
    assert!(
        err.violations
            .iter()
            .any(|v| v.kind == ViolationKind::Manifest
                && v.message.contains("totals.samples add up past")),
        "{err}"
    );
    let layouts = file_layouts(&corpus.inputs).unwrap();
    let partitions = plan_partitions(&corpus.inputs, &layouts, true, 8192).unwrap();
    let before = fs::read(dir.join("manifest.json")).unwrap();
    let err = finish_partitions(&tok, &dir, &partitioned_config(8192), &partitions).unwrap_err();
    assert!(
        err.to_string().contains("totals.samples add up past"),
        "{err}"
    );
    assert_eq!(fs::read(dir.join("manifest.json")).unwrap(), before);
}

#[test]
fn two_attempts_at_one_partition_leave_one_complete_copy() {
    let tok = Tokenizer::mixtral_8x7b();
    let corpus = corpus();
    let root = TempDir::new().unwrap();
    let config = partitioned_config(8192);
    let reference = root.path().join("reference");
    pack_partitioned(
        &tok,
        &reference,
        &config,
        &corpus.inputs,
        &Counters::default(),
        no_tick,
    )
    .unwrap();

    let out = root.path().join("out");
    let layouts = file_layouts(&corpus.inputs).unwrap();
    let partitions: Vec<Partition> = plan_partitions(&corpus.inputs, &layouts, true, 8192).unwrap();
    assert!(partitions.len() > 2);
    assert!(matches!(
        prepare_output(&tok, &out, &config, &partitions).unwrap(),
        Prepared::Ready
    ));

    // Attempt "b" is overtaken: while it packs, attempt "a" packs the partition to the end.
    let raced = Cell::new(false);
    let b = pack_partition(
        &tok,
        &out,
        &config,
        &partitions[0],
        None,
        Some("b"),
        &Counters::default(),
        || {
            if !raced.replace(true) {
                let a = pack_partition(
                    &tok,
                    &out,
                    &config,
                    &partitions[0],
                    None,
                    Some("a"),
                    &Counters::default(),
                    no_tick,
                )
                .unwrap();
                assert!(!a.already_complete && !a.lost_race);
                assert!(out.join("part-00000/manifest.json").is_file());
            }
            Ok(())
        },
    )
    .unwrap();
    assert!(raced.get(), "tick was never called");
    assert!(b.lost_race && !b.already_complete, "{b:?}");
    assert_eq!(listing(&out), vec!["part-00000".to_owned()]);
    let part0 = tree(&out.join("part-00000"));
    assert_eq!(part0, tree(&reference.join("part-00000")));
    assert_eq!(b.manifest, manifest_of(&out.join("part-00000")));

    // A later attempt finds it complete and leaves it as it is.
    let c = pack_partition(
        &tok,
        &out,
        &config,
        &partitions[0],
        None,
        Some("c"),
        &Counters::default(),
        no_tick,
    )
    .unwrap();
    assert!(c.already_complete && !c.lost_race);
    assert_eq!(listing(&out), vec!["part-00000".to_owned()]);
    assert_eq!(tree(&out.join("part-00000")), part0);

    // A tag must be letters, digits and hyphens.
    assert!(pack_partition(
        &tok,
        &out,
        &config,
        &partitions[1],
        None,
        Some("../x"),
        &Counters::default(),
        no_tick,
    )
    .is_err());

    // The rest, with a failed attempt's leftovers that finishing removes.
    for partition in &partitions[1..] {
        let outcome = pack_partition(
            &tok,
            &out,
            &config,
            partition,
            None,
            Some("z"),
            &Counters::default(),
            no_tick,
        )
        .unwrap();
        assert!(!outcome.already_complete && !outcome.lost_race);
    }
    let leftover = out.join(".part-00001.dead-1.tmp");
    fs::create_dir(&leftover).unwrap();
    fs::write(leftover.join("shard-00000.tokens.npy"), b"half").unwrap();
    finish_partitions(&tok, &out, &config, &partitions).unwrap();
    assert!(!leftover.exists());
    assert_eq!(tree(&out), tree(&reference));
    verify_dir(&out).unwrap();
}

#[test]
fn finishing_refuses_an_incomplete_run() {
    let tok = Tokenizer::mixtral_8x7b();
    let corpus = corpus();
    let root = TempDir::new().unwrap();
    let config = partitioned_config(8192);
    let out = root.path().join("out");
    let layouts = file_layouts(&corpus.inputs).unwrap();
    let partitions = plan_partitions(&corpus.inputs, &layouts, true, 8192).unwrap();
    prepare_output(&tok, &out, &config, &partitions).unwrap();
    for partition in &partitions[..partitions.len() - 1] {
        pack_partition(
            &tok,
            &out,
            &config,
            partition,
            None,
            None,
            &Counters::default(),
            no_tick,
        )
        .unwrap();
    }
    assert!(finish_partitions(&tok, &out, &config, &partitions).is_err());
    assert!(!out.join("manifest.json").exists());
    // Another partition size is other options: the partitions packed are not taken as its own.
    let other = partitioned_config(8191);
    assert!(finish_partitions(&tok, &out, &other, &partitions[..1]).is_err());
}

/// JSONL of documents of `n_words` words until the file holds at least `bytes` bytes.
fn jsonl_of_size(seed: u64, bytes: usize, n_words: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let mut i = 0u64;
    while body.len() < bytes {
        let text = words(seed * 100_000 + i, n_words);
        body.extend_from_slice(serde_json::json!({ "text": text }).to_string().as_bytes());
        body.push(b'\n');
        i += 1;
    }
    body
}

/// A run whose last partition is [a part of `first` (a byte range or row groups), b.jsonl] stops
/// while it packs b.jsonl (invalid UTF-8 on b's last line), its checkpoint listing the part of
/// `first` as read to its end; b is then mended (same size and mtime) and the run resumed: it
/// must continue, and end with the bytes of an uninterrupted run.
fn check_resume_after_a_part_of_a_file(dir: &Path, first: InputSpec) {
    let tok = Tokenizer::mixtral_8x7b();
    let b = dir.join("b.jsonl");
    let good = [
        jsonl_of_size(2, 2_500, 12),
        b"{\"text\": \"the end x\"}\n".to_vec(),
    ]
    .concat();
    let mut bad = good.clone();
    let x = bad.len() - 4;
    assert_eq!(bad[x], b'x');
    bad[x] = 0xff;
    fs::write(&b, &bad).unwrap();
    let mtime = fs::metadata(&b).unwrap().modified().unwrap();
    let inputs = vec![first, file_spec(&b, InputFormat::Jsonl, None)];
    let layouts = file_layouts(&inputs).unwrap();
    // A partition size that makes the last partition [a part of the first file, b.jsonl].
    let size = (1_000..40_000)
        .step_by(100)
        .find(|&size| {
            let partitions = plan_partitions(&inputs, &layouts, false, size).unwrap();
            let last = partitions.last().unwrap();
            partitions.len() > 1
                && last.pieces.len() == 2
                && last.pieces[0].range.is_some()
                && last.pieces[0].size >= 300
        })
        .expect("a partition size with a part of the first file before b.jsonl");
    let mut config = partitioned_config(size);
    config.samples_per_shard = 2;
    config.pack.pack_buffer = 8;
    config.threads = 1;
    let partitions = plan_partitions(&inputs, &layouts, false, size).unwrap();
    let last = partitions.last().unwrap();

    let out = dir.join("out");
    let err = pack_partitioned(&tok, &out, &config, &inputs, &Counters::default(), no_tick)
        .expect_err("b.jsonl holds invalid UTF-8");
    assert!(err.to_string().contains("UTF-8"), "{err}");
    let tmp = out.join(format!(".{}.tmp", last.name));
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&fs::read(tmp.join("resume.json")).unwrap()).unwrap();
    assert_eq!(checkpoint["position"]["input"], 1, "{checkpoint:#}");
    assert!(checkpoint["done_inputs"][0]["range"].is_object());

    fs::write(&b, &good).unwrap();
    fs::File::options()
        .write(true)
        .open(&b)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let mut resume = config.clone();
    resume.resume = true;
    let report = pack_partitioned(&tok, &out, &resume, &inputs, &Counters::default(), no_tick)
        .unwrap_or_else(|e| panic!("resuming the partition: {e}"));
    assert!(report.resumed.is_some());

    let reference = dir.join("reference");
    pack_partitioned(
        &tok,
        &reference,
        &config,
        &inputs,
        &Counters::default(),
        no_tick,
    )
    .unwrap();
    assert_eq!(tree(&out), tree(&reference));
    verify_dir(&out).unwrap();
}

#[test]
fn a_partition_resumes_after_a_byte_range_piece_it_had_read_to_its_end() {
    let dir = TempDir::new().unwrap();
    let a = dir.path().join("a.jsonl");
    fs::write(&a, jsonl_of_size(1, 12_000, 12)).unwrap();
    check_resume_after_a_part_of_a_file(dir.path(), file_spec(&a, InputFormat::Jsonl, None));
}

#[test]
fn a_partition_resumes_after_a_row_group_piece_it_had_read_to_its_end() {
    let dir = TempDir::new().unwrap();
    let a = dir.path().join("a.parquet");
    write_parquet(&a, &parquet_groups(5, 20));
    check_resume_after_a_part_of_a_file(dir.path(), file_spec(&a, InputFormat::Parquet, None));
}
