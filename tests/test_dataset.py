import shutil

import numpy as np
import pytest

from flowvid.data.dataset import default_split, load_dataset, validate_dataset
from flowvid.data.synth.corpus import write_corpus
from flowvid.data.synth.synthetic import SynthConfig
from flowvid.errors import DatasetError, InputError
from flowvid.io.flowfile import read_flow
from flowvid.io.video import open_video


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "synth"
    return write_corpus(out, 3, SynthConfig(size=96, frames=12), seed=0, workers=1, progress=False)


def test_synth_writes_the_layout(corpus):
    assert validate_dataset(corpus) == []
    data = load_dataset(corpus)
    assert len(data.clips) == 3 and data.fps == 100.0 and data.um_per_px == 0.8
    assert sorted(c.split for c in data.clips) == ["test", "train", "val"]
    for clip in data.clips:
        with open_video(clip.video) as v:
            assert (v.num_frames, v.height, v.width) == (12, 96, 96)
        assert read_flow(clip.flow).shape == (11, 96, 96, 2)
        assert clip.mask is not None and clip.meta["quality"] in ("good", "fair", "poor")


def test_preview_shows_three_frames_beside_flow_and_mask(corpus):
    import cv2

    from flowvid.analysis.viz import write_preview

    image = cv2.imread(str(write_preview(corpus, "vessel_000")))
    assert image.shape == (3 * 96, 3 * 96, 3)  # frames 0, mid, last x (frame, flow, mask)
    mask_panel = image[:96, 2 * 96 :]
    assert set(np.unique(mask_panel)) <= {0, 255} and mask_panel.max() == 255


def test_corpus_is_the_same_whatever_the_workers(corpus, tmp_path):
    again = write_corpus(
        tmp_path / "again", 3, SynthConfig(size=96, frames=12), seed=0, workers=2, progress=False
    )
    for name in ("vessel_000", "vessel_002"):
        np.testing.assert_array_equal(
            read_flow(again / "flow" / f"{name}.npy"), read_flow(corpus / "flow" / f"{name}.npy")
        )


def test_refuses_to_overwrite(corpus):
    with pytest.raises(InputError, match="not empty"):
        write_corpus(corpus, 1, SynthConfig(size=32, frames=3), progress=False)


def test_damaged_dataset_lists_every_problem(corpus, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(corpus, bad)
    (bad / "flow" / "vessel_000.npy").unlink()  # video without flow
    np.save(bad / "flow" / "orphan.npy", np.zeros((2, 4, 4, 2), np.float32))  # flow without video
    flow = np.load(bad / "flow" / "vessel_001.npy")
    np.save(bad / "flow" / "vessel_001.npy", np.concatenate([flow, flow[:1]]))  # T maps, not T-1
    flow = np.load(bad / "flow" / "vessel_002.npy")
    flow[3, 5, 5, 0] = np.nan
    np.save(bad / "flow" / "vessel_002.npy", flow)  # non-finite
    (bad / "videos" / "broken.mp4").write_bytes(b"\x00" * 100)  # unreadable
    np.save(bad / "flow" / "broken.npy", np.zeros((2, 4, 4, 2), np.float32))
    mask = next((bad / "masks").glob("vessel_002.*"))
    mask.unlink()
    np.save(bad / "masks" / "vessel_002.npy", np.zeros((5, 5), bool))  # wrong size
    (bad / "notes.txt").write_text("ok to have")
    (bad / "videos" / "readme.txt").write_text("stray")
    problems = [str(p) for p in validate_dataset(bad)]
    text = "\n".join(problems)
    for fragment in (
        "vessel_000.mp4: video without flow",
        "orphan.npy: flow without a video",
        "12 flow maps for 12 frames",
        "non-finite values in 1 maps",
        "broken.mp4: cannot be decoded",
        "mask has shape (5, 5)",
        "readme.txt",
        "clips in no split: ['broken']",
    ):
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    assert len(problems) == 8
    with pytest.raises(DatasetError, match="8 problem"):
        load_dataset(bad)


def test_size_mismatch_and_bad_yaml(corpus, tmp_path):
    bad = tmp_path / "bad2"
    shutil.copytree(corpus, bad)
    np.save(bad / "flow" / "vessel_000.npy", np.zeros((11, 50, 96, 2), np.float32))
    (bad / "dataset.yaml").write_text("fps: -3\nsplit: {train: [nope]}\ncolour: red\n")
    text = "\n".join(str(p) for p in validate_dataset(bad))
    assert "flow is 96x50 but the video is 96x96" in text
    assert "fps must be a positive number" in text
    assert "'nope', which has no video" in text
    assert "unknown keys ['colour']" in text


def test_default_split_is_deterministic_and_by_clip():
    names = [f"c{i}" for i in range(50)]
    a, b = default_split(names), default_split(list(reversed(names)))
    assert a == b
    counts = {s: sum(v == s for v in a.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 40, "val": 5, "test": 5}
