//! Partitioned packing runs (`bpetok pack --partition-size`, `bpetok.ray.pack`): the inputs are
//! cut into partitions by a rule that depends only on the inputs and the partition size
//! ([`plan_partitions`]), each partition is packed alone into its own shard directory
//! `OUT/part-NNNNN/` ([`pack_partition`], on this machine or on any worker of a cluster), and
//! [`finish_partitions`] writes `OUT/manifest.json` for the whole run from the partitions'
//! manifests. So one machine and a cluster write the same bytes. See `docs/distributed.md`.
//!
//! Pieces: a file is one piece, except an uncompressed JSONL or text-lines file larger than the
//! partition size, cut into byte ranges of that size (each range reads the lines that begin in
//! it, [`InputRange::Bytes`]), and an uncompressed Parquet file larger than the partition size
//! with several row groups, cut into runs of row groups of at least that size (by their
//! `total_byte_size`; [`InputRange::RowGroups`]). Consecutive pieces go into one partition
//! while their sizes add up to at most the partition size (a piece larger than it is a
//! partition alone).
//!
//! A partition is written under `OUT/.part-NNNNN.TAG.tmp/` and renamed to `OUT/part-NNNNN/` once
//! its manifest is written, so a directory `part-NNNNN` is always complete, and two attempts at
//! the same partition (a retried task) cannot leave half a partition or two copies: the second
//! rename finds the first's directory and its copy (byte-identical) is removed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::error::{DataError, OptionsError};
use crate::data::input::{row_group_sizes, Compression, InputFormat, InputRange, InputSpec};
use crate::data::pipeline::Counters;
use crate::data::session::{PackConfig, PackReport, PackSession, Resumed};
use crate::data::shard::{
    sync_dir, write_atomically, Manifest, PartitionEntry, ShardEntry, ShardError, TokenizerInfo,
    Totals, MANIFEST_FILE, RESUME_FILE,
};
use crate::Tokenizer;

/// The smallest partition size accepted (1 MiB would be reasonable in practice; tests use less).
pub const MIN_PARTITION_SIZE: u64 = 1;

/// `part-NNNNN`: the directory of partition `index`.
pub fn partition_name(index: usize) -> String {
    format!("part-{index:05}")
}

/// What planning needs of a file besides its name: its size in bytes and, for an uncompressed
/// Parquet file, the `total_byte_size` of each row group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLayout {
    pub size: u64,
    #[serde(default)]
    pub row_groups: Option<Vec<u64>>,
}

/// One piece of a partition: a file, or a part of one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Piece {
    /// The path as given (as the manifest records it).
    pub path: String,
    /// `jsonl`, `text` or `parquet`.
    pub format: String,
    /// `none`, `gzip` or `zstd`.
    pub compression: String,
    /// The bytes this piece stands for in the plan (its range's length, or the file's size).
    pub size: u64,
    pub range: Option<InputRange>,
}

/// One partition: its name and its pieces in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub name: String,
    pub pieces: Vec<Piece>,
}

impl Partition {
    /// The inputs to read, each piece from `local[k]` when given (a local copy of a remote file)
    /// and from its path otherwise; messages and the manifest name it by its path.
    pub fn inputs(&self, local: Option<&[PathBuf]>) -> Result<Vec<InputSpec>, OptionsError> {
        self.pieces
            .iter()
            .enumerate()
            .map(|(k, piece)| {
                let format = match piece.format.as_str() {
                    "jsonl" => InputFormat::Jsonl,
                    "text" => InputFormat::Text,
                    "parquet" => InputFormat::Parquet,
                    other => {
                        return Err(OptionsError::new(
                            "partition",
                            format!("piece {k} has an unknown format {other:?}"),
                        ))
                    }
                };
                let compression = match piece.compression.as_str() {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    "zstd" => Compression::Zstd,
                    other => {
                        return Err(OptionsError::new(
                            "partition",
                            format!("piece {k} has an unknown compression {other:?}"),
                        ))
                    }
                };
                let path = match local {
                    Some(local) => local.get(k).cloned().ok_or_else(|| {
                        OptionsError::new("partition", "fewer local files than pieces")
                    })?,
                    None => PathBuf::from(&piece.path),
                };
                Ok(InputSpec {
                    path: Some(path),
                    name: piece.path.clone(),
                    format,
                    compression: Some(compression),
                    size: Some(piece.size),
                    range: piece.range,
                })
            })
            .collect()
    }
}

