//! Write plans: an ingest becomes stages of tasks, ending in exactly one commit.
//!
//! - `shuffle = false`: stage `write` has one task per input split; each writes its rows
//!   into every partition / bucket it touches (so a partition may get one file per
//!   split). Then stage `commit`.
//! - `shuffle = true`: stage `map` has one task per split, writing intermediate Parquet
//!   pieces per (partition, bucket) below the job's staging directory
//!   ([`WritePlan::staging`]): `_terrace/staging/<job>/map-<i>-<attempt>/<partition
//!   path>/part-[<bucket>-]<uuid>.parquet`, a directory per attempt of a map task (see
//!   [`terrace_format::new_map_attempt_dir`]); stage `reduce` has one task per bucket
//!   when bucketed, else `reduce_tasks` tasks that take the partitions whose path hashes
//!   to them ([`reduce_task_for`]); each reduce task writes one file per (partition,
//!   bucket), sorted by `sort_by`. Then stage `commit`.
//!
//! Stages run in order: [`Stage::depends_on`] names the stage whose tasks must all
//! finish first, which is what the job system's fan-in needs. The plan is serde
//! serialisable; the execution lives in terrace-jobs.

use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use terrace_format::{InputSplit, Layout, murmur3_x86_32, staging_dir};

use crate::error::{Error, Result};

/// One column of a schema as a plan carries it (Arrow's textual type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaField {
    /// Column name.
    pub name: String,
    /// Arrow's textual type, e.g. `Int64`, `Timestamp(µs, "UTC")`.
    #[serde(rename = "type")]
    pub data_type: String,
    /// Whether nulls are allowed.
    pub nullable: bool,
}

/// A schema in serde form.
pub fn schema_to_fields(schema: &Schema) -> Result<Vec<SchemaField>> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let text = f.data_type().to_string();
            match DataType::from_str(&text) {
                Ok(parsed) if &parsed == f.data_type() => Ok(SchemaField {
                    name: f.name().clone(),
                    data_type: text,
                    nullable: f.is_nullable(),
                }),
                _ => Err(Error::invalid(
                    format!("column {:?}", f.name()),
                    format!("type {} cannot be carried by a plan", f.data_type()),
                )),
            }
        })
        .collect()
}

/// A schema back from its serde form.
pub fn schema_from_fields(fields: &[SchemaField]) -> Result<SchemaRef> {
    let fields = fields
        .iter()
        .map(|f| {
            let data_type = DataType::from_str(&f.data_type).map_err(|e| {
                Error::invalid(format!("column {:?}", f.name), format!("bad type: {e}"))
            })?;
            Ok(Field::new(&f.name, data_type, f.nullable))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// How to write a dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOptions {
    /// The job (names the staging directory).
    pub job_id: String,
    /// The dataset's location.
    pub dataset: String,
    /// Partition columns, bucket columns and bucket count.
    pub layout: Layout,
    /// Sort rows within each written file by these columns.
    pub sort_by: Vec<String>,
    /// Map / reduce through staging: one file per (partition, bucket).
    pub shuffle: bool,
    /// Reduce tasks of an unbucketed shuffle (default: one per split).
    pub reduce_tasks: Option<usize>,
}

/// What a stage does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// Read a split, write data files (no shuffle).
    Write,
    /// Read a split, write staging pieces per (partition, bucket).
    Map,
    /// Merge staging pieces into one file per (partition, bucket).
    Reduce,
    /// Commit every file the earlier stage reported, once.
    Commit,
}

/// One task of a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WriteTask {
    /// Write a split's rows into the dataset's layout.
    Write {
        /// Position in its stage.
        index: usize,
        /// The input to read.
        split: InputSplit,
    },
    /// Write a split's rows as staging pieces.
    Map {
        /// Position in its stage (names its pieces).
        index: usize,
        /// The input to read.
        split: InputSplit,
    },
    /// Merge the pieces assigned to this task ([`reduce_task_for`]).
    Reduce {
        /// Position in its stage.
        index: usize,
        /// Number of reduce tasks (for [`reduce_task_for`]).
        of: usize,
        /// The bucket this task owns, when bucketed.
        bucket: Option<u32>,
    },
    /// Commit the reported files.
    Commit,
}

/// A stage: tasks that may run in parallel once `depends_on` has finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// What the stage does.
    pub kind: StageKind,
    /// Index of the stage that must finish first.
    pub depends_on: Option<usize>,
    /// The tasks.
    pub tasks: Vec<WriteTask>,
}

/// An ingest as stages of tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WritePlan {
    /// The options it was planned with.
    pub options: WriteOptions,
    /// The schema rows are written with.
    pub schema: Vec<SchemaField>,
    /// Where intermediate pieces go (relative to the dataset root;
    /// [`terrace_format::staging_dir`] of the job).
    pub staging: String,
    /// Stages in order; the last is the single commit.
    pub stages: Vec<Stage>,
}

impl WritePlan {
    /// The schema rows are written with.
    pub fn schema(&self) -> Result<SchemaRef> {
        schema_from_fields(&self.schema)
    }

    /// Number of tasks over all stages.
    pub fn num_tasks(&self) -> usize {
        self.stages.iter().map(|s| s.tasks.len()).sum()
    }
}

