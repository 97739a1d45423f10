//! Golden files of the on-store format (`format/testdata/`).
//!
//! They pin format version 1 byte for byte: a change that alters what is written fails
//! here and must bump [`super::FORMAT_VERSION`] while keeping these files readable. Run
//! with `TERRACE_BLESS=1` only when deliberately adding a new golden file.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use datafusion::common::ScalarValue;

use super::*;
use crate::datafile::{ColumnStats, DataFile, RowGroupStats};

fn testdata(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("origin", DataType::Utf8, true),
        Field::new("day", DataType::Date32, false),
        Field::new("tailnum", DataType::Utf8, true),
        Field::new("dep_delay", DataType::Float64, true),
        Field::new("flight", DataType::Int64, false),
        Field::new(
            "sched",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("fare", DataType::Decimal128(10, 2), true),
    ]))
}

fn layout() -> Layout {
    Layout {
        partition_on: vec!["origin".into(), "day".into()],
        bucket_by: vec!["tailnum".into()],
        num_buckets: Some(8),
    }
}

fn manifest() -> Manifest {
    Manifest {
        dataset_id: "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b".into(),
        version: 3,
        parent: Some(2),
        timestamp: Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 5).unwrap(),
        commit: CommitInfo {
            operation: Operation::OverwritePartitions,
            job_id: Some("job-42".into()),
            idempotency_key: Some("nightly/2026-11-22".into()),
            rows_added: 1200,
            files_added: 2,
            rows_removed: 900,
            files_removed: 1,
            partitions: vec!["origin=JFK/day=2026-11-21".into()],
        },
        schema: schema(),
        layout: layout(),
        indexed_columns: vec!["flight".into()],
        indices: vec![IndexFile {
            column: "flight".into(),
            path: "_terrace/indices/flight/0b5f4f0e-8d43-4e53-9e0c-3d1f7a8b9c0d.parquet".into(),
            num_entries: 57,
        }],
        segments: vec![SegmentSummary {
            path: "_terrace/segments/1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6.parquet".into(),
            num_files: 3,
            num_rows: 2100,
            size_bytes: 123456,
            partition_min: vec![ScalarValue::from("EWR"), ScalarValue::Date32(Some(20413))],
            partition_max: vec![ScalarValue::from("a/b c"), ScalarValue::Date32(Some(20414))],
            partition_null_count: vec![1, 0],
            bucket_min: Some(0),
            bucket_max: Some(7),
        }],
    }
}

fn data_files() -> Vec<DataFile> {
    let stats = |min: ScalarValue, max: ScalarValue, nulls| ColumnStats {
        min,
        max,
        null_count: Some(nulls),
        nan_count: None,
    };
    let ts = |v| ScalarValue::TimestampMicrosecond(Some(v), Some("UTC".into()));
    vec![
        DataFile {
            path: "origin=JFK/day=2026-11-21/part-00003-0f0e0d0c-0b0a-4908-8706-050403020100.parquet".into(),
            partition_values: vec![ScalarValue::from("JFK"), ScalarValue::Date32(Some(20413))],
            bucket: Some(3),
            num_rows: 1000,
            size_bytes: 65536,
            column_stats: BTreeMap::from([
                ("dep_delay".into(), stats(ScalarValue::Float64(Some(-12.5)), ScalarValue::Float64(Some(301.0)), 7)),
                ("fare".into(), stats(ScalarValue::Decimal128(Some(999), 10, 2), ScalarValue::Decimal128(Some(150000), 10, 2), 0)),
                ("flight".into(), stats(ScalarValue::Int64(Some(1)), ScalarValue::Int64(Some(6181)), 0)),
                ("sched".into(), stats(ts(1_763_683_200_000_000), ts(1_763_769_540_000_000), 0)),
                ("tailnum".into(), stats(ScalarValue::from("N10156"), ScalarValue::from("N9EAMQ"), 2)),
            ]),
            row_groups: Vec::new(),
            index_values: BTreeMap::new(),
        },
        DataFile {
            path: "origin=__HIVE_DEFAULT_PARTITION__/day=2026-11-22/part-00000-00112233-4455-4677-8899-aabbccddeeff.parquet".into(),
            partition_values: vec![ScalarValue::Utf8(None), ScalarValue::Date32(Some(20414))],
            bucket: Some(0),
            num_rows: 1,
            size_bytes: 900,
            column_stats: BTreeMap::from([
                ("dep_delay".into(), ColumnStats { min: ScalarValue::Float64(None), max: ScalarValue::Float64(None), null_count: Some(1), nan_count: None }),
                ("fare".into(), stats(ScalarValue::Decimal128(Some(1), 10, 2), ScalarValue::Decimal128(Some(1), 10, 2), 0)),
                ("flight".into(), stats(ScalarValue::Int64(Some(7)), ScalarValue::Int64(Some(7)), 0)),
                ("sched".into(), ColumnStats { min: ts(5), max: ts(5), null_count: None, nan_count: None }),
                ("tailnum".into(), stats(ScalarValue::from("a/b c"), ScalarValue::from("a/b c"), 0)),
            ]),
            row_groups: Vec::new(),
            index_values: BTreeMap::new(),
        },
    ]
}

