//! Inputs of a write: listing globs, inferring a schema, splitting, reading a split.
//!
//! Inputs are local paths or object-store URLs (`s3://b/in/*.csv`, `memory://x/*.jsonl`),
//! with glob patterns (`*`, `?`, `[..]`, `**`) in their path. Formats: CSV (with a
//! header), Parquet, JSON lines, Arrow IPC streams; by extension unless given.
//!
//! Splits: Parquet files larger than the target are cut at row-group boundaries, and
//! consecutive other files are grouped, into as many splits as there are targets in their
//! size, as even as the boundaries allow ([`balanced_partition`]). CSV, JSON
//! lines and Arrow files are never cut: finding a record boundary at a byte offset would
//! need reading and re-synchronising on quoted newlines, so a big CSV file is one split
//! (it is still read as a stream, in bounded memory).
//!
//! The schema is inferred from the first files (arrow-csv and arrow-json inference, the
//! Parquet footer, the Arrow stream's schema message) unless given; files that disagree
//! on a column are refused with an error naming both files and the column. A later file
//! is checked when it is read: a CSV value that does not fit the schema is an error with
//! the file and line number.

use std::io::Cursor;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
// Deprecated in parquet 59.3 in favour of a hand-written `AsyncFileReader`; it is still
// the reader DataFusion itself uses, and replacing it buys nothing here.
#[allow(deprecated)]
use parquet::arrow::async_reader::ParquetObjectReader;
use serde::{Deserialize, Serialize};
use terrace_format::Location;

use crate::error::{Error, Result};

/// Bytes read from the start of a text file to infer its schema.
const INFER_BYTES: u64 = 4 << 20;
/// Rows per batch read from inputs: big enough that a batch split into a few dozen
/// (partition, bucket) groups still gives each a slice of a thousand rows or more, which
/// the writer encodes without copying (see terrace-format's writer).
const BATCH_ROWS: usize = 64 * 1024;

/// The format of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// CSV with a header line.
    Csv,
    /// Parquet.
    Parquet,
    /// One JSON object per line.
    JsonLines,
    /// Arrow IPC stream.
    ArrowStream,
}

impl InputFormat {
    /// The format a file name's extension implies (`.csv`, `.tsv` is not supported).
    pub fn from_path(path: &str) -> Option<InputFormat> {
        let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = name.rsplit_once('.').map(|(_, e)| e)?;
        match ext {
            "csv" => Some(InputFormat::Csv),
            "parquet" | "pq" => Some(InputFormat::Parquet),
            "json" | "jsonl" | "ndjson" => Some(InputFormat::JsonLines),
            "arrow" | "arrows" | "ipc" => Some(InputFormat::ArrowStream),
            _ => None,
        }
    }
}

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// Path or URL of the file.
    pub location: String,
    /// Its format.
    pub format: InputFormat,
    /// Its size.
    pub size_bytes: u64,
}

/// A part of an input split: a whole file, or some row groups of a Parquet file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitPart {
    /// The file.
    pub file: InputFile,
    /// Parquet row groups to read (`None`: all).
    pub row_groups: Option<Vec<usize>>,
}

/// The unit of input one write or map task reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSplit {
    /// The parts, read in order.
    pub parts: Vec<SplitPart>,
}

fn glob_start(pattern: &str) -> Option<usize> {
    pattern.find(['*', '?', '['])
}

fn store_error(path: &str) -> impl Fn(object_store::Error) -> Error + '_ {
    move |source| Error::ObjectStore {
        path: path.to_string(),
        source,
    }
}

fn location(text: &str) -> Result<Location> {
    Location::parse(text).map_err(|e| Error::Input {
        path: text.to_string(),
        reason: e.to_string(),
    })
}

