//! Reading a set of data files with projection, pruning and exact filtering.
//!
//! The scan is DataFusion's own Parquet scan, not a hand-written evaluator: a
//! `DataSourceExec` over a `FileScanConfig` with a `ParquetSource` (filter pushdown with
//! reordering, page index on). Each data file becomes one `PartitionedFile` carrying its
//! partition values as table partition columns, so partition columns come back typed and
//! a predicate on them prunes whole files. A [`RowGroupSelection`] from the planner
//! becomes the file's `ParquetAccessPlan`, so row groups it leaves out are never fetched;
//! the rest are pruned again from the files' statistics and page index. A `FilterExec`
//! on top makes the result exact whatever the pushdown could prove. Batches stream:
//! nothing holds a whole file.
//!
//! Parquet's float bounds leave NaN out, so a file that may hold NaN in a float column
//! the predicate reads (its [`ColumnStats::nan_count`](crate::ColumnStats) is not 0, or
//! unknown) is scanned with a pruning predicate of only the conjuncts that do not read
//! such a column: files are grouped by those columns, one Parquet scan per group under
//! a union, and the `FilterExec` applies the whole predicate to every row.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccess};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::col;
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use serde::{Deserialize, Serialize};

use crate::datafile::DataFile;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::nan::nan_columns;
use crate::schema::file_schema;
use crate::writer::object_path;

/// What to read from a set of data files.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// The files to read (already pruned by the planner, or all of them).
    pub files: Vec<DataFile>,
    /// Columns to return, in this order; `None` returns every column of the dataset
    /// schema in its order. Partition columns may be named like any other column.
    pub projection: Option<Vec<String>>,
    /// Rows to keep; may use partition and data columns. Used to prune row groups and
    /// pages, then applied exactly.
    pub predicate: Option<Expr>,
    /// Rows per returned batch (at most).
    pub batch_size: usize,
    /// Row groups to read, by file path; a file not named here is read whole.
    pub row_groups: HashMap<String, RowGroupSelection>,
    /// Return string and binary columns stored in the files as Arrow's view types
    /// (`Utf8View`, `BinaryView`) instead of the dataset schema's; partition columns keep
    /// their type. Decoding a dictionary page then copies 16-byte views rather than
    /// every value's bytes, and DataFusion groups and compares short strings by their
    /// views: for SQL run on the rows, not for rows handed to a user as they are.
    pub string_views: bool,
}

/// Which row groups of one data file to read (a planner's row-group hint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowGroupSelection {
    /// Row groups in the file. The scan fails if the file has a different number, which
    /// means the file is not the one the manifest describes.
    pub of: usize,
    /// Row groups to read, ascending, each below `of`.
    pub read: Vec<usize>,
}

impl RowGroupSelection {
    fn access_plan(&self, path: &str) -> Result<ParquetAccessPlan> {
        let mut access = vec![RowGroupAccess::Skip; self.of];
        for &i in &self.read {
            let slot = access
                .get_mut(i)
                .ok_or_else(|| Error::InvalidRowGroupSelection {
                    path: path.to_string(),
                    reason: format!("row group {i} of a file with {}", self.of),
                })?;
            *slot = RowGroupAccess::Scan;
        }
        Ok(ParquetAccessPlan::new(access))
    }
}

impl ScanRequest {
    /// Read every row and column of `files`, 8192 rows per batch.
    pub fn new(files: Vec<DataFile>) -> Self {
        Self {
            files,
            projection: None,
            predicate: None,
            batch_size: 8192,
            row_groups: HashMap::new(),
            string_views: false,
        }
    }
}

