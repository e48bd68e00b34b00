"""The generic motion corpus: its ground truth moves the rendered texture where it says."""

import cv2
import numpy as np
import pytest
import torch

from flowvid.data.rendered import RenderedClips, generator_config
from flowvid.data.synth import textures
from flowvid.data.synth.motion import MotionConfig, MotionRenderer

EXACT = dict(noise=(0.0, 0.0), blur=(0.0, 0.0))


def warp_residual(r: MotionRenderer, i: int, f: np.ndarray | None = None) -> np.ndarray:
    """|frame i+1 sampled at p + f(p) - frame i at p| per pixel, before optics (float);
    f is the ground-truth flow unless given."""
    a, b = r._state(i)[0], r._state(i + 1)[0]
    f = r.flow(i) if f is None else f
    n = a.shape[0]
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    warped = cv2.remap(b, x + f[..., 0], y + f[..., 1], cv2.INTER_CUBIC)
    return np.abs(warped - a).mean(-1)


def test_flow_moves_the_texture_where_it_says():
    checked = 0
    for seed in range(6):
        cfg = MotionConfig(size=96, frames=4, **EXACT)
        r = MotionRenderer(cfg, np.random.default_rng(seed))
        for i in range(cfg.frames - 1):
            flow = r.flow(i)
            err, matched = warp_residual(r, i), r.mask(i)
            matched[:3] = matched[-3:] = matched[:, :3] = matched[:, -3:] = False  # remap border
            assert np.median(err[matched]) < 0.005  # intensities in [0, 1]
            assert np.mean(err[matched]) < 0.03  # soft object edges blend two surfaces
            # where things visibly move, the true flow explains the next frame far better than
            # no motion (low-contrast pixels are left out: both residuals sit at the remap floor)
            still = warp_residual(r, i, np.zeros_like(flow))
            moving = matched & (np.linalg.norm(flow, axis=-1) > 0.3) & (still > 0.02)
            if moving.sum() > 50:
                assert np.median(err[moving]) < 0.2 * np.median(still[moving]), (seed, i)
                checked += 1
            if (~r.mask(i)).sum() > 200:  # where the surface changes, the warp does not match
                assert np.mean(err[~r.mask(i)]) > 3 * np.mean(err[matched])
    assert checked >= 9  # of 18 pairs


def test_pure_camera_translation_has_uniform_exact_flow():
    cfg = MotionConfig(
        size=64, frames=5, objects=(0, 0), static_background_prob=0.0, warp_prob=0.0,
        spin=0.0, zoom=0.0, static_stretch_prob=0.0, **EXACT,
    )  # fmt: skip
    r = MotionRenderer(cfg, np.random.default_rng(7))
    bg = r.layers[0]
    for i in range(cfg.frames - 1):
        expected = bg.centre[i + 1] - bg.centre[i]
        np.testing.assert_allclose(
            r.flow(i).reshape(-1, 2), np.broadcast_to(expected, (64 * 64, 2)), atol=1e-4
        )
        assert np.linalg.norm(expected) > 0.04  # it really moves
        # every pixel whose target stays in view is matched, the others are not
        y, x = np.mgrid[0:64, 0:64]
        tx, ty = np.rint(x + expected[0]), np.rint(y + expected[1])
        in_view = (tx >= 0) & (tx < 64) & (ty >= 0) & (ty < 64)
        np.testing.assert_array_equal(r.mask(i), in_view)


def test_pixels_covered_by_a_moving_object_are_unmatched():
    cfg = MotionConfig(
        size=64, frames=3, objects=(1, 1), static_background_prob=1.0, speed_px=(6.0, 6.0),
        warp_prob=0.0, static_stretch_prob=0.0, **EXACT,
    )  # fmt: skip
    for seed in range(3):
        r = MotionRenderer(cfg, np.random.default_rng(seed))
        _, top0, flow = r._state(0)
        top1 = r._state(1)[1]
        background = top0 == 0
        np.testing.assert_array_equal(flow[background], 0.0)  # a static camera
        covered = background & (top1 == 1)  # background at t, object at t+1: occluded
        uncovered = background & (top1 == 0)
        assert not r.mask(0)[covered].any()
        assert r.mask(0)[uncovered].all()


