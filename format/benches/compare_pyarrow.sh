#!/usr/bin/env bash
# Build the write bench in release mode, make a venv with pyarrow + tpchgen-cli, and run
# terrace and pyarrow side by side on TPC-H lineitem SF1. Usage: compare_pyarrow.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/bench-venv
if [ ! -f "$venv/.ready" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check pyarrow tpchgen-cli
  touch "$venv/.ready"
fi
binary=$(cargo bench -p terrace-format --bench write_input --no-run --message-format=json 2>/dev/null \
  | "$venv/bin/python" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "write_input" and m.get("executable"):
        print(m["executable"])')
exec "$venv/bin/python" format/benches/compare_pyarrow.py "$binary" "${1:-3}"