fn assert_same_files(actual: &[DataFile], expected: &[DataFile]) {
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(expected) {
        assert_eq!(a.path, e.path);
        assert_eq!(a.partition_values, e.partition_values, "{}", a.path);
        assert_eq!(a.bucket, e.bucket);
        assert_eq!((a.num_rows, a.size_bytes), (e.num_rows, e.size_bytes));
        assert_eq!(a.column_stats, e.column_stats, "{}", a.path);
        assert_eq!(a.row_groups, e.row_groups, "{}", a.path);
    }
}

fn bless() -> bool {
    std::env::var_os("TERRACE_BLESS").is_some()
}

#[test]
fn version_file_v1_matches_its_golden_file_byte_for_byte() {
    let encoded = encode_version_file(&manifest()).unwrap();
    let golden = testdata("version-v1.json");
    if bless() {
        std::fs::write(&golden, &encoded).unwrap();
    }
    let stored = std::fs::read(&golden).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&encoded),
        String::from_utf8_lossy(&stored)
    );
}

#[test]
fn version_file_v1_golden_round_trips() {
    let stored = std::fs::read(testdata("version-v1.json")).unwrap();
    let decoded = decode_version_file(&stored, "version-v1.json").unwrap();
    let expected = manifest();
    assert_eq!(decoded.commit, expected.commit);
    assert_eq!(decoded.schema, expected.schema);
    assert_eq!(decoded.layout, expected.layout);
    assert_eq!(decoded.segments, expected.segments);
    assert_eq!(decoded.indices, expected.indices);
    assert_eq!(decoded.timestamp, expected.timestamp);
    assert_eq!(encode_version_file(&decoded).unwrap(), stored);
}

#[test]
fn segment_v1_golden_decodes_to_the_same_files() {
    let golden = testdata("segment-v1.parquet");
    if bless() {
        let bytes = encode_segment(&data_files(), &schema(), &layout()).unwrap();
        std::fs::write(&golden, &bytes).unwrap();
    }
    let bytes = Bytes::from(std::fs::read(&golden).unwrap());
    let list = decode_segment(bytes, schema(), &layout(), "segment-v1.parquet").unwrap();
    assert_same_files(&list.data_files().unwrap(), &data_files());
    // Typed columns for the planner.
    assert_eq!(
        list.min_values("flight").unwrap().data_type(),
        &DataType::Int64
    );
    assert_eq!(
        list.partition_values("day").unwrap().data_type(),
        &DataType::Date32
    );
    assert!(
        list.min_values("origin").is_none(),
        "partition columns have no file stats"
    );
}

/// The golden files plus row-group statistics on the first file: two row groups, the
/// second with a column whose bounds are unknown and a column with no statistics at all.
fn data_files_with_row_groups() -> Vec<DataFile> {
    let mut files = data_files();
    let first = &mut files[0];
    let mut low = first.column_stats.clone();
    low.insert(
        "flight".into(),
        ColumnStats {
            min: ScalarValue::Int64(Some(1)),
            max: ScalarValue::Int64(Some(3000)),
            null_count: Some(0),
            nan_count: None,
        },
    );
    let mut high = first.column_stats.clone();
    high.insert(
        "flight".into(),
        ColumnStats {
            min: ScalarValue::Int64(Some(3001)),
            max: ScalarValue::Int64(Some(6181)),
            null_count: Some(0),
            nan_count: None,
        },
    );
    high.insert(
        "dep_delay".into(),
        ColumnStats {
            min: ScalarValue::Float64(None),
            max: ScalarValue::Float64(None),
            null_count: None,
            nan_count: None,
        },
    );
    high.remove("fare");
    first.row_groups = vec![
        RowGroupStats {
            num_rows: 600,
            size_bytes: 30000,
            column_stats: low,
        },
        RowGroupStats {
            num_rows: 400,
            size_bytes: 20000,
            column_stats: high,
        },
    ];
    files
}

