//! The content of an input file: its first bytes, its bytes as a stream (ranges read
//! ahead, through a gzip decoder when the name says so), its lines, and the Parquet
//! reader of its footer.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
// Deprecated in parquet 59.3 in favour of a hand-written `AsyncFileReader`; it is still
// the reader DataFusion itself uses, and replacing it buys nothing here.
#[allow(deprecated)]
use parquet::arrow::async_reader::ParquetObjectReader;

use super::{InputFile, input_location, store_error};
use crate::error::{Error, Result};

/// Up to `limit` bytes from the start of a file's content (decompressed when it is
/// gzipped), and whether they are all of it.
pub(super) async fn head_bytes(file: &InputFile, limit: u64) -> Result<(Bytes, bool)> {
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
    let loc = input_location(&file.location)?;
    let end = file.size_bytes.min(limit);
    let bytes = loc
        .store
        .get_range(&loc.root, 0..end)
        .await
        .map_err(store_error(&file.location))?;
    Ok((bytes, end >= file.size_bytes))
}

/// A Parquet reader of the file, its footer read; a gzipped Parquet file is refused.
#[allow(deprecated)]
pub(super) async fn parquet_builder(
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
    let loc = input_location(&file.location)?;
    let reader = ParquetObjectReader::new(loc.store, loc.root).with_file_size(file.size_bytes);
    ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| Error::Input {
            path: file.location.clone(),
            reason: format!("not a readable Parquet file: {e}"),
        })
}

/// The compressed size of each row group of a Parquet input, from its footer: where
/// terrace-planner's `split_inputs` may cut a file bigger than its target.
pub async fn parquet_row_group_bytes(file: &InputFile) -> Result<Vec<u64>> {
    let builder = parquet_builder(file).await?;
    Ok(builder
        .metadata()
        .row_groups()
        .iter()
        .map(|rg| rg.compressed_size().max(0) as u64)
        .collect())
}

/// The first `bytes` up to the last complete line (all of it when it is the `whole` file).
pub(super) fn complete_lines(bytes: &Bytes, whole: bool) -> Bytes {
    if whole {
        return bytes.clone();
    }
    match bytes.iter().rposition(|b| *b == b'\n') {
        Some(i) => bytes.slice(..=i),
        None => bytes.clone(),
    }
}

/// Bytes asked for per request when a file is read as a stream (CSV, JSON lines, Arrow).
const READ_CHUNK_BYTES: u64 = 8 << 20;

/// The content of a file read as a stream: its stored bytes ([`stored_chunks`]), through
/// a gzip decoder when the file is [gzipped](InputFile::gzipped).
pub(super) fn file_chunks(file: &InputFile) -> Result<BoxStream<'static, Result<Bytes>>> {
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
/// `spawn_blocking` hand-off, and waking the blocking pool's threads that often showed in
/// the ingest's profile. The size is the
/// one listed when the ingest was planned; a file cut shorter since fails its read.
fn stored_chunks(file: &InputFile) -> Result<BoxStream<'static, Result<Bytes>>> {
    let loc = input_location(&file.location)?;
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

/// The lines of a file's content with their numbers (from 1), each with its newline (one
/// is added to a last line without it).
pub(super) fn file_lines(file: &InputFile) -> Result<BoxStream<'static, Result<(u64, Bytes)>>> {
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
