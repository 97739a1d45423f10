//! Ingest inputs: the files a write reads, their schema, and their rows.
//!
//! terrace-planner lists the inputs of an ingest ([`InputFile`]s: local paths or
//! object-store URLs, with globs) and cuts them into [`InputSplit`]s; each write or map
//! task reads its split here ([`read_split`]) and gives the rows to a
//! [`DataFileWriter`](crate::DataFileWriter). Decoding sits next to the writer that
//! consumes it, so a planner that reads only manifests never decodes a row.
//!
//! Formats: CSV (with a header), Parquet, JSON lines, Arrow IPC streams; by extension
//! unless given. A text or Arrow file whose name ends in `.gz` (`flights.csv.gz`) is
//! gzip-compressed and read through a streaming decoder, as pandas, DuckDB and polars
//! read it; Parquet compresses its own pages, so a gzipped Parquet file is refused with a
//! message saying so.
//!
//! The schema is inferred from the first files (arrow-csv and arrow-json inference, the
//! Parquet footer, the Arrow stream's schema message) unless given; files that disagree
//! on a column are refused with an error naming both files and the column. A later file
//! is checked when it is read: a CSV value that does not fit the schema is an error with
//! the file and line number.
//!
//! What the readers would take silently is refused, naming the file and where: an empty
//! file (0 bytes), a CSV header with an empty or repeated column name (or a Parquet /
//! Arrow schema with a repeated one, a JSON key that is empty), CSV quotes that never
//! close, stray quotes inside unquoted fields and text after a closing quote (with the
//! line where the field starts), and partition values too long for a directory name
//! ([`check_partition_sample`]). A key repeated within one JSON object is one column and
//! takes its last value, as JSON parsers do.
//!
//! - `content.rs`: a file's bytes (its start, a read-ahead stream through gzip, its
//!   lines) and its Parquet footer;
//! - `schema.rs`: one file's schema, inference over several and merging;
//! - `read.rs`: a split's rows in the schema (CSV, Parquet, Arrow); `json.rs`: JSON lines;
//! - `checks.rs` (names, empty files, partition values) and `quotes.rs` (CSV quoting):
//!   what the readers do not check.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::location::Location;

mod batches;
mod checks;
mod content;
mod json;
mod quotes;
mod read;
mod schema;

pub use checks::{check_not_empty, check_partition_sample, check_schema_names};
pub use content::parquet_row_group_bytes;
pub use read::read_split;
pub use schema::{
    infer_schema, infer_schema_and_unseen, input_file_schema, merge_schemas, with_types_of,
};

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

fn store_error(path: &str) -> impl Fn(object_store::Error) -> Error + '_ {
    move |source| Error::InputStore {
        path: path.to_string(),
        source,
    }
}

/// The location of an input (a path, a URL, or a glob's fixed part); text that names no
/// location is an [`Error::Input`] naming it.
pub fn input_location(text: &str) -> Result<Location> {
    Location::parse(text).map_err(|e| Error::Input {
        path: text.to_string(),
        reason: e.to_string(),
    })
}
