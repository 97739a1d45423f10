//! terrace-planner: turns a query or a write on a terrace dataset into tasks for the job
//! queue, reading only the manifest.
//!
//! - [`Predicate`]: SQL boolean text (or kartothek-style [`Dnf`]) parsed and type-checked
//!   against the dataset schema with DataFusion; errors name the column and position.
//! - [`prune`]: the files that may match, through segment summaries, partition values,
//!   buckets, secondary indices and per-file statistics, then the row groups of each
//!   ([`RowGroupHint`]) from per-row-group statistics, with counts per step.
//! - [`plan_read`]: read tasks (one per file, grouped by size, one per partition value,
//!   or a region x sample grid as TileDB-VCF's `read_dask`); [`Explain`] renders a plan.
//! - [`list_inputs`], [`infer_schema`], [`split_inputs`], [`read_split`] and
//!   [`plan_write`]: the inputs of an ingest and its stages (write, or map / reduce), then
//!   one commit.
//!
//! Nothing here executes a task or prints: terrace-jobs runs the tasks, the CLI prints.
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
mod input_checks;
mod inputs;
mod predicate;
mod prune;
mod read_plan;
mod regions;
mod row_groups;
mod skeleton;
mod write_plan;

pub use error::{Error, Position, Result};
pub use explain::{Explain, ExplainTask, human_bytes};
pub use input_checks::check_schema_names;
pub use inputs::{
    InputFile, InputFormat, InputSplit, SplitPart, check_partition_sample, file_schema,
    infer_schema, infer_schema_and_unseen, list_inputs, merge_schemas, read_split, split_inputs,
    with_types_of,
};
pub use predicate::{Dnf, DnfTerm, Op, Predicate};
pub use prune::{PruneStep, PruneStepKind, Pruned, prune};
pub use read_plan::{
    DEFAULT_BYTES_PER_TASK, ReadOptions, ReadPlan, ReadTask, RegionSample, TaskFile, plan_read,
};
pub use regions::{Region, merge_regions, parse_bed, split_regions};
pub use row_groups::RowGroupHint;
pub use skeleton::{MAX_NESTING, MAX_OPERATORS, MAX_TERMS};
pub use write_plan::{
    SchemaField, Stage, StageKind, WriteOptions, WritePlan, WriteTask, plan_write, reduce_task_for,
    schema_from_fields, schema_to_fields,
};
