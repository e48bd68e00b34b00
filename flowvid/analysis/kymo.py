"""Kymographs: the space-time image along a line, and the speed from its stripes.

Along a path (a straight line, or a vessel segment's centreline) sampled every pixel, the
video's kymograph is ``(T, N)``: row t is frame t's intensity along the path. Anything that
moves along the path at s px/frame draws a stripe of slope s (columns per row). The line-scan
method (Drew et al. 2010) reads s from the stripe angle: the Radon transform of a window of
rows has the most variance at the angle of its stripes. The model's speed on the same path
is its flow projected on the path's direction, ``(T-1, N)``, averaged over the same rows.
Speeds are signed: + is from the path's start toward its end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from flowvid.errors import InputError


def line_path(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Points (N, 2) x, y every pixel from (x0, y0) to (x1, y1)."""
    length = float(np.hypot(x1 - x0, y1 - y0))
    if length < 4:
        raise InputError(f"the line is {length:.1f} px long; a kymograph needs at least 4 px")
    t = np.linspace(0.0, 1.0, int(length) + 1)
    return np.stack([x0 + t * (x1 - x0), y0 + t * (y1 - y0)], 1)


def centreline_path(centreline_rc: np.ndarray, smooth: float = 2.0) -> np.ndarray:
    """An ordered skeleton (K, 2) row, col -> a smooth path (N, 2) x, y every pixel."""
    xy = ndimage.gaussian_filter1d(centreline_rc[:, ::-1].astype(float), smooth, axis=0)
    step = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))]
    at = np.arange(0.0, step[-1] + 1e-9, 1.0)
    return np.stack([np.interp(at, step, xy[:, 0]), np.interp(at, step, xy[:, 1])], 1)


def segment_path(segment) -> np.ndarray:  # noqa: ANN001 - a flowvid.analysis.measure.Segment
    """A vessel segment's path (N, 2) x, y, ordered like its centreline (so speeds keep the
    segment's sign): the centreline less its ends (where the skeleton leaves the lumen's
    centre), or the whole skeleton when that leaves too little to see stripes in."""
    line = segment.centreline if len(segment.centreline) >= 24 else segment.skeleton
    return centreline_path(line)


def directions(path: np.ndarray) -> np.ndarray:
    """Unit tangent (N, 2) u, v of a path, pointing from its start to its end."""
    d = np.gradient(path, axis=0)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)


def sample(image: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Bilinear samples of a 2-D image at path points (x, y)."""
    return ndimage.map_coordinates(image, [path[:, 1], path[:, 0]], order=1, mode="nearest")


def grey_along(frame: np.ndarray, path: np.ndarray) -> np.ndarray:
    """(N,) float32: one frame's grey level (mean of RGB, 0-255) along the path."""
    return sample(np.asarray(frame, np.float32).mean(-1), path).astype(np.float32)


def flow_along(flow_map: np.ndarray, path: np.ndarray, tangent: np.ndarray) -> np.ndarray:
    """(N,) float32: one flow map's component along the path (px/frame); ``tangent`` is
    :func:`directions` of the path."""
    u, v = sample(flow_map[..., 0], path), sample(flow_map[..., 1], path)
    return (u * tangent[:, 0] + v * tangent[:, 1]).astype(np.float32)


def video_kymograph(frames: Iterable[np.ndarray], path: np.ndarray) -> np.ndarray:
    """(T, N) float32: the grey level along the path in each frame."""
    return np.stack([grey_along(f, path) for f in frames])


def flow_kymograph(flow: Iterable[np.ndarray], path: np.ndarray) -> np.ndarray:
    """(T-1, N) float32: the flow along the path's direction (px/frame), pair by pair."""
    tangent = directions(path)
    return np.stack([flow_along(f, path, tangent) for f in flow])


def stripe_speed(window: np.ndarray, step_deg: float = 0.1) -> float:
    """Speed (px/frame along the path) of the stripes in a kymograph window (rows = frames),
    from the angle at which its Radon transform varies most, refined to where the rows agree
    best with each other moved by it (:func:`stripe_confidence`)."""
    from skimage.transform import radon

    img = _centred(window)
    theta = np.arange(-89.0, 89.0 + 1e-9, step_deg)
    variance = radon(img, theta=theta, circle=False).var(0)
    k = int(np.argmax(variance))
    if 0 < k < len(theta) - 1:  # parabola through the peak and its neighbours
        a, b, c = variance[k - 1 : k + 2]
        k = k + 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) else k
    rough = float(np.tan(np.radians(theta[0] + k * step_deg)))
    grid = rough + np.linspace(-0.3, 0.3, 61) * max(abs(rough), 0.5)
    return float(grid[int(np.argmax([stripe_confidence(window, v) for v in grid]))])


def _centred(window: np.ndarray) -> np.ndarray:
    img = window - window.mean(1, keepdims=True)  # flicker out
    return img - img.mean(0, keepdims=True)  # static texture out


def stripe_confidence(window: np.ndarray, speed: float, max_lag: int = 8) -> float:
    """How well a kymograph window's rows, moved by ``speed`` px/frame, match the rows 1 to
    ``max_lag`` frames later: the normalised cross-correlation over all those lags, 1 for
    stripes that move exactly so, about 0 on a path with nothing to follow (noise, no
    texture) or for a wrong speed."""
    img = _centred(np.asarray(window, np.float64))
    x = np.arange(img.shape[1], dtype=np.float64)
    num = den_a = den_b = 0.0
    for lag in range(1, min(max_lag, len(img) - 1) + 1):
        source = x - speed * lag
        valid = (source >= 0) & (source <= x[-1])
        if valid.sum() < 4:
            break
        later = img[lag:, valid]
        moved = np.stack([np.interp(source[valid], x, row) for row in img[:-lag]])
        later, moved = later - later.mean(), moved - moved.mean()
        num += float((later * moved).sum())
        den_a += float((later * later).sum())
        den_b += float((moved * moved).sum())
    return num / np.sqrt(den_a * den_b) if den_a > 0 and den_b > 0 else 0.0


