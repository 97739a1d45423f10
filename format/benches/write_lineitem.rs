//! Write benchmark: TPC-H lineitem-shaped rows, partitioned on `l_shipmode`, bucketed by
//! `l_orderkey` into 8 buckets, to a temporary directory.
//!
//! `cargo bench -p terrace-format --bench write_lineitem` (rows via `TERRACE_BENCH_ROWS`,
//! default 6 001 215 = scale factor 1). Prints rows/s, files, bytes and peak RSS. The rows
//! come from an in-repo generator with lineitem's 16-column schema and value domains
//! (deterministic PRNG), generated batch by batch so the input never sits in memory.
//! Generation time is measured in a separate pass and reported on its own.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Date32Array, Decimal128Array, Int32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use terrace_format::{DataFileWriter, Layout, WriterOptions};

const BATCH_ROWS: usize = 64 * 1024;

fn schema() -> SchemaRef {
    let money = DataType::Decimal128(15, 2);
    Arc::new(Schema::new(vec![
        Field::new("l_orderkey", DataType::Int64, false),
        Field::new("l_partkey", DataType::Int64, false),
        Field::new("l_suppkey", DataType::Int64, false),
        Field::new("l_linenumber", DataType::Int32, false),
        Field::new("l_quantity", money.clone(), false),
        Field::new("l_extendedprice", money.clone(), false),
        Field::new("l_discount", money.clone(), false),
        Field::new("l_tax", money, false),
        Field::new("l_returnflag", DataType::Utf8, false),
        Field::new("l_linestatus", DataType::Utf8, false),
        Field::new("l_shipdate", DataType::Date32, false),
        Field::new("l_commitdate", DataType::Date32, false),
        Field::new("l_receiptdate", DataType::Date32, false),
        Field::new("l_shipinstruct", DataType::Utf8, false),
        Field::new("l_shipmode", DataType::Utf8, false),
        Field::new("l_comment", DataType::Utf8, false),
    ]))
}

/// splitmix64: small, fast, deterministic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

const WORDS: &[&str] = &[
    "furiously",
    "sly",
    "careful",
    "blithely",
    "quickly",
    "fluffily",
    "slyly",
    "pending",
    "ironic",
    "final",
    "regular",
    "express",
    "bold",
    "even",
    "special",
    "deposits",
    "requests",
    "accounts",
    "packages",
    "theodolites",
    "instructions",
    "foxes",
    "pinto",
    "beans",
    "asymptotes",
    "dependencies",
    "excuses",
    "platelets",
    "ideas",
    "across",
    "among",
    "above",
    "after",
    "against",
    "along",
    "according",
    "to",
    "the",
    "haggle",
    "nag",
    "wake",
    "sleep",
    "cajole",
    "integrate",
    "boost",
    "detect",
    "use",
    "are",
    "was",
];
const MODES: [&str; 7] = ["REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB"];
const INSTRUCT: [&str; 4] = [
    "DELIVER IN PERSON",
    "COLLECT COD",
    "NONE",
    "TAKE BACK RETURN",
];

/// Generates lineitem rows order by order, like dbgen: 1-7 lines per order, sparse
/// order keys (8 of every 32), dates from 1992 to 1998.
struct Generator {
    rng: Rng,
    order: i64,
    line: i32,
    lines_in_order: i32,
    order_date: i32,
    left: usize,
}

impl Generator {
    fn new(rows: usize) -> Self {
        Self {
            rng: Rng(42),
            order: 0,
            line: 0,
            lines_in_order: 0,
            order_date: 0,
            left: rows,
        }
    }

