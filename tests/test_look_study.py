"""Leave-one-look-out, end to end in a tiny mode: each run trains without its look, is scored
on that look only, and a finished study resumes without redoing anything."""

import json

import pytest
import yaml

from flowvid.errors import InputError
from flowvid.lab.look_study import leave_one_look_out

SCORED = ("model.temporal_mean=3",)  # scored as a model ships, the weights as trained
TINY = ["train.max_steps=3", "train.val_every_steps=3", "data.workers=0", "train.warmup_steps=1"]


@pytest.mark.slow
def test_leave_one_look_out_tiny(tmp_path):
    looks = ("brightfield", "dark")
    kw = dict(looks=looks, train_videos=3, test_videos=2, frames=6, size=64)
    # one fold alone (as one of several processes would run it): its row, nothing else
    first = leave_one_look_out(
        tmp_path, "configs/debug.yaml", TINY, hold_out=("dark",), settings=SCORED, **kw
    )
    assert [r["look"] for r in first] == ["dark"]
    assert not (tmp_path / "without_brightfield").exists()
    dark_row = json.loads((tmp_path / "without_dark" / "row.json").read_text())
    assert dark_row == first[0]
    assert dark_row["settings"] == list(SCORED)
    assert dark_row["target_met"] == (dark_row["ratio_to_best_classical"] <= 1.0)
    # then the rest: the finished fold is kept as it is, the table has both in the looks' order
    rows = leave_one_look_out(tmp_path, "configs/debug.yaml", TINY, **kw)
    assert [r["look"] for r in rows] == list(looks)
    assert rows[1] == dark_row
    for r in rows:
        for key in ("flowvid_epe_vessel", "farneback_epe_vessel", "dis_medium_epe_vessel"):
            assert r[key] >= 0
        assert r["zero_epe_vessel"] > 0  # the held-out clips do move
    for held in looks:
        train_doc = yaml.safe_load(
            (tmp_path / f"without_{held}" / "corpus" / "dataset.yaml").read_text()
        )
        test_doc = yaml.safe_load((tmp_path / "held_out" / held / "dataset.yaml").read_text())
        assert {c["meta"]["look"]["name"] for c in train_doc["clips"].values()} == set(looks) - {
            held
        }
        assert {c["meta"]["look"]["name"] for c in test_doc["clips"].values()} == {held}
        assert sorted(test_doc["split"]["test"]) == sorted(test_doc["clips"])  # all scored
    assert json.loads((tmp_path / "results.json").read_text()) == rows
    assert "| dark |" in (tmp_path / "results.md").read_text()
    model = tmp_path / "without_dark" / "run" / "model.pt"
    stamp = model.stat().st_mtime_ns
    again = leave_one_look_out(tmp_path, "configs/debug.yaml", TINY, **kw)
    assert model.stat().st_mtime_ns == stamp  # resumed: nothing retrained
    assert again == rows


def test_leave_one_look_out_needs_two_known_looks(tmp_path):
    with pytest.raises(InputError, match="at least two looks"):
        leave_one_look_out(tmp_path, "configs/debug.yaml", looks=("dark",))
    with pytest.raises(InputError):
        leave_one_look_out(tmp_path, "configs/debug.yaml", looks=("dark", "sepia"))
    with pytest.raises(InputError, match="hold out one or more"):
        leave_one_look_out(
            tmp_path, "configs/debug.yaml", looks=("dark", "tracers"), hold_out=("brightfield",)
        )
    with pytest.raises(InputError, match="hold out one or more"):
        leave_one_look_out(tmp_path, "configs/debug.yaml", hold_out=())
    assert not any(tmp_path.iterdir())  # refused before anything was written
