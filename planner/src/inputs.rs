//! Inputs of a write: listing globs, inferring a schema, splitting, reading a split.
//!
//! Inputs are local paths or object-store URLs (`s3://b/in/*.csv`, `memory://x/*.jsonl`),
//! with glob patterns (`*`, `?`, `[..]`, `**`) in their path. Formats: CSV (with a
//! header), Parquet, JSON lines, Arrow IPC streams; by extension unless given. A text or
//! Arrow file whose name ends in `.gz` (`flights.csv.gz`) is gzip-compressed and read
//! through a streaming decoder, as pandas, DuckDB and polars read it; Parquet compresses
//! its own pages, so a gzipped Parquet file is refused with a message saying so.
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
//!
//! What the readers would take silently is refused, naming the file and where (see
//! `input_checks.rs`): an empty file (0 bytes), a CSV header with an empty or repeated
//! column name (or a Parquet / Arrow schema with a repeated one, a JSON key that is
//! empty), CSV quotes that never close, stray quotes inside unquoted fields and text
//! after a closing quote (with the line where the field starts), and partition values
//! too long for a directory name ([`check_partition_sample`]). A key repeated within
//! one JSON object is one column and takes its last value, as JSON parsers do.

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
use crate::input_checks::{
    CsvQuotes, QuoteError, check_csv_header, check_names, line_of, long_csv_partition_value,
    long_json_partition_value,
};

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
    /// The format a file name's extension implies (`.csv`, `.tsv` is not supported), with
    /// a `.gz` suffix ignored (see [`InputFile::gzipped`]).
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

impl InputFile {
    /// Whether the file is gzip-compressed: its name ends in `.gz` (any case). Told by
    /// the name, as every peer does, so task payloads written before need no new field.
    pub fn gzipped(&self) -> bool {
        let name = self.location.rsplit('/').next().unwrap_or(&self.location);
        name.to_ascii_lowercase().ends_with(".gz")
    }
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
    let mut out: Vec<InputFile> = Vec::new();
    // Which pattern each file came from, to refuse a file two patterns name.
    let mut named_by: Vec<&String> = Vec::new();
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
            named_by.push(pattern);
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
            named_by.push(pattern);
            out.push(InputFile {
                format: format_of(&full)?,
                location: full,
                size_bytes: size,
            });
        }
    }
    if let Some(empty) = out.iter().find(|f| f.size_bytes == 0) {
        return Err(empty_file(&empty.location));
    }
    // A file named twice would be ingested twice: refuse rather than double its rows.
    let mut first_named_by: std::collections::HashMap<&str, &String> =
        std::collections::HashMap::new();
    for (file, pattern) in out.iter().zip(&named_by) {
        if let Some(first) = first_named_by.insert(&file.location, *pattern) {
            return Err(Error::Input {
                path: file.location.clone(),
                reason: format!(
                    "named by both the inputs {first:?} and {pattern:?}; give each file once"
                ),
            });
        }
    }
    Ok(out)
}

/// An input without content is refused, as pandas, polars and pyarrow refuse it ("No
/// columns to parse", "empty CSV"): a CSV file without its header line has no columns,
/// and an empty file among many is more likely a producer that died than a part with
/// no rows (a part with no rows still has its header, or its Parquet footer).
fn empty_file(path: &str) -> Error {
    Error::Input {
        path: path.to_string(),
        reason: "the file is empty (0 bytes): it holds no header and no rows; leave it out \
                 of the inputs"
            .to_string(),
    }
}

/// Up to `limit` bytes from the start of a file's content (decompressed when it is
/// gzipped), and whether they are all of it.
async fn head_bytes(file: &InputFile, limit: u64) -> Result<(Bytes, bool)> {
    if file.gzipped() {
        let mut content = file_chunks(file)?;
        let mut head = Vec::new();
        while (head.len() as u64) < limit {
            match content.try_next().await? {
                Some(chunk) => head.extend_from_slice(&chunk),
                None => return Ok((Bytes::from(head), true)),
            }
        }
        return Ok((Bytes::from(head), false));
    }
    let loc = location(&file.location)?;
    let end = file.size_bytes.min(limit);
    let bytes = loc
        .store
        .get_range(&loc.root, 0..end)
        .await
        .map_err(store_error(&file.location))?;
    Ok((bytes, end >= file.size_bytes))
}