/// The layout of each local input: its size, and the row groups of uncompressed Parquet files.
pub fn file_layouts(inputs: &[InputSpec]) -> Result<Vec<FileLayout>, DataError> {
    inputs
        .iter()
        .map(|spec| {
            let Some(path) = &spec.path else {
                return Err(not_partitionable());
            };
            let size = fs::metadata(path)
                .map_err(|source| ShardError::Io {
                    path: path.clone(),
                    source,
                })?
                .len();
            let row_groups = if spec.format == InputFormat::Parquet
                && spec.compression == Some(Compression::None)
            {
                Some(row_group_sizes(path, &spec.name).map_err(DataError::Input)?)
            } else {
                None
            };
            Ok(FileLayout { size, row_groups })
        })
        .collect()
}

fn not_partitionable() -> DataError {
    OptionsError::new(
        "partition_size",
        "needs files: standard input cannot be cut into partitions",
    )
    .into()
}

/// Cuts `inputs` (with their `layouts`, in the same order) into partitions of about
/// `partition_size` bytes, by the rule of the module's doc. `lines`: text files hold one
/// document per line (so they can be cut).
pub fn plan_partitions(
    inputs: &[InputSpec],
    layouts: &[FileLayout],
    lines: bool,
    partition_size: u64,
) -> Result<Vec<Partition>, DataError> {
    if partition_size < MIN_PARTITION_SIZE {
        return Err(OptionsError::new("partition_size", "must be at least 1 byte").into());
    }
    if inputs.len() != layouts.len() {
        return Err(OptionsError::new("partition_size", "one layout per input is needed").into());
    }
    let mut pieces = Vec::new();
    for (spec, layout) in inputs.iter().zip(layouts) {
        if spec.path.is_none() {
            return Err(not_partitionable());
        }
        let compression = spec.compression.unwrap_or(Compression::None);
        let piece = |size: u64, range: Option<InputRange>| Piece {
            path: spec.name.clone(),
            format: spec.format.name().to_owned(),
            compression: match compression {
                Compression::None => "none",
                Compression::Gzip => "gzip",
                Compression::Zstd => "zstd",
            }
            .to_owned(),
            size,
            range,
        };
        let plain = compression == Compression::None;
        let by_lines = plain
            && (spec.format == InputFormat::Jsonl || (spec.format == InputFormat::Text && lines));
        match (&layout.row_groups, spec.format) {
            (Some(groups), InputFormat::Parquet)
                if plain && groups.len() > 1 && layout.size > partition_size =>
            {
                let mut first = 0usize;
                let mut bytes = 0u64;
                for (g, &size) in groups.iter().enumerate() {
                    bytes += size;
                    if bytes >= partition_size || g + 1 == groups.len() {
                        let range = InputRange::RowGroups([first as u64, g as u64 + 1]);
                        pieces.push(piece(bytes, Some(range)));
                        first = g + 1;
                        bytes = 0;
                    }
                }
            }
            _ if by_lines && layout.size > partition_size => {
                let mut start = 0u64;
                while start < layout.size {
                    let end = start.saturating_add(partition_size).min(layout.size);
                    pieces.push(piece(end - start, Some(InputRange::Bytes([start, end]))));
                    start = end;
                }
            }
            _ => pieces.push(piece(layout.size, None)),
        }
    }
    let mut partitions: Vec<Partition> = Vec::new();
    let mut current: Vec<Piece> = Vec::new();
    let mut bytes = 0u64;
    for piece in pieces {
        if !current.is_empty() && bytes.saturating_add(piece.size) > partition_size {
            partitions.push(Partition {
                name: partition_name(partitions.len()),
                pieces: std::mem::take(&mut current),
            });
            bytes = 0;
        }
        bytes = bytes.saturating_add(piece.size);
        current.push(piece);
    }
    if !current.is_empty() {
        partitions.push(Partition {
            name: partition_name(partitions.len()),
            pieces: current,
        });
    }
    Ok(partitions)
}

