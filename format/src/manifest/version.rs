//! The JSON version file, format version 1, as stored.
//!
//! These structs are the stored form and nothing else: field names and meanings never
//! change within a format version. Partition bounds are stored as the same canonical text
//! the partition paths use (typed back with the schema when read), so the file stays
//! readable by people and by other tools.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{CommitInfo, FORMAT_VERSION, IndexFile, Manifest, Operation, SegmentSummary};
use crate::error::{Error, Result};
use crate::layout::{Layout, partition_value_from_str, partition_value_to_string};
use crate::schema::{FieldV1, schema_from_v1, schema_to_v1};

/// Only the format version, read first so a newer file gets a clear error instead of a
/// confusing field error.
#[derive(Deserialize)]
struct FormatProbe {
    format_version: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionFileV1 {
    format_version: u32,
    dataset_id: String,
    version: u64,
    parent: Option<u64>,
    timestamp: DateTime<Utc>,
    commit: CommitV1,
    schema: Vec<FieldV1>,
    partition_on: Vec<String>,
    bucket_by: Vec<String>,
    num_buckets: Option<u32>,
    #[serde(default)]
    indexed_columns: Vec<String>,
    indices: Vec<IndexV1>,
    segments: Vec<SegmentV1>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitV1 {
    operation: Operation,
    job_id: Option<String>,
    idempotency_key: Option<String>,
    rows_added: u64,
    files_added: u64,
    rows_removed: u64,
    files_removed: u64,
    partitions: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexV1 {
    column: String,
    path: String,
    entries: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentV1 {
    path: String,
    files: u64,
    rows: u64,
    bytes: u64,
    partition_min: Vec<Option<String>>,
    partition_max: Vec<Option<String>>,
    partition_nulls: Vec<u64>,
    bucket_min: Option<u32>,
    bucket_max: Option<u32>,
}

/// Serialise a manifest as a version file (pretty JSON: version files are small and read
/// by people debugging a dataset).
pub(crate) fn encode_version_file(manifest: &Manifest) -> Result<Vec<u8>> {
    let segments = manifest
        .segments
        .iter()
        .map(|s| {
            let text = |values: &[datafusion::common::ScalarValue]| {
                values
                    .iter()
                    .map(partition_value_to_string)
                    .collect::<Result<Vec<_>>>()
            };
            Ok(SegmentV1 {
                path: s.path.clone(),
                files: s.num_files,
                rows: s.num_rows,
                bytes: s.size_bytes,
                partition_min: text(&s.partition_min)?,
                partition_max: text(&s.partition_max)?,
                partition_nulls: s.partition_null_count.clone(),
                bucket_min: s.bucket_min,
                bucket_max: s.bucket_max,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let c = &manifest.commit;
    let file = VersionFileV1 {
        format_version: FORMAT_VERSION,
        dataset_id: manifest.dataset_id.clone(),
        version: manifest.version,
        parent: manifest.parent,
        timestamp: manifest.timestamp,
        commit: CommitV1 {
            operation: c.operation,
            job_id: c.job_id.clone(),
            idempotency_key: c.idempotency_key.clone(),
            rows_added: c.rows_added,
            files_added: c.files_added,
            rows_removed: c.rows_removed,
            files_removed: c.files_removed,
            partitions: c.partitions.clone(),
        },
        schema: schema_to_v1(&manifest.schema)?,
        partition_on: manifest.layout.partition_on.clone(),
        bucket_by: manifest.layout.bucket_by.clone(),
        num_buckets: manifest.layout.num_buckets,
        indexed_columns: manifest.indexed_columns.clone(),
        indices: manifest
            .indices
            .iter()
            .map(|i| IndexV1 {
                column: i.column.clone(),
                path: i.path.clone(),
                entries: i.num_entries,
            })
            .collect(),
        segments,
    };
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| Error::CorruptManifest {
        path: crate::names::version_path(manifest.version),
        reason: format!("cannot serialise: {e}"),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Parse a version file; `path` is for messages.
pub(crate) fn decode_version_file(bytes: &[u8], path: &str) -> Result<Manifest> {
    let corrupt = |reason: String| Error::CorruptManifest {
        path: path.to_string(),
        reason,
    };
    let probe: FormatProbe = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(format!("not a terrace version file: {e}")))?;
    if probe.format_version > FORMAT_VERSION || probe.format_version == 0 {
        return Err(Error::UnsupportedFormatVersion {
            path: path.to_string(),
            found: probe.format_version,
            supported: FORMAT_VERSION,
        });
    }
    let file: VersionFileV1 =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("invalid content: {e}")))?;
    let schema = schema_from_v1(&file.schema, path)?;
    let layout = Layout {
        partition_on: file.partition_on,
        bucket_by: file.bucket_by,
        num_buckets: file.num_buckets,
    };
    layout
        .validate(&schema)
        .map_err(|e| corrupt(format!("invalid layout: {e}")))?;
    let partition_types: Vec<_> = layout
        .partition_on
        .iter()
        .map(|c| schema.field_with_name(c).map(|f| f.data_type().clone()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| corrupt(e.to_string()))?;
    let segments = file
        .segments
        .into_iter()
        .map(|s| {
            let n = partition_types.len();
            if s.partition_min.len() != n
                || s.partition_max.len() != n
                || s.partition_nulls.len() != n
            {
                return Err(corrupt(format!(
                    "segment {} has partition bounds for {} columns, the layout has {n}",
                    s.path,
                    s.partition_min.len()
                )));
            }
            let typed = |values: &[Option<String>]| {
                values
                    .iter()
                    .zip(&partition_types)
                    .map(|(v, t)| partition_value_from_str(v.as_deref(), t))
                    .collect::<Result<Vec<_>>>()
                    .map_err(|e| corrupt(format!("segment {}: {e}", s.path)))
            };
            Ok(SegmentSummary {
                partition_min: typed(&s.partition_min)?,
                partition_max: typed(&s.partition_max)?,
                path: s.path,
                num_files: s.files,
                num_rows: s.rows,
                size_bytes: s.bytes,
                partition_null_count: s.partition_nulls,
                bucket_min: s.bucket_min,
                bucket_max: s.bucket_max,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let c = file.commit;
    Ok(Manifest {
        dataset_id: file.dataset_id,
        version: file.version,
        parent: file.parent,
        timestamp: file.timestamp,
        commit: CommitInfo {
            operation: c.operation,
            job_id: c.job_id,
            idempotency_key: c.idempotency_key,
            rows_added: c.rows_added,
            files_added: c.files_added,
            rows_removed: c.rows_removed,
            files_removed: c.files_removed,
            partitions: c.partitions,
        },
        schema,
        layout,
        indexed_columns: file.indexed_columns,
        indices: file
            .indices
            .into_iter()
            .map(|i| IndexFile {
                column: i.column,
                path: i.path,
                num_entries: i.entries,
            })
            .collect(),
        segments,
    })
}