#[allow(deprecated)]
async fn parquet_builder(
    file: &InputFile,
) -> Result<ParquetRecordBatchStreamBuilder<ParquetObjectReader>> {
    if file.gzipped() {
        return Err(Error::Input {
            path: file.location.clone(),
            reason: "a gzip-compressed Parquet file: Parquet compresses its own pages; \
                     decompress the file and give the .parquet"
                .to_string(),
        });
    }
    let loc = location(&file.location)?;
    let reader = ParquetObjectReader::new(loc.store, loc.root).with_file_size(file.size_bytes);
    ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| Error::Input {
            path: file.location.clone(),
            reason: format!("not a readable Parquet file: {e}"),
        })
}

/// The schema read from one input file (its header, first rows, footer or stream schema
/// message). Not [`terrace_format::file_schema`], a dataset's stored schema of a data file.
pub async fn input_file_schema(file: &InputFile) -> Result<SchemaRef> {
    let bad = |reason: String| Error::Input {
        path: file.location.clone(),
        reason,
    };
    let schema = match file.format {
        InputFormat::Parquet => Arc::clone(parquet_builder(file).await?.schema()),
        InputFormat::Csv => {
            let (bytes, whole) = head_bytes(file, INFER_BYTES).await?;
            if bytes.is_empty() {
                return Err(empty_file(&file.location));
            }
            // Quotes first: an unterminated one would make inference read one huge value.
            let mut quotes = CsvQuotes::new();
            let checked = match quotes.scan(&bytes) {
                Ok(()) if whole => quotes.finish(),
                other => other,
            };
            if let Err(e) = checked {
                return Err(Error::BadRow {
                    path: file.location.clone(),
                    line: line_of(&bytes, e.offset()),
                    reason: e.reason(),
                });
            }
            let bytes = complete_lines(&bytes, whole);
            let (schema, _) = arrow::csv::reader::Format::default()
                .with_header(true)
                .infer_schema(Cursor::new(bytes), None)
                .map_err(|e| bad(format!("cannot infer a CSV schema: {e}")))?;
            check_csv_header(&schema, &file.location)?;
            Arc::new(storable_times(&schema))
        }
        InputFormat::JsonLines => {
            let (bytes, whole) = head_bytes(file, INFER_BYTES).await?;
            if bytes.is_empty() {
                return Err(empty_file(&file.location));
            }
            let bytes = complete_lines(&bytes, whole);
            let (schema, _) = arrow::json::reader::infer_json_schema(Cursor::new(bytes), None)
                .map_err(|e| bad(format!("cannot infer a JSON schema: {e}")))?;
            Arc::new(storable_times(&schema))
        }
        InputFormat::ArrowStream => {
            let (bytes, _) = head_bytes(file, INFER_BYTES).await?;
            let mut decoder = arrow::ipc::reader::StreamDecoder::new();
            let mut buffer = arrow::buffer::Buffer::from(bytes);
            while decoder.schema().is_none() && !buffer.is_empty() {
                decoder
                    .decode(&mut buffer)
                    .map_err(|e| bad(format!("not an Arrow IPC stream: {e}")))?;
            }
            decoder
                .schema()
                .ok_or_else(|| bad("no schema message at the start of the stream".to_string()))?
        }
    };
    // Inference merges a JSON key seen twice into one column; an empty key, and a Parquet
    // or Arrow schema naming two columns alike, are refused (CSV headers are checked
    // above, with their positions).
    check_names(&schema, &file.location)?;
    Ok(schema)
}

/// [`check_partition_sample`] of one CSV or JSON-lines file.
async fn check_partition_head(file: &InputFile, columns: &[String]) -> Result<()> {
    let (bytes, whole) = head_bytes(file, PARTITION_SAMPLE_BYTES).await?;
    let bytes = complete_lines(&bytes, whole);
    let found = match file.format {
        InputFormat::Csv => long_csv_partition_value(&bytes, columns),
        _ => long_json_partition_value(&bytes, columns),
    };
    match found {
        Some((line, e)) => Err(Error::BadRow {
            path: file.location.clone(),
            line,
            reason: e.to_string(),
        }),
        None => Ok(()),
    }
}

