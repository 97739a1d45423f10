#!/usr/bin/env python3
"""Side-by-side write benchmark: terrace's writer vs pyarrow's write_dataset.

Both write the same TPC-H lineitem input (Parquet, generated once by tpchgen-cli from
PyPI, string columns as plain Utf8, cached under target/bench-data) partitioned on l_shipmode and bucketed by
l_orderkey into 8 buckets, with zstd at pyarrow's default level (1). pyarrow has no
bucket transform, so it gets a bucket column `l_orderkey % 8` computed on the fly and
partitions on (l_shipmode, bucket): the same 56 output groups. Runs alternate
(terrace, pyarrow, terrace, ...) so machine noise hits both; wall time and peak RSS
come from /usr/bin/time for both processes.

usage: python compare_pyarrow.py TERRACE_BENCH_BINARY [RUNS]
(run through `format/benches/compare_pyarrow.sh`, which builds the binary and the venv)
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "target", "bench-data", "tpch-sf1")

PYARROW_WRITER = r'''
import sys, time, json
import pyarrow as pa, pyarrow.dataset as ds, pyarrow.compute as pc
src, out = sys.argv[1], sys.argv[2]
source = ds.dataset(src, format="parquet")
def with_bucket():
    for b in source.to_batches(batch_size=64 * 1024):
        k = b.column("l_orderkey")
        bucket = pc.subtract(k, pc.multiply(pc.divide(k, 8), 8))
        yield pa.RecordBatch.from_arrays(b.columns + [bucket], names=b.schema.names + ["bucket"])
schema = source.schema.append(pa.field("bucket", pa.int64()))
part = ds.partitioning(pa.schema([source.schema.field("l_shipmode"), pa.field("bucket", pa.int64())]), flavor="hive")
start = time.time()
fmt = ds.ParquetFileFormat()
ds.write_dataset(with_bucket(), out, schema=schema, format="parquet", partitioning=part,
                 file_options=fmt.make_write_options(compression="zstd", compression_level=1),
                 existing_data_behavior="overwrite_or_ignore")
print(json.dumps({"system": "pyarrow", "seconds": round(time.time() - start, 3)}))
'''


def ensure_input(python):
    marker = os.path.join(DATA, ".ready")
    if not os.path.exists(marker):
        os.makedirs(DATA, exist_ok=True)
        subprocess.check_call([os.path.join(os.path.dirname(python), "tpchgen-cli"), "parquet", "-s", "1",
                               "--tables", "lineitem", "--output-dir", DATA])
        open(marker, "w").close()
    # tpchgen-cli writes string_view columns, which pyarrow's take kernel does not handle;
    # give both systems the same input with plain strings (converted once, cached).
    plain = os.path.join(DATA, "lineitem-utf8.parquet")
    if not os.path.exists(plain):
        subprocess.check_call([python, "-c", (
            "import sys, pyarrow as pa, pyarrow.parquet as pq\n"
            "t = pq.read_table(sys.argv[1])\n"
            "schema = pa.schema([pa.field(f.name, pa.string() if f.type == pa.string_view() else f.type, f.nullable) for f in t.schema])\n"
            "pq.write_table(t.cast(schema), sys.argv[2], row_group_size=128 * 1024, compression='zstd')\n"),
            os.path.join(DATA, "lineitem.parquet"), plain])
    return plain


def timed(cmd):
    """Run under /usr/bin/time; return (wall seconds, peak RSS MiB, stdout)."""
    with tempfile.NamedTemporaryFile("r") as t:
        start = time.time()
        out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", t.name] + cmd,
                             check=True, capture_output=True, text=True).stdout
        wall = time.time() - start
        rss_kib = int(t.read().strip().splitlines()[-1])
    return wall, rss_kib / 1024, out


def du(path):
    total, files = 0, 0
    for d, _, names in os.walk(path):
        for n in names:
            if n.endswith(".parquet"):
                total += os.path.getsize(os.path.join(d, n)); files += 1
    return total, files


def main():
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    python = sys.executable
    src = ensure_input(python)
    results = {"terrace": [], "pyarrow": []}
    for run in range(runs):
        for system in ("terrace", "pyarrow"):
            out = tempfile.mkdtemp(prefix=f"bench-{system}-", dir=os.path.join(ROOT, "target"))
            try:
                if system == "terrace":
                    cmd = [binary, src, out, "l_shipmode", "l_orderkey", "8", "1"]
                else:
                    cmd = [python, "-c", PYARROW_WRITER, src, out]
                wall, rss, stdout = timed(cmd)
                size, files = du(out)
                results[system].append({"wall": wall, "rss": rss, "bytes": size, "files": files,
                                        "inner": json.loads(stdout.strip().splitlines()[-1])})
                print(f"run {run + 1} {system:8} wall {wall:6.2f} s  peak RSS {rss:7.1f} MiB  "
                      f"{files} files {size / 2**20:7.1f} MiB", flush=True)
            finally:
                shutil.rmtree(out, ignore_errors=True)
    rows = results["terrace"][0]["inner"]["rows"]
    med = {s: statistics.median(r["wall"] for r in v) for s, v in results.items()}
    rss = {s: statistics.median(r["rss"] for r in v) for s, v in results.items()}
    print(f"\nrows {rows}; medians over {runs} interleaved runs")
    for s in ("terrace", "pyarrow"):
        print(f"{s:8} {med[s]:6.2f} s  {rows / med[s]:>12,.0f} rows/s  peak RSS {rss[s]:7.1f} MiB")
    print(f"pyarrow/terrace wall-time ratio: {med['pyarrow'] / med['terrace']:.2f}x "
          f"(>1 means terrace is faster)")


if __name__ == "__main__":
    main()