/// List the files matching `patterns` (paths, URLs, globs), in pattern order then path
/// order. `format` forces the format; otherwise each file's extension decides.
pub async fn list_inputs(
    patterns: &[String],
    format: Option<InputFormat>,
) -> Result<Vec<InputFile>> {
    if patterns.is_empty() {
        return Err(Error::invalid("inputs", "no input given"));
    }
    let mut out = Vec::new();
    for pattern in patterns {
        let format_of = |path: &str| {
            format
                .or_else(|| InputFormat::from_path(path))
                .ok_or_else(|| Error::Input {
                    path: path.to_string(),
                    reason:
                        "unknown format (use .csv, .parquet, .jsonl or .arrow, or give the format)"
                            .to_string(),
                })
        };
        let Some(start) = glob_start(pattern) else {
            let loc = location(pattern)?;
            let meta = loc.store.head(&loc.root).await.map_err(|e| match e {
                object_store::Error::NotFound { .. } => Error::Input {
                    path: pattern.clone(),
                    reason: "no such file".to_string(),
                },
                other => store_error(pattern)(other),
            })?;
            out.push(InputFile {
                location: pattern.clone(),
                format: format_of(pattern)?,
                size_bytes: meta.size,
            });
            continue;
        };
        let dir_end = pattern[..start].rfind('/').map(|i| i + 1).unwrap_or(0);
        let (dir, rest) = pattern.split_at(dir_end);
        let dir_text = if dir.is_empty() { "." } else { dir };
        let loc = location(dir_text)?;
        let glob = glob::Pattern::new(rest)
            .map_err(|e| Error::invalid(format!("glob {pattern:?}"), e.to_string()))?;
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let mut listed = loc.store.list(Some(&loc.root));
        let mut matches = Vec::new();
        while let Some(meta) = listed.next().await {
            let meta = match meta {
                Ok(m) => m,
                // A missing directory is an empty glob, reported below.
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(store_error(pattern)(e)),
            };
            let Some(relative) = meta.location.prefix_match(&loc.root) else {
                continue;
            };
            let relative: Vec<String> = relative.map(|p| p.as_ref().to_string()).collect();
            let relative = relative.join("/");
            if glob.matches_with(&relative, options) {
                matches.push((relative, meta.size));
            }
        }
        if matches.is_empty() {
            return Err(Error::EmptyGlob {
                pattern: pattern.clone(),
            });
        }
        matches.sort();
        for (relative, size) in matches {
            let full = format!("{dir}{relative}");
            out.push(InputFile {
                format: format_of(&full)?,
                location: full,
                size_bytes: size,
            });
        }
    }
    Ok(out)
}

async fn head_bytes(file: &InputFile, limit: u64) -> Result<Bytes> {
    let loc = location(&file.location)?;
    let end = file.size_bytes.min(limit);
    loc.store
        .get_range(&loc.root, 0..end)
        .await
        .map_err(store_error(&file.location))
}

#[allow(deprecated)]
async fn parquet_builder(
    file: &InputFile,
) -> Result<ParquetRecordBatchStreamBuilder<ParquetObjectReader>> {
    let loc = location(&file.location)?;
    let reader = ParquetObjectReader::new(loc.store, loc.root).with_file_size(file.size_bytes);
    ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| Error::Input {
            path: file.location.clone(),
            reason: format!("not a readable Parquet file: {e}"),
        })
}

/// The schema of one input file.
pub async fn file_schema(file: &InputFile) -> Result<SchemaRef> {
    let bad = |reason: String| Error::Input {
        path: file.location.clone(),
        reason,
    };
    match file.format {
        InputFormat::Parquet => Ok(Arc::clone(parquet_builder(file).await?.schema())),
        InputFormat::Csv => {
            let bytes = head_bytes(file, INFER_BYTES).await?;
            let bytes = complete_lines(&bytes, file.size_bytes);
            let (schema, _) = arrow::csv::reader::Format::default()
                .with_header(true)
                .infer_schema(Cursor::new(bytes), None)
                .map_err(|e| bad(format!("cannot infer a CSV schema: {e}")))?;
            Ok(Arc::new(storable_times(&schema)))
        }
        InputFormat::JsonLines => {
            let bytes = head_bytes(file, INFER_BYTES).await?;
            let bytes = complete_lines(&bytes, file.size_bytes);
            let (schema, _) = arrow::json::reader::infer_json_schema(Cursor::new(bytes), None)
                .map_err(|e| bad(format!("cannot infer a JSON schema: {e}")))?;
            Ok(Arc::new(storable_times(&schema)))
        }
        InputFormat::ArrowStream => {
            let bytes = head_bytes(file, INFER_BYTES).await?;
            let mut decoder = arrow::ipc::reader::StreamDecoder::new();
            let mut buffer = arrow::buffer::Buffer::from(bytes);
            while decoder.schema().is_none() && !buffer.is_empty() {
                decoder
                    .decode(&mut buffer)
                    .map_err(|e| bad(format!("not an Arrow IPC stream: {e}")))?;
            }
            decoder
                .schema()
                .ok_or_else(|| bad("no schema message at the start of the stream".to_string()))
        }
    }
}

