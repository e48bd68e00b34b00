"""`flowvid bench` runs every row and writes one table (tiny sizes; the figures themselves
are in BENCHMARKS.md)."""

import math

from flowvid.cli import main

ROWS = [
    "start-up: load the default model",
    "decode only",
    "model only",
    "flowvid predict, end to end",
    "OpenCV Farneback",
    "OpenCV DIS",
    "torchvision raft_small",
    "torchvision raft_large",
    "predict peak RSS, 20 frames",
    "predict peak RSS, 40 frames",
    "training data pipeline alone",
    "training step alone",
]


def test_bench_quick_measures_every_row(tmp_path, capsys):
    out = tmp_path / "bench.md"
    assert main(["bench", "--quick", "--device", "cpu", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Command: `flowvid bench --quick --device cpu`" in text and "torch " in text
    table = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| ")][1:]
    for name in ROWS:
        (row,) = [r for r in table if r[0].strip().startswith(name)]
        value = float(row[3])
        assert math.isfinite(value) and value > 0, row
    written = {r[0].strip(): r[5] for r in table if "peak RSS" in r[0]}
    assert "19 maps written" in written["predict peak RSS, 20 frames"]
    assert "39 maps written" in written["predict peak RSS, 40 frames"]


def test_bench_refuses_tiny_sizes(capsys):
    assert main(["bench", "--sizes", "8"]) == 2
    assert "at least 32 px" in capsys.readouterr().err
