"""Make a trained run the default model that `flowvid predict` uses without --checkpoint.

    python tools/ship_default_model.py runs/default_model/2_vessels/model.pt [--note "..."]

Writes the default checkpoint (``flowvid.checkpoint.DEFAULT_CHECKPOINT``, or ``--out``):
float16 weights plus the arguments that rebuild the model and the run's config (about 7 MB).
Describe it in its model card under data_cards/.
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
