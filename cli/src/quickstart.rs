//! `terrace quickstart`: a tour on generated data, with nothing to download.
//!
//! It writes a year of flights shaped like nycflights13 (one CSV per month, three origin
//! airports, 16 carriers, ~4,000 tail numbers, delays with a realistic spread), ingests
//! them partitioned on `origin` and bucketed by `tailnum` into 8 buckets through the
//! queue, and runs a selective filter, a point lookup and a grouped aggregation with
//! `--map`/`--reduce`, printing each result and how many files pruning left.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use terrace_format::Layout;
use terrace_jobs::kinds::{IngestRequest, QueryRequest, plan_ingest, plan_query_read};

use crate::session::{QueueArgs, Waited, ensure_succeeded, submit_and_wait};

/// `terrace quickstart`.
#[derive(Debug, clap::Args)]
pub struct QuickstartArgs {
    /// Directory for the sample data (`flights/`) and the dataset (`lake/flights`); both
    /// are replaced if they exist.
    #[arg(long, default_value = "terrace-quickstart")]
    pub dir: PathBuf,
    /// Flights per month.
    #[arg(long, default_value_t = 20_000)]
    pub rows_per_month: usize,
}

const ORIGINS: [&str; 3] = ["EWR", "JFK", "LGA"];
const CARRIERS: [&str; 16] = [
    "UA", "B6", "EV", "DL", "AA", "MQ", "US", "9E", "WN", "VX", "FL", "AS", "F9", "YV", "HA", "OO",
];
const DESTS: [&str; 20] = [
    "ATL", "ORD", "LAX", "BOS", "MCO", "CLT", "SFO", "FLL", "MIA", "DCA", "DTW", "DFW", "RDU",
    "TPA", "DEN", "IAH", "MSP", "PBI", "BNA", "LAS",
];

/// A small deterministic generator (xorshift64*), so every run writes the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Skewed towards the first items (a few carriers and airports dominate).
    fn skewed(&mut self, n: usize) -> usize {
        let a = self.below(n as u64);
        let b = self.below(n as u64);
        a.min(b) as usize
    }
}

fn write_sample(dir: &Path, rows_per_month: usize) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut rng = Rng(0x7e77_ace5_eed0_2013);
    let tails: Vec<String> = (0..4000)
        .map(|i| format!("N{}{}", 10_000 + i * 7, ["", "A", "B", "UA", "JB"][i % 5]))
        .collect();
    let mut total = 0;
    for month in 1..=12u32 {
        let mut text = String::from(
            "year,month,day,dep_time,dep_delay,arr_delay,carrier,flight,tailnum,origin,dest,air_time,distance\n",
        );
        for _ in 0..rows_per_month {
            let day = 1 + rng.below(28);
            let hour = 5 + rng.below(18);
            let minute = rng.below(60);
            let carrier = CARRIERS[rng.skewed(CARRIERS.len())];
            let origin = ORIGINS[rng.below(3) as usize];
            let dest = DESTS[rng.skewed(DESTS.len())];
            let tail = &tails[rng.skewed(tails.len())];
            let flight = 1 + rng.below(6000);
            let cancelled = rng.below(50) == 0;
            // Most flights leave early or a little late; a long tail is very late.
            let delay = match rng.below(10) {
                0..=5 => rng.below(15) as i64 - 10,
                6..=8 => rng.below(60) as i64,
                _ => 60 + rng.below(300) as i64,
            };
            let distance = 200 + rng.below(2500);
            let air_time = distance / 8 + rng.below(30);
            if cancelled {
                writeln!(
                    text,
                    "2013,{month},{day},,,,{carrier},{flight},{tail},{origin},{dest},,{distance}"
                )?;
            } else {
                let arr_delay = delay + rng.below(30) as i64 - 15;
                writeln!(
                    text,
                    "2013,{month},{day},{},{delay},{arr_delay},{carrier},{flight},{tail},{origin},{dest},{air_time},{distance}",
                    hour * 100 + minute
                )?;
            }
            total += 1;
        }
        let path = dir.join(format!("flights-2013-{month:02}.csv"));
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(total)
}

