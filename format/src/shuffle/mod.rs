//! A sort-based shuffle: rows of a write clustered by (partition, bucket) group, so that
//! each group becomes one file written with one file open at a time.
//!
//! Writing straight from input to data files keeps a file (and its buffers) open per
//! group a task touches, and writes a file per task per group: at thousands of groups
//! that is most of the memory and most of the files. Like the partitioned writers of
//! Spark and DuckDB, the shuffle first sorts rows by group, then writes each group in
//! one go:
//!
//! - **Map: sorted runs.** A [`RunWriter`] groups each input batch's rows exactly as
//!   [`DataFileWriter`](crate::DataFileWriter) does, buffers them compactly (one copy
//!   per row, in group order, plus a slice list per group), and when the buffer reaches
//!   its budget writes it as one *run*: an Arrow IPC file (LZ4 unless told otherwise)
//!   whose rows are in the group order every run shares ([`ShuffleKey`]: partition
//!   path, then bucket), each group's rows consecutive, cut into record batches of
//!   about a MiB that small groups share (a batch per group would cost more framing
//!   than the rows of small groups weigh). What it holds is bounded by the budget
//!   (which counts an entry per group) plus one batch, whatever the number of groups;
//!   an input bigger than the budget becomes several runs. Each run is described by a
//!   [`RunFile`] (each group's key and rows, each batch's rows) for a task report.
//! - **Reduce: a k-way merge.** A reduce task is given a [`GroupRange`]
//!   ([`split_group_ranges`] cuts them by bytes) and reads it from every run with a
//!   [`RunMerge`]: one GET per run for the footer, then ranged GETs that each span
//!   many consecutive batches, one group at a time in key order, holding a window per
//!   run, so big groups stream.
//! - **One open file.** The merge feeds a [`ClusteredWriter`](crate::ClusteredWriter):
//!   when the group changes it finishes the open file before opening the next, so its
//!   memory is one file's buffers and each group is one file where its rows fit the
//!   target size.
//!
//! Runs are IPC rather than Parquet because they are read once by the same job: IPC
//! costs no encoding beyond LZ4 and its footer gives every batch's offset for ranged
//! reads. Dictionary columns are written as their values (an IPC file allows one
//! dictionary per column) and read back as dictionaries.

mod merge;
mod run_file;
mod run_reader;
mod run_writer;

#[cfg(test)]
mod measure;
#[cfg(test)]
pub(crate) mod tests;

pub use merge::{MergeOptions, MergedGroup, RunMerge};
pub use run_file::{GroupRange, RunFile, RunGroup, ShuffleKey, split_group_ranges};
pub use run_writer::{RunOptions, RunWriter};
