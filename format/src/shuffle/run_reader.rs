//! Reading a range of groups from one run file with ranged GETs.
//!
//! A cursor fetches the run's footer once (`tail_offset..size_bytes`, one GET), checks
//! it against the run's report and the dataset's stored columns, then reads the
//! selected groups' record batches in windows: one GET spans as many consecutive
//! blocks as fit the window (at least one), so small groups cost no GET each and a big
//! group streams through a window at a time.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::compute::cast;
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
    /// The file's record-batch blocks from the first selected group's on.
    blocks: Vec<Block>,
    /// File index of `blocks[0]`.
    block_base: usize,
    groups: VecDeque<RunGroup>,
    /// The group being read.
    current: Option<Entered>,
    /// Decoded batches fetched ahead, with the index (in `blocks`) of the next to fetch.
    decoded: VecDeque<RecordBatch>,
    next_fetch: usize,
    window_bytes: u64,
    file_schema: SchemaRef,
}

/// A group being read.
struct Entered {
    key: ShuffleKey,
    blocks_left: u32,
    rows: u64,
    rows_seen: u64,
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
        let groups = run.groups_in(range);
        let (Some(first), Some(last)) = (groups.first(), groups.last()) else {
            return Ok(None);
        };
        let location = object_path(root, &run.path)?;
        let invalid = |reason: String| Error::InvalidRunFile {
            path: run.path.clone(),
            reason,
        };
        if run.tail_offset > run.size_bytes {
            return Err(invalid(format!(
                "its report puts the footer at {} in a file of {} bytes",
                run.tail_offset, run.size_bytes
            )));
        }
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
        let (decoder, all_blocks) = read_footer(&tail, run_schema).map_err(invalid)?;
        for group in groups {
            check_group(group, &all_blocks, run.tail_offset).map_err(invalid)?;
        }
        for pair in groups.windows(2) {
            if pair[1].first_block as usize
                != pair[0].first_block as usize + pair[0].blocks as usize
            {
                return Err(invalid(format!(
                    "the blocks of group {} do not follow those of {}",
                    pair[1].key, pair[0].key
                )));
            }
        }
        let block_base = first.first_block as usize;
        let block_end = last.first_block as usize + last.blocks as usize;
        check_blocks(&all_blocks[block_base..block_end]).map_err(invalid)?;
        for pair in run.groups.windows(2) {
            if pair[0].key >= pair[1].key {
                return Err(invalid(format!(
                    "groups out of order: {} before {}",
                    pair[0].key, pair[1].key
                )));
            }
        }
        Ok(Some(Self {
            store,
            location,
            path: run.path.clone(),
            decoder: Arc::new(decoder),
            blocks: all_blocks[block_base..block_end].to_vec(),
            block_base,
            groups: groups.iter().cloned().collect(),
            current: None,
            decoded: VecDeque::new(),
            next_fetch: 0,
            window_bytes: window_bytes.max(1),
            file_schema,
        }))
    }

    /// The run's path relative to the root.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The key of the next group not yet entered.
    pub(crate) fn next_key(&self) -> Option<&ShuffleKey> {
        self.groups.front().map(|g| &g.key)
    }

    /// Start reading the next group; returns its rows in this run.
    pub(crate) fn enter(&mut self) -> Option<u64> {
        let group = self.groups.pop_front()?;
        let rows = group.rows;
        self.current = Some(Entered {
            key: group.key,
            blocks_left: group.blocks,
            rows,
            rows_seen: 0,
        });
        Some(rows)
    }

    /// The next batch of the entered group, `None` after its last.
    pub(crate) async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let Some(entered) = self.current.as_mut() else {
            return Ok(None);
        };
        if entered.blocks_left == 0 {
            let Entered {
                key,
                rows,
                rows_seen,
                ..
            } = entered;
            let reason = format!("group {key} has {rows_seen} rows, its report says {rows}");
            let complete = rows_seen == rows;
            self.current = None;
            return if complete {
                Ok(None)
            } else {
                Err(self.invalid(reason))
            };
        }
        entered.blocks_left -= 1;
        if self.decoded.is_empty() {
            self.fetch_window().await?;
        }
        let batch = self
            .decoded
            .pop_front()
            .ok_or_else(|| self.invalid("a block decoded to no batch".to_string()))?;
        if let Some(entered) = self.current.as_mut() {
            entered.rows_seen += batch.num_rows() as u64;
        }
        Ok(Some(batch))
    }

    /// Fetch the next blocks that fit the window with one GET and decode them off the
    /// executor.
    async fn fetch_window(&mut self) -> Result<()> {
        let start = self.next_fetch;
        let Some(first) = self.blocks.get(start) else {
            return Err(self.invalid("a group reaches past the last block".to_string()));
        };
        let begin = first.offset() as u64;
        let mut end = start;
        let mut stop = begin;
        while let Some(block) = self.blocks.get(end) {
            let block_end = block_end(block);
            if end > start && block_end.saturating_sub(begin) > self.window_bytes {
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
        if bytes.len() as u64 != stop - begin {
            return Err(self.invalid(format!(
                "a read of bytes {begin}..{stop} returned {} bytes",
                bytes.len()
            )));
        }
        let blocks = self.blocks[start..end].to_vec();
        let decoder = Arc::clone(&self.decoder);
        let file_schema = Arc::clone(&self.file_schema);
        let base = self.block_base + start;
        let path = self.path.clone();
        let decoded = tokio::task::spawn_blocking(move || {
            decode(&decoder, &blocks, Buffer::from(bytes), begin, &file_schema).map_err(
                |(i, reason)| Error::InvalidRunFile {
                    path,
                    reason: format!("record batch {}: {reason}", base + i),
                },
            )
        })
        .await
        .map_err(|e| Error::Task {
            context: format!("decoding run file {}", self.path),
            reason: e.to_string(),
        })??;
        self.decoded.extend(decoded);
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

/// Where a block ends; blocks of the groups read are checked to be in order and in
/// their groups' ranges ([`check_blocks`]), so offsets are not negative there.
fn block_end(block: &Block) -> u64 {
    (block.offset().max(0) as u64)
        .saturating_add(block.metaDataLength().max(0) as u64)
        .saturating_add(block.bodyLength().max(0) as u64)
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

/// A group's blocks must exist and lie in its byte range, before the tail.
fn check_group(
    group: &RunGroup,
    blocks: &[Block],
    tail_offset: u64,
) -> std::result::Result<(), String> {
    let end = group.first_block as usize + group.blocks as usize;
    let Some(own) = blocks.get(group.first_block as usize..end) else {
        return Err(format!(
            "group {} has blocks {}..{end}, the file has {}",
            group.key,
            group.first_block,
            blocks.len()
        ));
    };
    let range_end = group.offset + group.length;
    for block in own {
        if (block.offset() as u64) < group.offset
            || block_end(block) > range_end
            || range_end > tail_offset
        {
            return Err(format!(
                "group {}: a block at {} is outside its bytes {}..{range_end}",
                group.key,
                block.offset(),
                group.offset
            ));
        }
    }
    Ok(())
}

/// Blocks must follow one another without overlap, at non-negative offsets.
fn check_blocks(blocks: &[Block]) -> std::result::Result<(), String> {
    let mut end = 0u64;
    for block in blocks {
        if block.offset() < 0
            || block.metaDataLength() < 0
            || block.bodyLength() < 0
            || (block.offset() as u64) < end
        {
            return Err(format!(
                "a block at {} overlaps the one before or has a negative size",
                block.offset()
            ));
        }
        end = block_end(block);
    }
    Ok(())
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
