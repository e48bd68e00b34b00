"""Run the bad-input matrix of tests/test_bad_input.py and print it as a markdown table.

    python tools/bad_input_table.py > matrix.md

The cases, their inputs and the checks are the test's own (one definition); this prints
what each case did: exit code, the message's last line, a traceback or not, whether an
earlier output survived, and the temporary files left.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_matrix():  # noqa: ANN201 - the test module
    spec = importlib.util.spec_from_file_location("bad_input", ROOT / "tests/test_bad_input.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bad_input"] = module
    spec.loader.exec_module(module)
    return module


class Captured:
    """What pytest's capsys gives run_case: the stderr written since the last read."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    def readouterr(self):  # noqa: ANN201
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return type("Out", (), {"err": text, "out": ""})()


def shared_inputs(m, root: Path):  # noqa: ANN001, ANN201
    import torch

    torch.manual_seed(0)
    ckpt = m.save_checkpoint(root / "tiny.pt", m.create_model(**m.TINY), m.TINY, {})
    video = m.write_video(root / "clip.mp4", m._frames(12), fps=10)
    data = m.write_corpus(
        root / "data", 3, m.SynthConfig(size=32, frames=6), seed=0, workers=1, progress=False
    )
    return video, ckpt, data


def _message(stderr: str) -> str:
    """The line that says what is wrong (progress bars and YAML carets left out)."""
    lines = [ln.strip() for ln in stderr.replace("\r", "\n").splitlines() if ln.strip()]
    said = [ln[ln.find("flowvid ") :] for ln in lines if "error:" in ln]
    said += [ln for ln in lines if ln.startswith("- ")]
    text = said[0] if said else (lines[-1] if lines else "")
    return text.replace("|", "\\|")[:140]


def main() -> None:
    m = load_matrix()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shared = shared_inputs(m, tmp / "shared")
        for i, case in enumerate(m.CASES):
            (tmp / str(i)).mkdir()
            cap = Captured()
            with contextlib.redirect_stderr(cap.buffer), contextlib.redirect_stdout(io.StringIO()):
                r = m.run_case(case, tmp / str(i), shared, cap)
            ok = (
                not r["traceback"]
                and r["code"] == case.code
                and (case.code == 0 or case.expect in r["stderr"])
                and r["kept"]
                and not r["leftovers"]
            )
            message = _message(r["stderr"]) if case.code else "(works)"
            rows.append(
                f"| {case.id} | {r['command']} | {case.what} | {r['code']} | {message} | "
                f"{'yes' if r['kept'] else 'NO'} | {len(r['leftovers'])} | "
                f"{'pass' if ok else 'FAIL'} |"
            )
    print(
        "| case | command | input | exit | message | earlier output kept | "
        "temp files left | result |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    failed = sum(r.endswith("FAIL |") for r in rows)
    print(f"\n{len(rows)} cases, {len(rows) - failed} pass, {failed} fail.")


if __name__ == "__main__":
    main()