#[test]
fn segment_v1_with_row_groups_golden_decodes_to_the_same_files() {
    let golden = testdata("segment-v1-row-groups.parquet");
    if bless() {
        let bytes = encode_segment(&data_files_with_row_groups(), &schema(), &layout()).unwrap();
        std::fs::write(&golden, &bytes).unwrap();
    }
    let bytes = Bytes::from(std::fs::read(&golden).unwrap());
    let list = decode_segment(bytes, schema(), &layout(), "segment-v1-row-groups.parquet").unwrap();
    let files = list.data_files().unwrap();
    let mut expected = data_files_with_row_groups();
    // A column without statistics in a row group reads back as unknown bounds.
    let fare = expected[0].row_groups[1].column_stats.entry("fare".into());
    fare.or_insert(ColumnStats {
        min: ScalarValue::Decimal128(None, 10, 2),
        max: ScalarValue::Decimal128(None, 10, 2),
        null_count: None,
        nan_count: None,
    });
    assert_same_files(&files, &expected);
    assert_eq!(files[0].row_groups.len(), 2);
    assert!(files[1].row_groups.is_empty());
}

/// The row-group golden files with NaN counts of the float column `dep_delay`: the
/// first file holds NaN in its second row group (so its own bounds and that group's are
/// unknown), the second holds none. Other columns have no NaN count.
fn data_files_with_nan_counts() -> Vec<DataFile> {
    let mut files = data_files_with_row_groups();
    let set = |stats: &mut BTreeMap<String, ColumnStats>, nans: u64| {
        let s = stats.get_mut("dep_delay").unwrap();
        s.nan_count = Some(nans);
        if nans > 0 {
            s.min = ScalarValue::Float64(None);
            s.max = ScalarValue::Float64(None);
        }
    };
    set(&mut files[0].column_stats, 2);
    set(&mut files[0].row_groups[0].column_stats, 0);
    set(&mut files[0].row_groups[1].column_stats, 2);
    set(&mut files[1].column_stats, 0);
    files
}

#[test]
fn segment_v1_with_nan_counts_golden_decodes_to_the_same_files() {
    let golden = testdata("segment-v1-nan-counts.parquet");
    if bless() {
        let bytes = encode_segment(&data_files_with_nan_counts(), &schema(), &layout()).unwrap();
        std::fs::write(&golden, &bytes).unwrap();
    }
    let bytes = Bytes::from(std::fs::read(&golden).unwrap());
    let list = decode_segment(bytes, schema(), &layout(), "segment-v1-nan-counts.parquet").unwrap();
    let files = list.data_files().unwrap();
    let mut expected = data_files_with_nan_counts();
    let fare = expected[0].row_groups[1].column_stats.entry("fare".into());
    fare.or_insert(ColumnStats {
        min: ScalarValue::Decimal128(None, 10, 2),
        max: ScalarValue::Decimal128(None, 10, 2),
        null_count: None,
        nan_count: None,
    });
    assert_same_files(&files, &expected);
    let counts = list.nan_counts("dep_delay").unwrap();
    assert_eq!(counts.data_type(), &DataType::UInt64);
    assert!(list.nan_counts("flight").is_none(), "only float columns");
}