/// Text inference gives timestamps without fractions the unit seconds, which Parquet has
/// no logical type for (arrow-rs would store bare INT64 that other readers take for
/// integers); milliseconds hold the same values and every reader knows them.
fn storable_times(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(arrow::datatypes::TimeUnit::Second, tz) => {
                f.as_ref().clone().with_data_type(DataType::Timestamp(
                    arrow::datatypes::TimeUnit::Millisecond,
                    tz.clone(),
                ))
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// The first `bytes` up to the last complete line (all of it when it is the whole file).
fn complete_lines(bytes: &Bytes, file_size: u64) -> Bytes {
    if bytes.len() as u64 >= file_size {
        return bytes.clone();
    }
    match bytes.iter().rposition(|b| *b == b'\n') {
        Some(i) => bytes.slice(..=i),
        None => bytes.clone(),
    }
}

/// Infer one schema from the first `max_files` inputs; they must agree.
///
/// Two files agree when they have the same columns in the same order with the same
/// types, except that a column inference found only nulls in takes the other file's
/// type, and integer / float inference differences widen to `Float64`.
pub async fn infer_schema(files: &[InputFile], max_files: usize) -> Result<SchemaRef> {
    let first = files
        .first()
        .ok_or_else(|| Error::invalid("inputs", "no input file"))?;
    let mut schema = file_schema(first).await?;
    for file in files.iter().skip(1).take(max_files.saturating_sub(1)) {
        let other = file_schema(file).await?;
        schema = merge_schemas(&schema, &first.location, &other, &file.location)?;
    }
    Ok(schema)
}

/// Merge two inferred schemas as [`infer_schema`] describes, or name the disagreement.
pub fn merge_schemas(a: &Schema, a_file: &str, b: &Schema, b_file: &str) -> Result<SchemaRef> {
    let mismatch = |column: &str, first_type: String, second_type: String| Error::SchemaMismatch {
        column: column.to_string(),
        first: a_file.to_string(),
        first_type,
        second: b_file.to_string(),
        second_type,
    };
    let mut fields = Vec::with_capacity(a.fields().len());
    for (i, fa) in a.fields().iter().enumerate() {
        let Some(fb) = b.fields().get(i).filter(|f| f.name() == fa.name()) else {
            let second = b
                .field_with_name(fa.name())
                .map(|f| format!("{} (at another position)", f.data_type()))
                .unwrap_or_else(|_| "missing".to_string());
            return Err(mismatch(fa.name(), fa.data_type().to_string(), second));
        };
        let data_type = match (fa.data_type(), fb.data_type()) {
            (x, y) if x == y => x.clone(),
            (DataType::Null, y) => y.clone(),
            (x, DataType::Null) => x.clone(),
            (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64) => {
                DataType::Float64
            }
            (x, y) => return Err(mismatch(fa.name(), x.to_string(), y.to_string())),
        };
        fields.push(Field::new(
            fa.name(),
            data_type,
            fa.is_nullable() || fb.is_nullable(),
        ));
    }
    if let Some(extra) = b.fields().get(a.fields().len()) {
        return Err(mismatch(
            extra.name(),
            "missing".to_string(),
            extra.data_type().to_string(),
        ));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Cut and group inputs into splits of about `target_bytes` (see the module docs).
pub async fn split_inputs(files: &[InputFile], target_bytes: u64) -> Result<Vec<InputSplit>> {
    let target = target_bytes.max(1);
    let mut splits = Vec::new();
    // Consecutive files that are not cut, grouped when the run ends.
    let mut whole: Vec<&InputFile> = Vec::new();
    let group_whole = |whole: &mut Vec<&InputFile>, splits: &mut Vec<InputSplit>| {
        let sizes: Vec<u64> = whole.iter().map(|f| f.size_bytes).collect();
        for range in balanced_partition(&sizes, target) {
            splits.push(InputSplit {
                parts: whole[range]
                    .iter()
                    .map(|&file| SplitPart {
                        file: file.clone(),
                        row_groups: None,
                    })
                    .collect(),
            });
        }
        whole.clear();
    };
    for file in files {
        if file.format == InputFormat::Parquet && file.size_bytes > target {
            group_whole(&mut whole, &mut splits);
            let builder = parquet_builder(file).await?;
            let sizes: Vec<u64> = builder
                .metadata()
                .row_groups()
                .iter()
                .map(|rg| rg.compressed_size().max(0) as u64)
                .collect();
            for range in balanced_partition(&sizes, target) {
                splits.push(InputSplit {
                    parts: vec![SplitPart {
                        file: file.clone(),
                        row_groups: Some(range.collect()),
                    }],
                });
            }
            continue;
        }
        whole.push(file);
    }
    group_whole(&mut whole, &mut splits);
    Ok(splits)
}

/// Cut `sizes` (files or row groups, in order) into at most as many contiguous runs as
/// there are `target`s in their sum (rounded up), with the largest run at most 1/8 above
/// the smallest it can be.
///
/// Cutting greedily at the target instead made lopsided splits: eight Parquet files of
/// 26.6 MB against 128 MiB became six and two, and the task with six ran alone for half
/// of the ingest. Here they are four and four; eight CSV files of 95 MB stay pairs.
/// Runs are then filled up to 1/8 above that smallest largest run, which takes the
/// fewest runs among nearly as even cuts: at exactly the smallest, 8 CSV files of 95.1
/// to 96.0 MB were cut into two pairs and four single files (6 runs allowed), and a
/// single file's map task makes pieces too small to combine by copying.
fn balanced_partition(sizes: &[u64], target: u64) -> Vec<std::ops::Range<usize>> {
    if sizes.is_empty() {
        return Vec::new();
    }
    let target = target.max(1);
    let total: u64 = sizes.iter().sum();
    let runs = total.div_ceil(target).max(1);
    // Runs of greedy filling up to `capacity` (which is at least the largest size).
    let fill = |capacity: u64| {
        let mut ranges = Vec::new();
        let (mut start, mut bytes) = (0, 0u64);
        for (i, &size) in sizes.iter().enumerate() {
            if i > start && bytes + size > capacity {
                ranges.push(start..i);
                (start, bytes) = (i, 0);
            }
            bytes += size;
        }
        ranges.push(start..sizes.len());
        ranges
    };
    // Greedy filling gives the fewest runs for a capacity, so the smallest capacity
    // that needs at most `runs` runs is found by bisection.
    let (mut low, mut high) = (
        sizes.iter().copied().max().unwrap_or(0).max(1),
        total.max(1),
    );
    while low < high {
        let mid = low + (high - low) / 2;
        if fill(mid).len() as u64 <= runs {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    fill(low.saturating_add(low / 8))
}

/// Stream the rows of a split as `schema` (columns by name, in the schema's order).
///
/// Batches are decoded as the bytes arrive, in a spawned task with a small channel, so
/// memory stays bounded whatever the file size.
pub fn read_split(split: InputSplit, schema: SchemaRef) -> BoxStream<'static, Result<RecordBatch>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
    tokio::spawn(async move {
        for part in split.parts {
            let result = read_part(&part, &schema, &tx).await;
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

type Sender = tokio::sync::mpsc::Sender<Result<RecordBatch>>;

async fn send(tx: &Sender, batch: RecordBatch) -> Result<()> {
    // A closed channel means the reader went away: stop quietly.
    let _ = tx.send(Ok(batch)).await;
    Ok(())
}

async fn read_part(part: &SplitPart, schema: &SchemaRef, tx: &Sender) -> Result<()> {
    let file = &part.file;
    match file.format {
        InputFormat::Parquet => {
            let mut builder = parquet_builder(file).await?;
            let found = Arc::clone(builder.schema());
            check_columns(schema, &found, &file.location)?;
            if let Some(groups) = &part.row_groups {
                builder = builder.with_row_groups(groups.clone());
            }
            let mut stream =
                builder
                    .with_batch_size(BATCH_ROWS)
                    .build()
                    .map_err(|e| Error::Input {
                        path: file.location.clone(),
                        reason: e.to_string(),
                    })?;
            while let Some(batch) = stream.try_next().await.map_err(|e| Error::Input {
                path: file.location.clone(),
                reason: e.to_string(),
            })? {
                send(tx, conform(batch, schema, &file.location)?).await?;
            }
            Ok(())
        }
        InputFormat::Csv => {
            let mut decoder = arrow::csv::ReaderBuilder::new(Arc::clone(schema))
                .with_header(true)
                .with_batch_size(BATCH_ROWS)
                .build_decoder();
            stream_csv(file, tx, &mut decoder).await
        }
        InputFormat::JsonLines => {
            let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(schema))
                .with_batch_size(BATCH_ROWS)
                .build_decoder()
                .map_err(|e| Error::arrow("preparing a JSON decoder", e))?;
            // JSON errors carry no line number: feed one line at a time and count.
            let mut line = 0u64;
            let mut pending: Vec<u8> = Vec::new();
            let mut body = file_chunks(file)?;
            let bad = |line: u64, e: arrow::error::ArrowError| Error::BadRow {
                path: file.location.clone(),
                line,
                reason: e.to_string(),
            };
            loop {
                let chunk = body.try_next().await?;
                let done = chunk.is_none();
                if let Some(chunk) = &chunk {
                    pending.extend_from_slice(chunk);
                } else if !pending.is_empty() && pending.last() != Some(&b'\n') {
                    pending.push(b'\n');
                }
                let mut start = 0;
                while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
                    line += 1;
                    let text = &pending[start..=start + end];
                    let mut offset = 0;
                    while offset < text.len() {
                        let read = decoder.decode(&text[offset..]).map_err(|e| bad(line, e))?;
                        offset += read;
                        if read == 0 || decoder.len() >= BATCH_ROWS {
                            if let Some(batch) = decoder.flush().map_err(|e| bad(line, e))? {
                                send(tx, batch).await?;
                            }
                            if read == 0 && offset < text.len() {
                                break;
                            }
                        }
                    }
                    start += end + 1;
                }
                pending.drain(..start);
                if done {
                    break;
                }
            }
            if let Some(batch) = decoder.flush().map_err(|e| bad(line, e))? {
                send(tx, batch).await?;
            }
            Ok(())
        }
        InputFormat::ArrowStream => {
            let mut body = file_chunks(file)?;
            let mut decoder = arrow::ipc::reader::StreamDecoder::new();
            let bad = |e: arrow::error::ArrowError| Error::Input {
                path: file.location.clone(),
                reason: format!("not a valid Arrow IPC stream: {e}"),
            };
            while let Some(chunk) = body.try_next().await? {
                let mut buffer = arrow::buffer::Buffer::from(chunk);
                while !buffer.is_empty() {
                    if let Some(batch) = decoder.decode(&mut buffer).map_err(bad)? {
                        send(tx, conform(batch, schema, &file.location)?).await?;
                    }
                }
            }
            decoder.finish().map_err(bad)?;
            Ok(())
        }
    }
}

/// Bytes asked for per request when a file is read as a stream (CSV, JSON lines, Arrow).
const READ_CHUNK_BYTES: u64 = 8 << 20;

/// The bytes of a file read as a stream, in ranges of [`READ_CHUNK_BYTES`] with the next
/// two requested ahead.
///
/// Not `GetResult::into_stream`: on a local store that reads 8 KiB at a time, each read a
/// `spawn_blocking` hand-off, and on the lineitem CSV ingest (12,000 reads per 95 MB
/// file) waking the blocking pool's threads was about 9% of the profile. The size is the
/// one listed when the ingest was planned; a file cut shorter since fails its read.
fn file_chunks(file: &InputFile) -> Result<BoxStream<'static, Result<Bytes>>> {
    let loc = location(&file.location)?;
    let path = file.location.clone();
    let size = file.size_bytes;
    let ranges = (0..size.div_ceil(READ_CHUNK_BYTES))
        .map(move |i| i * READ_CHUNK_BYTES..((i + 1) * READ_CHUNK_BYTES).min(size));
    Ok(futures::stream::iter(ranges)
        .map(move |range| {
            let store = Arc::clone(&loc.store);
            let object = loc.root.clone();
            let path = path.clone();
            async move {
                store
                    .get_range(&object, range)
                    .await
                    .map_err(store_error(&path))
            }
        })
        .buffered(2)
        .boxed())
}

/// Feed a CSV file to a decoder chunk by chunk, flushing full batches.
async fn stream_csv(
    file: &InputFile,
    tx: &Sender,
    decoder: &mut arrow::csv::reader::Decoder,
) -> Result<()> {
    let mut body = file_chunks(file)?;
    let bad = |e: arrow::error::ArrowError| csv_error(&file.location, e);
    while let Some(chunk) = body.try_next().await? {
        let mut offset = 0;
        while offset < chunk.len() {
            let read = decoder.decode(&chunk[offset..]).map_err(bad)?;
            offset += read;
            if read == 0 {
                // The decoder is full: emit a batch and go on with the rest of the chunk.
                if let Some(batch) = decoder.flush().map_err(bad)? {
                    send(tx, batch).await?;
                }
            }
        }
    }
    // Signal the end of input, then drain.
    decoder.decode(&[]).map_err(bad)?;
    while let Some(batch) = decoder.flush().map_err(bad)? {
        send(tx, batch).await?;
    }
    Ok(())
}

fn csv_error(path: &str, e: arrow::error::ArrowError) -> Error {
    let message = e.to_string();
    // arrow-csv's value errors count lines from 0 ("at line N"), its record errors from 1
    // ("for line N"); both include the header line.
    let line = [("at line ", 1), ("for line ", 0)]
        .iter()
        .find_map(|(key, add)| {
            let rest = &message[message.find(key)? + key.len()..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse::<u64>().ok().map(|n| n + add)
        });
    match line {
        Some(line) => Error::BadRow {
            path: path.to_string(),
            line,
            reason: message,
        },
        None => Error::Input {
            path: path.to_string(),
            reason: message,
        },
    }
}

fn check_columns(expected: &Schema, found: &Schema, path: &str) -> Result<()> {
    for field in expected.fields() {
        match found.field_with_name(field.name()) {
            Ok(f) if f.data_type() == field.data_type() => {}
            other => {
                return Err(Error::SchemaMismatch {
                    column: field.name().clone(),
                    first: "the dataset schema".to_string(),
                    first_type: field.data_type().to_string(),
                    second: path.to_string(),
                    second_type: other
                        .map(|f| f.data_type().to_string())
                        .unwrap_or_else(|_| "missing".to_string()),
                });
            }
        }
    }
    Ok(())
}

fn conform(batch: RecordBatch, schema: &SchemaRef, path: &str) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            batch
                .column_by_name(f.name())
                .cloned()
                .ok_or_else(|| Error::SchemaMismatch {
                    column: f.name().clone(),
                    first: "the dataset schema".to_string(),
                    first_type: f.data_type().to_string(),
                    second: path.to_string(),
                    second_type: "missing".to_string(),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
        .map_err(|e| Error::arrow(format!("reading {path}"), e))
}

#[cfg(test)]
mod tests {
    use super::balanced_partition;
    use proptest::prelude::*;

    /// The smallest largest run over every cut of `sizes` into at most `runs` runs.
    fn best_largest_run(sizes: &[u64], runs: usize) -> u64 {
        if runs == 1 || sizes.len() <= 1 {
            return sizes.iter().sum();
        }
        (1..sizes.len())
            .map(|cut| {
                let head: u64 = sizes[..cut].iter().sum();
                head.max(best_largest_run(&sizes[cut..], runs - 1))
            })
            .min()
            .unwrap_or(0)
    }

    #[test]
    fn equal_files_give_equal_splits() {
        let sizes = |n, size| vec![size; n];
        let lengths = |ranges: Vec<std::ops::Range<usize>>| -> Vec<usize> {
            ranges.into_iter().map(|r| r.len()).collect()
        };
        // The bench's inputs: 8 Parquet files of 26.6 MB, 8 CSV files of 95.7 MB.
        let target = 128 << 20;
        assert_eq!(
            lengths(balanced_partition(&sizes(8, 26_600_000), target)),
            [4, 4]
        );
        assert_eq!(
            lengths(balanced_partition(&sizes(8, 95_700_000), target)),
            [2, 2, 2, 2]
        );
        // The bench's CSV files, whose sizes differ a little.
        let csv = [
            95_075_626, 95_464_561, 95_898_570, 95_825_280, 95_989_576, 95_820_605, 95_827_715,
            95_964_073,
        ];
        assert_eq!(lengths(balanced_partition(&csv, target)), [2, 2, 2, 2]);
        assert_eq!(lengths(balanced_partition(&sizes(3, 10), 1000)), [3]);
        assert_eq!(lengths(balanced_partition(&sizes(3, 10), 1)), [1, 1, 1]);
        assert!(balanced_partition(&[], 10).is_empty());
    }

    proptest! {
        #[test]
        fn runs_cover_in_order_and_the_largest_is_near_the_smallest(
            sizes in proptest::collection::vec(0u64..100, 1..9),
            target in 1u64..400,
        ) {
            let ranges = balanced_partition(&sizes, target);
            let total: u64 = sizes.iter().sum();
            let allowed = total.div_ceil(target).max(1) as usize;
            prop_assert!(ranges.len() <= allowed, "{ranges:?} for {allowed}");
            let mut next = 0;
            for range in &ranges {
                prop_assert_eq!(range.start, next);
                prop_assert!(!range.is_empty());
                next = range.end;
            }
            prop_assert_eq!(next, sizes.len());
            let largest = ranges.iter().map(|r| sizes[r.clone()].iter().sum::<u64>()).max();
            let best = best_largest_run(&sizes, allowed);
            prop_assert!(largest.unwrap_or(0) <= best + best / 8, "{ranges:?}: {largest:?} > {best}");
        }
    }
}
