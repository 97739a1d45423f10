//! The schema of inputs: read from one file ([`input_file_schema`]), inferred from
//! several that must agree ([`infer_schema`]), and fitted to an existing dataset's
//! types ([`with_types_of`]).

use std::io::Cursor;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::checks::{check_csv_header, check_names, empty_file};
use super::content::{complete_lines, head_bytes, parquet_builder};
use super::quotes::{CsvQuotes, line_of};
use super::{InputFile, InputFormat};
use crate::error::{Error, Result};

/// Bytes read from the start of a text file to infer its schema.
const INFER_BYTES: u64 = 4 << 20;

/// The schema read from one input file (its header, first rows, footer or stream schema
/// message). Not [`crate::file_schema`], a dataset's stored schema of a data file.
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
pub(super) fn retype(schema: &Schema, change: impl Fn(&Field) -> Option<Field>) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| change(f).unwrap_or_else(|| f.as_ref().clone()))
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
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
    let first = files.first().ok_or_else(|| Error::InvalidArgument {
        what: "inputs".to_string(),
        reason: "no input file".to_string(),
    })?;
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