/// Bytes read from the start of each text input to look for partition values too long
/// for a directory name when the ingest is planned.
const PARTITION_SAMPLE_BYTES: u64 = 1 << 20;

/// Refuse, when an ingest is planned, a partition value of the inputs' first rows (the
/// first MiB of each CSV and JSON-lines file) whose directory name `column=value` would
/// be longer than [`MAX_PARTITION_SEGMENT_BYTES`](terrace_format::MAX_PARTITION_SEGMENT_BYTES)
/// once encoded: an error naming the file, the line and the column, before any job is
/// queued. Values past the sample, and those of Parquet and Arrow files, are refused by
/// the writer before it writes anything. Only text columns of `schema` can be too long.
pub async fn check_partition_sample(
    files: &[InputFile],
    schema: &Schema,
    partition_on: &[String],
) -> Result<()> {
    let columns: Vec<String> = partition_on
        .iter()
        .filter(|c| {
            schema.field_with_name(c).is_ok_and(|f| {
                matches!(
                    f.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                )
            })
        })
        .cloned()
        .collect();
    if columns.is_empty() {
        return Ok(());
    }
    // Owned, so the future is `Send` whatever lifetimes its caller's has.
    let text_files: Vec<InputFile> = files
        .iter()
        .filter(|f| matches!(f.format, InputFormat::Csv | InputFormat::JsonLines))
        .cloned()
        .collect();
    let columns = Arc::new(columns);
    let mut checks = futures::stream::iter(text_files)
        .map(move |file| {
            let columns = Arc::clone(&columns);
            async move { check_partition_head(&file, &columns).await }
        })
        .buffered(8);
    while let Some(checked) = checks.next().await {
        checked?;
    }
    Ok(())
}

/// Text inference gives timestamps without fractions the unit seconds, which Parquet has
/// no logical type for (arrow-rs would store bare INT64 that other readers take for
/// integers); milliseconds hold the same values and every reader knows them.
fn storable_times(schema: &Schema) -> Schema {
    retype(schema, |f| match f.data_type() {
        DataType::Timestamp(arrow::datatypes::TimeUnit::Second, tz) => {
            Some(f.clone().with_data_type(DataType::Timestamp(
                arrow::datatypes::TimeUnit::Millisecond,
                tz.clone(),
            )))
        }
        _ => None,
    })
}

