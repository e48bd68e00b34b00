"""`flowvid bench` runs every row and writes one table (tiny sizes; the figures themselves
are in BENCHMARKS.md)."""

import math

from flowvid.cli import main
from flowvid.predict.stream import cpu_has_bf16

ROWS = [
    "start-up: load the default model (after imports)",
    "decode only (PyAV to RGB arrays)",
    "model only (default model)",
    "flowvid predict, end to end",
    "OpenCV Farneback",
    "OpenCV DIS (medium)",
    "torchvision raft_small (12 iters, fp32)",
    "torchvision raft_large (12 iters, fp32)",
    "predict peak RSS, 20 frames",
    "predict peak RSS, 40 frames",
    "training data pipeline alone",
    "training step alone (fwd, bwd, optimiser)",
]
# a CPU that computes in bf16 also gets the opt-in --precision bf16 rows
BF16_ROWS = ["model only, --precision bf16", "flowvid predict, end to end, --precision bf16"]


def test_bench_quick_measures_every_row(tmp_path, capsys):
    out = tmp_path / "bench.md"
    assert main(["bench", "--quick", "--device", "cpu", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Command: `flowvid bench --quick --device cpu`" in text and "torch " in text
    table = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| ")][1:]
    names = [r[0].strip() for r in table]
    expected = ROWS + (BF16_ROWS if cpu_has_bf16() else [])
    assert sorted(names) == sorted(expected)
    for row in table:
        value = float(row[3])
        assert math.isfinite(value) and value > 0, row
    written = {r[0].strip(): r[5] for r in table if "peak RSS" in r[0]}
    assert "19 maps written" in written["predict peak RSS, 20 frames"]
    assert "39 maps written" in written["predict peak RSS, 40 frames"]


def test_bench_refuses_tiny_sizes(capsys):
    assert main(["bench", "--sizes", "8"]) == 2
    assert "at least 32 px" in capsys.readouterr().err
