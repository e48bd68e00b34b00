import numpy as np
import pytest
import tifffile
from PIL import Image

from flowvid.errors import VideoError
from flowvid.io import decoders as decoders_mod
from flowvid.io import index as index_mod
from flowvid.io.video import VideoWriter, open_video, video_index, write_video


def test_round_trip_count_fps_and_content(tmp_path, ramp_frames):
    path = write_video(tmp_path / "a.mp4", ramp_frames, fps=37.0)
    with open_video(path) as v:
        assert (v.num_frames, v.height, v.width) == (20, 48, 64)
        assert v.fps == pytest.approx(37.0, rel=1e-3)
        got = v.read(range(20))
    assert np.abs(got.astype(int) - ramp_frames).mean() < 2.0
    assert np.abs(got[..., 0].astype(int) - ramp_frames[..., 0]).max() <= 6  # R channel stays R


def test_random_access_equals_streaming(tmp_path, ramp_frames):
    path = write_video(tmp_path / "a.mp4", ramp_frames, fps=25)
    with open_video(path) as v:
        stream = np.stack(list(v.iter_frames()))
        picks = [17, 3, 3, 0, 19, 8]
        np.testing.assert_array_equal(v.read(picks), stream[picks])
        np.testing.assert_array_equal(np.stack(list(v.iter_frames(5, 9))), stream[5:9])


def test_odd_size_keeps_its_exact_size(tmp_path, ramp_frames):
    path = write_video(tmp_path / "odd.mp4", ramp_frames[:5, :47, :63], fps=10)
    with open_video(path) as v:
        assert (v.height, v.width) == (47, 63)
        assert v.read([4]).shape == (1, 47, 63, 3)


def test_index_is_built_once_and_cached(tmp_path, ramp_frames, monkeypatch):
    path = write_video(tmp_path / "a.mp4", ramp_frames[:6], fps=10)
    video_index(path)
    monkeypatch.setattr(index_mod, "_scan", lambda p: pytest.fail("index was rebuilt"))
    assert video_index(path).num_frames == 6


def test_decord_agrees_or_is_not_used(tmp_path, ramp_frames, monkeypatch):
    path = write_video(tmp_path / "a.mp4", ramp_frames, fps=25)
    reader = open_video(path, backend="auto")
    ref = open_video(path)
    if decoders_mod.decord_available():
        assert type(reader).__name__ == "DecordReader"
    np.testing.assert_allclose(reader.read([0, 10, 19]), ref.read([0, 10, 19]), atol=3)
    path2 = write_video(tmp_path / "b.mp4", ramp_frames, fps=25)
    monkeypatch.setattr(decoders_mod, "decord_agrees", lambda *a: False)
    assert type(open_video(path2, backend="auto")).__name__ == "PyAVReader"


