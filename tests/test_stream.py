"""The overlapped prediction pipeline: background decoding; the video opened and decoded once,
a wrong frame count in its container costing nothing."""

import json
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import TINY, write_vfr_video

from flowvid.errors import InputError
from flowvid.io import video as video_module
from flowvid.io.index import _index_path, video_index
from flowvid.io.outputs import read_sidecar
from flowvid.io.video import open_video, write_video
from flowvid.models import create_model
from flowvid.predict.inference import predict_flow
from flowvid.predict.stream import prefetch, resolve_precision


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = create_model(**TINY)
    torch.nn.init.normal_(m.head.net[-1].weight, std=0.05)
    return m.eval()


def _video(path, frames=11, size=48):
    rng = np.random.default_rng(0)
    base = (rng.random((size * 2, size * 2, 3)) * 255).astype(np.uint8)
    write_video(path, [base[t : t + size, t : t + size] for t in range(frames)], fps=50)
    return path


def _direct(model, video):
    with open_video(video) as v:
        frames = torch.from_numpy(v.read(range(v.num_frames))).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        return model(frames[None] / 255)[0].permute(0, 2, 3, 1).numpy()


def test_prefetch_keeps_order_and_raises_the_producers_error():
    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("decoder broke")

    got = []
    with pytest.raises(ValueError, match="decoder broke"):
        for item in prefetch(broken()):
            got.append(item)
    assert got == [1]


def test_prefetch_stops_its_thread_when_the_consumer_stops():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = threading.active_count()
    stream = prefetch(endless(), depth=2)
    assert next(stream) == 0
    stream.close()  # the consumer gives up (an error, Ctrl-C)
    time.sleep(0.2)
    assert threading.active_count() == before
    assert len(produced) <= 5  # it stopped, a queue's depth ahead at most


def _counting_opens(monkeypatch):
    """Count the video containers opened (every reader opens through ``av.open``)."""
    import av

    opened = []
    real = av.open

    def counted(*args, **kwargs):
        opened.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(av, "open", counted)
    return opened


def test_predict_opens_the_video_once_and_decodes_it_once(model, tmp_path, monkeypatch):
    video = _video(tmp_path / "clip.mp4")
    out = tmp_path / "flow.npy"
    opened = _counting_opens(monkeypatch)
    predict_flow(model, video, out, device="cpu", batch_frames=4, progress=False)
    assert opened == [str(video)]  # header and frames from one open container
    flow = np.load(out)
    assert flow.shape == (10, 48, 48, 2)
    np.testing.assert_allclose(flow, _direct(model, video), atol=1e-4)
    assert video_index(video).num_frames == 11  # the count learnt while decoding, cached
    opened.clear()
    predict_flow(model, video, tmp_path / "again.npy", device="cpu", progress=False)
    assert opened == [str(video)]  # the next time from the cached index: one open again


def _lying_header(monkeypatch, error):
    honest = video_module.header_index

    def lying(container):
        stated = honest(container)
        return replace(stated, num_frames=stated.num_frames + error)

    monkeypatch.setattr(video_module, "header_index", lying)


@pytest.mark.parametrize("error", [+3, -3])
@pytest.mark.parametrize("name", ["flow.npy", "flow.h5", "flow.mat", "flow.npz"])
def test_a_wrong_container_count_costs_nothing(model, tmp_path, monkeypatch, error, name):
    """The container states 3 frames more or fewer than decode: the video is still decoded
    once, the output holds the 10 maps that are there (its header written at the end), and
    its sidecar states the true count."""
    from flowvid.io.flowfile import read_flow

    video = _video(tmp_path / "clip.mp4")
    _lying_header(monkeypatch, error)
    opened = _counting_opens(monkeypatch)
    out = tmp_path / name
    pred = predict_flow(model, video, out, device="cpu", batch_frames=4, progress=False)
    assert opened == [str(video)]
    assert pred.shape == (10, 48, 48, 2) and pred.frames == (0, 11)
    np.testing.assert_allclose(read_flow(out), _direct(model, video), atol=1e-4)
    doc = read_sidecar(out)
    assert doc["shape"] == [10, 48, 48, 2] and doc["video_frames"] == 11
    assert doc["frames"] == [0, 11] and doc["fps"] == 50.0
    assert _index_path(video).exists()  # the exact index, learnt while decoding
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["clip.mp4", name, name + ".json"])


