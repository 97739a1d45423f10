//! Streaming a file to the object store while it is being written.
//!
//! A [`PartSink`] is the `Write` end an encoder writes into; it hands the bytes in parts
//! of a fixed size through a bounded channel to one async upload task per file, which
//! sends a file that ends within one part with a single `put` and a longer one as a
//! multipart upload. A sink dropped before [`PartSink::finish`] makes the task abandon
//! its upload, so an aborted file never appears.
//!
//! A writer ends with [`join_uploads`] (its files are complete once every upload is) or,
//! aborting, with [`delete_uploaded`].

use std::io::Write;
use std::mem;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{Error, Result};

/// Parts of one file that may be uploading at once.
const PARTS_IN_FLIGHT: usize = 2;

/// An upload task and the object it writes.
pub(crate) type Upload = (Path, JoinHandle<Result<()>>);

/// What the encoder sends to a file's upload task.
enum Part {
    Data(Bytes),
    /// The file is complete; without it the upload is abandoned.
    Done,
}

/// The `Write` end of a file: collects encoded bytes and sends them in parts.
pub(crate) struct PartSink {
    /// Bytes written and not yet sent.
    pub(crate) buffer: BytesMut,
    part_size: usize,
    tx: Option<mpsc::Sender<Part>>,
    /// Bytes written so far.
    pub(crate) written: u64,
    in_flight: Arc<AtomicUsize>,
}

impl PartSink {
    /// A sink for the object at `location` and its upload task, spawned on `handle`.
    /// `in_flight` counts the bytes handed to uploads and not yet taken by the store.
    pub(crate) fn start(
        handle: &tokio::runtime::Handle,
        store: Arc<dyn ObjectStore>,
        location: Path,
        part_size: usize,
        in_flight: Arc<AtomicUsize>,
    ) -> (PartSink, Upload) {
        let (tx, rx) = mpsc::channel(1);
        let task = handle.spawn(upload(store, location.clone(), rx, Arc::clone(&in_flight)));
        let sink = PartSink {
            buffer: BytesMut::new(),
            part_size: part_size.max(1),
            tx: Some(tx),
            written: 0,
            in_flight,
        };
        (sink, (location, task))
    }

    fn send(&mut self, part: Part) -> std::io::Result<()> {
        let len = match &part {
            Part::Data(b) => b.len(),
            Part::Done => 0,
        };
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the file was already finished"))?;
        self.in_flight.fetch_add(len, Ordering::Relaxed);
        // Blocks this encoding thread while the upload is behind: that is the backpressure
        // that keeps memory bounded on slow stores.
        tx.blocking_send(part).map_err(|_| {
            self.in_flight.fetch_sub(len, Ordering::Relaxed);
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the upload of this file stopped (see the upload error)",
            )
        })
    }

    /// Send every full part of the buffer (blocks while the upload is behind).
    pub(crate) fn send_full_parts(&mut self) -> std::io::Result<()> {
        while self.buffer.len() >= self.part_size {
            let part = self.buffer.split_to(self.part_size).freeze();
            self.send(Part::Data(part))?;
        }
        Ok(())
    }

    /// Send the rest and mark the file complete.
    pub(crate) fn finish(&mut self) -> std::io::Result<()> {
        self.send_full_parts()?;
        if !self.buffer.is_empty() {
            let last = mem::take(&mut self.buffer).freeze();
            self.send(Part::Data(last))?;
        }
        self.send(Part::Done)?;
        self.tx = None;
        Ok(())
    }
}

impl Write for PartSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Grow by doubling, not by a whole part at once: a writer has a sink per open file,
        // most of them far from a part, and a whole part reserved for each adds up.
        self.buffer.extend_from_slice(buf);
        self.written += buf.len() as u64;
        self.send_full_parts()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Wait for every upload; the first error of `before` (what ran before them) or of the
