"""What the expected-error head costs at inference: model-only maps/s with and without it.

    python tools/uncertainty_cost.py [--size 256] [--frames 16] [--runs 3]

An untrained lite0 network with the Lucas-Kanade steps (6 iterations, 3 levels), streamed in
chunks as predict runs it (channels_last), alternating runs with and without ``aux``.
"""

import argparse
import time

import torch

from flowvid.models import create_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)
    kw = dict(pretrained="none", lk_iters=6, lk_levels=3, lk_prior=1.0, lk_trust=True)
    model = create_model(**kw, lk_floor=0.1, uncertainty=True).eval()
    model = model.to(memory_format=torch.channels_last)
    x = torch.rand(1, args.frames, 3, args.size, args.size)

    def rate(with_error: bool) -> float:
        state = model.init_state()
        start = time.perf_counter()
        with torch.inference_mode():
            for _ in range(2):
                _, state = model.step(x, state, {} if with_error else None)
        return (2 * args.frames - 1) / (time.perf_counter() - start)

    rate(False), rate(True)  # warm-up
    for _ in range(args.runs):
        print(f"without {rate(False):.2f} maps/s   with the expected error {rate(True):.2f}")


if __name__ == "__main__":
    main()