def test_a_range_past_the_true_end_is_refused_and_writes_nothing(model, tmp_path, monkeypatch):
    video = _video(tmp_path / "clip.mp4")
    _lying_header(monkeypatch, +5)  # states 16 frames where 11 decode
    out = tmp_path / "flow.npy"
    with pytest.raises(InputError, match="reaches past the video's end: it has 11 frames"):
        predict_flow(model, video, out, frames="2:14", device="cpu", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    pred = predict_flow(model, video, out, frames="2:9", device="cpu", progress=False)
    assert pred.shape[0] == 6 and np.load(out).shape == (6, 48, 48, 2)


def test_a_mask_or_um_per_s_from_the_videos_rate_counts_the_frames_first(
    model, tmp_path, monkeypatch
):
    """Where the numbers written depend on the true count (a per-pair mask) or rate (µm/s
    without --fps), the frames are counted before anything is written."""
    video = _video(tmp_path / "clip.mp4")
    _lying_header(monkeypatch, +3)
    masks = np.ones((10, 48, 48), bool)  # one per pair of the true 11 frames
    np.save(tmp_path / "masks.npy", masks)
    pred = predict_flow(
        model, video, tmp_path / "a.npy", mask=tmp_path / "masks.npy", device="cpu", progress=False
    )
    assert pred.shape[0] == 10
    (tmp_path / "a.npy").unlink()
    pred = predict_flow(
        model, video, tmp_path / "b.npy", units="um/s", um_per_px=0.5, device="cpu", progress=False
    )
    assert pred.um_s_per_px_frame == pytest.approx(25.0) and pred.shape[0] == 10


def test_the_frame_rate_does_not_depend_on_which_index_was_used(model, tmp_path, caplog):
    """A constant-rate video gets its rate either way; a variable-rate one gets none (with a
    warning), whether it is read with its container's claims or with the exact index."""
    cfr = _video(tmp_path / "cfr.mp4")  # 50 frames/s
    vfr = write_vfr_video(tmp_path / "vfr.mp4", frames=11)  # intervals of 30 and 10 ms
    for video, fps in ((cfr, 50.0), (vfr, None)):
        a, b = tmp_path / f"{video.stem}_fresh.npy", tmp_path / f"{video.stem}_cached.npy"
        fresh = predict_flow(model, video, a, device="cpu", progress=False)
        cached = predict_flow(model, video, b, device="cpu", progress=False)
        assert read_sidecar(a)["fps"] == read_sidecar(b)["fps"] == fps
        assert fresh.shape == cached.shape == (10, 48, 48, 2)
        np.testing.assert_array_equal(np.load(a), np.load(b))
    assert video_index(vfr).rate_range == pytest.approx((1000 / 30, 100.0))
    assert "the frame rate varies (33.3-100 frames/s)" in caplog.text
    with pytest.raises(InputError, match="--fps"):
        predict_flow(
            model,
            vfr,
            tmp_path / "c.npy",
            device="cpu",
            progress=False,
            units="um/s",
            um_per_px=0.5,
        )
    assert not (tmp_path / "c.npy").exists()


def test_precision_resolves_per_device_and_refuses_unknown_names():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # no GPU needed to name one
    assert resolve_precision("auto", cpu) is None  # fp32: the same numbers on every CPU
    assert resolve_precision("auto", cuda) is torch.bfloat16
    assert resolve_precision("fp32", cuda) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(InputError, match="--precision must be one of auto, fp32, bf16"):
        resolve_precision("fp16", cpu)


def test_bf16_on_a_cpu_runs_in_bf16_stays_near_fp32_and_is_recorded(model, tmp_path):
    video = _video(tmp_path / "clip.mp4")
    flows = {}
    for precision in ("auto", "bf16"):
        out = tmp_path / f"{precision}.npy"
        options = dict(device="cpu", batch_frames=4, progress=False, precision=precision)
        predict_flow(model, video, out, **options)
        flows[precision] = np.load(out)
        recorded = json.loads(out.with_name(out.name + ".json").read_text())["precision"]
        assert recorded == {"auto": "fp32", "bf16": "bf16"}[precision]
    fp32, bf16 = flows["auto"], flows["bf16"]
    np.testing.assert_allclose(fp32, _direct(model, video), atol=1e-4)
    diff = np.abs(bf16 - fp32)
    assert diff.max() > 1e-6  # bf16 did run: its rounding shows
    # bf16 keeps 8 bits of mantissa; through the whole network the flow moves by a few
    # per cent at most (a random tiny model; BENCHMARKS.md has the shipped model on real clips)
    assert diff.mean() <= 0.03 * np.abs(fp32).mean(), (diff.mean(), np.abs(fp32).mean())
    assert diff.max() <= 0.05 * np.abs(fp32).max(), (diff.max(), np.abs(fp32).max())
