//! Reading a range of groups from one run file with ranged GETs.
//!
//! A cursor fetches the run's footer once (`tail_offset..size_bytes`, one GET), checks
//! it against the run's report and the dataset's stored columns, then reads the record
//! batches holding the selected groups in windows: one GET spans as many consecutive
//! batches as fit the window (at least one), so small groups cost no GET each and a big
//! group streams through a window at a time. A group's rows are sliced out of the
//! batches it shares with its neighbours and copied into compact arrays, so what a
//! consumer keeps of a group holds no neighbour's rows.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::buffer::Buffer;
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::convert::fb_to_schema;
use arrow::ipc::reader::{FileDecoder, read_footer_length};
use arrow::ipc::{Block, root_as_footer};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use super::run_file::{GroupRange, RunFile, RunGroup, ShuffleKey};
use crate::error::{Error, Result};
use crate::writer::object_path;

/// The selected groups of one run, read in order.
pub(crate) struct RunCursor {
    store: Arc<dyn ObjectStore>,
    location: Path,
    /// The run's path, for errors.
    path: String,
    decoder: Arc<FileDecoder>,
    /// The file's record-batch blocks, and the run row each starts at (one more entry:
    /// the run's rows).
    blocks: Vec<Block>,
    block_starts: Vec<u64>,
    /// Blocks holding the selected groups: `next_fetch..end_block` are still to fetch.
    next_fetch: usize,
    end_block: usize,
    groups: VecDeque<RunGroup>,
    /// Run row of the next row to yield.
    position: u64,
    /// Rows of the entered group not yet yielded.
    left: u64,
    /// Fetched and decoded blocks, with the run row each starts at.
    decoded: VecDeque<(u64, RecordBatch)>,
    window_bytes: u64,
    file_schema: SchemaRef,
    /// GET requests made and bytes they returned.
    requests: u64,
    bytes_read: u64,
}

impl RunCursor {
    /// Open `run` (relative to `root`) for the groups `range` selects; `None` when it
    /// holds none of them (no request is made). `run_schema` is what the run must hold,
    /// `file_schema` what its batches are cast back to.
    pub(crate) async fn open(
        store: Arc<dyn ObjectStore>,
        root: &Path,
        run: &RunFile,
        range: &GroupRange,
        run_schema: &Schema,
        file_schema: SchemaRef,
        window_bytes: u64,
    ) -> Result<Option<Self>> {
        let (first, end) = run.group_span(range);
        if first == end {
            return Ok(None);
        }
        let invalid = |reason: String| Error::InvalidRunFile {
            path: run.path.clone(),
            reason,
        };
        check_report(run).map_err(invalid)?;
        let location = object_path(root, &run.path)?;
        let options = GetOptions {
            range: Some(GetRange::Bounded(run.tail_offset..run.size_bytes)),
            ..GetOptions::default()
        };
        let tail = match store.get_opts(&location, options).await {
            Ok(result) => {
                if result.meta.size != run.size_bytes {
                    return Err(invalid(size_differs(result.meta.size, run.size_bytes)));
                }
                result
                    .bytes()
                    .await
                    .map_err(|e| Error::store(&location, e))?
            }
            Err(e) => {
                // A shorter file makes the range invalid; say so rather than relay the
                // store's range error.
                if let Ok(meta) = store.head(&location).await
                    && meta.size != run.size_bytes
                {
                    return Err(invalid(size_differs(meta.size, run.size_bytes)));
                }
                return Err(Error::store(&location, e));
            }
        };
        let (decoder, blocks) = read_footer(&tail, run_schema).map_err(invalid)?;
        check_blocks(&blocks, run).map_err(invalid)?;
        let mut block_starts = Vec::with_capacity(blocks.len() + 1);
        let mut row = 0u64;
        for &rows in &run.block_rows {
            block_starts.push(row);
            row += u64::from(rows);
        }
        block_starts.push(row);
        let start_row: u64 = run.groups[..first].iter().map(|g| g.rows).sum();
        let end_row: u64 = start_row + run.groups[first..end].iter().map(|g| g.rows).sum::<u64>();
        // The block holding `start_row`, and the first block starting at or after the end.
        let first_block = block_starts.partition_point(|&s| s <= start_row) - 1;
        let end_block = block_starts[..blocks.len()].partition_point(|&s| s < end_row);
        Ok(Some(Self {
            store,
            location,
            path: run.path.clone(),
            decoder: Arc::new(decoder),
            blocks,
            block_starts,
            next_fetch: first_block,
            end_block,
            groups: run.groups[first..end].iter().cloned().collect(),
            position: start_row,
            left: 0,
            decoded: VecDeque::new(),
            window_bytes: window_bytes.max(1),
            file_schema,
            requests: 1,
            bytes_read: tail.len() as u64,
        }))
    }

