//! `bpetok::data::input`: every rule of `docs/cli.md` ("Inputs") and every error kind with its
//! message, on small files written into temporary directories (Parquet files written by
//! pyarrow are committed under `tests/fixtures/`). Stdin is not tested here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bpetok::data::input::{
    read_documents, read_id_lists, resolve_inputs, Compression, FormatChoice, InputError,
    InputFormat, InputSpec, ReadOptions, Utf8Errors,
};
use sha2::{Digest, Sha256};

const STRICT: Utf8Errors = Utf8Errors::Strict;
const REPLACE: Utf8Errors = Utf8Errors::Replace;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The one input `path` names (its format and compression from its name).
fn spec(path: &Path) -> InputSpec {
    let mut specs = resolve_inputs(&[path.to_path_buf()], FormatChoice::Auto).unwrap();
    assert_eq!(specs.len(), 1);
    specs.pop().unwrap()
}

fn read(input: &InputSpec, opts: &ReadOptions) -> Result<Vec<String>, InputError> {
    let mut docs = Vec::new();
    let progress = AtomicU64::new(0);
    let summary = read_documents(input, opts, &progress, |t| {
        docs.push(t);
        Ok::<(), InputError>(())
    })?;
    assert_eq!(progress.load(Ordering::Relaxed), summary.size);
    assert_eq!(summary.documents, docs.len() as u64);
    if let Some(path) = &input.path {
        let raw = std::fs::read(path).unwrap();
        assert_eq!(summary.size, raw.len() as u64);
        assert_eq!(summary.sha256, format!("{:x}", Sha256::digest(&raw)));
    }
    Ok(docs)
}

fn opts(errors: Utf8Errors) -> ReadOptions {
    ReadOptions {
        errors,
        ..ReadOptions::default()
    }
}

/// Writes `body` to `name` in a new directory and reads it.
fn read_body(name: &str, body: &[u8], opts: &ReadOptions) -> Result<Vec<String>, InputError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, body).unwrap();
    read(&spec(&path), opts)
}

/// The error reading `body` as `f.jsonl`, as (kind, message without the directory).
fn jsonl_error(body: &[u8], errors: Utf8Errors) -> (&'static str, String) {
    let err = read_body("f.jsonl", body, &opts(errors)).unwrap_err();
    let message = err.to_string();
    let message = message[message.rfind("f.jsonl").unwrap()..].to_owned();
    assert!(
        !message.contains("--"),
        "a flag in a core message: {message}"
    );
    (err.kind(), message)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"{\"text\": \"x\"}\n").unwrap();
}

fn names(specs: &[InputSpec], root: &Path) -> Vec<String> {
    let root = format!("{}/", root.display());
    specs
        .iter()
        .map(|s| s.name.strip_prefix(&root).unwrap().to_owned())
        .collect()
}

// ---- resolve_inputs ----------------------------------------------------------------------------

#[test]
fn directories_are_walked_in_code_point_order_of_path_components_skipping_hidden_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for name in [
        "b.jsonl",
        "a-b/x.txt",
        "a/x.txt",
        "A.txt",
        "a/deeper/z.PARQUET",
        "c.JSONL.GZ",
        "d.json.zst",
        "notes.md",
        ".hidden.jsonl",
        ".git/x.jsonl",
        "a/.h/y.txt",
    ] {
        touch(&root.join(name));
    }
    let specs = resolve_inputs(&[root.to_path_buf()], FormatChoice::Auto).unwrap();
    assert_eq!(
        names(&specs, root),
        [
            "A.txt",
            "a/deeper/z.PARQUET",
            "a/x.txt",
            "a-b/x.txt",
            "b.jsonl",
            "c.JSONL.GZ",
            "d.json.zst"
        ]
    );
    let kinds: Vec<_> = specs.iter().map(|s| (s.format, s.compression)).collect();
    assert_eq!(kinds[0], (InputFormat::Text, Some(Compression::None)));
    assert_eq!(kinds[1], (InputFormat::Parquet, Some(Compression::None)));
    assert_eq!(kinds[5], (InputFormat::Jsonl, Some(Compression::Gzip)));
    assert_eq!(kinds[6], (InputFormat::Jsonl, Some(Compression::Zstd)));
    assert!(specs.iter().all(|s| s.size == Some(14)));
    // Inputs stay in the order given; a file named directly is taken as it is.
    let given = [root.join("b.jsonl"), root.join("a")];
    let specs = resolve_inputs(&given, FormatChoice::Auto).unwrap();
    assert_eq!(
        names(&specs, root),
        ["b.jsonl", "a/deeper/z.PARQUET", "a/x.txt"]
    );
}

