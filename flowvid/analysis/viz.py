"""Seeing flow: the Middlebury colour wheel, arrows, legends, and overlays on video.

Colours follow Baker et al. (2011), "A Database and Evaluation Methodology for Optical
Flow": hue gives the direction, saturation the speed. Unlike torchvision's
``flow_to_image`` (normalised per image), the speed scale here is a fixed ``max_speed``
passed in, so one clip uses ONE normalisation and colours compare across frames.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def make_colorwheel() -> np.ndarray:
    """The 55-colour Middlebury wheel, (55, 3) float in [0, 255]."""
    ry, yg, gc, cb, bm, mr = 15, 6, 4, 11, 13, 6
    ramps = [
        (ry, lambda t: np.stack([np.full_like(t, 255), 255 * t, 0 * t], 1)),
        (yg, lambda t: np.stack([255 - 255 * t, np.full_like(t, 255), 0 * t], 1)),
        (gc, lambda t: np.stack([0 * t, np.full_like(t, 255), 255 * t], 1)),
        (cb, lambda t: np.stack([0 * t, 255 - 255 * t, np.full_like(t, 255)], 1)),
        (bm, lambda t: np.stack([255 * t, 0 * t, np.full_like(t, 255)], 1)),
        (mr, lambda t: np.stack([np.full_like(t, 255), 0 * t, 255 - 255 * t], 1)),
    ]
    return np.concatenate([f(np.floor(255 * np.arange(n) / n) / 255) for n, f in ramps])


_WHEEL = make_colorwheel()


def flow_to_color(flow: np.ndarray, max_speed: float) -> np.ndarray:
    """(H, W, 2) flow in px/frame -> (H, W, 3) uint8 RGB; ``max_speed`` maps to full colour.

    Speeds above ``max_speed`` saturate at full colour. Unknown
    (non-finite) vectors are black.
    """
    flow = np.asarray(flow, np.float64)
    bad = ~np.isfinite(flow).all(-1)
    u, v = (np.where(bad, 0.0, flow[..., k]) / max(max_speed, 1e-9) for k in range(2))
    rad = np.sqrt(u**2 + v**2)
    angle = np.arctan2(-v, -u) / np.pi
    fk = (angle + 1) / 2 * (len(_WHEEL) - 1)
    k0 = np.floor(fk).astype(int)
    k1 = (k0 + 1) % len(_WHEEL)
    f = (fk - k0)[..., None]
    col = ((1 - f) * _WHEEL[k0] + f * _WHEEL[k1]) / 255.0
    small = (rad <= 1)[..., None]
    col = np.where(small, 1 - rad[..., None] * (1 - col), col)  # beyond max_speed: full colour
    col[bad] = 0.0
    return np.floor(255 * col).astype(np.uint8)


def robust_max_speed(flows: np.ndarray, mask: np.ndarray | None = None, q: float = 99.0) -> float:
    """One speed scale for a whole clip: the q-th percentile of |flow| (inside ``mask``)."""
    speed = np.linalg.norm(np.asarray(flows, np.float32), axis=-1)
    values = speed[np.broadcast_to(mask, speed.shape)] if mask is not None else speed
    values = values[np.isfinite(values)]
    return float(np.percentile(values, q)) if values.size and values.max() > 0 else 1.0


def blend(
    frame: np.ndarray, color: np.ndarray, alpha: float, where: np.ndarray | None = None
) -> np.ndarray:
    """Alpha-blend ``color`` over ``frame`` (both uint8 RGB), optionally only ``where``."""
    out = frame.astype(np.float32) * (1 - alpha) + color.astype(np.float32) * alpha
    if where is not None:
        out = np.where(where[..., None], out, frame)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def draw_arrows(
    image: np.ndarray, flow: np.ndarray, step: int, scale: float, where: np.ndarray | None = None
) -> np.ndarray:
    """A quiver every ``step`` px: arrows ``scale`` times the flow (px/frame) long, white on a
    dark outline, so they read on bright (bright-field) and dark (fluorescence) video alike."""
    out = image.copy()
    h, w = flow.shape[:2]
    arrows = []
    for y in range(step // 2, h, step):
        for x in range(step // 2, w, step):
            if where is not None and not where[y, x]:
                continue
            u, v = flow[y, x]
            if not np.isfinite(u + v) or u * u + v * v < 1e-4:
                continue
            arrows.append(((x, y), (int(round(x + scale * u)), int(round(y + scale * v)))))
    for colour, width in (((40, 40, 40), 3), ((255, 255, 255), 1)):  # outlines under the arrows
        for tail, tip in arrows:
            cv2.arrowedLine(out, tail, tip, colour, width, cv2.LINE_AA, tipLength=0.3)
    return out


def wheel_legend(size: int) -> np.ndarray:
    """A colour-wheel disc, (size, size, 3) uint8: which colour means which direction."""
    r = (np.mgrid[0:size, 0:size] + 0.5 - size / 2) / (size / 2)
    flow = np.stack([r[1], r[0]], -1)  # u right, v down
    disc = flow_to_color(flow, 1.0)
    disc[np.hypot(r[0], r[1]) > 1] = 255
    return disc


MIN_TEXT_PX = 12  # the smallest text drawn on a figure, px (cap height)
DISPLAY_MIN_SIDE = 256  # smaller clips are enlarged for display by a whole factor


def text_scale(height_px: float) -> float:
    """OpenCV font scale whose capital letters are ``height_px`` tall (at least the minimum)."""
    return (
        max(height_px, MIN_TEXT_PX) / cv2.getTextSize("H", cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)[0][1]
    )


def put_text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.4) -> None:
    """Readable white text on a dark plate, in place (``origin``: bottom-left). A plate reads
    on any background, where an outline round anti-aliased strokes looks doubled."""
    thick = max(1, round(scale * 1.2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(2, th // 4)
    x0, y0 = max(origin[0] - pad, 0), max(origin[1] - th - pad, 0)
    x1, y1 = min(origin[0] + tw + pad, image.shape[1]), min(origin[1] + base + pad, image.shape[0])
    plate = image[y0:y1, x0:x1]
    plate[:] = (plate.astype(np.float32) * 0.25).astype(image.dtype)
    cv2.putText(
        image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA
    )


def display_factor(height: int, width: int) -> int:
    """Whole enlargement (1-4) that brings a clip's short side to about 256 px for display."""
    return int(max(1, min(4, np.ceil(DISPLAY_MIN_SIDE / max(min(height, width), 1)))))


