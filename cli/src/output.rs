//! How a query result is shown: the output formats and their rendering.
//!
//! The jobs crate hands over the result as a stream of record batches; what a terminal or
//! an output file gets from it is decided here, as nothing below the CLI prints.

use std::io::Write;

use anyhow::Context;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use futures::stream::BoxStream;
use parquet::arrow::ArrowWriter;

/// How query results are written (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned text table.
    Table,
    /// CSV with a header.
    Csv,
    /// Parquet.
    Parquet,
    /// One JSON object per line.
    Jsonl,
}

impl OutputFormat {
    /// The format an output file's extension names, if any.
    pub fn of_extension(output: &str) -> Option<OutputFormat> {
        let lower = output.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Some(OutputFormat::Csv)
        } else if lower.ends_with(".parquet") {
            Some(OutputFormat::Parquet)
        } else if lower.ends_with(".jsonl")
            || lower.ends_with(".json")
            || lower.ends_with(".ndjson")
        {
            Some(OutputFormat::Jsonl)
        } else {
            None
        }
    }
}

/// Write a result stream as `format` to `out` (a local file or stdout); returns rows.
pub async fn write_result(
    batches: BoxStream<'static, terrace_jobs::Result<RecordBatch>>,
    format: OutputFormat,
    out: Box<dyn Write + Send>,
) -> anyhow::Result<u64> {
    render(batches, format, out)
        .await
        .context("writing the query result")
}

async fn render(
    mut batches: BoxStream<'static, terrace_jobs::Result<RecordBatch>>,
    format: OutputFormat,
    mut out: Box<dyn Write + Send>,
) -> anyhow::Result<u64> {
    let mut rows = 0u64;
    match format {
        OutputFormat::Table => {
            // Column widths depend on every row: the table is drawn once all are here.
            let mut all = Vec::new();
            while let Some(batch) = batches.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                all.push(batch);
            }
            let text = arrow::util::pretty::pretty_format_batches(&all)?;
            writeln!(out, "{text}")?;
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            while let Some(batch) = batches.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch)?;
            }
        }
        OutputFormat::Jsonl => {
            let mut writer = arrow::json::LineDelimitedWriter::new(out);
            while let Some(batch) = batches.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch)?;
            }
            writer.finish()?;
        }
        OutputFormat::Parquet => {
            // The schema comes with the first batch; an empty result writes no file.
            let mut writer: Option<ArrowWriter<Box<dyn Write + Send>>> = None;
            let mut out = Some(out);
            while let Some(batch) = batches.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                if let Some(out) = out.take() {
                    writer = Some(ArrowWriter::try_new(out, batch.schema(), None)?);
                }
                if let Some(writer) = writer.as_mut() {
                    writer.write(&batch)?;
                }
            }
            if let Some(writer) = writer {
                writer.close()?;
            }
        }
    }
    Ok(rows)
}