    /// GET requests made so far and the bytes they returned.
    pub(crate) fn reads(&self) -> (u64, u64) {
        (self.requests, self.bytes_read)
    }

    /// The run's path relative to the root.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The key of the next group not yet entered.
    pub(crate) fn next_key(&self) -> Option<&ShuffleKey> {
        self.groups.front().map(|g| &g.key)
    }

    /// Start reading the next group (skipping what is left of the one before); returns
    /// its rows in this run.
    pub(crate) fn enter(&mut self) -> Option<u64> {
        let group = self.groups.pop_front()?;
        self.position += self.left;
        self.left = group.rows;
        Some(group.rows)
    }

    /// The next batch of the entered group, `None` after its last.
    pub(crate) async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.left == 0 {
            return Ok(None);
        }
        loop {
            while let Some((start, batch)) = self.decoded.front() {
                if start + batch.num_rows() as u64 > self.position {
                    break;
                }
                self.decoded.pop_front();
            }
            if !self.decoded.is_empty() {
                break;
            }
            self.fetch_window().await?;
        }
        let Some((start, batch)) = self.decoded.front() else {
            return Ok(None);
        };
        let offset = (self.position - start) as usize;
        let len = (batch.num_rows() - offset).min(self.left as usize);
        // A copy, so the group's rows do not hold the shared batch, nor the fetched window
        // that an uncompressed batch's arrays point into (a writer holding them would
        // count all of it). `concat_batches` of one batch is only a slice; `take` copies.
        let rows = UInt32Array::from_iter_values(offset as u32..(offset + len) as u32);
        let out = take_record_batch(batch, &rows)
            .map_err(|e| Error::arrow(format!("reading run file {}", self.path), e))?;
        self.position += len as u64;
        self.left -= len as u64;
        Ok(Some(out))
    }

    /// Fetch the next blocks that fit the window with one GET and decode them off the
    /// executor.
    async fn fetch_window(&mut self) -> Result<()> {
        let start = self.next_fetch;
        if start >= self.end_block {
            return Err(self.invalid("a group reaches past the last batch".to_string()));
        }
        let begin = self.blocks[start].offset() as u64;
        let mut end = start;
        let mut stop = begin;
        while end < self.end_block {
            let block_end = block_end(&self.blocks[end]);
            if end > start && block_end - begin > self.window_bytes {
                break;
            }
            stop = block_end;
            end += 1;
        }
        let bytes = self
            .store
            .get_range(&self.location, begin..stop)
            .await
            .map_err(|e| Error::store(&self.location, e))?;
        self.requests += 1;
        self.bytes_read += bytes.len() as u64;
        if bytes.len() as u64 != stop - begin {
            return Err(self.invalid(format!(
                "a read of bytes {begin}..{stop} returned {} bytes",
                bytes.len()
            )));
        }
        let blocks = self.blocks[start..end].to_vec();
        let expected_rows: Vec<u64> = (start..end)
            .map(|i| self.block_starts[i + 1] - self.block_starts[i])
            .collect();
        let decoder = Arc::clone(&self.decoder);
        let file_schema = Arc::clone(&self.file_schema);
        let path = self.path.clone();
        let decoded = tokio::task::spawn_blocking(move || {
            decode(&decoder, &blocks, Buffer::from(bytes), begin, &file_schema)
                .and_then(|batches| {
                    for (i, (batch, rows)) in batches.iter().zip(&expected_rows).enumerate() {
                        if batch.num_rows() as u64 != *rows {
                            return Err((
                                i,
                                format!("it has {} rows, the report says {rows}", batch.num_rows()),
                            ));
                        }
                    }
                    Ok(batches)
                })
                .map_err(|(i, reason)| Error::InvalidRunFile {
                    path,
                    reason: format!("record batch {}: {reason}", start + i),
                })
        })
        .await
        .map_err(|e| Error::Task {
            context: format!("decoding run file {}", self.path),
            reason: e.to_string(),
        })??;
        for (i, batch) in decoded.into_iter().enumerate() {
            self.decoded
                .push_back((self.block_starts[start + i], batch));
        }
        self.next_fetch = end;
        Ok(())
    }

    fn invalid(&self, reason: String) -> Error {
        Error::InvalidRunFile {
            path: self.path.clone(),
            reason,
        }
    }
}

fn size_differs(found: u64, expected: u64) -> String {
    format!("it is {found} bytes, its report says {expected} (truncated or replaced?)")
}

