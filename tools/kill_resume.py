"""Kill -9 a training run at a random moment, resume it, and compare with uninterrupted runs.

    python tools/kill_resume.py --steps 90 --noise-seeds 3 --out kill_resume.json

Runs of ``configs/debug.yaml`` on a small synthetic corpus: seeds 0..N-1 uninterrupted (seed
0 is the reference; the others give the run-to-run noise), and seed 0 killed with SIGKILL at
a random time after its first checkpoint, then resumed with ``--resume``. Prints the final
validation vessel EPE of each, the step the kill hit, and whether every checkpoint left on
disk loads.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def train_cmd(data: Path, run: Path, steps: int, seed: int, *extra: str) -> list[str]:
    sets = {
        "train.max_steps": steps,
        "train.val_every_steps": max(steps // 3, 1),
        "train.seed": seed,
        "train.checkpoint_minutes": 0.02,  # about a second: there is always a recent one
        "data.samples_per_epoch": 16,
    }
    cmd = [
        sys.executable,
        "-m",
        "flowvid.cli",
        "train",
        "--config",
        str(ROOT / "configs/debug.yaml"),
    ]
    cmd += ["--data", str(data), "--run-dir", str(run)]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd + list(extra)


def final_epe(run: Path) -> float:
    """The last validation vessel EPE over every log version of the run (resumed runs
    write a new version)."""
    rows = []
    for path in sorted((run / "logs").glob("version_*/metrics.csv")):
        with open(path) as fh:
            rows += [r for r in csv.DictReader(fh) if r.get("val/epe_vessel")]
    rows.sort(key=lambda r: int(r["step"]))
    return float(rows[-1]["val/epe_vessel"])


def checkpoints_load(run: Path) -> dict[str, object]:
    found = sorted((run / "checkpoints").glob("*"))
    ok = []
    for path in found:
        if path.suffix == ".ckpt":
            torch.load(path, map_location="cpu", weights_only=True)
            ok.append(path.name)
    return {"files": [p.name for p in found], "loaded": ok}


def killed_run(data: Path, run: Path, steps: int, rng: random.Random) -> dict[str, object]:
    proc = subprocess.Popen(
        train_cmd(data, run, steps, 0), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = run / "checkpoints" / "last.ckpt"
    while not last.is_file() and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(rng.uniform(0.5, 8.0))
    if proc.poll() is not None:
        raise SystemExit("the run finished before the kill: use more --steps")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    state = checkpoints_load(run)
    subprocess.run(
        train_cmd(data, run, steps, 0, "--resume"),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return {"resumed_from_step": step, "after_kill": state, "final_epe_vessel": final_epe(run)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0, help="for the moment of the kill")
    parser.add_argument("--noise-seeds", type=int, default=3, help="uninterrupted runs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        subprocess.run(
            [sys.executable, "-m", "flowvid.cli", "synth", "--out", str(data), "--videos", "6"]
            + ["--frames", "16", "--size", "96", "--workers", "1"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        result: dict[str, object] = {}
        for seed in range(args.noise_seeds):
            run = tmp / f"plain{seed}"
            subprocess.run(
                train_cmd(data, run, args.steps, seed),
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            result[f"uninterrupted_seed{seed}_epe_vessel"] = final_epe(run)
        result["killed_seed0"] = killed_run(data, tmp / "killed", args.steps, rng)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