/// Stream the rows of `request.files` (below `root` in `store`) of a dataset with `schema`
/// and `layout`, projected and filtered as the request says.
///
/// Columns come back in projection order, or in the dataset schema's order; partition
/// columns come back typed as the schema says. Rows keep no particular order across
/// files (files are read concurrently).
pub async fn read_data_files(
    store: Arc<dyn ObjectStore>,
    root: Path,
    schema: SchemaRef,
    layout: &Layout,
    request: ScanRequest,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let df = |context: &str| {
        let context = context.to_string();
        move |e| Error::datafusion(context, e)
    };
    let partition_fields: Vec<FieldRef> = layout
        .partition_on
        .iter()
        .map(|name| {
            schema
                .field_with_name(name)
                .map(|f| Arc::new(f.clone()))
                .map_err(|_| unknown_column("partition", name, &schema))
        })
        .collect::<Result<_>>()?;
    let mut stored = file_schema(&schema, &layout.partition_on);
    if request.string_views {
        stored = as_view_types(&stored);
    }
    let table = TableSchema::builder(stored)
        .with_table_partition_cols(partition_fields)
        .build();
    // DataFusion orders the scan's columns as file columns, then partition columns.
    let table_arrow = Arc::clone(table.table_schema());

    let output: Vec<String> = match &request.projection {
        Some(columns) => columns.clone(),
        None => schema.fields().iter().map(|f| f.name().clone()).collect(),
    };
    for name in &output {
        if table_arrow.index_of(name).is_err() {
            return Err(unknown_column("projected", name, &schema));
        }
    }
    if let Some(predicate) = &request.predicate {
        for column in predicate.column_refs() {
            if table_arrow.index_of(&column.name).is_err() {
                return Err(unknown_column("predicate", &column.name, &schema));
            }
        }
    }

    let batch_size = request.batch_size.max(1);
    let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ctx = SessionContext::new_with_config(
        SessionConfig::new()
            .with_batch_size(batch_size)
            .with_target_partitions(parallelism),
    );
    // A private URL per scan: the store is whatever the caller passed, not something
    // DataFusion should resolve from a real URL.
    let url = ObjectStoreUrl::parse(format!("terrace-{}://data/", uuid::Uuid::new_v4().simple()))
        .map_err(df("naming the object store"))?;
    ctx.runtime_env()
        .register_object_store(url.as_ref(), Arc::clone(&store));

    let table_df =
        DFSchema::try_from(table_arrow.as_ref().clone()).map_err(df("typing the scan"))?;
    let scan_predicate = request
        .predicate
        .clone()
        .map(|p| ctx.create_physical_expr(p, &table_df))
        .transpose()
        .map_err(df("planning the predicate"))?;

    // Scan the output columns plus those only the predicate needs, in table order.
    let mut needed: Vec<usize> = output
        .iter()
        .filter_map(|name| table_arrow.index_of(name).ok())
        .collect();
    if let Some(predicate) = &request.predicate {
        needed.extend(
            predicate
                .column_refs()
                .iter()
                .filter_map(|c| table_arrow.index_of(&c.name).ok()),
        );
    }
    needed.sort_unstable();
    needed.dedup();

    // Files by the predicate's float columns they may hold NaN in: each set is scanned
    // with a pruning predicate that leaves those columns out (see `nan.rs`).
    let predicate_columns: Vec<String> = request
        .predicate
        .as_ref()
        .map(|p| p.column_refs().iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let mut by_nan_columns: BTreeMap<Vec<String>, Vec<PartitionedFile>> = BTreeMap::new();
    for file in &request.files {
        let location = object_path(&root, &file.path)?;
        let scanned = PartitionedFile::new_from_meta(ObjectMeta {
            location,
            last_modified: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            size: file.size_bytes,
            e_tag: None,
            version: None,
        })
        .with_partition_values(file.partition_values.clone());
        let scanned = match request.row_groups.get(&file.path) {
            Some(selection) => scanned.with_extension(selection.access_plan(&file.path)?),
            None => scanned,
        };
        let nan = nan_columns(
            &schema,
            &layout.partition_on,
            file,
            predicate_columns.iter().map(String::as_str),
        );
        by_nan_columns.entry(nan).or_default().push(scanned);
    }
    if by_nan_columns.is_empty() {
        by_nan_columns.insert(Vec::new(), Vec::new());
    }
    let mut scans: Vec<Arc<dyn ExecutionPlan>> = Vec::with_capacity(by_nan_columns.len());
    for (nan, files) in by_nan_columns {
        let pruning = if nan.is_empty() {
            scan_predicate.clone()
        } else {
            request
                .predicate
                .as_ref()
                .and_then(|p| without_columns(p, &nan))
                .map(|p| ctx.create_physical_expr(p, &table_df))
                .transpose()
                .map_err(df("planning the predicate"))?
        };
        let mut source = ParquetSource::new(table.clone())
            .with_pushdown_filters(true)
            .with_reorder_filters(true)
            .with_enable_page_index(true);
        if let Some(predicate) = pruning {
            source = source.with_predicate(predicate);
        }
        let config = FileScanConfigBuilder::new(url.clone(), Arc::new(source))
            .with_file_groups(file_groups(files, parallelism))
            .with_batch_size(Some(batch_size))
            .with_projection_indices(Some(needed.clone()))
            .map_err(df("projecting the scan"))?
            .build();
        scans.push(DataSourceExec::from_data_source(config));
    }
    let mut plan: Arc<dyn ExecutionPlan> =
        UnionExec::try_new(scans).map_err(df("combining the scans"))?;

    if let Some(predicate) = request.predicate {
        // The scan's own filtering is best effort (pages, and rows only where pushdown
        // applies); this filter makes the result exact.
        let scanned = DFSchema::try_from(plan.schema().as_ref().clone())
            .map_err(df("typing the scan output"))?;
        let predicate = ctx
            .create_physical_expr(predicate, &scanned)
            .map_err(df("planning the predicate"))?;
        plan = Arc::new(
            FilterExecBuilder::new(predicate, plan)
                .with_batch_size(batch_size)
                .build()
                .map_err(df("planning the filter"))?,
        );
    }
    let scanned = plan.schema();
    let exprs = output
        .iter()
        .map(|name| Ok((col(name, &scanned)?, name.clone())))
        .collect::<datafusion::common::Result<Vec<(Arc<dyn PhysicalExpr>, String)>>>()
        .map_err(df("projecting the output"))?;
    plan = Arc::new(ProjectionExec::try_new(exprs, plan).map_err(df("projecting the output"))?);

    let stream = execute_stream(plan, ctx.task_ctx()).map_err(df("starting the scan"))?;
    Ok(stream
        .map_err(|e| Error::datafusion("reading data files", e))
        .boxed())
}

/// The conjuncts of `predicate` that read none of `columns` (`None`: no conjunct left).
///
/// A weaker predicate, so it prunes no row group or page the whole one would keep.
fn without_columns(predicate: &Expr, columns: &[String]) -> Option<Expr> {
    balanced_conjunction(
        split_conjunction(predicate)
            .into_iter()
            .filter(|e| {
                e.column_refs()
                    .iter()
                    .all(|c| !columns.iter().any(|n| n == &c.name))
            })
            .cloned()
            .collect(),
    )
}

/// The AND of `terms` as a balanced tree. DataFusion's `conjunction` folds them into a
/// chain one level per term, and a predicate of thousands of terms would then overflow
/// the stack of whatever walks it (planning, evaluation, Drop).
fn balanced_conjunction(mut terms: Vec<Expr>) -> Option<Expr> {
    while terms.len() > 1 {
        let mut next = Vec::with_capacity(terms.len().div_ceil(2));
        let mut it = terms.into_iter();
        while let Some(left) = it.next() {
            next.push(match it.next() {
                Some(right) => left.and(right),
                None => left,
            });
        }
        terms = next;
    }
    terms.pop()
}

/// `schema` with its string and binary columns as view types. DataFusion's Parquet scan
/// decodes a file's columns straight into the view types its table schema asks for.
fn as_view_types(schema: &Schema) -> SchemaRef {
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 => {
                Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8View))
            }
            DataType::Binary | DataType::LargeBinary => {
                Arc::new(f.as_ref().clone().with_data_type(DataType::BinaryView))
            }
            _ => Arc::clone(f),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Spread files over up to `n` groups of similar byte size (each group is read by one
/// partition of the scan, so groups run concurrently).
fn file_groups(mut files: Vec<PartitionedFile>, n: usize) -> Vec<FileGroup> {
    let n = n.clamp(1, files.len().max(1));
    files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..n).map(|_| (0, Vec::new())).collect();
    for file in files {
        // Largest first into the lightest group: a cheap balance.
        if let Some(group) = groups.iter_mut().min_by_key(|(bytes, _)| *bytes) {
            group.0 += file.object_meta.size;
            group.1.push(file);
        }
    }
    groups
        .into_iter()
        .filter(|(_, files)| !files.is_empty())
        .map(|(_, files)| FileGroup::new(files))
        .collect()
}