#[test]
fn a_forced_format_takes_every_regular_file_of_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for name in ["notes.md", "b.log.gz", "c.txt", ".hidden.md", "sub/d"] {
        touch(&root.join(name));
    }
    let auto = resolve_inputs(&[root.to_path_buf()], FormatChoice::Auto).unwrap();
    assert_eq!(names(&auto, root), ["c.txt"]);
    let forced = resolve_inputs(&[root.to_path_buf()], FormatChoice::Text).unwrap();
    assert_eq!(
        names(&forced, root),
        ["b.log.gz", "c.txt", "notes.md", "sub/d"]
    );
    assert!(forced.iter().all(|s| s.format == InputFormat::Text));
    assert_eq!(forced[0].compression, Some(Compression::Gzip));
    assert_eq!(forced[2].compression, Some(Compression::None));
    // A file named directly with a forced format.
    let one = resolve_inputs(&[root.join("notes.md")], FormatChoice::Jsonl).unwrap();
    assert_eq!(one[0].format, InputFormat::Jsonl);
}

#[test]
fn stdin_is_jsonl_unless_forced_and_may_be_given_once() {
    let dash = PathBuf::from("-");
    let specs = resolve_inputs(std::slice::from_ref(&dash), FormatChoice::Auto).unwrap();
    assert_eq!(specs[0].path, None);
    assert_eq!(specs[0].name, "<stdin>");
    assert_eq!(specs[0].format, InputFormat::Jsonl);
    assert_eq!((specs[0].compression, specs[0].size), (None, None));
    let specs = resolve_inputs(std::slice::from_ref(&dash), FormatChoice::Text).unwrap();
    assert_eq!(specs[0].format, InputFormat::Text);
    let err = resolve_inputs(&[dash.clone(), dash], FormatChoice::Auto).unwrap_err();
    assert_eq!(err.kind(), "stdin_twice");
    assert_eq!(err.to_string(), "-: stdin given more than once");
}

#[test]
fn resolve_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let missing = root.join("missing.jsonl");
    let err = resolve_inputs(std::slice::from_ref(&missing), FormatChoice::Auto).unwrap_err();
    assert_eq!(err.kind(), "not_found");
    assert_eq!(
        err.to_string(),
        format!("{}: no such file or directory", missing.display())
    );

    let empty = root.join("empty");
    touch(&empty.join("notes.md"));
    let err = resolve_inputs(std::slice::from_ref(&empty), FormatChoice::Auto).unwrap_err();
    assert_eq!(err.kind(), "no_input_files");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: no input files in this directory (.jsonl, .json, .txt or .parquet, optionally \
             .gz or .zst)",
            empty.display()
        )
    );

    let md = empty.join("notes.md");
    let err = resolve_inputs(std::slice::from_ref(&md), FormatChoice::Auto).unwrap_err();
    assert_eq!(err.kind(), "unknown_format");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: cannot tell the kind of input from its name: name it .jsonl, .json, .txt or \
             .parquet (optionally .gz or .zst)",
            md.display()
        )
    );
}

#[cfg(unix)]
#[test]
fn file_names_that_are_not_utf8_are_an_error_naming_the_file() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9.jsonl"));
    touch(&bad);
    for given in [dir.path().to_path_buf(), bad] {
        let err = resolve_inputs(&[given], FormatChoice::Auto).unwrap_err();
        assert_eq!(err.kind(), "file_name_not_utf8");
        let message = err.to_string();
        assert!(
            message.ends_with("/caf\u{FFFD}.jsonl: the file name is not UTF-8"),
            "{message}"
        );
    }
}

// ---- JSONL -------------------------------------------------------------------------------------

