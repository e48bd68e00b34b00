import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowvid.errors import FlowFormatError
from flowvid.io.flowfile import open_flow, read_flow, write_flow
from flowvid.io.pairs import FLO_TAG

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def flows(draw, max_pairs=3):
    n = draw(st.integers(1, max_pairs))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    return (np.random.default_rng(seed).normal(0, 20, (n, h, w, 2))).astype(np.float32)


@SETTINGS
@given(flow=flows())
def test_npy_npz_round_trip_exact(tmp_path, flow):
    for name in ("f.npy", "f.npz"):
        write_flow(tmp_path / name, flow)
        back = read_flow(tmp_path / name)
        assert back.dtype == np.float32
        np.testing.assert_array_equal(back, flow)


@SETTINGS
@given(flow=flows(max_pairs=1))
def test_flo_round_trip_exact(tmp_path, flow):
    write_flow(tmp_path / "f.flo", flow)
    np.testing.assert_array_equal(read_flow(tmp_path / "f.flo"), flow)


@SETTINGS
@given(flow=flows(max_pairs=1))
def test_kitti_png_round_trip_to_1_over_64_px(tmp_path, flow):
    write_flow(tmp_path / "f.png", flow)
    seq = open_flow(tmp_path / "f.png")
    np.testing.assert_allclose(seq[0], flow[0], atol=0.5 / 64 + 1e-4)
    assert seq.valid(0).all()


@SETTINGS
@given(flow=flows(), fmt=st.sampled_from(["flo", "png"]))
def test_folder_round_trip(tmp_path, flow, fmt):
    out = tmp_path / f"pairs_{fmt}"
    write_flow(out, flow, pair_format=fmt)
    back = read_flow(out)
    assert back.shape == flow.shape
    np.testing.assert_allclose(back, flow, atol=0 if fmt == "flo" else 0.5 / 64 + 1e-4)


def test_flo_layout_is_middlebury(tmp_path):
    """Header: float tag 202021.25, int32 width, int32 height; then u, v interleaved row-major."""
    flow = np.zeros((1, 2, 3, 2), np.float32)
    flow[0, 1, 2] = (5.0, -7.0)  # row 1, column 2: u = 5 (right), v = -7 (up)
    write_flow(tmp_path / "f.flo", flow)
    raw = (tmp_path / "f.flo").read_bytes()
    tag, width, height = struct.unpack("<fii", raw[:12])
    assert (tag, width, height) == (np.float32(FLO_TAG), 3, 2)
    data = np.frombuffer(raw[12:], "<f4")
    assert data[(1 * 3 + 2) * 2] == 5.0 and data[(1 * 3 + 2) * 2 + 1] == -7.0


def test_kitti_channels_and_invalid_pixels(tmp_path):
    import cv2

    flow = np.zeros((1, 2, 2, 2), np.float32)
    flow[0, 0, 1] = (1.5, -2.0)
    valid = np.array([[[True, True], [False, True]]])
    write_flow(tmp_path / "k.png", flow, valid=valid)
    bgr = cv2.imread(str(tmp_path / "k.png"), cv2.IMREAD_UNCHANGED)
    assert bgr.dtype == np.uint16
    assert bgr[0, 1, 2] == 1.5 * 64 + 2**15 and bgr[0, 1, 1] == -2.0 * 64 + 2**15  # R = u, G = v
    seq = open_flow(tmp_path / "k.png")
    np.testing.assert_array_equal(seq.valid(0), valid[0])


def test_float16_storage_is_kept_and_read_as_float32(tmp_path):
    flow = np.full((2, 3, 4, 2), 1.25, np.float16)
    write_flow(tmp_path / "h.npy", flow)
    assert np.load(tmp_path / "h.npy").dtype == np.float16
    assert read_flow(tmp_path / "h.npy").dtype == np.float32


