"""Fuzzing every reader: damaged inputs end in flowvid's own error types or in valid data.

Readers: the video index and decoder (mp4), flow files (.npy, .npz, .flo, KITTI .png:
tests/test_flowfile.py), dataset.yaml and config YAML. Each test counts what it tried; with
FLOWVID_FUZZ_REPORT=path the counts and the exception types seen are written there as JSON
(``tools/fuzz_report.py`` runs them with many more examples).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowvid.config import load_config
from flowvid.data.dataset import validate_dataset
from flowvid.errors import InputError
from flowvid.io.flowfile import read_flow, write_flow
from flowvid.io.video import open_video, write_video

EXAMPLES = int(os.environ.get("FLOWVID_FUZZ_EXAMPLES", "30"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SEEN: dict[str, Counter] = {}  # reader -> outcome -> count


def _record(reader: str, outcome: str) -> None:
    SEEN.setdefault(reader, Counter())[outcome] += 1


def _outcome(reader: str, read) -> None:  # noqa: ANN001 - a zero-argument callable
    """Run ``read``; flowvid's own errors and clean results pass, anything else fails."""
    try:
        read()
    except InputError as err:
        _record(reader, type(err).__name__)
        return
    except Exception as err:  # the finding: say what escaped
        _record(reader, f"ESCAPED {type(err).__name__}")
        raise AssertionError(f"{reader}: {type(err).__name__} escaped: {err}") from err
    _record(reader, "read cleanly")


def _damage(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: 0 truncate, 1 overwrite a byte, 2 insert a byte."""
    buf = bytearray(data)
    for kind, pos, value in ops:
        if not buf:
            break
        pos %= len(buf)
        if kind == 0:
            del buf[pos:]
        elif kind == 1:
            buf[pos] = value
        else:
            buf.insert(pos, value)
    return bytes(buf)


EDITS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 1 << 20), st.integers(0, 255)),
    min_size=1,
    max_size=6,
)


@pytest.fixture(scope="module")
def clean_video(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (8, 24, 32, 3), dtype=np.uint8)
    return write_video(tmp_path_factory.mktemp("fuzz") / "clean.mp4", frames, fps=10).read_bytes()


@SETTINGS
@given(edits=EDITS)
def test_fuzz_video(tmp_path, clean_video, edits):
    path = tmp_path / "v.mp4"
    path.write_bytes(_damage(clean_video, edits))
    os.environ["FLOWVID_CACHE"] = str(tmp_path / "cache")  # a fresh index for every input

    def read() -> None:
        with open_video(path) as v:
            frames = np.stack(list(v.iter_frames()))
            assert frames.shape == (v.num_frames, v.height, v.width, 3)
            assert frames.dtype == np.uint8
            v.read([v.num_frames - 1, 0])

    _outcome("video (mp4: index and decoder)", read)


@SETTINGS
@given(edits=EDITS, suffix=st.sampled_from([".npy", ".npz", ".flo", ".png", ".mat", ".h5"]))
def test_fuzz_flow_files(tmp_path, edits, suffix):
    good = tmp_path / f"good{suffix}"
    write_flow(good, np.random.default_rng(1).normal(0, 3, (1, 5, 6, 2)).astype(np.float32))
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(_damage(good.read_bytes(), edits))

    def read() -> None:
        flow = read_flow(bad)
        assert flow.dtype == np.float32 and flow.ndim == 4 and flow.shape[-1] == 2

    _outcome(f"flow file ({suffix})", read)


# YAML documents: any nesting of the scalars and keys a user might get wrong
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
KEYS = st.sampled_from(
    ["fps", "um_per_px", "split", "clips", "train", "val", "test", "vessel_000", "notes", "meta"]
)
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    from flowvid.data.synth.corpus import write_corpus
    from flowvid.data.synth.synthetic import SynthConfig

    root = tmp_path_factory.mktemp("fuzzdata") / "data"
    return write_corpus(root, 2, SynthConfig(size=16, frames=3), seed=0, workers=1, progress=False)


@SETTINGS
@given(doc=DOCS)
def test_fuzz_dataset_yaml(small_dataset, doc):
    (small_dataset / "dataset.yaml").write_text(yaml.safe_dump(doc))

    def read() -> None:
        problems = validate_dataset(small_dataset)
        assert all(str(p) for p in problems)

    _outcome("dataset.yaml", read)


CONFIG_KEYS = st.sampled_from(["data", "model", "train", "loss", "augment", "lr", "crop", "task"])
CONFIG_DOCS = st.recursive(
    SCALARS,
    lambda inner: st.dictionaries(CONFIG_KEYS, inner, max_size=4),
    max_leaves=10,
)


@SETTINGS
@given(doc=CONFIG_DOCS, raw=st.text(max_size=60))
def test_fuzz_config_yaml(tmp_path, doc, raw):
    good, bad = tmp_path / "doc.yaml", tmp_path / "raw.yaml"
    good.write_text(yaml.safe_dump(doc))
    bad.write_text(raw)
    _outcome("config YAML", lambda: load_config(good))
    _outcome("config YAML (raw text)", lambda: load_config(bad))
    _outcome("--set KEY=VALUE", lambda: load_config(None, [raw]))


def test_write_fuzz_report():
    """Runs last in this module: the counts, when asked for."""
    target = os.environ.get("FLOWVID_FUZZ_REPORT")
    if target:
        Path(target).write_text(json.dumps({k: dict(v) for k, v in SEEN.items()}, indent=1))
    assert all(not k.startswith("ESCAPED") for c in SEEN.values() for k in c)