#[test]
fn jsonl_reads_what_python_json_reads() {
    // BOM, CRLF, blank lines of Python whitespace (U+001C, U+0085, U+2028 too), NaN, Infinity, a
    // huge integer, a repeated key (the last wins), a key with a lone surrogate escape.
    let body = "\u{feff}{\"text\": \"a\"}\r\n\r\n \t\n\u{1c}\u{85}\u{2028}\n\
                {\"n\": NaN, \"i\": -Infinity, \"big\": 1e999, \"int\": 123456789012345678901234567890, \"text\": \"b\"}\n\
                {\"text\": 1, \"text\": \"c\"}\n{\"\\ud800\": 1, \"text\": \"d\"}\n\
                {\"text\": \"\\ud83d\\ude00 \\u00e9\\n\\\"\"}";
    let docs = read_body("f.jsonl", body.as_bytes(), &opts(STRICT)).unwrap();
    assert_eq!(docs, ["a", "b", "c", "d", "😀 é\n\""]);
    // Deep nesting elsewhere on the line: fine up to 1000 levels.
    let deep = format!(
        "{{\"x\": {}{}, \"text\": \"deep\"}}",
        "[".repeat(999),
        "]".repeat(999)
    );
    assert_eq!(
        read_body("f.jsonl", deep.as_bytes(), &opts(STRICT)).unwrap(),
        ["deep"]
    );
    // .json is JSONL too; another field by name.
    let field = ReadOptions {
        field: "body".to_owned(),
        ..ReadOptions::default()
    };
    assert_eq!(
        read_body("f.json", b"{\"body\": \"x\"}", &field).unwrap(),
        ["x"]
    );
}

#[test]
fn jsonl_errors_name_file_line_and_say_what_python_says() {
    for (body, kind, message) in [
        (&b"{\"text\": \"a\"}\n[1]\n"[..], "not_an_object", "f.jsonl:2: expected a JSON object, got an array"),
        (b"\"s\"", "not_an_object", "f.jsonl:1: expected a JSON object, got a string"),
        (b"3", "not_an_object", "f.jsonl:1: expected a JSON object, got a number"),
        (b"true", "not_an_object", "f.jsonl:1: expected a JSON object, got a boolean"),
        (b"null", "not_an_object", "f.jsonl:1: expected a JSON object, got null"),
        (b"{\"a\": 1, \"b\": 2, \"a\": 3}", "missing_field", "f.jsonl:1: record has no field 'text' (its fields: 'a', 'b')"),
        (b"{}", "missing_field", "f.jsonl:1: record has no field 'text' (its fields: none)"),
        (b"{\"it's\": 1, \"\\ud800\": 2, \"t\\u0001\": 3}", "missing_field", "f.jsonl:1: record has no field 'text' (its fields: \"it's\", '\\ud800', 't\\x01')"),
        (b"{\"text\": 5}", "not_a_string", "f.jsonl:1: field 'text' is a number, not a string"),
        (b"{\"text\": null}", "not_a_string", "f.jsonl:1: field 'text' is null, not a string"),
        (b"{\"text\": [\"a\"]}", "not_a_string", "f.jsonl:1: field 'text' is an array, not a string"),
        (b"{\"text\": {}}", "not_a_string", "f.jsonl:1: field 'text' is an object, not a string"),
        (b"{\"text\": false}", "not_a_string", "f.jsonl:1: field 'text' is a boolean, not a string"),
        (b"{oops", "invalid_json", "f.jsonl:1: invalid JSON: Expecting property name enclosed in double quotes (column 2)"),
        (b"{\"text\": }", "invalid_json", "f.jsonl:1: invalid JSON: Expecting value (column 10)"),
        (b"{\"text\": \"a\" \"b\"}", "invalid_json", "f.jsonl:1: invalid JSON: Expecting ',' delimiter (column 14)"),
        (b"{\"text\" \"a\"}", "invalid_json", "f.jsonl:1: invalid JSON: Expecting ':' delimiter (column 9)"),
        (b"{\"text\": \"a\"} {}", "invalid_json", "f.jsonl:1: invalid JSON: Extra data (column 15)"),
        (b"{\"text\": \"a\tb\"}", "invalid_json", "f.jsonl:1: invalid JSON: Invalid control character at (column 12)"),
        (b"{\"text\": \"a\\qb\"}", "invalid_json", "f.jsonl:1: invalid JSON: Invalid \\escape (column 12)"),
        (b"{\"text\": \"\\u12\"}", "invalid_json", "f.jsonl:1: invalid JSON: Invalid \\uXXXX escape (column 12)"),
        (b"{\"text\": \"abc", "invalid_json", "f.jsonl:1: invalid JSON: Unterminated string starting at (column 10)"),
        (b"{\"text\": \"\xc3\xa9\xc3\xa9\" x}", "invalid_json", "f.jsonl:1: invalid JSON: Expecting ',' delimiter (column 15)"),
        (b"\n\xef\xbb\xbf{}", "invalid_json", "f.jsonl:2: invalid JSON: Unexpected UTF-8 BOM (decode using utf-8-sig) (column 1)"),
        (b"{\"text\": \"a\",\n", "invalid_json", "f.jsonl:1: invalid JSON: Expecting property name enclosed in double quotes (column 1)"),
        (b"{\"text\": \"a\\ud800b\\udc00\"}", "lone_surrogate", "f.jsonl:1: lone surrogate U+D800 in the text (a JSON \\u escape that is half of a pair)"),
        (b"{\"text\": \"ok\"}\n{\"text\": \"a\xe2\x82b\xff\"}\n", "invalid_utf8", "f.jsonl:2: invalid UTF-8 (byte 0xe2 at column 12)"),
    ] {
        assert_eq!(jsonl_error(body, STRICT), (kind, message.to_owned()), "{body:?}");
    }
    // (Deep nesting that the fast path reads, in another field of a line with a string field,
    // is read whatever the depth: serde_json skips values without recursion.)
    let deep = format!(
        "{{\"x\": {}{}, \"text\": NaN}}",
        "[".repeat(1000),
        "]".repeat(1000)
    );
    assert_eq!(
        jsonl_error(deep.as_bytes(), STRICT),
        (
            "too_deep",
            "f.jsonl:1: cannot read this JSON: it is nested too deeply".to_owned()
        )
    );
}

