"""Make a trained run the default model that `flowvid predict` uses without --checkpoint.

    python tools/ship_default_model.py runs/default_model/2_vessels/model.pt [--note "..."] \
        [--set model.temporal_mean=3]

Writes the default checkpoint (``flowvid.checkpoint.DEFAULT_CHECKPOINT``, or ``--out``):
float16 weights plus the arguments that rebuild the model and the run's config (about 7 MB).
``--set model.KEY=VALUE`` changes a model argument that has no weights of its own (the mean
over maps, say); the weights must still load into the model it builds. Describe the file in
its model card under data_cards/.
"""

import argparse
from pathlib import Path

from flowvid.checkpoint import DEFAULT_CHECKPOINT, load_model, save_checkpoint, with_settings
from flowvid.config import parse_override
from flowvid.errors import InputError


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--note", default="", help="how it was trained, stored in the file")
    p.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE")
    args = p.parse_args()
    model, ckpt = load_model(args.checkpoint)
    kwargs, config = dict(ckpt["model_kwargs"]), dict(ckpt["config"])
    changes = {}
    try:
        for text in args.set:
            change = parse_override(text).get("model")
            if not change:
                p.error(f"--set takes model.KEY=VALUE, not {text!r}")
            changes.update(change)
        model, kwargs = with_settings(model, kwargs, changes)
    except InputError as err:  # a bad value: say so, write nothing
        p.error(str(err))
    config["model"] = {**config.get("model", {}), **changes}
    save_checkpoint(
        args.out,
        model,
        kwargs,
        config,
        half=True,
        extra={"note": args.note, "source": args.checkpoint.name},
    )
    load_model(args.out)  # it must load back
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