/// uploads is returned.
pub(crate) async fn join_uploads(uploads: Vec<Upload>, before: Result<()>) -> Result<()> {
    let mut first_error = before.err();
    for (location, upload) in uploads {
        let result = match upload.await {
            Ok(r) => r,
            Err(e) => Err(Error::Task {
                context: format!("uploading {location}"),
                reason: e.to_string(),
            }),
        };
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Wait for `uploads` and delete, best effort, the objects they completed. Callers drop
/// their encoders first, which makes unfinished uploads abandon (and cancel) theirs.
pub(crate) async fn delete_uploaded(store: &dyn ObjectStore, uploads: Vec<Upload>) -> Result<()> {
    let mut first_error = None;
    for (location, upload) in uploads {
        if let Ok(Ok(())) = upload.await {
            match store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    first_error.get_or_insert(Error::store(&location, e));
                }
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Wait while a writer holding `held` bytes (besides parts in flight) is over `budget`
/// with parts still uploading: the store taking them is what frees the memory, so the
/// writer takes no more rows until it has.
pub(crate) async fn wait_for_parts(in_flight: &AtomicUsize, held: usize, budget: usize) {
    loop {
        let parts = in_flight.load(Ordering::Relaxed);
        if parts == 0 || held + parts <= budget {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Upload one file from the parts its encoder sends: a single `put` if it ends within
/// one part, a multipart upload otherwise. Abandons the upload if the channel closes
/// before [`Part::Done`].
async fn upload(
    store: Arc<dyn ObjectStore>,
    location: Path,
    mut rx: mpsc::Receiver<Part>,
    in_flight: Arc<AtomicUsize>,
) -> Result<()> {
    let first = match rx.recv().await {
        Some(Part::Data(b)) => b,
        Some(Part::Done) => Bytes::new(),
        None => return Err(abandoned(&location)),
    };
    let second = match rx.recv().await {
        Some(Part::Data(b)) => b,
        Some(Part::Done) => {
            let len = first.len();
            let result = store.put(&location, PutPayload::from(first)).await;
            in_flight.fetch_sub(len, Ordering::Relaxed);
            result.map_err(|e| Error::store(&location, e))?;
            return Ok(());
        }
        None => {
            in_flight.fetch_sub(first.len(), Ordering::Relaxed);
            return Err(abandoned(&location));
        }
    };
    let mut multipart = store
        .put_multipart(&location)
        .await
        .map_err(|e| Error::store(&location, e))?;
    let mut parts = JoinSet::new();
    let sent = send_parts(
        multipart.as_mut(),
        &mut parts,
        [first, second],
        &mut rx,
        &in_flight,
        &location,
    )
    .await;
    match sent {
        Ok(()) => {
            multipart
                .complete()
                .await
                .map_err(|e| Error::store(&location, e))?;
            Ok(())
        }
        Err(e) => {
            parts.shutdown().await;
            // Best effort: the error that stopped the upload is the one worth reporting.
            let _ = multipart.abort().await;
            Err(e)
        }
    }
}

/// Upload `start` and then every part received until [`Part::Done`], with at most
/// [`PARTS_IN_FLIGHT`] parts uploading at once.
async fn send_parts(
    multipart: &mut dyn MultipartUpload,
    parts: &mut JoinSet<object_store::Result<()>>,
    start: [Bytes; 2],
    rx: &mut mpsc::Receiver<Part>,
    in_flight: &Arc<AtomicUsize>,
    location: &Path,
) -> Result<()> {
    let mut start = start.into_iter();
    loop {
        let data = match start.next() {
            Some(b) => b,
            None => match rx.recv().await {
                Some(Part::Data(b)) => b,
                Some(Part::Done) => break,
                None => return Err(abandoned(location)),
            },
        };
        while parts.len() >= PARTS_IN_FLIGHT {
            join_part(parts, location).await?;
        }
        let len = data.len();
        let part = multipart.put_part(PutPayload::from(data));
        let counter = Arc::clone(in_flight);
        parts.spawn(async move {
            let result = part.await;
            counter.fetch_sub(len, Ordering::Relaxed);
            result
        });
    }
    while !parts.is_empty() {
        join_part(parts, location).await?;
    }
    Ok(())
}

async fn join_part(parts: &mut JoinSet<object_store::Result<()>>, location: &Path) -> Result<()> {
    match parts.join_next().await {
        Some(Ok(Ok(()))) | None => Ok(()),
        Some(Ok(Err(e))) => Err(Error::store(location, e)),
        Some(Err(e)) => Err(Error::Task {
            context: format!("uploading a part of {location}"),
            reason: e.to_string(),
        }),
    }
}

fn abandoned(location: &Path) -> Error {
    Error::Task {
        context: format!("uploading {location}"),
        reason: "the writer stopped before the file was complete".to_string(),
    }
}