#[test]
fn replace_reads_invalid_utf8_and_lone_surrogates_as_u_fffd() {
    let body = b"{\"text\": \"a\\ud800b\\udc00\"}\n{\"text\": \"a\xe2\x82b\xff\"}\n{\"text\": \"\\udbff\\ud83d\\ude00\"}";
    let docs = read_body("f.jsonl", body, &opts(REPLACE)).unwrap();
    assert_eq!(
        docs,
        ["a\u{FFFD}b\u{FFFD}", "a\u{FFFD}b\u{FFFD}", "\u{FFFD}😀"]
    );
    // Invalid UTF-8 in a key is read as U+FFFD there too.
    let docs = read_body(
        "f.jsonl",
        b"{\"k\xff\": 1, \"text\": \"x\"}",
        &opts(REPLACE),
    )
    .unwrap();
    assert_eq!(docs, ["x"]);
}

// ---- text --------------------------------------------------------------------------------------

#[test]
fn text_whole_file_is_one_document_byte_for_byte() {
    let body = b"\xef\xbb\xbfone\r\n\ntwo\nthree\n";
    assert_eq!(
        read_body("f.txt", body, &opts(STRICT)).unwrap(),
        ["one\r\n\ntwo\nthree\n"]
    );
    // An empty file, or a BOM alone, is no document.
    assert!(read_body("f.txt", b"", &opts(STRICT)).unwrap().is_empty());
    assert!(read_body("f.txt", b"\xef\xbb\xbf", &opts(STRICT))
        .unwrap()
        .is_empty());
    assert!(read_body("f.txt.gz", &gzip(b""), &opts(STRICT))
        .unwrap()
        .is_empty());
    // Only the first BOM goes; a whitespace-only file is a document.
    let two = b"\xef\xbb\xbf\xef\xbb\xbfx";
    assert_eq!(
        read_body("f.txt", two, &opts(STRICT)).unwrap(),
        ["\u{feff}x"]
    );
    assert_eq!(read_body("f.txt", b"\n", &opts(STRICT)).unwrap(), ["\n"]);
    // Invalid UTF-8: the line and column of the byte, or U+FFFD.
    let bad = b"ok\nok\nab\xffc\n";
    let err = read_body("f.txt", bad, &opts(STRICT)).unwrap_err();
    assert_eq!(err.kind(), "invalid_utf8");
    assert_eq!((err.line, err.column), (Some(3), Some(3)));
    assert!(err
        .to_string()
        .ends_with("f.txt:3: invalid UTF-8 (byte 0xff at column 3)"));
    assert_eq!(
        read_body("f.txt", bad, &opts(REPLACE)).unwrap(),
        ["ok\nok\nab\u{FFFD}c\n"]
    );
}