MIN_STRIPE_CONFIDENCE = 0.5  # a window whose stripes agree less is rejected
MIN_PATH_PX = 24  # shorter paths bias the stripe angle (16 % at 8 px, 6 % at 12 px)
MIN_CROSSING_FRAMES = 4  # what moves must stay on the path for at least this many frames


@dataclass
class KymoSpeeds:
    start: np.ndarray  # first frame of each window
    stripe: np.ndarray  # px/frame, from the video's kymograph; nan where rejected
    model: np.ndarray | None  # px/frame, the flow along the path over the same pairs
    confidence: np.ndarray | None = None  # of each stripe speed (:func:`stripe_confidence`)


def window_speeds(
    kymo: np.ndarray, flow_kymo: np.ndarray | None = None, window: int = 32
) -> KymoSpeeds:
    """Stripe speed per window of ``window`` frames (half-overlapping), and the model's mean
    speed along the path over the same frame pairs. A stripe speed is rejected (nan) where
    its confidence is under :data:`MIN_STRIPE_CONFIDENCE`, or where the path is too short to
    read it: under :data:`MIN_PATH_PX`, or crossed in fewer than
    :data:`MIN_CROSSING_FRAMES` frames."""
    if len(kymo) < 4:
        raise InputError(f"a kymograph needs at least 4 frames, not {len(kymo)}")
    window = min(window, len(kymo))
    starts = np.arange(0, len(kymo) - window + 1, max(window // 2, 1))
    length = kymo.shape[1]
    stripe, confidence = [], []
    for s in starts:
        speed = stripe_speed(kymo[s : s + window])
        sure = stripe_confidence(kymo[s : s + window], speed)
        readable = length >= MIN_PATH_PX and length >= MIN_CROSSING_FRAMES * abs(speed)
        stripe.append(speed if sure >= MIN_STRIPE_CONFIDENCE and readable else np.nan)
        confidence.append(sure)
    model = None
    if flow_kymo is not None:
        model = np.array([float(flow_kymo[s : s + window - 1].mean()) for s in starts])
    return KymoSpeeds(starts, np.array(stripe), model, np.array(confidence))


AGREEMENT = (2 / 3, 1.5)  # the model's speed over the stripes' that counts as agreeing
SLOW = 0.05  # px/frame: below this on both sides there is nothing to compare


def agreement(speeds: KymoSpeeds) -> dict[str, float | bool | str] | None:
    """Whether the model's speed along the path agrees with the speed read from the video's
    own stripes (medians over the windows, magnitudes): ``agree`` is False when their ratio
    lies outside :data:`AGREEMENT`, with a ``warning`` that says so. None without a model."""
    if speeds.model is None:
        return None
    if np.isnan(speeds.stripe).all():
        return {
            "agree": None,
            "warning": "no window of the kymograph gives a stripe speed to check the flow "
            "against (a path too short, or with too little texture to follow)",
        }
    stripe = float(np.nanmedian(np.abs(speeds.stripe)))
    model = float(np.median(np.abs(speeds.model)))
    ratio = model / stripe if stripe > 0 else float("inf")
    agree = max(stripe, model) < SLOW or AGREEMENT[0] <= ratio <= AGREEMENT[1]
    doc: dict[str, float | bool | str] = {
        "stripe_median_px_per_frame": stripe,
        "model_median_px_per_frame": model,
        "model_over_stripe": ratio,
        "agree": agree,
    }
    if not agree:
        doc["warning"] = (
            f"the flow's speed along the path ({model:.3g} px/frame) is {ratio:.2g}x the speed "
            f"the video's kymograph stripes show ({stripe:.3g}): one of them is wrong here; "
            "check the overlay, or compare predict --method dis"
        )
    return doc


def kymo_figure(
    path_png,  # noqa: ANN001 - str or Path
    kymo: np.ndarray,
    flow_kymo: np.ndarray | None,
    speeds: KymoSpeeds,
    scale: float | None = None,
    title: str = "",
) -> None:
    """The video's kymograph, the model's speed along the path (with a colour bar) and both
    speeds over time, in one figure. ``scale``: µm/s per px/frame, to label in µm/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = "µm/s" if scale else "px/frame"
    k = scale or 1.0
    panels = 3 if flow_kymo is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.2), constrained_layout=True)
    axes[0].imshow(kymo, cmap="gray", aspect="auto")
    axes[0].set(title="video along the path", xlabel="position along the path (px)", ylabel="frame")
    if flow_kymo is not None:
        limit = float(np.percentile(np.abs(flow_kymo), 99) * k) or 1.0
        shown = axes[1].imshow(flow_kymo * k, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        axes[1].set(title="flow: speed along the path", xlabel="position (px)", ylabel="pair")
        fig.colorbar(shown, ax=axes[1], label=f"speed ({unit}, + toward the path's end)")
    ax = axes[-1]
    ax.plot(speeds.start, speeds.stripe * k, "o-", label="stripe angle (Radon)")
    if speeds.model is not None:
        ax.plot(speeds.start, speeds.model * k, "s-", label="flow, same frames")
    ax.set(title="speed over time", xlabel="first frame of the window", ylabel=f"speed ({unit})")
    ax.legend()
    if title:
        fig.suptitle(title)
    fig.savefig(path_png, dpi=120)
    plt.close(fig)