/// The reduce task that owns a (partition, bucket): the bucket when bucketed (one task
/// per bucket), else a stable hash of the partition path.
pub fn reduce_task_for(partition_path: &str, bucket: Option<u32>, reduce_tasks: usize) -> usize {
    let n = reduce_tasks.max(1);
    match bucket {
        Some(b) => b as usize % n,
        None => murmur3_x86_32(partition_path.as_bytes(), 0) as usize % n,
    }
}

/// Plan a write of `splits` with `schema`.
pub fn plan_write(
    splits: Vec<InputSplit>,
    schema: &Schema,
    options: WriteOptions,
) -> Result<WritePlan> {
    if options.job_id.is_empty() {
        return Err(Error::invalid("write options", "the job id is empty"));
    }
    options
        .layout
        .validate(schema)
        .map_err(|e| Error::format("checking the layout", e))?;
    for column in &options.sort_by {
        if schema.field_with_name(column).is_err() {
            return Err(Error::invalid(
                "sort_by",
                format!("unknown column {column:?}"),
            ));
        }
    }
    if splits.is_empty() {
        return Err(Error::invalid("inputs", "there is nothing to write"));
    }
    let mut stages = Vec::new();
    if options.shuffle {
        let maps = splits.len();
        stages.push(Stage {
            kind: StageKind::Map,
            depends_on: None,
            tasks: splits
                .into_iter()
                .enumerate()
                .map(|(index, split)| WriteTask::Map { index, split })
                .collect(),
        });
        let reduce = match options.layout.num_buckets {
            Some(n) if !options.layout.bucket_by.is_empty() => (0..n)
                .map(|b| WriteTask::Reduce {
                    index: b as usize,
                    of: n as usize,
                    bucket: Some(b),
                })
                .collect(),
            _ => {
                let n = options.reduce_tasks.unwrap_or(maps).max(1);
                (0..n)
                    .map(|index| WriteTask::Reduce {
                        index,
                        of: n,
                        bucket: None,
                    })
                    .collect()
            }
        };
        stages.push(Stage {
            kind: StageKind::Reduce,
            depends_on: Some(0),
            tasks: reduce,
        });
    } else {
        stages.push(Stage {
            kind: StageKind::Write,
            depends_on: None,
            tasks: splits
                .into_iter()
                .enumerate()
                .map(|(index, split)| WriteTask::Write { index, split })
                .collect(),
        });
    }
    stages.push(Stage {
        kind: StageKind::Commit,
        depends_on: Some(stages.len() - 1),
        tasks: vec![WriteTask::Commit],
    });
    Ok(WritePlan {
        staging: staging_dir(&options.job_id),
        schema: schema_to_fields(schema)?,
        options,
        stages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use terrace_format::{InputFile, InputFormat, SplitPart};

    fn splits(n: usize) -> Vec<InputSplit> {
        (0..n)
            .map(|i| InputSplit {
                parts: vec![SplitPart {
                    file: InputFile {
                        location: format!("/in/{i}.csv"),
                        format: InputFormat::Csv,
                        size_bytes: 10,
                    },
                    row_groups: None,
                }],
            })
            .collect()
    }

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("p", DataType::Utf8, true),
            Field::new("k", DataType::Int64, true),
        ])
    }

    #[test]
    fn no_shuffle_is_write_then_commit() {
        let plan = plan_write(
            splits(3),
            &schema(),
            WriteOptions {
                job_id: "j1".into(),
                dataset: "/d".into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(plan.stages.len(), 2);
        assert_eq!(plan.stages[0].tasks.len(), 3);
        assert_eq!(plan.stages[1].depends_on, Some(0));
        assert_eq!(plan.stages[1].tasks, vec![WriteTask::Commit]);
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<WritePlan>(&json).unwrap(), plan);
        assert_eq!(plan.schema().unwrap().as_ref(), &schema());
    }

    #[test]
    fn shuffle_is_map_reduce_commit() {
        let plan = plan_write(
            splits(2),
            &schema(),
            WriteOptions {
                job_id: "j2".into(),
                dataset: "/d".into(),
                layout: Layout {
                    partition_on: vec!["p".into()],
                    bucket_by: vec!["k".into()],
                    num_buckets: Some(4),
                },
                sort_by: vec!["k".into()],
                shuffle: true,
                reduce_tasks: None,
            },
        )
        .unwrap();
        let kinds: Vec<StageKind> = plan.stages.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![StageKind::Map, StageKind::Reduce, StageKind::Commit]
        );
        assert_eq!(plan.stages[1].tasks.len(), 4);
        assert_eq!(plan.stages[2].depends_on, Some(1));
        assert_eq!(plan.staging, "_terrace/staging/j2");
        assert_eq!(reduce_task_for("p=a", Some(3), 4), 3);
        assert!(reduce_task_for("p=a", None, 4) < 4);
    }

    #[test]
    fn bad_options_are_refused() {
        let opts = WriteOptions {
            job_id: "j".into(),
            sort_by: vec!["nope".into()],
            ..Default::default()
        };
        assert!(plan_write(splits(1), &schema(), opts).is_err());
        let opts = WriteOptions {
            job_id: "j".into(),
            ..Default::default()
        };
        assert!(plan_write(vec![], &schema(), opts).is_err());
    }
}