#[test]
fn text_lines_are_documents_without_their_endings_and_empty_lines_are_skipped() {
    let lines = ReadOptions {
        lines: true,
        ..ReadOptions::default()
    };
    let body = b"\xef\xbb\xbfone\r\n\n\r\ntwo\rstill two\nthree";
    let docs = read_body("f.txt", body, &lines).unwrap();
    assert_eq!(docs, ["one", "two\rstill two", "three"]);
    // Empty lines still count for line numbers.
    let err = read_body("f.txt", b"a\n\n\nb\xc3(\n", &lines).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("f.txt:4: invalid UTF-8 (byte 0xc3 at column 2)"),
        "{err}"
    );
    let replace = ReadOptions {
        errors: REPLACE,
        ..lines
    };
    assert_eq!(
        read_body("f.txt", b"a\n\n\nb\xc3(\n", &replace).unwrap(),
        ["a", "b\u{FFFD}("]
    );
}

// ---- compression -------------------------------------------------------------------------------

#[test]
fn gzip_members_and_zstd_frames_are_read_one_after_another() {
    let (a, b) = (b"{\"text\": \"a\"}\n{\"text\": \"b", b"c\"}\n");
    let mut gz = gzip(a);
    gz.extend([0u8; 7]); // zero padding between members, as Python's gzip skips it
    gz.extend(gzip(b));
    gz.extend([0u8; 3]);
    assert_eq!(
        read_body("f.jsonl.gz", &gz, &opts(STRICT)).unwrap(),
        ["a", "bc"]
    );
    let mut zst = zstd::encode_all(&a[..], 1).unwrap();
    zst.extend(zstd::encode_all(&b[..], 1).unwrap());
    assert_eq!(
        read_body("f.jsonl.zst", &zst, &opts(STRICT)).unwrap(),
        ["a", "bc"]
    );
    assert!(read_body("f.jsonl.zst", b"", &opts(STRICT))
        .unwrap()
        .is_empty());
    // Decompression errors: a truncated zstd frame, gzip that is not gzip.
    let err = read_body("f.jsonl.zst", &zst[..zst.len() - 3], &opts(STRICT)).unwrap_err();
    assert_eq!(err.kind(), "decompress");
    assert!(err.to_string().contains(": cannot read (zstd): "), "{err}");
    let err = read_body("f.jsonl.gz", b"not gzip at all", &opts(STRICT)).unwrap_err();
    assert_eq!(err.kind(), "decompress");
    assert!(
        err.to_string()
            .contains("f.jsonl.gz:1: cannot read (gzip): "),
        "{err}"
    );
}

// ---- Parquet -----------------------------------------------------------------------------------

#[test]
fn parquet_gives_one_document_per_row_in_every_codec() {
    let want = ["first", "é 日本 😀", "", "line\nbreak"];
    for codec in ["snappy", "zstd", "gzip", "lz4", "brotli", "none"] {
        let path = fixture(&format!("texts-{codec}.parquet"));
        assert_eq!(read(&spec(&path), &opts(STRICT)).unwrap(), want, "{codec}");
    }
    // large_string (pyarrow's 64-bit offsets) over two row groups.
    assert_eq!(
        read(&spec(&fixture("large_string.parquet")), &opts(STRICT)).unwrap(),
        want
    );
    // Compressed Parquet is decompressed to a temporary file; size and hash are of the raw bytes.
    let dir = tempfile::tempdir().unwrap();
    let raw = std::fs::read(fixture("texts-snappy.parquet")).unwrap();
    for (name, bytes) in [
        ("t.parquet.gz", gzip(&raw)),
        ("t.parquet.zst", zstd::encode_all(&raw[..], 3).unwrap()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&spec(&path), &opts(STRICT)).unwrap(), want, "{name}");
    }
}

#[test]
fn parquet_errors() {
    let field = |name: &str| ReadOptions {
        field: name.to_owned(),
        ..ReadOptions::default()
    };
    let check = |file: &str, opts: &ReadOptions, kind: &str, message: &str| {
        let err = read(&spec(&fixture(file)), opts).unwrap_err();
        assert_eq!(err.kind(), kind);
        let text = err.to_string();
        assert!(text.ends_with(&format!("{file}{message}")), "{text}");
    };
    check(
        "texts-snappy.parquet",
        &field("body"),
        "missing_column",
        ": no column 'body' (its columns: 'id', 'text')",
    );
    check(
        "ints.parquet",
        &opts(STRICT),
        "not_a_string_column",
        ": column 'text' is int64, not a string column",
    );
    check(
        "nulls.parquet",
        &opts(STRICT),
        "null_value",
        ":row 2: column 'text' is null",
    );
    let err = read_body("f.parquet", b"PAR1 this is not Parquet PAR1", &opts(STRICT)).unwrap_err();
    assert_eq!(err.kind(), "parquet");
    assert!(
        err.to_string().contains("f.parquet: cannot read Parquet: "),
        "{err}"
    );
}