/// `schema` with each field `change` gives a replacement for replaced; metadata kept.
fn retype(schema: &Schema, change: impl Fn(&Field) -> Option<Field>) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| change(f).unwrap_or_else(|| f.as_ref().clone()))
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// The first `bytes` up to the last complete line (all of it when it is the `whole` file).
fn complete_lines(bytes: &Bytes, whole: bool) -> Bytes {
    if whole {
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
    Ok(infer_schema_and_unseen(files, max_files).await?.0)
}

/// [`infer_schema`], and the columns it saw no value of (all empty in the rows read, or
/// no rows at all: a header-only CSV file), which it made nullable text. Into an
/// existing dataset such a column is read with the dataset's type instead
/// ([`with_types_of`]), so a header-only file appends nothing rather than failing on a
/// type it does not hold a value of.
pub async fn infer_schema_and_unseen(
    files: &[InputFile],
    max_files: usize,
) -> Result<(SchemaRef, Vec<String>)> {
    let first = files
        .first()
        .ok_or_else(|| Error::invalid("inputs", "no input file"))?;
    let mut schema = input_file_schema(first).await?;
    for file in files.iter().skip(1).take(max_files.saturating_sub(1)) {
        let other = input_file_schema(file).await?;
        schema = merge_schemas(&schema, &first.location, &other, &file.location)?;
    }
    let unseen = schema
        .fields()
        .iter()
        .filter(|f| f.data_type() == &DataType::Null)
        .map(|f| f.name().clone())
        .collect();
    Ok((Arc::new(strings_for_nulls(&schema)), unseen))
}

/// `schema` with each column of `columns` that `of` has taking its type there (and
/// nullable: no value of it was seen).
pub fn with_types_of(schema: &Schema, columns: &[String], of: &Schema) -> SchemaRef {
    Arc::new(retype(schema, |f| {
        if !columns.contains(f.name()) {
            return None;
        }
        let target = of.field_with_name(f.name()).ok()?;
        Some(
            f.clone()
                .with_data_type(target.data_type().clone())
                .with_nullable(true),
        )
    }))
}

/// A column inference saw no value of in any file (all empty in the rows read) is taken
/// as nullable text, as DuckDB and polars do. Left as Arrow's `Null` type, the CSV reader
/// would discard every later value of it without an error, and JSON could not hold one.
fn strings_for_nulls(schema: &Schema) -> Schema {
    retype(schema, |f| {
        (f.data_type() == &DataType::Null)
            .then(|| f.clone().with_data_type(DataType::Utf8).with_nullable(true))
    })
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
            // The header must name the schema's columns in its order: a schema given by
            // the user (or a file changed since it was planned) would otherwise be
            // matched by position, silently swapping columns of the same type.
            let mut decoder = arrow::csv::ReaderBuilder::new(Arc::clone(schema))
                .with_header(true)
                .with_header_validation(true)
                .with_batch_size(BATCH_ROWS)
                .build_decoder();
            stream_csv(file, tx, &mut decoder).await
        }
        InputFormat::JsonLines => stream_json(file, schema, tx).await,
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

/// The content of a file read as a stream: its stored bytes ([`stored_chunks`]), through
/// a gzip decoder when the file is [gzipped](InputFile::gzipped).
fn file_chunks(file: &InputFile) -> Result<BoxStream<'static, Result<Bytes>>> {
    let raw = stored_chunks(file)?;
    if !file.gzipped() {
        return Ok(raw);
    }
    // Errors of the stored bytes travel through the decoder as `io::Error`s and come out
    // as they went in (a store error stays retryable); the decoder's own are bad input.
    let compressed = tokio_util::io::StreamReader::new(raw.map_err(std::io::Error::other));
    let mut decoder = async_compression::tokio::bufread::GzipDecoder::new(compressed);
    // `cat a.gz b.gz > ab.gz` is a valid gzip file of two members; gzip reads both.
    decoder.multiple_members(true);
    let path = file.location.clone();
    Ok(
        tokio_util::io::ReaderStream::with_capacity(decoder, READ_CHUNK_BYTES as usize)
            .map_err(move |e| match e.downcast::<Error>() {
                Ok(stored) => stored,
                Err(e) => Error::Input {
                    path: path.clone(),
                    reason: format!("not a readable gzip file: {e}"),
                },
            })
            .boxed(),
    )
}

/// The stored bytes of a file read as a stream, in ranges of [`READ_CHUNK_BYTES`] with the next
/// two requested ahead.
///
/// Not `GetResult::into_stream`: on a local store that reads 8 KiB at a time, each read a
/// `spawn_blocking` hand-off, and on the lineitem CSV ingest (12,000 reads per 95 MB
/// file) waking the blocking pool's threads was about 9% of the profile. The size is the
/// one listed when the ingest was planned; a file cut shorter since fails its read.
fn stored_chunks(file: &InputFile) -> Result<BoxStream<'static, Result<Bytes>>> {
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

/// Feed a JSON-lines file to a decoder one line at a time, flushing full batches.
///
/// - **Strict keys.** A key the schema lacks (first seen past the rows inference read, or
///   left out of a given schema) is an error, not dropped.
/// - **Exact integers.** arrow-json reads `12.75` into an integer column as 12 (it falls
///   back to parsing a float and casting). Integer columns are therefore decoded as text
///   ([`json_read_schema`]) and parsed here: a number with a fraction is an error, as it
///   is in a CSV file.
/// - **Lines in errors.** arrow-json reports type errors when a batch is flushed, without
///   the row; the batch's lines are then decoded again one by one ([`locate_json_error`])
///   to name the first bad one.
async fn stream_json(file: &InputFile, schema: &SchemaRef, tx: &Sender) -> Result<()> {
    let read_schema = json_read_schema(schema);
    let mut decoder = json_decoder(&read_schema, BATCH_ROWS)?;
    // The line of each row the decoder holds (a line may hold more than one object).
    let mut row_lines: Vec<u64> = Vec::new();
    let bad = |line: u64, e: arrow::error::ArrowError| Error::BadRow {
        path: file.location.clone(),
        line,
        reason: e.to_string(),
    };
    let mut lines = file_lines(file)?;
    while let Some((line, text)) = lines.try_next().await? {
        let mut offset = 0;
        while offset < text.len() {
            let read = decoder.decode(&text[offset..]).map_err(|e| bad(line, e))?;
            offset += read;
            row_lines.resize(decoder.len(), line);
            if read == 0 || decoder.len() >= BATCH_ROWS {
                flush_json(file, schema, &read_schema, &mut decoder, &mut row_lines, tx).await?;
                if read == 0 && offset < text.len() {
                    break;
                }
            }
        }
    }
    flush_json(file, schema, &read_schema, &mut decoder, &mut row_lines, tx).await
}

