"""Training throughput of the default model: clips/s at given sizes (see BENCHMARKS.md).

python tools/bench_train.py --sizes 128 256 --clip-len 8 --batch 2 --steps 3 [--device cuda --bf16]
"""

import argparse

import torch

from flowvid.config import load_config
from flowvid.lab.bench import train_throughput


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default=None)
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--clip-len", type=int, default=8)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true")
    args = p.parse_args()
    cfg = load_config(args.config)
    for size in args.sizes:
        r = train_throughput(
            cfg, size, args.clip_len, args.batch, args.steps, args.device, args.bf16
        )
        print(
            f"{r.what} {r.size}x{r.size} T={r.clip_len} batch={r.batch} {r.device} {r.precision}: "
            f"{r.per_second:.3f} clips/s ({r.params / 1e6:.2f} M params)"
        )


if __name__ == "__main__":
    main()