async fn explain_line(dataset: &str, predicate: &str) -> anyhow::Result<String> {
    let request = QueryRequest {
        dataset: dataset.to_string(),
        predicate: Some(predicate.to_string()),
        ..Default::default()
    };
    let plan = plan_query_read(&request).await?.plan;
    let mut line = String::from("  pruning:");
    for step in &plan.steps {
        write!(
            line,
            " {:?} {}->{};",
            step.step, step.files_before, step.files_after
        )?;
    }
    write!(line, " {} task(s)", plan.tasks.len())?;
    Ok(line)
}

/// Run the tour.
pub async fn run(queue: &QueueArgs, args: QuickstartArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let inputs = args.dir.join("flights");
    let lake = args.dir.join("lake").join("flights");
    for dir in [&inputs, &lake] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot replace {}", dir.display()))?;
        }
    }
    let rows = write_sample(&inputs, args.rows_per_month)?;
    println!(
        "1. wrote {rows} sample flights as 12 CSV files in {}",
        inputs.display()
    );

    let dataset = lake.display().to_string();
    let pattern = inputs.join("*.csv").display().to_string();
    println!(
        "2. terrace ingest '{pattern}' --into {dataset} --partition-on origin --bucket-by tailnum --buckets 8"
    );
    let job = plan_ingest(IngestRequest {
        inputs: vec![pattern],
        dataset: dataset.clone(),
        layout: Layout {
            partition_on: vec!["origin".into()],
            bucket_by: vec!["tailnum".into()],
            num_buckets: Some(8),
        },
        // Several tasks even for this small input, so the workers share the work.
        split_bytes: Some(4 * 1024 * 1024),
        ..Default::default()
    })
    .await
    .context("cannot plan the sample ingest")?;
    match submit_and_wait(queue, job, "ingest").await? {
        Waited::Detached(id) => {
            println!("ingest submitted as job {id}; run the queries once it finished");
            return Ok(ExitCode::SUCCESS);
        }
        Waited::Finished(job) => {
            ensure_succeeded(&job)?;
            let r = job.result.unwrap_or_default();
            println!(
                "   ingested {} rows into {} files, version {}",
                r["rows"], r["files"], r["version"]
            );
        }
    }

    let queries: [(&str, QueryRequest); 3] = [
        (
            "a selective filter",
            QueryRequest {
                predicate: Some("origin = 'JFK' AND carrier = 'AA' AND dep_delay > 300".into()),
                columns: Some(
                    ["month", "day", "carrier", "flight", "tailnum", "dest", "dep_delay"]
                        .map(String::from)
                        .to_vec(),
                ),
                limit: Some(10),
                ..Default::default()
            },
        ),
        (
            "a point lookup on the bucket column",
            QueryRequest {
                predicate: Some("tailnum = 'N10007A'".into()),
                columns: Some(
                    ["month", "day", "origin", "dest", "carrier", "flight"]
                        .map(String::from)
                        .to_vec(),
                ),
                limit: Some(10),
                ..Default::default()
            },
        ),
        (
            "a grouped aggregation with --map / --reduce",
            QueryRequest {
                predicate: Some("carrier = 'AA'".into()),
                map_sql: Some(
                    "SELECT month, sum(dep_delay) AS delay, count(dep_delay) AS n FROM part GROUP BY month"
                        .into(),
                ),
                reduce_sql: Some(
                    "SELECT month, round(CAST(sum(delay) AS DOUBLE) / sum(n), 2) AS avg_dep_delay, sum(n) AS flights \
                     FROM parts GROUP BY month ORDER BY month"
                        .into(),
                ),
                ..Default::default()
            },
        ),
    ];
    for (i, (what, mut request)) in queries.into_iter().enumerate() {
        request.dataset = dataset.clone();
        let predicate = request.predicate.clone().unwrap_or_default();
        print!(
            "{}. {what}: terrace query {dataset} --where \"{predicate}\"",
            i + 3
        );
        if let Some(map) = &request.map_sql {
            print!(" --map \"{map}\"");
        }
        if let Some(reduce) = &request.reduce_sql {
            print!(" --reduce \"{reduce}\"");
        }
        println!();
        println!("{}", explain_line(&dataset, &predicate).await?);
        crate::query::execute(
            queue,
            request,
            false,
            crate::output::OutputFormat::Table,
            None,
        )
        .await?;
    }
    println!(
        "done in {:.1}s. Next: terrace inspect {dataset}; terrace history {dataset}; terrace jobs",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
