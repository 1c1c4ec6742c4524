"""The benchmark scripts still run against the code they measure (tiny sizes, no timing asserted).

They import visrec's services and each other's helpers; a change to either once left
``bench/train.py`` failing at its first call. Each runs in a subprocess on its own throw-away
database of the embedded PostgreSQL, dropped at the end.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def run_bench(script: str, *args: str, tmp_path: Path) -> dict:
    """The script's ``--json`` result, with what it printed under ``"printed"``."""
    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args, "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {**json.loads(out.read_text()), "printed": done.stdout}


def test_similar_bench_runs(tmp_path):
    result = run_bench("similar.py", "--sizes", "6000", "--hard-size", "0", "--queries", "5", "--warmup", "2",
                       "--recall-queries", "10", "--ef-sweep", "100", "--http-duration", "1",
                       "--servers", "gunicorn,granian",
                       "--db", "visrec_bench_smoke", tmp_path=tmp_path)
    text = json.dumps(result)
    assert '"recall"' in text and '"service_p50"' in text
    if shutil.which("wrk"):
        runs = list(dicts_with(result, "rps"))
        assert runs and all(r["errors"] == 0 and r["requests"] > 0 for r in runs)
        assert {r["server"] for r in runs} == {"gunicorn", "granian"}  # the same runs on each server


def dicts_with(value, key: str):
    """Every dict inside a JSON value that has ``key``."""
    if isinstance(value, dict):
        if key in value:
            yield value
        for item in value.values():
            yield from dicts_with(item, key)
    elif isinstance(value, list):
        for item in value:
            yield from dicts_with(item, key)


def test_train_bench_runs(tmp_path):
    parts = "service,ingest" + (",foryou" if shutil.which("wrk") else "")
    result = run_bench("train.py", "--parts", parts, "--scale-events", "5000", "--scale-items", "500",
                       "--scale-shoppers", "300", "--http-duration", "1", "--ingest-seconds", "2",
                       "--foryou-shoppers", "40", "--breakdown-shoppers", "8", "--db", "visrec_bench_train_smoke",
                       tmp_path=tmp_path)
    ingest = result["ingest"]
    assert ingest["sent"] > 0 and ingest["sent"] == ingest["accepted"] == ingest["stored"]
    if "foryou" in parts:
        runs = result["foryou"]["runs"]
        assert all(r["errors"] == 0 and r["requests"] > 0 and r["trending"] == 0 for r in runs)


def test_cache_client_bench_runs():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "cache_client.py"), "--calls", "20"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| get")]
    assert len(rows) == 6 and sum("`visrec.cache.RedisCache`" in row for row in rows) == 4
    assert sum("a pooled connection per call" in row for row in rows) == 2


def test_prepared_bench_runs(tmp_path):
    result = run_bench("prepared.py", "--size", "3000", "--queries", "5", "--rounds", "2", "--drop",
                       "--db", "visrec_bench_prepared_smoke", tmp_path=tmp_path)
    assert [row["in_stock"] for row in result["rows"]] == [True, False]
    assert all(row[mode]["p50_ms"] > 0 for row in result["rows"] for mode in ("prepared", "unprepared"))
    # Five queries are too few for /proc's 10 ms CPU ticks: a mode can read no backend CPU, and
    # the table must still print (a division by that zero once failed CI).
    table = [line for line in result["printed"].splitlines() if line.startswith("| ") and line.count("→") == 3]
    assert len(table) == 2