def test_npy_is_memory_mapped(tmp_path):
    write_flow(tmp_path / "m.npy", np.zeros((4, 8, 8, 2), np.float32))
    seq = open_flow(tmp_path / "m.npy")
    assert seq.shape == (4, 8, 8, 2)
    assert seq[1:3].shape == (2, 8, 8, 2)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (struct.pack("<fii", 1.0, 2, 2) + bytes(32), "bad .flo tag"),
        (struct.pack("<fii", FLO_TAG, 2, 2) + bytes(31), "truncated"),
        (struct.pack("<fii", FLO_TAG, 2, 2) + bytes(40), "needs 44"),
        (struct.pack("<fii", FLO_TAG, 1 << 30, 1 << 30), "implausible"),
        (struct.pack("<fii", FLO_TAG, -3, 2), "implausible"),
        (b"PIEH", "too short"),
    ],
)
def test_bad_flo_files_raise_one_clear_error(tmp_path, payload, fragment):
    path = tmp_path / "bad.flo"
    path.write_bytes(payload)
    with pytest.raises(FlowFormatError, match=fragment) as info:
        read_flow(path)
    assert str(path) in str(info.value)


def test_wrong_shape_and_dtype(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 4, 5, 3), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((3, 4, 5, 2), np.int32))
    with pytest.raises(FlowFormatError, match="shape"):
        read_flow(tmp_path / "a.npy")
    with pytest.raises(FlowFormatError, match="float"):
        read_flow(tmp_path / "b.npy")
    with pytest.raises(FlowFormatError, match="no such"):
        read_flow(tmp_path / "missing.npy")


def test_write_errors_leave_nothing_behind(tmp_path):
    with pytest.raises(FlowFormatError, match="512"):
        write_flow(tmp_path / "big.png", np.full((1, 2, 2, 2), 600.0, np.float32))
    with pytest.raises(FlowFormatError, match="one pair"):
        write_flow(tmp_path / "two.flo", np.zeros((2, 2, 2, 2), np.float32))
    assert list(tmp_path.iterdir()) == []


def _corrupt(data: bytes, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = bytearray(data)
    kind = seed % 3
    if kind == 0:  # truncate
        return bytes(arr[: int(rng.integers(0, len(arr)))])
    if kind == 1:  # flip bytes, mostly in the header
        for _ in range(int(rng.integers(1, 6))):
            pos = int(rng.integers(0, min(len(arr), 140) if rng.random() < 0.8 else len(arr)))
            arr[pos] = int(rng.integers(0, 256))
        return bytes(arr)
    return bytes(rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8))  # garbage


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**31), suffix=st.sampled_from([".npy", ".npz", ".flo", ".png"]))
def test_random_corruption_gives_the_clear_error_or_a_valid_array(tmp_path, seed, suffix):
    flow = np.random.default_rng(1).normal(0, 3, (1, 5, 6, 2)).astype(np.float32)
    good = tmp_path / f"good{suffix}"
    write_flow(good, flow)
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(_corrupt(good.read_bytes(), seed))
    try:
        back = read_flow(bad)
    except FlowFormatError as err:
        assert str(bad) in str(err)
    else:  # damage that leaves a readable file must still give a well-formed flow
        assert back.dtype == np.float32 and back.ndim == 4 and back.shape[-1] == 2


def test_mat_and_hdf5_round_trip_with_pivlab_names(tmp_path):
    from scipy.io import loadmat

    flow = np.random.default_rng(2).normal(0, 2, (3, 4, 5, 2)).astype(np.float32)
    for name in ("f.mat", "f.h5"):
        write_flow(tmp_path / name, flow)
        np.testing.assert_array_equal(read_flow(tmp_path / name), flow)
    doc = loadmat(tmp_path / "f.mat")
    assert doc["u"].shape == doc["v"].shape == (3, 4, 5)
    np.testing.assert_array_equal(doc["v"][1], flow[1, ..., 1])  # v: downward, as PIVlab
    assert doc["x"][0, 0] == 1 and doc["x"][0, 4] == 5 and doc["y"][3, 0] == 4  # 1-based
    import h5py

    with h5py.File(tmp_path / "f.h5") as fh:
        assert fh["flow"].chunks == (1, 4, 5, 2) and "u (x, right)" in fh["flow"].attrs["axes"]
    (tmp_path / "bad.mat").write_bytes(b"not matlab")
    with pytest.raises(FlowFormatError, match="bad.mat"):
        read_flow(tmp_path / "bad.mat")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(FlowFormatError, match="dataset 'flow'"):
        read_flow(tmp_path / "bad.h5")
