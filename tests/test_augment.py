"""Flow-aware augmentation: after any geometric transform the flow still maps frame i to i+1.

Frames: a smooth random texture and the same texture rotated by 3 degrees and shifted,
with the exact flow of that motion (spatially varying, so a wrong spatial mapping shows).
Check: backward-warping augmented frame 1 with augmented flow gives augmented frame 0.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from flowvid.data.augment import FlowAugment, affine, hflip, rot90, vflip
from flowvid.flowops import backward_warp, compose

SIZE = 64


def smooth_texture(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, SIZE // 8, SIZE // 8, generator=g)
    return F.interpolate(noise, size=(SIZE, SIZE), mode="bicubic", align_corners=True).clamp(0, 1)


def rotating_pair() -> dict[str, torch.Tensor]:
    """frame1(p) = frame0(R^-1 (p - c - t) + c): content rotates by 3 degrees and moves by t."""
    frame0 = smooth_texture(0)
    theta, t = math.radians(3.0), torch.tensor([1.5, -0.75])
    c = (SIZE - 1) / 2
    ys, xs = torch.meshgrid(
        torch.arange(SIZE, dtype=torch.float32),
        torch.arange(SIZE, dtype=torch.float32),
        indexing="ij",
    )
    x, y = xs - c, ys - c
    cos, sin = math.cos(theta), math.sin(theta)
    flow = torch.stack([cos * x - sin * y + c + t[0] - xs, sin * x + cos * y + c + t[1] - ys])[None]
    # frame 1 is frame 0 moved by the flow: sample frame 0 at the inverse motion
    qx, qy = xs - c - t[0], ys - c - t[1]
    inv = torch.stack([cos * qx + sin * qy + c - xs, -sin * qx + cos * qy + c - ys])[None]
    frame1 = backward_warp(frame0, inv)
    return {
        "frames": torch.cat([frame0, frame1]),
        "flow": flow,
        "mask": torch.ones(1, SIZE, SIZE, dtype=torch.bool),
        "valid": torch.ones(1, SIZE, SIZE, dtype=torch.bool),
    }


def warp_error(s: dict[str, torch.Tensor]) -> float:
    warped = backward_warp(s["frames"][1:2], s["flow"])
    inner = s["valid"][0].clone()
    inner[:8], inner[-8:], inner[:, :8], inner[:, -8:] = False, False, False, False
    return float((warped - s["frames"][0:1]).abs().mean(1)[0][inner].mean())


TRANSFORMS = {
    "hflip": hflip,
    "vflip": vflip,
    "rot90": rot90,
    "rotate+scale": lambda s: affine(s, 17.0, 1.2),
    "shrink": lambda s: affine(s, -8.0, 0.85),
}


@pytest.mark.parametrize("name", TRANSFORMS)
def test_warp_consistency_after_geometric_augmentation(name):
    pair = rotating_pair()
    before = warp_error(pair)
    out = TRANSFORMS[name](pair)
    after = warp_error(out)
    assert before < 0.01
    assert after < 0.015, (name, before, after)
    if name != "shrink":  # the check can fail: moving the flow like an image, vectors untouched
        untouched = dict(out, flow=_move_pixels_only(name, pair["flow"]))
        assert warp_error(untouched) > 3 * after + 0.01, name


def _move_pixels_only(name: str, flow: torch.Tensor) -> torch.Tensor:
    """The transform applied to the flow as if it were an image (no vector change)."""
    if name == "hflip":
        return flow.flip(-1)
    if name == "vflip":
        return flow.flip(-2)
    if name == "rot90":
        return torch.rot90(flow, 1, dims=(-2, -1))
    s = {
        "frames": flow,
        "flow": torch.zeros_like(flow),
        "mask": torch.ones(1, SIZE, SIZE, dtype=torch.bool),
        "valid": torch.ones(1, SIZE, SIZE, dtype=torch.bool),
    }
    return affine(s, 17.0, 1.2)["frames"]


def test_scale_multiplies_vectors_and_outside_becomes_invalid():
    pair = rotating_pair()
    out = affine(pair, 0.0, 2.0)
    centre = SIZE // 2
    torch.testing.assert_close(
        out["flow"][0, :, centre, centre],
        2.0 * pair["flow"][0, :, centre, centre],
        atol=0.05,
        rtol=0.05,
    )
    shrunk = affine(pair, 0.0, 0.5)
    assert not shrunk["valid"][0, 0, 0] and shrunk["valid"][0, centre, centre]


def test_full_augment_keeps_shapes_ranges_and_consistency():
    torch.manual_seed(0)
    pair = rotating_pair()
    batch = {k: v[None].repeat(3, *[1] * v.dim()) for k, v in pair.items()}
    aug = FlowAugment(
        noise_std=0.0,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
        hue=0.0,
        blur_prob=0.0,
        affine_prob=1.0,
    )
    out = aug(batch)
    for k in batch:
        assert out[k].shape == batch[k].shape and out[k].dtype == batch[k].dtype
    for b in range(3):
        assert warp_error({k: v[b] for k, v in out.items()}) < 0.015
    photometric = FlowAugment(hflip=0, vflip=0, rot90=0, affine_prob=0, noise_std=0.5)(batch)
    assert photometric["frames"].min() >= 0 and photometric["frames"].max() <= 1
    torch.testing.assert_close(photometric["flow"], batch["flow"])


def test_compose_two_translations_and_a_rotation_field():
    shift = torch.zeros(2, 2, 16, 16)
    shift[0, 0], shift[1, 1] = 1.5, -2.0
    torch.testing.assert_close(compose(shift)[:, 8, 8], torch.tensor([1.5, -2.0]))
    pair = rotating_pair()["flow"]
    twice = compose(torch.cat([pair, pair]))
    c = (SIZE - 1) / 2
    # two 3-degree rotations about c plus two shifts: the point at c goes to c + t + R t
    theta = math.radians(3.0)
    t = torch.tensor([1.5, -0.75])
    rt = torch.tensor(
        [
            math.cos(theta) * t[0] - math.sin(theta) * t[1],
            math.sin(theta) * t[0] + math.cos(theta) * t[1],
        ]
    )
    got = twice[:, int(c), int(c)]  # displacement of the pixel (31, 31)
    p = torch.tensor([int(c), int(c)], dtype=torch.float32)
    rot = torch.tensor(
        [[math.cos(2 * theta), -math.sin(2 * theta)], [math.sin(2 * theta), math.cos(2 * theta)]]
    )
    expected = rot @ (p - c) + c + t + rt - p
    torch.testing.assert_close(got, expected, atol=0.02, rtol=0)