fn unknown_column(role: &'static str, name: &str, schema: &arrow::datatypes::Schema) -> Error {
    Error::UnknownColumn {
        role,
        column: name.to_string(),
        available: crate::schema::column_list(schema),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::WriterOptions;
    use crate::writer::tests::{Row, layout, rows, schema, to_rows, write_rows};
    use datafusion::prelude::{col, lit};
    use object_store::memory::InMemory;

    async fn scan(
        store: Arc<dyn ObjectStore>,
        files: Vec<DataFile>,
        predicate: Option<Expr>,
        projection: Option<Vec<String>>,
    ) -> Vec<RecordBatch> {
        let request = ScanRequest {
            projection,
            predicate,
            batch_size: 1_000,
            ..ScanRequest::new(files)
        };
        read(store, request).await
    }

    async fn read(store: Arc<dyn ObjectStore>, request: ScanRequest) -> Vec<RecordBatch> {
        read_data_files(store, Path::from("t"), schema(), &layout(), request)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }

    async fn dataset() -> (Arc<dyn ObjectStore>, Vec<DataFile>, Vec<Row>) {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let rows = rows(0, 20_000);
        let options = WriterOptions {
            row_group_rows: 300,
            ..WriterOptions::default()
        };
        let (files, _) =
            write_rows(Arc::clone(&store), &Path::from("t"), &rows, 4_000, options).await;
        (store, files, rows)
    }

    #[tokio::test]
    async fn predicate_on_data_and_partition_columns_matches_brute_force() {
        let (store, files, rows) = dataset().await;
        type Keep = Box<dyn Fn(&Row) -> bool>;
        let cases: Vec<(Expr, Keep)> = vec![
            (
                col("v").gt(lit(50.0)),
                Box::new(|r| r.v.is_some_and(|v| v > 50.0)),
            ),
            (
                col("p1").eq(lit("x/y")),
                Box::new(|r| r.p1.as_deref() == Some("x/y")),
            ),
            (col("p2").is_null(), Box::new(|r| r.p2.is_none())),
            (
                col("p1")
                    .eq(lit("with space"))
                    .and(col("id").lt(lit(5_000i64))),
                Box::new(|r| r.p1.as_deref() == Some("with space") && r.id < 5_000),
            ),
            // Int32 column against an Int64 literal: coerced, not refused.
            (
                col("p2").eq(lit(-2i64)).or(col("s").eq(lit("s5"))),
                Box::new(|r| r.p2 == Some(-2) || r.s.as_deref() == Some("s5")),
            ),
            (
                col("id").between(lit(100i64), lit(180i64)),
                Box::new(|r| (100..=180).contains(&r.id)),
            ),
        ];
        for (predicate, keep) in cases {
            let expected: Vec<Row> = rows.iter().filter(|r| keep(r)).cloned().collect();
            assert!(!expected.is_empty());
            let got = scan(
                Arc::clone(&store),
                files.clone(),
                Some(predicate.clone()),
                None,
            )
            .await;
            assert_eq!(to_rows(&got), expected, "{predicate}");
        }
    }

    #[tokio::test]
    async fn projection_orders_columns_and_predicate_columns_need_not_be_projected() {
        let (store, files, rows) = dataset().await;
        let got = scan(
            store,
            files,
            Some(col("p1").is_null().and(col("v").lt_eq(lit(10.0)))),
            Some(vec!["s".into(), "p2".into(), "id".into()]),
        )
        .await;
        let names: Vec<String> = got[0]
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["s", "p2", "id"]);
        let n: usize = got.iter().map(|b| b.num_rows()).sum();
        assert!(got.iter().all(|b| b.num_rows() <= 1_000));
        let expected = rows
            .iter()
            .filter(|r| r.p1.is_none() && r.v.is_some_and(|v| v <= 10.0))
            .count();
        assert_eq!(n, expected);
    }

    #[tokio::test]
    async fn string_views_return_stored_strings_as_views_with_the_same_rows() {
        let (store, files, rows) = dataset().await;
        let predicate = col("s").gt_eq(lit("s50")).and(col("p1").eq(lit("a")));
        let request = ScanRequest {
            predicate: Some(predicate),
            string_views: true,
            ..ScanRequest::new(files)
        };
        let got = read(store, request).await;
        let types = got[0].schema();
        // Stored strings as views; the partition column keeps the dataset's type.
        assert_eq!(
            types.field_with_name("s").unwrap().data_type(),
            &DataType::Utf8View
        );
        assert_eq!(
            types.field_with_name("p1").unwrap().data_type(),
            &DataType::Utf8
        );
        assert_eq!(
            types.field_with_name("v").unwrap().data_type(),
            &DataType::Float64
        );
        let plain: Vec<RecordBatch> = got
            .iter()
            .map(|b| {
                let s = arrow::compute::cast(b.column(4), &DataType::Utf8).unwrap();
                let mut columns = b.columns().to_vec();
                columns[4] = s;
                RecordBatch::try_new(schema(), columns).unwrap()
            })
            .collect();
        let expected: Vec<Row> = rows
            .iter()
            .filter(|r| r.s.as_deref().is_some_and(|s| s >= "s50") && r.p1.as_deref() == Some("a"))
            .cloned()
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(to_rows(&plain), expected);
    }

    /// Regression: DataFusion pruned row groups and pages with Parquet's bounds, which
    /// leave NaN out, so `v > 1000` lost the rows where `v` is NaN.
    #[tokio::test]
    async fn nan_rows_survive_the_scans_pruning() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut rows = rows(0, 6_000);
        for r in rows.iter_mut().filter(|r| r.id % 500 == 7) {
            r.v = Some(if r.id % 1000 == 7 {
                f64::NAN
            } else {
                -f64::NAN
            });
        }
        let options = WriterOptions {
            row_group_rows: 100,
            ..WriterOptions::default()
        };
        let (files, _) =
            write_rows(Arc::clone(&store), &Path::from("t"), &rows, 6_000, options).await;
        let ids = |batches: &[RecordBatch]| -> Vec<i64> {
            let mut ids: Vec<i64> = to_rows(batches).iter().map(|r| r.id).collect();
            ids.sort_unstable();
            ids
        };
        let want = |keep: fn(f64) -> bool| -> Vec<i64> {
            rows.iter()
                .filter(|r| r.v.is_some_and(keep))
                .map(|r| r.id)
                .collect()
        };
        let high = want(|v| v.total_cmp(&1000.0).is_gt());
        let low = want(|v| v.total_cmp(&-1000.0).is_lt());
        assert_eq!((high.len(), low.len()), (6, 6));
        // As the writer recorded them, and as a manifest from before NaN counts.
        let mut legacy = files.clone();
        for f in &mut legacy {
            f.column_stats.values_mut().for_each(|s| s.nan_count = None);
        }
        for files in [&files, &legacy] {
            for (predicate, expected) in [
                (col("v").gt(lit(1000.0)), &high),
                (col("v").lt(lit(-1000.0)), &low),
                (col("v").gt(lit(1000.0)).and(col("id").gt(lit(0i64))), &high),
            ] {
                let got = scan(
                    Arc::clone(&store),
                    files.clone(),
                    Some(predicate.clone()),
                    None,
                )
                .await;
                assert_eq!(&ids(&got), expected, "{predicate}");
            }
        }
        // Files saying they hold no NaN are pruned on v as before: shown by files that
        // claim so wrongly, whose NaN rows the scan then skips.
        let mut claim = files.clone();
        for f in &mut claim {
            f.column_stats.get_mut("v").unwrap().nan_count = Some(0);
        }
        let got = scan(store, claim, Some(col("v").gt(lit(1000.0))), None).await;
        assert!(ids(&got).len() < high.len(), "{:?}", ids(&got));
    }

    #[tokio::test]
    async fn unknown_columns_are_refused() {
        let (store, files, _) = dataset().await;
        let request = ScanRequest {
            predicate: Some(col("nope").eq(lit(1))),
            ..ScanRequest::new(files)
        };
        let result = read_data_files(store, Path::from("t"), schema(), &layout(), request).await;
        assert!(matches!(result, Err(Error::UnknownColumn { column, .. }) if column == "nope"));
    }

    #[tokio::test]
    async fn a_row_group_selection_reads_only_those_row_groups() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let options = WriterOptions {
            row_group_rows: 60,
            ..WriterOptions::default()
        };
        let (files, _) = write_rows(
            Arc::clone(&store),
            &Path::from("t"),
            &rows(0, 20_000),
            4_000,
            options,
        )
        .await;
        let file = files
            .iter()
            .find(|f| f.row_groups.len() >= 3)
            .expect("a file with several row groups")
            .clone();
        assert_eq!(
            file.row_groups.iter().map(|g| g.num_rows).sum::<u64>(),
            file.num_rows
        );
        let of = file.row_groups.len();
        let read = vec![1, of - 1];
        let expected: u64 = read.iter().map(|&i| file.row_groups[i].num_rows).sum();
        let ids = |batches: &[RecordBatch]| -> Vec<i64> {
            batches
                .iter()
                .flat_map(|b| {
                    let ids = b
                        .column_by_name("id")
                        .unwrap()
                        .as_any()
                        .downcast_ref::<arrow::array::Int64Array>()
                        .unwrap();
                    ids.values().to_vec()
                })
                .collect()
        };
        let read_selected = |selection: RowGroupSelection| {
            let request = ScanRequest {
                row_groups: HashMap::from([(file.path.clone(), selection)]),
                ..ScanRequest::new(vec![file.clone()])
            };
            let store = Arc::clone(&store);
            async move {
                read_data_files(store, Path::from("t"), schema(), &layout(), request)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            }
        };
        let got = read_selected(RowGroupSelection { of, read }).await.unwrap();
        let got_ids = ids(&got);
        assert_eq!(got_ids.len() as u64, expected);
        // The rows are exactly those of the chosen row groups, by the per-group bounds.
        let all = scan(Arc::clone(&store), vec![file.clone()], None, None).await;
        assert_eq!(ids(&all).len() as u64, file.num_rows);
        for id in &got_ids {
            let in_chosen = [1, of - 1].iter().any(|&g| {
                let stats = &file.row_groups[g].column_stats["id"];
                stats.min <= datafusion::common::ScalarValue::Int64(Some(*id))
                    && datafusion::common::ScalarValue::Int64(Some(*id)) <= stats.max
            });
            assert!(in_chosen, "id {id} is outside the chosen row groups");
        }

        // A selection that does not fit the file is refused.
        for (of, read) in [(of, vec![of]), (of + 1, vec![0])] {
            let err = read_selected(RowGroupSelection { of, read })
                .await
                .expect_err("a selection that does not fit must fail");
            assert!(err.to_string().contains(&file.path), "{err}");
        }
    }
}