def enlarge(image: np.ndarray, k: int) -> np.ndarray:
    """Each pixel becomes a k x k block (nothing is interpolated: values stay exact)."""
    return image if k == 1 else np.repeat(np.repeat(image, k, 0), k, 1)


def colour_bar(length: int, thickness: int, max_speed: float) -> np.ndarray:
    """(thickness, length, 3): speed 0 .. ``max_speed`` along the wheel's rightward colour."""
    u = np.linspace(0, max_speed, length)
    flow = np.stack([np.broadcast_to(u, (thickness, length)), np.zeros((thickness, length))], -1)
    return flow_to_color(flow, max_speed)


def heat_bar(length: int, thickness: int) -> np.ndarray:
    """(thickness, length, 3): the error panel's colour map (inferno), low to high."""
    level = np.broadcast_to(np.linspace(0, 255, length).astype(np.uint8), (thickness, length))
    return cv2.applyColorMap(np.ascontiguousarray(level), cv2.COLORMAP_INFERNO)[..., ::-1]


def write_preview(root: Path, clip: str) -> Path:
    """``root``/preview.png: frames 0, mid and last of a dataset clip beside their flow
    colours (one scale for the clip) and mask."""
    from flowvid.io.atomic import atomic_output
    from flowvid.io.flowfile import open_flow
    from flowvid.io.masks import read_mask
    from flowvid.io.video import open_video

    with open_video(root / "videos" / f"{clip}.mp4") as video:
        pairs = video.num_frames - 1  # frames that have a flow map: 0 .. T-2
        picks = sorted({0, pairs // 2, pairs - 1})
        frames, size = video.read(picks), (video.height, video.width)
    flow = open_flow(root / "flow" / f"{clip}.npy")
    mask = read_mask(next((root / "masks").glob(f"{clip}.*")), len(flow), *size)
    scale = robust_max_speed(flow[0 : len(flow)], mask)
    rows = [
        np.concatenate(
            [
                frame,
                flow_to_color(flow[i], scale),
                np.repeat(mask[min(i, len(mask) - 1), ..., None] * 255, 3, 2).astype(np.uint8),
            ],
            1,
        )
        for frame, i in zip(frames, picks, strict=True)
    ]
    with atomic_output(root / "preview.png") as tmp:
        cv2.imwrite(str(tmp), np.concatenate(rows, 0)[..., ::-1])
    return root / "preview.png"
