//! The batches a split's reader sends: their size, and the channel they go through.

use arrow::record_batch::RecordBatch;

use crate::error::Result;

/// Rows per batch read from inputs: big enough that a batch split into a few dozen
/// (partition, bucket) groups still gives each a slice of a thousand rows or more, which
/// the writer encodes without copying (see `writer.rs`).
pub(super) const BATCH_ROWS: usize = 64 * 1024;

/// Where a split's reader sends decoded batches (a small channel: memory stays bounded).
pub(super) type Sender = tokio::sync::mpsc::Sender<Result<RecordBatch>>;

pub(super) async fn send(tx: &Sender, batch: RecordBatch) -> Result<()> {
    // A closed channel means the reader went away: stop quietly.
    let _ = tx.send(Ok(batch)).await;
    Ok(())
}