fn json_decoder(
    read_schema: &SchemaRef,
    batch_rows: usize,
) -> Result<arrow::json::reader::Decoder> {
    arrow::json::ReaderBuilder::new(Arc::clone(read_schema))
        .with_strict_mode(true)
        // Numbers into the text columns that stand for integer ones.
        .with_coerce_primitive(true)
        .with_batch_size(batch_rows)
        .build_decoder()
        .map_err(|e| Error::arrow("preparing a JSON decoder", e))
}

/// The schema JSON is decoded with: integer columns (top level) as text.
fn json_read_schema(schema: &Schema) -> SchemaRef {
    Arc::new(retype(schema, |f| {
        f.data_type()
            .is_integer()
            .then(|| f.clone().with_data_type(DataType::Utf8))
    }))
}

/// Emit the decoder's rows as a batch of `schema`, or the error of the first bad line.
async fn flush_json(
    file: &InputFile,
    schema: &SchemaRef,
    read_schema: &SchemaRef,
    decoder: &mut arrow::json::reader::Decoder,
    row_lines: &mut Vec<u64>,
    tx: &Sender,
) -> Result<()> {
    let lines = match (row_lines.first(), row_lines.last()) {
        (Some(&first), Some(&last)) => first..=last,
        _ => return Ok(()),
    };
    row_lines.clear();
    let batch = match decoder.flush() {
        Ok(Some(batch)) => batch,
        Ok(None) => return Ok(()),
        Err(e) => return Err(locate_json_error(file, schema, read_schema, lines, e).await),
    };
    match exact_integers(batch, schema) {
        Ok(batch) => send(tx, batch).await,
        Err(e) => Err(locate_json_error(file, schema, read_schema, lines, e).await),
    }
}

/// The columns of `batch` (decoded with [`json_read_schema`]) as `schema`'s: integers
/// parsed from their text, exactly. A whole number written as a float (`12.0`, `1e3`) is
/// taken; one with a fraction, or out of the type's range, is an error.
fn exact_integers(
    batch: RecordBatch,
    schema: &SchemaRef,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    use arrow::array::{Array, AsArray, Int64Array};
    use arrow::error::ArrowError;
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if !field.data_type().is_integer() {
                return Ok(Arc::clone(column));
            }
            let text = column.as_string::<i32>();
            let mut values = Vec::with_capacity(text.len());
            for value in text.iter() {
                values.push(match value {
                    None => None,
                    Some(v) => Some(parse_exact_integer(v).ok_or_else(|| {
                        ArrowError::ParseError(format!(
                            "{:?} is not a whole number, as column {:?} ({}) needs",
                            v,
                            field.name(),
                            field.data_type()
                        ))
                    })?),
                });
            }
            let parsed: arrow::array::ArrayRef = Arc::new(Int64Array::from(values));
            let options = arrow::compute::CastOptions {
                safe: false,
                ..Default::default()
            };
            arrow::compute::cast_with_options(&parsed, field.data_type(), &options)
                .map_err(|e| ArrowError::ParseError(format!("column {:?}: {e}", field.name())))
        })
        .collect::<std::result::Result<Vec<_>, ArrowError>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// `text` as an `i64` if it is a whole number: an integer literal, or a float literal
/// without a fraction within the range where floats are exact (below 2^53).
fn parse_exact_integer(text: &str) -> Option<i64> {
    if let Ok(v) = text.parse::<i64>() {
        return Some(v);
    }
    let v = text.parse::<f64>().ok()?;
    const EXACT: f64 = (1u64 << 53) as f64;
    (v.is_finite() && v.fract() == 0.0 && v.abs() <= EXACT).then_some(v as i64)
}

