"""Rate-distortion plots: PSNR-RGB and MS-SSIM (dB) against bpp, side by side, as one PNG.

Three visual tiers so the eye lands on what matters: liccodec's models (thick, saturated,
on top), classical codecs measured in the same run (thinner, solid), and published anchors
(dashed, muted greys and earth tones, behind). Matplotlib is driven through its object API
with the Agg canvas, so plotting never touches pyplot's global state or the display.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from liccodec.eval.results import RDCurve

_LEARNED_COLORS = ("#d62728", "#1f3fbf", "#8c1a9a", "#e07b00")
#: One hue per codec family (the two chroma variants of a codec share it, light and dark).
_CODEC_COLORS = {"jpeg-420": "#1f77b4", "jpeg-444": "#74a9cf", "webp": "#2ca02c",
                 "jpeg2000": "#9467bd", "avif-420": "#ff7f0e", "avif-444": "#fdae6b",
                 "jxl": "#17becf", "hevc-444": "#8c564b"}
_CODEC_MARKERS = {"jpeg-420": "o", "jpeg-444": "s", "webp": "^", "jpeg2000": "D",
                  "avif-420": "v", "avif-444": "P", "jxl": "X", "hevc-444": "h"}
_CLASSICAL_COLORS = ("#bcbd22", "#e377c2", "#7f7f7f", "#393b79")
_ANCHOR_COLORS = ("#222222", "#6f6f6f", "#8a6d3b", "#5c7a8a", "#9a9a9a", "#7a5c7a", "#4a6b4a",
                  "#b08968")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")

PANELS = (("psnr-rgb", "PSNR-RGB [dB]"), ("ms-ssim-db", "MS-SSIM-RGB [dB]  (−10·log₁₀(1 − MS-SSIM))"))


def _style(curve: RDCurve, index: dict[str, int]) -> dict:
    if curve.source == "anchor":
        i = index["anchor"]
        index["anchor"] += 1
        return {"color": _ANCHOR_COLORS[i % len(_ANCHOR_COLORS)], "linestyle": (0, (5, 2.5)),
                "linewidth": 1.3, "marker": _MARKERS[i % len(_MARKERS)], "markersize": 3.5,
                "markerfacecolor": "white", "alpha": 0.9, "zorder": 2}
    if curve.kind == "learned":
        i = index["learned"]
        index["learned"] += 1
        return {"color": _LEARNED_COLORS[i % len(_LEARNED_COLORS)], "linestyle": "-",
                "linewidth": 2.8, "marker": "o", "markersize": 6, "zorder": 6}
    i = index["classical"]
    index["classical"] += 1
    codec = str(curve.meta.get("codec", ""))
    color = _CODEC_COLORS.get(codec)
    if color is None:
        color = _CLASSICAL_COLORS[index["other"] % len(_CLASSICAL_COLORS)]
        index["other"] += 1
    return {"color": color, "linestyle": "-",
            "linewidth": 1.5, "marker": _CODEC_MARKERS.get(codec, _MARKERS[i % len(_MARKERS)]),
            "markersize": 3.5, "zorder": 4}


def _order(curves: Sequence[RDCurve]) -> list[RDCurve]:
    tier = {"learned": 0, "classical": 1}
    return sorted(curves, key=lambda c: (2 if c.source == "anchor" else tier.get(c.kind, 1)))


_GROUP_TITLES = ("liccodec", "Measured in this run", "Published")


def _groups(curves: Sequence[RDCurve]) -> list[tuple[str, list[RDCurve]]]:
    """Legend sections: our models, classical codecs measured here, published anchors."""
    learned = [c for c in curves if c.source != "anchor" and c.kind == "learned"]
    measured = [c for c in curves if c.source != "anchor" and c.kind != "learned"]
    anchors = [c for c in curves if c.source == "anchor"]
    return [(t, m) for t, m in zip(_GROUP_TITLES, (learned, measured, anchors)) if m]


def _limits(values: list[float], pad: float, floor: float | None = None) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if floor is not None:
        lo = max(lo, floor)
    span = max(hi - lo, 1.0)
    return math.floor(lo - pad * span), math.ceil(hi + pad * span)


#: Panels of the perceptual plot (``lic eval --metric``): distances, lower is better.
PERCEPTUAL_PANELS = (("lpips-alex", "LPIPS (AlexNet), lower is better"),
                     ("lpips-vgg", "LPIPS (VGG16), lower is better"), ("dists", "DISTS, lower is better"))


def rd_plot(curves: Sequence[RDCurve], path: str | Path, *, title: str = "Kodak",
            max_bpp: float = 1.5, dpi: int = 150,
            panels: Sequence[tuple[str, str]] = PANELS) -> Path:
    """Draw every curve that has the panel's metric and save one PNG with one panel per metric
    (``panels``: PSNR and MS-SSIM by default, or any of :data:`PERCEPTUAL_PANELS`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MultipleLocator

    fig = Figure(figsize=(7.75 * len(panels), 6.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    index = {"anchor": 0, "learned": 0, "classical": 0, "other": 0}
    styles = {id(c): _style(c, index) for c in _order(curves)}
    handles: dict[str, object] = {}
    distances = {k for k, _ in PERCEPTUAL_PANELS}

    for ax, (key, ylabel) in zip(axes, panels):
        ys: list[float] = []
        ours: list[float] = []  # never clipped away by the floor below
        for c in _order(curves):
            x, y = c.points(key)
            if len(x) < 2:
                continue
            pairs = sorted(zip(x, y))
            x, y = [p[0] for p in pairs], [p[1] for p in pairs]
            (line,) = ax.plot(x, y, label=c.name, **styles[id(c)])
            handles.setdefault(c.name, line)
            in_range = [v for r, v in zip(x, y) if r <= max_bpp * 1.02]
            (ours if c.kind == "learned" and c.source != "anchor" else ys).extend(in_range)
        ax.set_xlim(0, max_bpp)
        ax.xaxis.set_major_locator(MultipleLocator(0.25))
        ax.xaxis.set_minor_locator(MultipleLocator(0.05))
        if key in distances:
            if ys or ours:
                ax.set_ylim(0, 1.05 * max(ys + ours))
        elif ys or ours:
            # A very low-rate JPEG point would squash everything else; 22 dB (PSNR) / 6 dB
            # (MS-SSIM) is well below where any codec worth comparing sits at 0.1 bpp. Our own
            # models are always shown whole, however badly they do.
            floor = 22.0 if key == "psnr-rgb" else 6.0
            if ours:
                floor = min(floor, min(ours))
            ax.set_ylim(*_limits(ys + ours, 0.03, floor=floor))
        if key not in distances:
            ax.yaxis.set_major_locator(MultipleLocator(2))
            ax.yaxis.set_minor_locator(MultipleLocator(0.5))
        ax.grid(True, which="major", color="#c8c8c8", linewidth=0.8)
        ax.grid(True, which="minor", color="#ececec", linewidth=0.5)
        ax.set_axisbelow(True)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel.split(" [")[0].split(",")[0] + " vs rate", fontsize=11)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)

    from matplotlib.lines import Line2D

    blank = Line2D([], [], linestyle="none")
    legend_handles: list[object] = []
    legend_names: list[str] = []
    for group, members in _groups([c for c in _order(curves) if c.name in handles]):
        legend_handles.append(blank)
        legend_names.append(group)
        for c in members:
            legend_handles.append(handles[c.name])
            legend_names.append(c.name)
    legend = fig.legend(legend_handles, legend_names, loc="outside right center", frameon=False,
                        fontsize=9, handlelength=3.2)
    for text, name in zip(legend.get_texts(), legend_names):
        if name in _GROUP_TITLES:
            text.set_fontweight("bold")
    fig.suptitle(title, fontsize=13)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path
