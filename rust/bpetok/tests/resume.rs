//! Resuming an interrupted packing run ([`PackConfig::resume`]): the resumed directory is byte
//! for byte the uninterrupted run's; a resume with other inputs, options or tokenizer is refused
//! with the differences named; a finished run resumes to its own report; a directory with an
//! unfinished run is refused by a fresh run. (The SIGKILL tests are `tests/test_resume.py`.)

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bpetok::data::error::DataError;
use bpetok::data::input::{Compression, InputFormat, InputSpec};
use bpetok::data::pipeline::Counters;
use bpetok::data::{PackConfig, PackReport, PackSession};
use bpetok::Tokenizer;
use tempfile::TempDir;

/// Three JSONL inputs of generated prose, documents of very different lengths (some split).
fn corpus(dir: &Path) -> Vec<InputSpec> {
    let words = [
        "the",
        "of",
        "and",
        "packing",
        "window",
        "token",
        "shard",
        "résumé",
        "日本語",
        "a",
        "is",
    ];
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    (0..3)
        .map(|f| {
            let path = dir.join(format!("part{f}.jsonl"));
            let mut text = String::new();
            for _ in 0..1500 {
                let n = [3, 12, 40, 150, 700][next() % 5];
                let doc: Vec<&str> = (0..n).map(|_| words[next() % words.len()]).collect();
                text.push_str(&serde_json::json!({ "text": doc.join(" ") }).to_string());
                text.push('\n');
            }
            fs::write(&path, text).unwrap();
            InputSpec {
                path: Some(path.clone()),
                name: path.display().to_string(),
                format: InputFormat::Jsonl,
                compression: Some(Compression::None),
                size: None,
                range: None,
            }
        })
        .collect()
}

fn config(threads: usize) -> PackConfig {
    let mut config = PackConfig::new(128, 64);
    config.samples_per_shard = 48;
    config.pack.pack_buffer = 40;
    config.threads = threads;
    config
}

fn run(
    tok: &Tokenizer,
    out: &Path,
    config: PackConfig,
    inputs: &[InputSpec],
) -> Result<PackReport, DataError> {
    let mut session = PackSession::create(tok, out, config, inputs.to_vec())?;
    session.run(&Counters::default(), || Ok(()))?;
    session.finish()
}

/// Runs until `stop_after` has passed (checked at each tick), then drops the session, as a kill
/// would leave it (minus the last shard's temporaries, which a kill leaves and a resume removes).
fn interrupted(
    tok: &Tokenizer,
    out: &Path,
    config: PackConfig,
    inputs: &[InputSpec],
    stop_after: Duration,
) {
    let mut session = PackSession::create(tok, out, config, inputs.to_vec()).unwrap();
    let start = Instant::now();
    let result = session.run(&Counters::default(), || {
        if start.elapsed() >= stop_after {
            Err(DataError::Stopped)
        } else {
            Ok(())
        }
    });
    if result.is_ok() {
        session.finish().unwrap();
    }
}

/// Every file of `dir` with its bytes, sorted by name.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn resume_config(threads: usize) -> PackConfig {
    PackConfig {
        resume: true,
        ..config(threads)
    }
}