def test_layer_speeds_cover_the_stated_range_log_uniformly():
    cfg = MotionConfig(
        size=32, frames=2, objects=(3, 3), photo_prob=0.0, static_background_prob=0.0
    )
    speeds = np.concatenate(
        [
            MotionRenderer(cfg, np.random.default_rng(s)).params.layer_speeds_px_per_frame
            for s in range(60)
        ]
    )
    assert speeds.min() >= 0.05 - 1e-4 and speeds.max() <= 30.0
    assert speeds.min() < 0.15 and speeds.max() > 15
    below_1 = np.mean(speeds < 1.0)  # log-uniform: log(1/0.05)/log(30/0.05) = 0.47
    assert 0.32 < below_1 < 0.62


def test_reserved_evaluation_images_never_enter_a_corpus(monkeypatch):
    from PIL import Image

    opened = []
    real_open = Image.open

    def spy(path, *a, **k):
        opened.append(str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(Image, "open", spy)
    textures.load_photo.cache_clear()
    rng = np.random.default_rng(0)
    for _ in range(40):
        textures.photo_texture(rng, 64)
    MotionRenderer(MotionConfig(size=48, frames=2, photo_prob=1.0), np.random.default_rng(1))
    assert len({p for p in opened}) >= 5  # photographs were really read
    assert not any(name in p for p in opened for name in textures.RESERVED_IMAGES)
    assert not textures.RESERVED_IMAGES & set(textures.photo_names())
    for name in textures.RESERVED_IMAGES:
        with pytest.raises(ValueError, match="reserved"):
            textures.load_photo(name)
    textures.load_photo.cache_clear()


def test_rendered_clips_shapes_and_fixed_validation_set():
    cfg = generator_config("motion", 48, 3, {"speed_px": [0.5, 2.0]})
    assert cfg.speed_px == (0.5, 2.0) and cfg.size == 48 and cfg.frames == 3
    val = RenderedClips(cfg, 2, seed=5)
    s = val[0]
    assert s["frames"].shape == (3, 3, 48, 48) and s["frames"].dtype == torch.uint8
    assert s["flow"].shape == (2, 2, 48, 48) and s["flow"].dtype == torch.float32
    assert s["mask"].shape == (2, 48, 48) and s["mask"].dtype == torch.bool
    assert s["valid"].all()
    again = RenderedClips(cfg, 2, seed=5)[0]
    assert torch.equal(again["frames"], s["frames"]) and torch.equal(again["flow"], s["flow"])
    assert not torch.equal(val[1]["frames"], s["frames"])
    vessels = RenderedClips(generator_config("vessels", 48, 3, {}), 1, seed=0)[0]
    assert vessels["flow"].shape == (2, 2, 48, 48)


def test_bad_generator_options_are_input_errors():
    from flowvid.errors import InputError

    with pytest.raises(InputError, match="speed_px"):
        generator_config("motion", 48, 3, {"speed_px": [2.0, 1.0]})
    with pytest.raises(InputError, match="choose"):
        generator_config("fluids", 48, 3, {})
    with pytest.raises(InputError, match="unknown keys .'no_such_key'.; valid: .*speed_px"):
        generator_config("motion", 48, 3, {"no_such_key": 1})


@pytest.mark.slow
def test_training_on_the_rendered_motion_source(tmp_path):
    from flowvid.checkpoint import load_model
    from flowvid.config import load_config
    from flowvid.lab.sanity import watchers
    from flowvid.training.train import train

    overrides = [
        "data.source=motion",
        "data.generator={speed_px: [0.5, 3.0], objects: [1, 2]}",
        "data.crop=48",
        "data.clip_len=3",
        "data.workers=1",
        "data.samples_per_epoch=8",
        "data.rendered_val_clips=2",
        f"train.run_dir={tmp_path / 'run'}",
        "train.max_steps=4",
        "train.val_every_steps=2",
        "train.warmup_steps=1",
    ]
    cfg = load_config("configs/debug.yaml", overrides)
    run = train(cfg, callbacks=watchers(cfg.train.watch_motion))  # the motion suite, watched
    model, ckpt = load_model(run / "model.pt")
    assert ckpt["config"]["data"]["source"] == "motion"
    assert ckpt["config"]["data"]["generator"]["speed_px"] == [0.5, 3.0]
    metrics = (run / "logs" / "version_0" / "metrics.csv").read_text()
    assert "val/epe_vessel" in metrics and "val/zero_epe_vessel" in metrics
    assert "val/suite_epe" in metrics


def test_motion_mix_replaces_a_fraction_of_the_clips(tmp_path):
    from flowvid.config import load_config
    from flowvid.data.datamodule import ClipDataModule
    from flowvid.data.rendered import MixedClips
    from flowvid.data.synth.corpus import write_corpus
    from flowvid.data.synth.synthetic import SynthConfig
    from flowvid.errors import InputError

    root = write_corpus(
        tmp_path / "d", 3, SynthConfig(size=48, frames=5), workers=1, progress=False
    )
    dm = ClipDataModule(root, clip_len=3, crop=48, samples_per_epoch=6, workers=0, motion_mix=0.5)
    dm.setup()
    assert isinstance(dm.train_set, MixedClips) and dm.train_set.mix == 0.5
    for i in range(6):  # both kinds of sample fit one batch
        s = dm.train_set[i]
        assert s["frames"].shape == (3, 3, 48, 48) and s["flow"].shape == (2, 2, 48, 48)
        assert s["mask"].dtype == torch.bool and s["frames"].dtype == torch.uint8
    assert all(dm.val_set[i]["flow"].shape[-1] == 48 for i in range(len(dm.val_set)))
    torch.manual_seed(0)
    picks = [MixedClips(["vessel"] * 400, ["motion"] * 400, 0.25)[i] for i in range(400)]
    assert 0.18 < picks.count("motion") / 400 < 0.32
    assert set(MixedClips(["vessel"] * 9, ["motion"] * 9, 0.0)[i] for i in range(9)) == {"vessel"}
    with pytest.raises(InputError, match="motion_mix"):
        load_config(None, ["data.motion_mix=1.5"])


def test_layer_windows_never_clip_a_layer(monkeypatch):
    """Objects are rendered only inside their on-screen extent; the whole view gives the same."""
    cfg = MotionConfig(size=80, frames=3, **EXACT)
    fast = [MotionRenderer(cfg, np.random.default_rng(s)) for s in range(4)]
    fast_states = [[r._state(t) for t in range(3)] for r in fast]
    from flowvid.data.synth import motion

    monkeypatch.setattr(motion, "extent", lambda layer, t, n: (slice(0, n), slice(0, n)))
    for s, states in enumerate(fast_states):
        full = MotionRenderer(cfg, np.random.default_rng(s))
        for t in range(3):
            for a, b in zip(states[t], full._state(t), strict=True):
                np.testing.assert_allclose(a, b, atol=1e-6)


def test_low_contrast_fades_the_frames_to_a_grey_level_and_keeps_the_flow():
    """A clip's contrast scales the rendered image about its grey level; the motion is the
    same clip's (the contrast is drawn after the scene), so only the pixels' contrast
    changes."""
    common = dict(size=48, frames=3, **EXACT)
    full = MotionRenderer(MotionConfig(contrast=(1.0, 1.0), **common), np.random.default_rng(3))
    faint = MotionRenderer(MotionConfig(contrast=(0.2, 0.2), **common), np.random.default_rng(3))
    level = faint.params.level
    assert 0.2 <= level <= 0.8 and faint.params.contrast == pytest.approx(0.2)
    np.testing.assert_array_equal(full.flow(0), faint.flow(0))
    rendered = full._state(0)[0]
    expected = np.clip(level + 0.2 * (rendered - level), 0, 1) * 255.0
    assert np.abs(faint.frame(0).astype(np.float32) - expected).max() <= 0.5 + 1e-3
    assert faint.frame(0).std() < 0.3 * full.frame(0).std()
    with pytest.raises(ValueError, match="contrast"):
        MotionConfig(contrast=(0.0, 1.0))


def test_a_flat_object_has_one_colour_and_moves_as_its_labels_say():
    """With flat_prob=1 every object is one flat colour: inside it the frame is uniform (there
    is nothing to follow), while the ground truth still moves it; the scene is the same clip's."""
    common = dict(size=64, frames=3, objects=(2, 2), **EXACT)
    plain = MotionRenderer(MotionConfig(flat_prob=0.0, **common), np.random.default_rng(5))
    flat = MotionRenderer(MotionConfig(flat_prob=1.0, **common), np.random.default_rng(5))
    assert flat.params.flat_objects == 2 and plain.params.flat_objects == 0
    np.testing.assert_array_equal(plain.flow(0), flat.flow(0))
    for layer in flat.layers[1:]:
        rgb, alpha = layer.texture[0, :3], layer.texture[0, 3]
        assert float(rgb[:, alpha > 0].std(1).max()) < 1e-6  # one colour where it is drawn
    for layer in plain.layers[1:]:
        rgb, alpha = layer.texture[0, :3], layer.texture[0, 3]
        assert float(rgb[:, alpha > 0].std(1).max()) > 1e-3
    with pytest.raises(ValueError, match="flat_prob"):
        MotionConfig(flat_prob=1.5)