    fn next_batch(&mut self) -> Option<RecordBatch> {
        if self.left == 0 {
            return None;
        }
        let n = self.left.min(BATCH_ROWS);
        self.left -= n;
        let mut orderkey = Vec::with_capacity(n);
        let mut partkey = Vec::with_capacity(n);
        let mut suppkey = Vec::with_capacity(n);
        let mut linenumber = Vec::with_capacity(n);
        let (mut qty, mut price, mut disc, mut tax) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut rflag, mut lstatus) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut ship, mut commit, mut receipt) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut instruct, mut mode, mut comment) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for _ in 0..n {
            if self.line == self.lines_in_order {
                self.order += 1;
                self.line = 0;
                self.lines_in_order = self.rng.range(1, 7) as i32;
                self.order_date = 8035 + self.rng.range(0, 2405) as i32; // 1992-01-01 ..
            }
            self.line += 1;
            let key = (self.order - 1) / 8 * 32 + (self.order - 1) % 8 + 1;
            orderkey.push(key);
            let p = self.rng.range(1, 200_000);
            partkey.push(p);
            suppkey.push((p + self.rng.range(0, 3) * 2_500) % 10_000 + 1);
            linenumber.push(self.line);
            let q = self.rng.range(1, 50);
            qty.push(q as i128 * 100);
            price.push(q as i128 * (90_000 + (p / 10) % 20_001 + 100 * (p % 1_000)) as i128);
            disc.push(self.rng.range(0, 10) as i128);
            tax.push(self.rng.range(0, 8) as i128);
            let s = self.order_date + self.rng.range(1, 121) as i32;
            let r = s + self.rng.range(1, 30) as i32;
            ship.push(s);
            commit.push(self.order_date + self.rng.range(30, 90) as i32);
            receipt.push(r);
            // 9298 = 1995-06-17, dbgen's CURRENTDATE: returned / open lines are decided by it.
            let shipped = r <= 9298;
            rflag.push(if shipped {
                if self.rng.next().is_multiple_of(2) {
                    "R"
                } else {
                    "A"
                }
            } else {
                "N"
            });
            lstatus.push(if s > 9298 { "O" } else { "F" });
            instruct.push(INSTRUCT[(self.rng.next() % 4) as usize]);
            mode.push(MODES[(self.rng.next() % 7) as usize]);
            let words = self.rng.range(2, 6);
            let mut c = String::with_capacity(44);
            for w in 0..words {
                if w > 0 {
                    c.push(' ');
                }
                c.push_str(WORDS[(self.rng.next() % WORDS.len() as u64) as usize]);
            }
            c.truncate(43);
            comment.push(c);
        }
        let money = |v: Vec<i128>| -> ArrayRef {
            Arc::new(
                Decimal128Array::from(v)
                    .with_precision_and_scale(15, 2)
                    .unwrap(),
            )
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(orderkey)),
            Arc::new(Int64Array::from(partkey)),
            Arc::new(Int64Array::from(suppkey)),
            Arc::new(Int32Array::from(linenumber)),
            money(qty),
            money(price),
            money(disc),
            money(tax),
            Arc::new(StringArray::from(rflag)),
            Arc::new(StringArray::from(lstatus)),
            Arc::new(Date32Array::from(ship)),
            Arc::new(Date32Array::from(commit)),
            Arc::new(Date32Array::from(receipt)),
            Arc::new(StringArray::from(instruct)),
            Arc::new(StringArray::from(mode)),
            Arc::new(StringArray::from(comment)),
        ];
        Some(RecordBatch::try_new(schema(), columns).unwrap())
    }
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let rows: usize = std::env::var("TERRACE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6_001_215);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let started = Instant::now();
    let mut generator = Generator::new(rows);
    while let Some(batch) = generator.next_batch() {
        std::hint::black_box(batch);
    }
    let generate = started.elapsed().as_secs_f64();

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let layout = Layout {
        partition_on: vec!["l_shipmode".into()],
        bucket_by: vec!["l_orderkey".into()],
        num_buckets: Some(8),
    };
    let started = Instant::now();
    let files = runtime.block_on(async {
        let mut writer = DataFileWriter::new(
            store,
            Path::from("lineitem"),
            schema(),
            layout,
            WriterOptions::default(),
        )
        .unwrap();
        let mut generator = Generator::new(rows);
        while let Some(batch) = generator.next_batch() {
            writer.write(batch).await.unwrap();
        }
        writer.finish().await.unwrap()
    });
    let total = started.elapsed().as_secs_f64();
    let write = (total - generate).max(f64::EPSILON);
    let bytes: u64 = files.iter().map(|f| f.size_bytes).sum();
    println!("rows            {rows}");
    println!("files           {}", files.len());
    println!(
        "bytes           {bytes} ({:.1} MiB)",
        bytes as f64 / 1048576.0
    );
    println!("generate        {generate:.2} s (measured alone)");
    println!("generate+write  {total:.2} s");
    println!(
        "write           {write:.2} s = {:.0} rows/s",
        rows as f64 / write
    );
    if let Some(rss) = peak_rss_mib() {
        println!("peak RSS        {rss:.0} MiB");
    }
}
