"""benchmarks/tiling.py's accuracy part end to end on a small random scene: the CSV and JSON it writes hold one
row per overlap, with the default overlap marked."""
import csv
import json

import numpy as np

from benchmarks import tiling as bench
from client import tiling


def test_accuracy_part_writes_one_row_per_overlap(graphs, tmp_path):
    overlaps = [0, tiling.DEFAULT_OVERLAP]
    rc = bench.main(["--parts", "accuracy", "--quick", "--accuracy-size", "96x160", "--tile", "80x80",
                     "--overlaps", ",".join(map(str, overlaps)), "--onnx", str(graphs.path("pipeline")),
                     "--out", str(tmp_path), "--label", "test"])
    assert rc == 0
    rows = list(csv.DictReader(open(next(tmp_path.glob("*_tiling_accuracy.csv")))))
    assert [int(r["overlap"]) for r in rows] == overlaps
    assert [r["default"] for r in rows] == ["False", "True"]
    data = json.loads(next(tmp_path.glob("*_tiling.json")).read_text())
    assert data["memory"] == [] and len(data["accuracy"]) == len(rows)
    for row in data["accuracy"]:
        assert row["tiles"] > 1 and np.isfinite(row["psnr_mu_db"]) and row["max_abs"] >= 0