/// What every partition's manifest of a run must record: the tokenizer and the options.
struct RunIdentity {
    tokenizer: TokenizerInfo,
    options: crate::data::shard::ManifestOptions,
}

impl RunIdentity {
    /// Checks `config` (a partitioned run's: `partition_size` set) against `tok`.
    fn of(tok: &Tokenizer, config: &PackConfig) -> Result<Self, DataError> {
        let (pack, _) = config.validate(tok)?;
        if config.partition_size.is_none() {
            return Err(OptionsError::new("partition_size", "is not set").into());
        }
        Ok(RunIdentity {
            tokenizer: TokenizerInfo::of(tok),
            options: crate::data::session::manifest_options(config, &pack),
        })
    }

    /// Whether `manifest` is of this run and its inputs are `pieces` (path and range, in order).
    fn made<'a>(&self, manifest: &Manifest, pieces: impl Iterator<Item = &'a Piece>) -> bool {
        let listed = manifest.inputs.iter().map(|i| (i.path.as_str(), i.range));
        manifest.tokenizer == self.tokenizer
            && manifest.options == self.options
            && listed.eq(pieces.map(|p| (p.path.as_str(), p.range)))
    }
}

/// The whole run's output as a new output or a resume finds it: what a partitioned run must do
/// before its partitions are packed.
#[derive(Debug)]
pub enum Prepared {
    /// The directory is ready (empty of this format, or holding a resumable run).
    Ready,
    /// `resume` of a run that had finished: its report.
    Complete(Box<PackReport>),
}

/// Opens `out_dir` for a partitioned run of `partitions` with `config` (whose `partition_size`
/// must be set): for a new output it must hold none of this format's files unless
/// `config.overwrite` (then the old manifest, partitions, temporaries and shard files go); with
/// `config.resume`, a finished run of the same tokenizer, options and pieces is reported
/// complete, and anything else is left for [`pack_partition`] to continue or redo.
pub fn prepare_output(
    tok: &Tokenizer,
    out_dir: &Path,
    config: &PackConfig,
    partitions: &[Partition],
) -> Result<Prepared, DataError> {
    let identity = RunIdentity::of(tok, config)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ShardError::Io { path, source }
    };
    match fs::metadata(out_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(ShardError::NotADirectory {
                path: out_dir.to_path_buf(),
            }
            .into())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(out_dir).map_err(io(out_dir))?;
            return Ok(Prepared::Ready);
        }
        Err(e) => return Err(io(out_dir)(e).into()),
    }
    let manifest_path = out_dir.join(MANIFEST_FILE);
    if config.resume {
        if manifest_path.exists() {
            let manifest = read_manifest(&manifest_path)?;
            if !identity.made(&manifest, partitions.iter().flat_map(|p| &p.pieces)) {
                return Err(ShardError::CannotResume {
                    dir: out_dir.to_path_buf(),
                    reason: "the run there has finished, with another tokenizer, other options \
                             or other inputs"
                        .to_owned(),
                }
                .into());
            }
            let resumed = Resumed {
                shards: manifest.shards.len() as u64,
                samples: manifest.totals.samples,
                complete: true,
            };
            return Ok(Prepared::Complete(Box::new(PackReport {
                input_bytes: manifest.inputs.iter().map(|i| i.size).sum(),
                manifest,
                output: out_dir.to_path_buf(),
                resumed: Some(resumed),
            })));
        }
        return Ok(Prepared::Ready);
    }
    let ours = entries_of_this_format(out_dir)?;
    if ours.is_empty() {
        return Ok(Prepared::Ready);
    }
    let partitions_only = ours
        .iter()
        .all(|n| is_partition_dir_name(n) || is_partition_temporary(n));
    if !config.overwrite && partitions_only {
        // The partitions of a run stopped before its manifest.
        return Err(ShardError::UnfinishedRun {
            dir: out_dir.to_path_buf(),
            found: Some(format!(
                "{} partition directories and no {MANIFEST_FILE}",
                ours.len()
            )),
        }
        .into());
    }
    if !config.overwrite {
        let found = if ours.len() == 1 {
            ours[0].clone()
        } else {
            format!("{} and {} more", ours[0], ours.len() - 1)
        };
        return Err(ShardError::DirectoryInUse {
            dir: out_dir.to_path_buf(),
            found,
        }
        .into());
    }
    // The manifest first, so that an interrupted overwrite never leaves a manifest listing
    // removed files.
    if manifest_path.exists() {
        fs::remove_file(&manifest_path).map_err(io(&manifest_path))?;
        sync_dir(out_dir)?;
    }
    for name in ours {
        let path = out_dir.join(&name);
        if name == MANIFEST_FILE {
            continue;
        }
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e).into()),
        }
    }
    sync_dir(out_dir)?;
    Ok(Prepared::Ready)
}