/// The report must add up: its groups' rows, its batches' rows and its row count agree,
/// and the groups are in strictly increasing key order.
fn check_report(run: &RunFile) -> std::result::Result<(), String> {
    let group_rows: u64 = run.groups.iter().map(|g| g.rows).sum();
    let block_rows: u64 = run.block_rows.iter().map(|&r| u64::from(r)).sum();
    if group_rows != run.rows || block_rows != run.rows {
        return Err(format!(
            "its report says {} rows, {group_rows} in its groups and {block_rows} in its \
             batches",
            run.rows
        ));
    }
    if run.tail_offset > run.size_bytes {
        return Err(format!(
            "its report puts the footer at {} in a file of {} bytes",
            run.tail_offset, run.size_bytes
        ));
    }
    for pair in run.groups.windows(2) {
        if pair[0].key >= pair[1].key {
            return Err(format!(
                "groups out of order: {} before {}",
                pair[0].key, pair[1].key
            ));
        }
    }
    Ok(())
}

/// Where a block ends (saturating: [`check_blocks`] refuses blocks past the tail).
fn block_end(block: &Block) -> u64 {
    (block.offset().max(0) as u64)
        .saturating_add(block.metaDataLength().max(0) as u64)
        .saturating_add(block.bodyLength().max(0) as u64)
}

/// The footer's blocks must be those of the report, follow one another without
/// overlap at non-negative offsets, and end before the tail.
fn check_blocks(blocks: &[Block], run: &RunFile) -> std::result::Result<(), String> {
    if blocks.len() != run.block_rows.len() {
        return Err(format!(
            "it has {} record batches, its report says {}",
            blocks.len(),
            run.block_rows.len()
        ));
    }
    let mut end = 0u64;
    for block in blocks {
        if block.offset() < 0
            || block.metaDataLength() < 0
            || block.bodyLength() < 0
            || (block.offset() as u64) < end
        {
            return Err(format!(
                "a record batch at {} overlaps the one before or has a negative size",
                block.offset()
            ));
        }
        end = block_end(block);
        if end > run.tail_offset {
            return Err(format!(
                "a record batch at {} ends after the batches' end ({})",
                block.offset(),
                run.tail_offset
            ));
        }
    }
    Ok(())
}

/// Parse the tail of a run (end-of-stream marker, footer, length, magic) into a decoder
/// and the record-batch blocks, checking the schema is `expected`.
fn read_footer(
    tail: &[u8],
    expected: &Schema,
) -> std::result::Result<(FileDecoder, Vec<Block>), String> {
    let Some(trailer_start) = tail.len().checked_sub(10) else {
        return Err("it ends before an Arrow IPC footer".to_string());
    };
    let mut trailer = [0u8; 10];
    trailer.copy_from_slice(&tail[trailer_start..]);
    let footer_len = read_footer_length(trailer).map_err(|e| format!("no IPC footer: {e}"))?;
    let footer_start = trailer_start
        .checked_sub(footer_len)
        .ok_or_else(|| format!("its footer length {footer_len} reaches before its tail"))?;
    let footer = root_as_footer(&tail[footer_start..trailer_start])
        .map_err(|e| format!("unreadable IPC footer: {e}"))?;
    let schema = footer
        .schema()
        .map(fb_to_schema)
        .ok_or_else(|| "its footer has no schema".to_string())?;
    if schema.fields() != expected.fields() {
        return Err(format!(
            "it holds columns ({}), the dataset stores ({})",
            describe(&schema),
            describe(expected)
        ));
    }
    if footer.dictionaries().is_some_and(|d| !d.is_empty()) {
        return Err("it holds dictionary batches, which runs never have".to_string());
    }
    let blocks = footer
        .recordBatches()
        .map(|b| b.iter().copied().collect())
        .unwrap_or_default();
    let decoder = FileDecoder::new(Arc::new(schema), footer.version());
    Ok((decoder, blocks))
}

fn describe(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decode `blocks` from `bytes` (which start at file offset `begin`) and cast them to
/// `file_schema`; an error names the block's index among `blocks`.
fn decode(
    decoder: &FileDecoder,
    blocks: &[Block],
    bytes: Buffer,
    begin: u64,
    file_schema: &SchemaRef,
) -> std::result::Result<Vec<RecordBatch>, (usize, String)> {
    blocks
        .iter()
        .enumerate()
        .map(|(i, block)| {
            let at = (block.offset() as u64 - begin) as usize;
            let len = (block_end(block) - block.offset() as u64) as usize;
            let data = bytes.slice_with_length(at, len);
            let batch = decoder
                .read_record_batch(block, &data)
                .map_err(|e| (i, e.to_string()))?
                .ok_or_else(|| (i, "not a record batch".to_string()))?;
            to_file_schema(batch, file_schema).map_err(|e| (i, e))
        })
        .collect()
}

/// Cast a run's batch back to the stored columns (dictionary columns again).
fn to_file_schema(
    batch: RecordBatch,
    file_schema: &SchemaRef,
) -> std::result::Result<RecordBatch, String> {
    let columns = batch
        .columns()
        .iter()
        .zip(file_schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(Arc::clone(c))
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    RecordBatch::try_new(Arc::clone(file_schema), columns).map_err(|e| e.to_string())
}