#[test]
fn an_interrupted_run_resumes_to_the_uninterrupted_bytes() {
    let tok = Tokenizer::mixtral_8x7b();
    let root = TempDir::new().unwrap();
    let inputs = corpus(root.path());
    let full = root.path().join("full");
    let report = run(&tok, &full, config(2), &inputs).unwrap();
    assert!(
        report.manifest.shards.len() > 20,
        "{}",
        report.manifest.shards.len()
    );
    assert!(report.resumed.is_none());
    let want = contents(&full);

    let mut resumed_some = false;
    for (k, ms) in [0u64, 100, 250, 400].into_iter().enumerate() {
        let threads = 1 + k % 2;
        let out: PathBuf = root.path().join(format!("cut{k}"));
        interrupted(
            &tok,
            &out,
            config(threads),
            &inputs,
            Duration::from_millis(ms),
        );
        let had_checkpoint = out.join("resume.json").exists();
        let report = run(&tok, &out, resume_config(threads), &inputs).unwrap();
        assert_eq!(
            contents(&out),
            want,
            "stopped after {ms} ms on {threads} threads"
        );
        if had_checkpoint {
            let resumed = report.resumed.expect("a resumed run says so");
            assert!(resumed.shards > 0 && !resumed.complete);
            resumed_some = true;
        }
        // Resuming the finished run changes nothing and reports it complete.
        let again = run(&tok, &out, resume_config(threads), &inputs).unwrap();
        assert!(again.resumed.unwrap().complete);
        assert_eq!(again.manifest, report.manifest);
        assert_eq!(contents(&out), want);
    }
    assert!(
        resumed_some,
        "no interruption left a checkpoint: the corpus is too small"
    );
}