/// The entries of `dir` a (partitioned or not) packing run writes, sorted.
fn entries_of_this_format(dir: &Path) -> Result<Vec<String>, DataError> {
    let io = |source| ShardError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut ours = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let partition =
            is_partition_dir_name(&name) || (name.starts_with(".part-") && name.ends_with(".tmp"));
        let plain = name == MANIFEST_FILE
            || name == RESUME_FILE
            || crate::data::shard::is_shard_file_name(&name)
            || (name.starts_with('.') && name.ends_with(".tmp") && name.contains("shard-"))
            || name == ".manifest.json.tmp"
            || name == ".resume.json.tmp";
        if partition || plain {
            ours.push(name);
        }
    }
    ours.sort();
    Ok(ours)
}

/// Whether `name` is `part-` and five or more digits.
pub(crate) fn is_partition_dir_name(name: &str) -> bool {
    name.strip_prefix("part-")
        .is_some_and(|digits| digits.len() >= 5 && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` is the temporary directory of an attempt at a partition (`.part-*.tmp`).
fn is_partition_temporary(name: &str) -> bool {
    name.starts_with(".part-") && name.ends_with(".tmp")
}

fn read_manifest(path: &Path) -> Result<Manifest, DataError> {
    let bytes = fs::read(path).map_err(|source| ShardError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(
        Manifest::from_json(&bytes).map_err(|e| ShardError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?,
    )
}

/// What [`pack_partition`] did.
#[derive(Debug)]
pub struct PartitionOutcome {
    /// The partition's manifest.
    pub manifest: Manifest,
    /// The partition was complete already (by an earlier run or another attempt) and was not
    /// packed again; its directory is kept.
    pub already_complete: bool,
    /// This call packed it but another attempt's copy was in place first: this copy was removed.
    pub lost_race: bool,
}

/// Packs `partition` of the run in `out_dir` into `out_dir/NAME/`, through a temporary
/// directory `out_dir/.NAME.TAG.tmp/` renamed into place at the end (`attempt` is the TAG; the
/// command line gives `None`, for the fixed name `.NAME.tmp`, which `config.resume` continues
/// from its `resume.json`). A partition already complete is not packed again.
#[allow(clippy::too_many_arguments)]
pub fn pack_partition(
    tok: &Tokenizer,
    out_dir: &Path,
    config: &PackConfig,
    partition: &Partition,
    local: Option<&[PathBuf]>,
    attempt: Option<&str>,
    counters: &Counters,
    tick: impl FnMut() -> Result<(), DataError>,
) -> Result<PartitionOutcome, DataError> {
    let identity = RunIdentity::of(tok, config)?;
    if !is_partition_dir_name(&partition.name) {
        return Err(OptionsError::new(
            "partition",
            format!("name {:?} is not part-NNNNN", partition.name),
        )
        .into());
    }
    let check = |dir: &Path| -> Result<Manifest, DataError> {
        let manifest = read_manifest(&dir.join(MANIFEST_FILE))?;
        if !identity.made(&manifest, partition.pieces.iter()) {
            return Err(ShardError::CannotResume {
                dir: dir.to_path_buf(),
                reason: "this partition was packed with another tokenizer, other options or \
                         other inputs"
                    .to_owned(),
            }
            .into());
        }
        Ok(manifest)
    };
    let final_dir = out_dir.join(&partition.name);
    if final_dir.join(MANIFEST_FILE).exists() {
        return Ok(PartitionOutcome {
            manifest: check(&final_dir)?,
            already_complete: true,
            lost_race: false,
        });
    }
    let tmp_name = match attempt {
        None => format!(".{}.tmp", partition.name),
        Some(tag) => {
            if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(
                    OptionsError::new("attempt", "must be letters, digits and hyphens").into(),
                );
            }
            format!(".{}.{tag}.tmp", partition.name)
        }
    };
    let tmp = out_dir.join(tmp_name);
    let manifest = if config.resume && tmp.join(MANIFEST_FILE).exists() {
        // Killed between the partition's manifest and its rename.
        check(&tmp)?
    } else {
        let mut config = config.clone();
        // A temporary of our own: what an earlier attempt left there is replaced.
        config.overwrite = !config.resume;
        let inputs = partition.inputs(local)?;
        let mut session = PackSession::create(tok, &tmp, config, inputs)?;
        session.run(counters, tick)?;
        session.finish()?.manifest
    };
    let _ = fs::remove_file(tmp.join(RESUME_FILE));
    match fs::rename(&tmp, &final_dir) {
        Ok(()) => {
            sync_dir(out_dir)?;
            Ok(PartitionOutcome {
                manifest,
                already_complete: false,
                lost_race: false,
            })
        }
        Err(_) if final_dir.join(MANIFEST_FILE).exists() => {
            // Another attempt finished first; its copy holds the same bytes.
            let _ = fs::remove_dir_all(&tmp);
            Ok(PartitionOutcome {
                manifest: check(&final_dir)?,
                already_complete: false,
                lost_race: true,
            })
        }
        Err(source) => Err(ShardError::Io {
            path: final_dir,
            source,
        }
        .into()),
    }
}

/// The manifest of a whole partitioned run from its partitions' manifests, in order: their
/// inputs one after the other, their shards renamed `NAME/shard-NNNNN` (files
/// `NAME/shard-NNNNN.tokens.npy`, ...), a `partitions` entry each, and the totals added up.
/// An error (a sentence saying why) if there are none, if they disagree on the tokenizer, the
/// options or the token dtype, or if a total of theirs added up passes `u64::MAX` (only an
/// edited manifest can say so: it is reported, never wrapped around).
pub fn merge_manifests(parts: &[(String, Manifest)]) -> Result<Manifest, String> {
    let Some((_, first)) = parts.first() else {
        return Err("the run has no partitions".to_owned());
    };
    let mut inputs = Vec::new();
    let mut shards = Vec::new();
    let mut entries = Vec::new();
    let mut totals = Totals::default();
    for (name, m) in parts {
        if m.tokenizer != first.tokenizer
            || m.options != first.options
            || m.token_dtype != first.token_dtype
            || m.partitions.is_some()
        {
            return Err(format!(
                "partition {name} disagrees with the first on the tokenizer, the options or the \
                 token dtype, or is itself partitioned"
            ));
        }
        inputs.extend(m.inputs.iter().cloned());
        for shard in &m.shards {
            let mut files = shard.files.clone();
            for digest in [
                Some(&mut files.tokens),
                Some(&mut files.segments),
                Some(&mut files.sample_index),
                files.loss_mask.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                digest.path = format!("{name}/{}", digest.path);
            }
            shards.push(ShardEntry {
                name: format!("{name}/{}", shard.name),
                files,
                ..shard.clone()
            });
        }
        entries.push(PartitionEntry {
            name: name.clone(),
            inputs: m.inputs.len() as u64,
            shards: m.shards.len() as u64,
            documents: m.totals.documents,
            samples: m.totals.samples,
        });
        totals = totals.checked_add(&m.totals).map_err(|field| {
            format!(
                "the partitions' totals.{field} add up past {} (at partition {name})",
                u64::MAX
            )
        })?;
    }
    Ok(Manifest {
        format: first.format.clone(),
        format_version: first.format_version,
        tokenizer: first.tokenizer.clone(),
        options: first.options.clone(),
        token_dtype: first.token_dtype,
        inputs,
        partitions: Some(entries),
        shards,
        totals,
    })
}

/// Writes `out_dir/manifest.json` for the whole run once every partition is complete (each is
/// checked: its tokenizer, options and pieces), after removing the temporary directories of
/// attempts that did not finish. The run's report, its `input_bytes` the bytes
/// of every piece read.
pub fn finish_partitions(
    tok: &Tokenizer,
    out_dir: &Path,
    config: &PackConfig,
    partitions: &[Partition],
) -> Result<PackReport, DataError> {
    let identity = RunIdentity::of(tok, config)?;
    let mut parts = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let dir = out_dir.join(&partition.name);
        let path = dir.join(MANIFEST_FILE);
        if !path.exists() {
            return Err(ShardError::ManifestMismatch(format!(
                "partition {} is not complete ({} has no {MANIFEST_FILE})",
                partition.name,
                dir.display()
            ))
            .into());
        }
        let manifest = read_manifest(&path)?;
        if !identity.made(&manifest, partition.pieces.iter()) {
            return Err(ShardError::ManifestMismatch(format!(
                "partition {} was packed with another tokenizer, other options or other inputs",
                partition.name
            ))
            .into());
        }
        parts.push((partition.name.clone(), manifest));
    }
    remove_temporaries(out_dir)?;
    let manifest = merge_manifests(&parts).map_err(ShardError::ManifestMismatch)?;
    let bytes = manifest.to_json();
    write_atomically(out_dir, MANIFEST_FILE, |w| io::Write::write_all(w, &bytes))?;
    sync_dir(out_dir)?;
    let input_bytes = manifest.inputs.iter().map(|i| i.size).sum();
    Ok(PackReport {
        manifest,
        output: out_dir.to_path_buf(),
        input_bytes,
        resumed: None,
    })
}

/// Removes what attempts that did not finish left: the `.part-*.tmp` directories.
fn remove_temporaries(out_dir: &Path) -> Result<(), DataError> {
    let io = |source| ShardError::Io {
        path: out_dir.to_path_buf(),
        source,
    };
    for entry in fs::read_dir(out_dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_partition_temporary(name) {
            match fs::remove_dir_all(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ShardError::Io {
                        path: entry.path(),
                        source,
                    }
                    .into())
                }
            }
        }
    }
    Ok(())
}

/// Everything a partitioned run does on one machine: plan, prepare, pack each partition in turn
/// (the command line's `bpetok pack --partition-size`), finish.
pub fn pack_partitioned(
    tok: &Tokenizer,
    out_dir: &Path,
    config: &PackConfig,
    inputs: &[InputSpec],
    counters: &Counters,
    mut tick: impl FnMut() -> Result<(), DataError>,
) -> Result<PackReport, DataError> {
    let size = config
        .partition_size
        .ok_or_else(|| OptionsError::new("partition_size", "is not set"))?;
    let layouts = file_layouts(inputs)?;
    let partitions = plan_partitions(inputs, &layouts, config.read.lines, size)?;
    if let Prepared::Complete(report) = prepare_output(tok, out_dir, config, &partitions)? {
        return Ok(*report);
    }
    let mut done_before = (0u64, 0u64);
    for partition in &partitions {
        let outcome = pack_partition(
            tok, out_dir, config, partition, None, None, counters, &mut tick,
        )?;
        if outcome.already_complete {
            // Counts for the report only (checked already, so a real run cannot overflow them).
            done_before.0 = done_before
                .0
                .saturating_add(outcome.manifest.shards.len() as u64);
            done_before.1 = done_before
                .1
                .saturating_add(outcome.manifest.totals.samples);
            let read: u64 = outcome.manifest.inputs.iter().map(|i| i.size).sum();
            counters
                .bytes_read
                .fetch_add(read, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let mut report = finish_partitions(tok, out_dir, config, &partitions)?;
    if config.resume && (done_before.0 > 0 || done_before.1 > 0) {
        report.resumed = Some(Resumed {
            shards: done_before.0,
            samples: done_before.1,
            complete: false,
        });
    }
    Ok(report)
}
