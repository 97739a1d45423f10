//! Checks of input files that their readers do not make: empty files, column names, and
//! partition values too long for a directory name (CSV quoting is `quotes.rs`).
//!
//! - **Empty files.** A file without content is refused naming it ([`check_not_empty`]),
//!   where a reader would fail on a byte range or read no columns.
//! - **Names.** A CSV header with an empty or repeated name, and a Parquet or Arrow
//!   schema with a repeated name, would make a dataset whose columns cannot be told
//!   apart (`{"a":1,"a":1}` for a row holding 1, 2); they are refused, naming the
//!   column's position.
//! - **Partition values.** The first rows of text inputs are looked at when the ingest is
//!   planned, so a value whose directory name would be too long is refused before any
//!   job is queued ([`check_partition_sample`]); the writer checks every value anyway.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};
use futures::stream::StreamExt;

use super::content::{complete_lines, head_bytes};
use super::quotes::{UTF8_BOM, line_of};
use super::{InputFile, InputFormat};
use crate::error::{Error, Result};

/// Refuse the first of `files` that is empty (0 bytes), naming it: terrace-planner's
/// `list_inputs` calls this, so that no reader is given a file without content.
pub fn check_not_empty(files: &[InputFile]) -> Result<()> {
    match files.iter().find(|f| f.size_bytes == 0) {
        Some(empty) => Err(empty_file(&empty.location)),
        None => Ok(()),
    }
}

/// An input without content is refused, as pandas, polars and pyarrow refuse it ("No
/// columns to parse", "empty CSV"): a CSV file without its header line has no columns,
/// and an empty file among many is more likely a producer that died than a part with
/// no rows (a part with no rows still has its header, or its Parquet footer).
pub(super) fn empty_file(path: &str) -> Error {
    Error::Input {
        path: path.to_string(),
        reason: "the file is empty (0 bytes): it holds no header and no rows; leave it out \
                 of the inputs"
            .to_string(),
    }
}

/// Refuse a CSV header (the inferred schema's names) with an empty or repeated name.
pub(super) fn check_csv_header(schema: &Schema, path: &str) -> Result<()> {
    let bad = |column: usize, reason: String| Error::BadHeader {
        path: path.to_string(),
        line: 1,
        column,
        reason,
    };
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if names.iter().all(|n| n.is_empty()) {
        return Err(bad(
            1,
            "the header names no column (the first line is empty or only commas); the \
             first line of a CSV file must name its columns"
                .to_string(),
        ));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(bad(
                i + 1,
                "no name (two commas in a row, or one at the start or end of the line); \
                 every column needs a name"
                    .to_string(),
            ));
        }
        if let Some(first) = seen.insert(name, i + 1) {
            return Err(bad(
                i + 1,
                format!("{name:?} names column {first} too; each column needs a name of its own"),
            ));
        }
    }
    Ok(())
}

/// The first name of `names` (top-level columns) that is empty or repeated, described.
fn bad_name<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.into_iter().enumerate() {
        if name.is_empty() {
            return Some(format!(
                "column {} has an empty name; every column needs a name",
                i + 1
            ));
        }
        if let Some(first) = seen.insert(name, i + 1) {
            return Some(format!(
                "columns {first} and {} are both named {name:?}; each column needs a name \
                 of its own (a query could see only one of them)",
                i + 1
            ));
        }
    }
    None
}