#[test]
fn a_resume_of_another_run_is_refused_with_the_differences() {
    let tok = Tokenizer::mixtral_8x7b();
    let root = TempDir::new().unwrap();
    let inputs = corpus(root.path());
    let out = root.path().join("out");
    // Leave a checkpoint: stop at the first tick after it appears.
    let mut session = PackSession::create(&tok, &out, config(1), inputs.clone()).unwrap();
    let resume_file = out.join("resume.json");
    let err = session
        .run(&Counters::default(), || {
            if resume_file.exists() {
                Err(DataError::Stopped)
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert_eq!(err.kind(), "stopped");
    drop(session);
    assert!(resume_file.exists());

    let refused = |config: PackConfig, inputs: &[InputSpec]| {
        let err = PackSession::create(&tok, &out, config, inputs.to_vec())
            .err()
            .expect("refused");
        assert_eq!(err.kind(), "cannot_resume", "{err}");
        err.to_string()
    };
    let mut other = resume_config(1);
    other.pack.seq_len = 256;
    other.pack.seed = 9;
    let message = refused(other, &inputs);
    assert!(message.contains("seq_len was 128, is 256"), "{message}");
    assert!(message.contains("seed was 0, is 9"), "{message}");
    let mut other = resume_config(1);
    other.read.field = "body".into();
    let message = refused(other, &inputs);
    assert!(
        message.contains("input.field was \"text\", is \"body\""),
        "{message}"
    );
    let message = refused(resume_config(1), &inputs[..2]);
    assert!(
        message.contains("it read 3 inputs, this run names 2"),
        "{message}"
    );
    let message = refused(
        PackConfig {
            resume: true,
            ..config(1)
        },
        &[inputs[1].clone(), inputs[0].clone(), inputs[2].clone()],
    );
    assert!(message.contains("input 1 was"), "{message}");
    let v3 = Tokenizer::from_file(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vocab/mistral-v3.model"),
    );
    if let Ok(v3) = v3 {
        let err = PackSession::create(&v3, &out, resume_config(1), inputs.clone())
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("the tokenizer was sha256"),
            "{err}"
        );
    }
    // An input that grew, or was rewritten with the same size.
    let last = inputs[2].path.clone().unwrap();
    let text = fs::read(&last).unwrap();
    fs::write(&last, [&text[..], b"{\"text\": \"more\"}\n"].concat()).unwrap();
    let message = refused(resume_config(1), &inputs);
    assert!(message.contains("part2.jsonl had"), "{message}");
    fs::write(&last, &text).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let message = refused(resume_config(1), &inputs);
    assert!(
        message.contains("part2.jsonl was modified since"),
        "{message}"
    );

    // A fresh run refuses the directory; --overwrite starts again.
    let err = PackSession::create(&tok, &out, config(1), inputs.clone())
        .err()
        .expect("refused");
    assert_eq!(err.kind(), "unfinished_run");
    let overwrite = PackConfig {
        overwrite: true,
        ..config(1)
    };
    let report = run(&tok, &out, overwrite, &inputs).unwrap();
    assert!(report.resumed.is_none());
    assert!(!resume_file.exists());
    let both = PackConfig {
        overwrite: true,
        ..resume_config(1)
    };
    let err = PackSession::create(&tok, &out, both, inputs.clone())
        .err()
        .unwrap();
    assert_eq!(err.kind(), "invalid_option");
    assert!(
        err.to_string()
            .starts_with("resume: cannot be combined with overwrite"),
        "{err}"
    );
}

#[test]
fn an_input_read_to_its_end_that_changed_is_caught_by_its_hash() {
    let tok = Tokenizer::mixtral_8x7b();
    let root = TempDir::new().unwrap();
    let inputs = corpus(root.path());
    let out = root.path().join("out");
    // Stop once the first input is done and recorded in a checkpoint.
    let mut session = PackSession::create(&tok, &out, config(1), inputs.clone()).unwrap();
    let resume_file = out.join("resume.json");
    let _ = session.run(&Counters::default(), || {
        let done = fs::read_to_string(&resume_file)
            .map(|t| {
                t.contains("part0.jsonl\",\n      \"size\"")
                    && t.contains("\"done_inputs\": [\n    {")
            })
            .unwrap_or(false);
        if done {
            Err(DataError::Stopped)
        } else {
            Ok(())
        }
    });
    drop(session);
    let checkpoint = fs::read_to_string(&resume_file).unwrap();
    assert!(
        checkpoint.contains("\"done_inputs\": [\n    {"),
        "{checkpoint}"
    );
    // Same size, same modification time, other bytes.
    let first = inputs[0].path.clone().unwrap();
    let meta = fs::metadata(&first).unwrap();
    let mut bytes = fs::read(&first).unwrap();
    let at = bytes.iter().position(|&b| b == b'e').unwrap();
    bytes[at] = b'E';
    fs::write(&first, &bytes).unwrap();
    let file = fs::File::options().write(true).open(&first).unwrap();
    file.set_modified(meta.modified().unwrap()).unwrap();
    drop(file);
    let mut session = PackSession::create(&tok, &out, resume_config(1), inputs.clone()).unwrap();
    let err = session.run(&Counters::default(), || Ok(())).unwrap_err();
    assert_eq!(err.kind(), "cannot_resume");
    assert!(
        err.to_string()
            .contains("part0.jsonl changed since the interrupted run read it"),
        "{err}"
    );
}

#[test]
fn nothing_to_resume_starts_from_the_beginning() {
    let tok = Tokenizer::mixtral_8x7b();
    let root = TempDir::new().unwrap();
    let inputs = corpus(root.path());
    let full = root.path().join("full");
    run(&tok, &full, config(2), &inputs).unwrap();
    // A directory that does not exist, and one with only a stale temporary and an early shard.
    let fresh = root.path().join("fresh");
    let report = run(&tok, &fresh, resume_config(2), &inputs).unwrap();
    assert!(report.resumed.is_none());
    assert_eq!(contents(&fresh), contents(&full));
    let stale = root.path().join("stale");
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join(".shard-00000.tokens.npy.tmp"), b"partial").unwrap();
    fs::write(stale.join("shard-00099.tokens.npy"), b"left over").unwrap();
    fs::write(stale.join("notes.txt"), b"not ours").unwrap();
    run(&tok, &stale, resume_config(1), &inputs).unwrap();
    let mut want = contents(&full);
    want.push(("notes.txt".into(), b"not ours".to_vec()));
    want.sort();
    assert_eq!(contents(&stale), want);
    // Standard input cannot be read again.
    let stdin = InputSpec {
        path: None,
        name: "<stdin>".into(),
        format: InputFormat::Jsonl,
        compression: None,
        size: None,
        range: None,
    };
    let err = PackSession::create(&tok, &root.path().join("x"), resume_config(1), vec![stdin])
        .err()
        .unwrap();
    assert_eq!(err.kind(), "cannot_resume");
    assert!(err.to_string().contains("standard input"), "{err}");
}
