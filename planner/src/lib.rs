//! terrace-planner: turns a query or a write on a terrace dataset into tasks for the job
//! queue, reading only the manifest (and, for a write, the listing of its inputs).
//!
//! - [`Predicate`]: SQL boolean text (or kartothek-style [`Dnf`]) parsed and type-checked
//!   against the dataset schema with DataFusion; errors name the column and position.
//! - [`prune`]: the files that may match, through segment summaries, partition values,
//!   buckets, secondary indices and per-file statistics, then the row groups of each
//!   ([`RowGroupHint`]) from per-row-group statistics, with counts per step.
//! - [`plan_read`]: read tasks (one per file, grouped by size, one per partition value,
//!   or a region x sample grid as TileDB-VCF's `read_dask`); [`Explain`] renders a plan.
//! - [`list_inputs`], [`split_inputs`] and [`plan_write`]: the input files of an ingest,
//!   their splits, and its stages (write, or map / reduce), then one commit;
//!   [`pick_write_path`] picks the direct or the shuffled path from the plan. Only the
//!   footers of Parquet inputs to cut are read; inferring the inputs' schema and decoding
//!   their rows is terrace-format's ([`terrace_format::infer_schema`],
//!   [`terrace_format::read_split`]).
//!
//! Nothing here executes a task, reads a row or prints: terrace-jobs runs the tasks,
//! terrace-format reads and writes the data, the CLI prints.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use terrace_planner::{Explain, Predicate, ReadOptions, plan_read};
//! let dataset = terrace_format::Dataset::open("./lake/flights").await?;
//! let predicate = Predicate::parse("origin = 'JFK' AND carrier = 'AA'", &dataset.schema())?;
//! let options = ReadOptions {
//!     predicate: Some(predicate),
//!     ..Default::default()
//! };
//! let plan = plan_read(&dataset, &options).await?;
//! println!("{}", Explain::new(&plan));
//! for task in &plan.tasks {
//!     let json = serde_json::to_string(task)?; // what the queue stores
//! #   let _ = json;
//! }
//! # Ok(()) }
//! ```

mod error;
mod explain;
mod inputs;
mod predicate;
mod prune;
mod read_plan;
mod regions;
mod row_groups;
mod skeleton;
mod write_path;
mod write_plan;

pub use error::{Error, Position, Result};
pub use explain::{Explain, ExplainTask, human_bytes};
pub use inputs::{list_inputs, split_inputs};
pub use predicate::{Dnf, DnfTerm, Op, Predicate};
pub use prune::{PruneStep, PruneStepKind, Pruned, prune};
pub use read_plan::{
    DEFAULT_BYTES_PER_TASK, ReadOptions, ReadPlan, ReadTask, RegionSample, TaskFile, plan_read,
};
pub use regions::{Region, merge_regions, parse_bed, split_regions};
pub use row_groups::RowGroupHint;
pub use skeleton::{MAX_NESTING, MAX_OPERATORS, MAX_TERMS};
pub use write_path::{
    FEW_GROUPS, GroupSample, PathPick, PathRequest, ShuffleMethod, WritePath, pick_write_path,
};
pub use write_plan::{
    SchemaField, Stage, StageKind, WriteOptions, WritePlan, WriteTask, plan_write, reduce_task_for,
    schema_from_fields, schema_to_fields,
};
