import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Video indexes go to a per-session temporary cache, never the user's."""
    monkeypatch.setenv("FLOWVID_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def ramp_frames():
    """20 frames of 48x64 whose brightness encodes the frame index (10 grey levels apart)."""
    frames = np.zeros((20, 48, 64, 3), np.uint8)
    frames[:] = (np.arange(20) * 12 + 10)[:, None, None, None]
    frames[:, :, :16, 0] = 200  # some colour, so channel order is checked too
    return frames