def test_tiff_stack_grayscale_16bit(tmp_path):
    stack = (np.arange(4)[:, None, None] * 1000 + np.zeros((4, 9, 7))).astype(np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    with open_video(tmp_path / "s.tif") as v:
        frames = v.read([0, 3])
    assert frames.shape == (2, 9, 7, 3) and frames.dtype == np.uint8
    assert frames[1, 0, 0, 0] == round(3000 * 255 / 4095)  # 12-bit data scaled to 8 bits
    assert (frames[..., 0] == frames[..., 2]).all()


def test_tiff_colour_by_its_axes_one_picture_or_a_stack(tmp_path, capsys):
    from flowvid.cli import main

    rgb = (np.arange(3 * 9 * 7 * 3).reshape(3, 9, 7, 3) % 251).astype(np.uint8)
    tifffile.imwrite(tmp_path / "one.tif", rgb[0], photometric="rgb")  # (H, W, 3): one frame
    with open_video(tmp_path / "one.tif") as v:
        assert (v.num_frames, v.height, v.width) == (1, 9, 7)
        np.testing.assert_array_equal(v.read([0])[0], rgb[0])
    planes = np.moveaxis(rgb, -1, 1)  # colour planes stored apart: (T, 3, H, W)
    tifffile.imwrite(tmp_path / "planar.tif", planes, photometric="rgb", planarconfig="separate")
    with open_video(tmp_path / "planar.tif") as v:
        assert (v.num_frames, v.height, v.width) == (3, 9, 7)
        np.testing.assert_array_equal(v.read([0, 2]), rgb[[0, 2]])
    out = tmp_path / "f.npy"
    assert main(["predict", str(tmp_path / "one.tif"), "--out", str(out)]) == 2
    assert "at least 2 frames" in capsys.readouterr().err and not out.exists()


def test_frame_folder_natural_order(tmp_path):
    for i in (1, 2, 10):
        Image.fromarray(np.full((5, 6), i * 20, np.uint8)).save(tmp_path / f"frame{i}.png")
    with open_video(tmp_path) as v:
        assert v.num_frames == 3
        assert v.read([0, 1, 2])[:, 0, 0, 0].tolist() == [20, 40, 200]


def test_not_a_video(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(VideoError, match="bad.mp4"):
        open_video(bad)
    with pytest.raises(VideoError, match="no such"):
        open_video(tmp_path / "missing.mp4")


def test_truncated_video_without_its_index_is_an_error(tmp_path, ramp_frames):
    """flowvid's writer puts the mp4 index (moov) at the end: a cut file cannot be read."""
    path = write_video(tmp_path / "a.mp4", ramp_frames, fps=25)
    data = path.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoError, match="cut.mp4: not a readable video"):
        open_video(cut)


def test_truncated_streamable_video_reads_the_frames_it_has(tmp_path):
    """An mp4 with its index first (faststart) and its data cut in half: the frames that
    survive are counted exactly and read back as written."""
    import av

    frames = np.random.default_rng(0).integers(0, 255, (20, 64, 64, 3), dtype=np.uint8)
    frames = np.repeat(np.repeat(frames[:, ::8, ::8], 8, 1), 8, 2)  # blocks survive coding
    path = tmp_path / "fast.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        stream = c.add_stream("libx264", rate=25, options={"crf": "10"})
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv444p"
        for f in frames:
            c.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(stream.encode())
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with open_video(cut) as v:
        assert 0 < v.num_frames < 20
        got = np.stack(list(v.iter_frames()))
    assert len(got) == v.num_frames
    assert np.abs(got.astype(int) - frames[: len(got)]).mean() < 6


def test_writer_leaves_nothing_on_failure(tmp_path, ramp_frames):
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "x.mp4", fps=10) as w:
        w.write(ramp_frames[0])
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_writer_encodes_the_same_frames_to_the_same_file(tmp_path):
    """A seeded corpus renders twice alike: libx264's macroblock-tree rate control gave other
    pixels for the same frames from run to run (a rendered clip of 160 px, nearly every run)."""
    from flowvid.data.synth.synthetic import ClipRenderer, SynthConfig

    cfg = SynthConfig(size=160, frames=24, looks=("dic",))
    renderer = ClipRenderer(cfg, np.random.default_rng(np.random.SeedSequence(7).spawn(2)[1]))
    frames = np.stack([renderer.frame(i) for i in range(cfg.frames)])
    files = []
    for i in range(4):
        write_video(tmp_path / f"{i}.mp4", frames, fps=100, crf=17)
        files.append((tmp_path / f"{i}.mp4").read_bytes())
    assert all(f == files[0] for f in files[1:])


def _read_and_write(clip: str, out: str) -> np.ndarray:
    with open_video(clip) as reader:
        frames = reader.read(range(reader.num_frames))
    write_video(out, frames, fps=10)
    return frames


def test_a_forked_worker_reads_and_writes_video(tmp_path, ramp_frames):
    """DataLoader and corpus workers are forked: PyAV (17 and newer) converted pixel formats on
    a pool of threads, and a worker forked after its parent had converted a frame hung on it."""
    import multiprocessing

    clip = write_video(tmp_path / "a.mp4", ramp_frames, fps=10)
    with open_video(clip) as reader:
        first = reader.read([0])[0]  # the parent converts a frame before it forks
    with multiprocessing.get_context("fork").Pool(1) as pool:
        job = pool.apply_async(_read_and_write, (str(clip), str(tmp_path / "b.mp4")))
        frames = job.get(timeout=60)
    np.testing.assert_array_equal(frames[0], first)
    with open_video(tmp_path / "b.mp4") as reader:
        assert reader.num_frames == len(ramp_frames)


def test_tiff_calibration_from_imagej_and_ome_metadata(tmp_path):
    stack = np.random.default_rng(0).integers(0, 255, (4, 16, 16), dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "ij.tif",
        stack,
        imagej=True,
        resolution=(1 / 0.65, 1 / 0.65),
        metadata={"unit": "micron", "finterval": 0.01, "axes": "TYX"},
    )
    ome = {"axes": "TYX", "PhysicalSizeX": 400.0, "PhysicalSizeXUnit": "nm"}
    ome |= {"TimeIncrement": 20.0, "TimeIncrementUnit": "ms"}
    tifffile.imwrite(tmp_path / "ome.tif", stack, ome=True, metadata=ome)
    tifffile.imwrite(tmp_path / "plain.tif", stack)
    expected = {
        "ij.tif": (0.65, 100.0, "TIFF ImageJ metadata"),
        "ome.tif": (0.4, 50.0, "TIFF OME metadata"),
        "plain.tif": (None, None, None),
    }
    for name, (um, fps, source) in expected.items():
        with open_video(tmp_path / name) as reader:
            assert (reader.um_per_px, reader.fps, reader.calibration_source) == (um, fps, source)
