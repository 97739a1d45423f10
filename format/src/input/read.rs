//! The rows of a split, decoded as they arrive and fitted to the schema: Parquet (by row
//! groups), Arrow streams and CSV here, JSON lines in `json.rs`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};

use super::batches::{BATCH_ROWS, Sender, send};
use super::content::{file_chunks, parquet_builder};
use super::json::stream_json;
use super::quotes::{CsvQuotes, QuoteError, line_of};
use super::{InputFile, InputFormat, InputSplit, SplitPart};
use crate::error::{Error, Result};

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