#[test]
fn segments_without_nan_counts_have_no_nan_count_column() {
    // Lists of files written before NaN counts existed encode as before.
    for files in [data_files(), data_files_with_row_groups()] {
        let bytes = encode_segment(&files, &schema(), &layout()).unwrap();
        let list = decode_segment(bytes, schema(), &layout(), "x").unwrap();
        assert!(list.record_batch().column_by_name("nan_count").is_none());
        assert!(list.nan_counts("dep_delay").is_none());
    }
    let bytes = encode_segment(&data_files_with_nan_counts(), &schema(), &layout()).unwrap();
    let list = decode_segment(bytes, schema(), &layout(), "x").unwrap();
    assert_same_files(
        &list.data_files().unwrap()[1..],
        &data_files_with_nan_counts()[1..],
    );
}

#[test]
fn segments_without_multi_row_group_files_have_no_row_groups_column() {
    // Keeps segments of such datasets exactly as before the column existed.
    let bytes = encode_segment(&data_files(), &schema(), &layout()).unwrap();
    let list = decode_segment(bytes, schema(), &layout(), "x").unwrap();
    assert!(list.record_batch().column_by_name("row_groups").is_none());
    let bytes = encode_segment(&data_files_with_row_groups(), &schema(), &layout()).unwrap();
    let list = decode_segment(bytes, schema(), &layout(), "x").unwrap();
    assert!(list.record_batch().column_by_name("row_groups").is_some());
}

#[test]
fn a_segment_with_malformed_row_groups_is_corrupt() {
    let bytes = encode_segment(&data_files(), &schema(), &layout()).unwrap();
    let list = decode_segment(bytes, schema(), &layout(), "x").unwrap();
    let batch = list.record_batch();
    let mut fields: Vec<_> = batch.schema().fields().iter().cloned().collect();
    let mut columns = batch.columns().to_vec();
    fields.push(Arc::new(Field::new("row_groups", DataType::Int64, false)));
    columns.push(Arc::new(arrow::array::Int64Array::from(vec![1, 2])));
    let bad =
        arrow::record_batch::RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let bytes = segment::write_parquet(bad).unwrap();
    let err = decode_segment(bytes, schema(), &layout(), "s.parquet").unwrap_err();
    assert!(
        matches!(err, crate::Error::CorruptManifest { .. })
            && err.to_string().contains("row_groups"),
        "{err}"
    );
}

#[test]
fn segment_round_trips_through_encode_and_decode() {
    let bytes = encode_segment(&data_files(), &schema(), &layout()).unwrap();
    let list = decode_segment(bytes, schema(), &layout(), "x").unwrap();
    assert_same_files(&list.data_files().unwrap(), &data_files());
    let bytes = encode_segment(&data_files_with_row_groups(), &schema(), &layout()).unwrap();
    let list = decode_segment(bytes, schema(), &layout(), "x").unwrap();
    let back = list.data_files().unwrap();
    assert_eq!(
        back[0].row_groups[0],
        data_files_with_row_groups()[0].row_groups[0]
    );
    let summary = summarize(&data_files(), &schema(), &layout()).unwrap();
    assert_eq!(summary.partition_min[0], ScalarValue::from("JFK"));
    assert_eq!(summary.partition_null_count, vec![1, 0]);
    assert_eq!((summary.bucket_min, summary.bucket_max), (Some(0), Some(3)));
}

#[test]
fn a_segment_with_a_missing_column_is_corrupt() {
    let other_layout = Layout::default();
    let bytes = encode_segment(&data_files(), &schema(), &other_layout).unwrap();
    let err = decode_segment(bytes, schema(), &layout(), "s.parquet").unwrap_err();
    assert!(matches!(err, crate::Error::CorruptManifest { .. }), "{err}");
}

#[test]
fn a_file_report_carries_index_values_with_the_files() {
    let mut files = data_files();
    files[0].index_values.insert(
        "tailnum".into(),
        Arc::new(arrow::array::StringArray::from(vec!["N10156", "N9EAMQ"])),
    );
    files[1].index_values.insert(
        "tailnum".into(),
        Arc::new(arrow::array::StringArray::from(vec!["a/b c"])),
    );
    let bytes = encode_file_report(&files, &schema(), &layout()).unwrap();
    let back = decode_file_report(bytes, schema(), &layout(), "r.parquet").unwrap();
    assert_same_files(&back, &files);
    for (a, e) in back.iter().zip(&files) {
        assert_eq!(a.index_values.len(), 1);
        assert_eq!(
            a.index_values["tailnum"].as_ref(),
            e.index_values["tailnum"].as_ref()
        );
    }
}
