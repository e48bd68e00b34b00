"""flowvid: learn blood flow from microscope video.

Notebook use::

    import flowvid
    model = flowvid.load_model("runs/x/model.pt")   # a checkpoint (or the shipped default)
    pred = flowvid.predict_video(model, "clip.mp4")   # pred.array: (T-1, H, W, 2) px/frame
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from flowvid.models import FlowVid
    from flowvid.predict.inference import Prediction


def load_model(checkpoint: str | None = None, device: str = "cpu") -> FlowVid:
    """A trained model from a checkpoint file (the shipped default model when None)."""
    from flowvid.checkpoint import load_model as _load

    return _load(checkpoint, device)[0]


def predict_video(model: FlowVid, video: str, out: str | None = None, **options: Any) -> Prediction:
    """Flow for a whole video: written to ``out`` (.npy/.npz/folder), or returned in ``.array``."""
    from flowvid.predict.inference import predict_flow

    return predict_flow(model, video, out, **options)
