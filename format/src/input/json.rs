//! JSON lines decoded into the schema, strictly: keys outside it and inexact integers are
//! errors naming their line.

use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use futures::stream::TryStreamExt;

use super::InputFile;
use super::batches::{BATCH_ROWS, Sender, send};
use super::content::file_lines;
use super::schema::retype;
use crate::error::{Error, Result};

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
pub(super) async fn stream_json(file: &InputFile, schema: &SchemaRef, tx: &Sender) -> Result<()> {
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