/// Refuse a schema read from a file (Parquet, Arrow, JSON keys) with an empty or
/// repeated column name.
pub(super) fn check_names(schema: &Schema, path: &str) -> Result<()> {
    match bad_name(schema.fields().iter().map(|f| f.name().as_str())) {
        Some(reason) => Err(Error::Input {
            path: path.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Refuse a schema given by the user with an empty or repeated column name.
pub fn check_schema_names(schema: &Schema) -> Result<()> {
    match bad_name(schema.fields().iter().map(|f| f.name().as_str())) {
        Some(reason) => Err(Error::InvalidArgument {
            what: "schema".to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A partition value of `bytes` (the start of a CSV file with its header, cut at a line
/// end) whose directory name would be too long: the line it is on and the format's
/// error. Only the header's columns named in `columns` are looked at; an empty field is
/// a null, written as the short marker.
fn long_csv_partition_value(bytes: &[u8], columns: &[String]) -> Option<(u64, Error)> {
    let mut reader = csv_core::Reader::new();
    let mut input = bytes;
    let mut out = [0u8; 4096];
    let (mut record, mut field) = (0u64, 0usize);
    let mut value: Vec<u8> = Vec::new();
    let mut field_start = 0usize;
    let mut header: Vec<Vec<u8>> = Vec::new();
    let mut eof = false;
    // The partition column at each position of the header, known once it is read.
    let mut wanted: Vec<Option<&str>> = Vec::new();
    loop {
        let (result, read, written) = reader.read_field(input, &mut out);
        input = &input[read..];
        let collect = record == 0 || wanted.get(field).copied().flatten().is_some();
        if collect {
            value.extend_from_slice(&out[..written]);
        }
        match result {
            csv_core::ReadFieldResult::InputEmpty => {
                if eof {
                    return None;
                }
                eof = input.is_empty();
            }
            csv_core::ReadFieldResult::OutputFull => {}
            csv_core::ReadFieldResult::Field { record_end } => {
                if record == 0 {
                    header.push(std::mem::take(&mut value));
                } else if let Some(Some(column)) = wanted.get(field) {
                    if !value.is_empty()
                        && let Ok(text) = std::str::from_utf8(&value)
                        && let Err(e) = crate::check_partition_value(column, Some(text))
                    {
                        return Some((line_of(bytes, field_start as u64), e));
                    }
                    value.clear();
                }
                field += 1;
                if record_end {
                    if record == 0 {
                        wanted = header
                            .iter()
                            .enumerate()
                            .map(|(i, name)| {
                                let name = match i {
                                    0 => name.strip_prefix(UTF8_BOM).unwrap_or(name),
                                    _ => name,
                                };
                                columns
                                    .iter()
                                    .find(|c| c.as_bytes() == name)
                                    .map(String::as_str)
                            })
                            .collect();
                    }
                    record += 1;
                    field = 0;
                }
                field_start = bytes.len() - input.len();
            }
            csv_core::ReadFieldResult::End => return None,
        }
    }
}

/// A partition value of `bytes` (the start of a JSON-lines file, cut at a line end)
/// whose directory name would be too long: its line and the format's error. Lines that
/// do not parse are left to the reader, which names them.
fn long_json_partition_value(bytes: &[u8], columns: &[String]) -> Option<(u64, Error)> {
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        // A line can be long only if it holds a long value: skip the parse otherwise.
        if line.len() < crate::MAX_PARTITION_SEGMENT_BYTES / 3 {
            continue;
        }
        let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(line) else {
            continue;
        };
        for column in columns {
            if let Some(serde_json::Value::String(text)) = object.get(column)
                && let Err(e) = crate::check_partition_value(column, Some(text))
            {
                return Some((i as u64 + 1, e));
            }
        }
    }
    None
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
/// be longer than [`MAX_PARTITION_SEGMENT_BYTES`](crate::MAX_PARTITION_SEGMENT_BYTES)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_partition_values_in_a_csv_sample_name_their_line() {
        let long = "v".repeat(300);
        let text = format!("n,origin\n1,JFK\n2,\"multi\nline\"\n3,{long}\n");
        let (line, e) = long_csv_partition_value(text.as_bytes(), &["origin".into()]).unwrap();
        assert_eq!(line, 5);
        assert!(e.to_string().contains("\"origin\""), "{e}");
        // The same value in a column not partitioned on is fine.
        assert!(long_csv_partition_value(text.as_bytes(), &["n".into()]).is_none());
        let json = format!("{{\"origin\": \"JFK\"}}\n{{\"origin\": \"{long}\"}}\n");
        let (line, _) = long_json_partition_value(json.as_bytes(), &["origin".into()]).unwrap();
        assert_eq!(line, 2);
    }
}
