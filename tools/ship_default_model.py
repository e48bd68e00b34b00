"""Make a trained run the default model that `flowvid predict` uses without --checkpoint.

    python tools/ship_default_model.py runs/flow_lite0/model.pt [--note "1500 CPU steps"]

Writes flowvid/weights/flow_lite0_synth.pt: float16 weights plus the arguments that rebuild
the model and the run's config (about 7 MB). Describe it in data_cards/model_flow_lite0_synth.md.
"""

import argparse
from pathlib import Path

from flowvid.checkpoint import DEFAULT_CHECKPOINT, load_model, save_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--note", default="", help="how it was trained, stored in the file")
    p.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT)
    args = p.parse_args()
    model, ckpt = load_model(args.checkpoint)
    save_checkpoint(
        args.out,
        model,
        ckpt["model_kwargs"],
        ckpt["config"],
        half=True,
        extra={"note": args.note, "source": args.checkpoint.name},
    )
    load_model(args.out)  # it must load back
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