// ---- ids ---------------------------------------------------------------------------------------

fn read_ids(body: &[u8]) -> Result<Vec<(u64, Vec<i64>)>, InputError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.jsonl");
    std::fs::write(&path, body).unwrap();
    let mut out = Vec::new();
    let summary = read_id_lists(
        &spec(&path),
        "ids",
        STRICT,
        &AtomicU64::new(0),
        |line, ids| {
            out.push((line, ids));
            Ok::<(), InputError>(())
        },
    )?;
    assert_eq!(summary.documents, out.len() as u64);
    Ok(out)
}

#[test]
fn id_lists_are_read_with_their_line_numbers() {
    let body = b"{\"ids\": [1, 2, 3]}\n\n{\"ids\":[],\"text\":\"x\"}\r\n{\"ids\": [-5, 9223372036854775807], \"ids\": [7]}\n{\"a\": NaN, \"ids\": [0]}";
    assert_eq!(
        read_ids(body).unwrap(),
        [(1, vec![1, 2, 3]), (3, vec![]), (4, vec![7]), (5, vec![0])]
    );
}

#[test]
fn id_list_errors_name_file_and_line() {
    for (body, kind, message) in [
        (
            &b"{\"ids\": [1, true]}"[..],
            "not_an_id",
            "f.jsonl:1: token ids must be integers, found true",
        ),
        (
            b"{\"ids\": [1.5]}",
            "not_an_id",
            "f.jsonl:1: token ids must be integers, found 1.5",
        ),
        (
            b"{\"ids\": [\"3\"]}",
            "not_an_id",
            "f.jsonl:1: token ids must be integers, found \"3\"",
        ),
        (
            b"{\"ids\": [null]}",
            "not_an_id",
            "f.jsonl:1: token ids must be integers, found null",
        ),
        (
            b"{\"ids\": [99999999999999999999, 1.5]}",
            "not_an_id",
            "f.jsonl:1: token ids must be integers, found 1.5",
        ),
        (
            b"{\"ids\": [1, 99999999999999999999]}",
            "id_out_of_range",
            "f.jsonl:1: token id 99999999999999999999 is out of range (more than 64 bits)",
        ),
        (
            b"{\"ids\": \"1 2\"}",
            "not_a_list",
            "f.jsonl:1: field 'ids' is not a list of token ids",
        ),
        (
            b"\n{\"text\": \"x\"}",
            "missing_field",
            "f.jsonl:2: record has no field 'ids' (its fields: 'text')",
        ),
        (
            b"[1, 2]",
            "not_an_object",
            "f.jsonl:1: expected a JSON object, got an array",
        ),
        (
            b"{\"ids\": [1,]}",
            "invalid_json",
            "f.jsonl:1: invalid JSON: Expecting value (column 12)",
        ),
        (
            b"{\"ids\": [1]}\n\xff",
            "invalid_utf8",
            "f.jsonl:2: invalid UTF-8 (byte 0xff at column 1)",
        ),
    ] {
        let err = read_ids(body).unwrap_err();
        let text = err.to_string();
        assert_eq!(
            (err.kind(), &text[text.rfind("f.jsonl").unwrap()..]),
            (kind, message),
            "{body:?}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.txt");
    std::fs::write(&path, b"x").unwrap();
    let err = read_id_lists(&spec(&path), "ids", STRICT, &AtomicU64::new(0), |_, _| {
        Ok::<(), InputError>(())
    })
    .unwrap_err();
    assert_eq!(err.kind(), "not_jsonl");
    assert!(err
        .to_string()
        .ends_with("f.txt: expected JSONL, this is text"));
}

#[test]
fn error_locations() {
    let err = read_body("f.jsonl", b"\n\n{", &opts(STRICT)).unwrap_err();
    assert_eq!((err.line, err.column, err.row), (Some(3), Some(2), None));
    assert!(err.location().ends_with("f.jsonl:3"));
    let err = read(&spec(&fixture("nulls.parquet")), &opts(STRICT)).unwrap_err();
    assert_eq!((err.line, err.row), (None, Some(2)));
    assert!(err.location().ends_with("nulls.parquet:row 2"));
}