/// The first line among `lines` that does not decode on its own, with its error; the file
/// is read again (an error path only). Falls back to `error` over the range if every
/// line decodes alone.
async fn locate_json_error(
    file: &InputFile,
    schema: &SchemaRef,
    read_schema: &SchemaRef,
    lines: std::ops::RangeInclusive<u64>,
    error: arrow::error::ArrowError,
) -> Error {
    let found: Result<Option<(u64, arrow::error::ArrowError)>> = async {
        let mut all = file_lines(file)?;
        while let Some((line, text)) = all.try_next().await? {
            if line > *lines.end() {
                break;
            }
            if lines.contains(&line) {
                let mut decoder = json_decoder(read_schema, 1024)?;
                let outcome = decoder
                    .decode(&text)
                    .and_then(|_| decoder.flush())
                    .and_then(|batch| batch.map(|b| exact_integers(b, schema)).transpose());
                if let Err(e) = outcome {
                    return Ok(Some((line, e)));
                }
            }
        }
        Ok(None)
    }
    .await;
    match found {
        Ok(Some((line, e))) => Error::BadRow {
            path: file.location.clone(),
            line,
            reason: e.to_string(),
        },
        Ok(None) => Error::BadRow {
            path: file.location.clone(),
            line: *lines.start(),
            reason: format!("in lines {} to {}: {error}", lines.start(), lines.end()),
        },
        Err(e) => e,
    }
}

/// The lines of a file's content with their numbers (from 1), each with its newline (one
/// is added to a last line without it).
fn file_lines(file: &InputFile) -> Result<BoxStream<'static, Result<(u64, Bytes)>>> {
    let body = file_chunks(file)?;
    let start = (body, bytes::BytesMut::new(), 0u64, false);
    Ok(futures::stream::try_unfold(
        start,
        |(mut body, mut pending, mut line, mut done)| async move {
            loop {
                if let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let text = pending.split_to(end + 1).freeze();
                    line += 1;
                    return Ok(Some(((line, text), (body, pending, line, done))));
                }
                if done {
                    return Ok(None);
                }
                match body.try_next().await? {
                    Some(chunk) => pending.extend_from_slice(&chunk),
                    None => {
                        done = true;
                        if !pending.is_empty() {
                            pending.extend_from_slice(b"\n");
                        }
                    }
                }
            }
        },
    )
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
    let mut quotes = CsvQuotes::new();
    while let Some(chunk) = body.try_next().await? {
        // Before the decoder sees the bytes: it would take them as they are.
        if let Err(e) = quotes.scan(&chunk) {
            return Err(quote_error(file, e).await);
        }
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
    if let Err(e) = quotes.finish() {
        return Err(quote_error(file, e).await);
    }
    // Signal the end of input, then drain.
    decoder.decode(&[]).map_err(bad)?;
    while let Some(batch) = decoder.flush().map_err(bad)? {
        send(tx, batch).await?;
    }
    Ok(())
}

/// A quoting error of a CSV file as a [`Error::BadRow`] at the line where the field
/// starts, counted by reading the file again up to it (an error path only).
async fn quote_error(file: &InputFile, e: QuoteError) -> Error {
    let counted: Result<u64> = async {
        let mut chunks = file_chunks(file)?;
        let (mut seen, mut line) = (0u64, 1u64);
        while seen < e.offset() {
            let Some(chunk) = chunks.try_next().await? else {
                break;
            };
            line += line_of(&chunk, e.offset() - seen) - 1;
            seen += chunk.len() as u64;
        }
        Ok(line)
    }
    .await;
    match counted {
        Ok(line) => Error::BadRow {
            path: file.location.clone(),
            line,
            reason: e.reason(),
        },
        Err(read) => read,
    }
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
            // Nulls only: read as nulls of the expected type (see `conform`).
            Ok(f) if f.data_type() == &DataType::Null => {}
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
                .map(|c| match c.data_type() {
                    // A column of nothing but nulls (pyarrow's type for an all-None pandas
                    // column) is read as the schema's type, nulls of which it holds.
                    DataType::Null if f.data_type() != &DataType::Null => {
                        arrow::array::new_null_array(f.data_type(), c.len())
                    }
                    _ => Arc::clone(c),
                })
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
