"""Evaluation report rendering: Markdown tables and matplotlib plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowvid.io.atomic import atomic_output

COLUMNS = [
    ("epe_vessel", "EPE vessel"),
    ("median_epe_vessel", "median"),
    ("epe_outside", "EPE outside"),
    ("epe_all", "EPE all"),
    ("ae_deg_vessel", "AE° vessel"),
    ("acc_0.5px_vessel", "<0.5px"),
    ("acc_1px_vessel", "<1px"),
    ("acc_3px_vessel", "<3px"),
    ("fl_vessel", "Fl vessel"),
    ("speed_ratio_vessel", "speed read"),
    ("ms_per_frame", "ms/frame"),
]


def _fmt(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _header(*titles: str) -> list[str]:
    return [_row(*titles), "|" + "---|" * len(titles)]


def _calibration_section(calibration: dict) -> list[str]:
    """The expected error's calibration table, per method and region."""
    lines = [
        "",
        "## Expected error: calibration",
        "",
        "Each vector's predicted expected EPE against its actual EPE. Predicted / actual: "
        "the mean predicted error over the mean actual one (1 is calibrated). Kept half: "
        "the EPE of the 50 % most certain pixels over the EPE of all of them (the oracle, "
        "which removes the truly worst, beside it). AUSE: the area between the "
        "sparsification and oracle curves over the share removed, px/frame (0 is a "
        "perfect ranking). Curves: sparsification.png.",
        "",
        *_header(
            "method",
            "region",
            "mean EPE",
            "mean predicted",
            "predicted / actual",
            "kept half",
            "oracle kept half",
            "AUSE",
        ),
    ]
    for name, by_region in calibration.items():
        for region, c in by_region.items():
            if not c["pixels"]:
                continue
            oracle_half = c["oracle"][c["removed"].index(0.5)] / c["mean_epe"]
            values = (
                c["mean_epe"],
                c["mean_predicted"],
                c["ratio"],
                c["kept_half_ratio"],
                oracle_half,
                c["ause"],
            )
            lines.append(_row(name, region, *map(_fmt, values)))
    return lines


def render_markdown(report: dict) -> str:
    lines = [
        f"# flowvid evaluation: {report['data']} ({report['split']}, {report['clips']} clips)",
        "",
        f"Units: {report['units']}. {report['metrics']}.",
        "",
        "## Overall",
        "",
    ]
    lines += _header("method", *(title for _, title in COLUMNS))
    for name, m in report["overall"].items():
        lines.append(_row(name, *(_fmt(m.get(k)) for k, _ in COLUMNS)))
    methods = list(report["overall"])
    lines += ["", "## Vessel EPE per clip", "", *_header("clip", *methods)]
    for clip, row in report["per_clip"].items():
        lines.append(_row(clip, *(_fmt(row[m]["epe_vessel"]) for m in methods)))
    lines += [
        "",
        "## Vessel EPE against true speed (px/frame)",
        "",
        *_header("speed", "pixels", *methods),
    ]
    curves = report["speed_curve"]
    for k, b in enumerate(curves[methods[0]]):
        label = f"{b['speed_lo']:g}–{b['speed_hi']:g}"
        lines.append(_row(label, str(b["pixels"]), *(_fmt(curves[m][k]["epe"]) for m in methods)))
    lines += [
        "",
        "## Speed read against true speed",
        "",
        "Speed read: the sum of each vessel vector's component along the true motion over the "
        "sum of the true speeds (1: unbiased; 0.6: a mean speed reads 40 % low).",
        "",
        *_header("speed", "pixels", *methods),
    ]
    for k, b in enumerate(curves[methods[0]]):
        label = f"{b['speed_lo']:g}–{b['speed_hi']:g}"
        ratios = (_fmt(curves[m][k].get("speed_ratio")) for m in methods)
        lines.append(_row(label, str(b["pixels"]), *ratios))
    if report.get("calibration"):
        lines += _calibration_section(report["calibration"])
    return "\n".join(lines) + "\n"


def _save(fig, path: Path) -> None:  # noqa: ANN001 - matplotlib figure
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def _pyplot():  # noqa: ANN202 - the pyplot module, headless
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_per_clip(report: dict, path: Path) -> None:
    plt = _pyplot()
    clips, methods = list(report["per_clip"]), list(report["overall"])
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(clips) * len(methods)), 3.5))
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        values = [report["per_clip"][c][m]["epe_vessel"] for c in clips]
        ax.bar(np.arange(len(clips)) + k * width, values, width, label=m)
    ax.set_xticks(np.arange(len(clips)) + 0.4 - width / 2, clips, rotation=45, ha="right")
    ax.set_ylabel("vessel EPE (px/frame)")
    ax.legend()
    _save(fig, path)
    plt.close(fig)


def plot_speed_curve(report: dict, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for m, curve in report["speed_curve"].items():
        mids = [
            (b["speed_lo"] + min(b["speed_hi"], 2 * max(b["speed_lo"], 0.125))) / 2 for b in curve
        ]
        ax.plot(mids, [b["epe"] for b in curve], marker="o", label=m)
    ax.set_xscale("symlog", linthresh=0.25)
    ax.set_xlabel("true speed in the vessel (px/frame)")
    ax.set_ylabel("vessel EPE (px/frame)")
    ax.legend()
    _save(fig, path)
    plt.close(fig)


def plot_sparsification(report: dict, path: Path) -> None:
    """Mean EPE of the pixels kept as the most uncertain are removed, beside the oracle."""
    plt = _pyplot()
    regions = ("vessel", "outside")
    fig, axes = plt.subplots(1, len(regions), figsize=(10, 3.5))
    for ax, region in zip(axes, regions, strict=True):
        for name, by_region in report["calibration"].items():
            c = by_region[region]
            if not c["pixels"]:
                continue
            (line,) = ax.plot(c["removed"], c["curve"], label=f"{name}: by expected error")
            ax.plot(
                c["removed"], c["oracle"], "--", color=line.get_color(), label=f"{name}: oracle"
            )
        ax.set_title(region)
        ax.set_xlabel("share of pixels removed (most uncertain first)")
        ax.set_ylabel("EPE of the rest (px/frame)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
