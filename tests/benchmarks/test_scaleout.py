"""benchmarks/scaleout.py end to end on a tiny setting: real replicas behind real HAProxy, CSV + PNG written, every
request answered, and each replica of a pair got its share (the per-replica counts are the replicas' own metrics)."""
import csv
import shutil
from pathlib import Path

import pytest

from benchmarks import scaleout

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").is_file(),
                                reason="haproxy not installed: `make setup` installs it (Debian, as root)")


def test_scaleout_writes_csv_and_png_and_spreads_requests(graphs, tmp_path):
    out = tmp_path / "results"
    rc = scaleout.main(["--onnx", str(graphs.path("pipeline")), "--replicas", "2", "--concurrency", "2",
                        "--requests", "6", "--size", "16x24", "--out", str(out), "--work", str(tmp_path / "work"),
                        "--label", "test"])
    assert rc == 0
    (csv_path,) = out.glob("*_test_scaleout.csv")
    assert csv_path.with_suffix(".png").is_file()
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["replicas"], r["concurrency"]) for r in rows] == [("1", "2"), ("2", "2")]
    for row in rows:
        assert row["failed"] == "0" and float(row["throughput_per_s"]) > 0
        counts = [int(c) for c in row["per_replica"].split()]
        assert len(counts) == int(row["replicas"])
        assert sum(counts) >= 6 + 2  # the requests and the warm-up (a manager's canaries may add more)
    assert min(int(c) for c in rows[1]["per_replica"].split()) >= 3  # round-robin: each gets about half
