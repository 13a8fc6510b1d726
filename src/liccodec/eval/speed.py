"""Speed of liccodec against AVIF and JPEG XL, and where liccodec's time goes.

Two kinds of measurement, made in one run so that their ratios compare like with like:

* **Whole processes** (what a user waits for): ``lic encode``/``lic decode`` against the
  reference command-line tools ``avifenc``/``avifdec`` (libavif) and ``cjxl``/``djxl``
  (libjxl), PNG in and PNG out, each on the same images with the same thread count. Tools
  that are not installed are left out and named in the report.
* **Stages inside one process** (:func:`profile_stages`): the encode and decode of one
  image, split into container, analysis, hyper path, integer networks, rANS coding,
  latent residual prediction and synthesis, by timing those calls while the real
  ``liccodec.encode``/``decode`` run. Start-up (importing torch, loading weights) is timed
  in a fresh process.

Absolute seconds on a shared 2-core machine are noisy; the ratios within one run are what
to quote.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ToolTimes:
    """Seconds per image of one codec's command-line encode and decode."""

    name: str
    command: str
    encode_s: list[float] = field(default_factory=list)
    decode_s: list[float] = field(default_factory=list)
    bpp: list[float] = field(default_factory=list)

    @property
    def encode(self) -> float:
        return statistics.fmean(self.encode_s)

    @property
    def decode(self) -> float:
        return statistics.fmean(self.decode_s)


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()[-300:]}")
    return dt


def lic_command() -> list[str]:
    """How a user runs ``lic``: the console script installed beside this Python (what a venv's
    ``bin/lic`` is), else the same entry point through ``-c``. Never a ``lic`` found on PATH
    first: there it can be a version manager's shim (pyenv's adds 0.26 s a call here) or
    another installation."""
    script = Path(sys.executable).with_name("lic")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from liccodec.cli.main import run; run()"]


def cli_tools(models: Sequence[str], quality: float, threads: int, avif_cq: int,
              jxl_distance: float) -> tuple[dict[str, tuple[list[str], list[str], str]], dict[str, str]]:
    """``{name: (encode argv, decode argv, suffix)}`` with IN/OUT placeholders, and the
    tools that are missing ``{name: why}``."""
    lic = lic_command()
    tools: dict[str, tuple[list[str], list[str], str]] = {}
    for m in models:
        tools[f"lic {m}"] = ([*lic, "encode", "IN", "OUT", "-m", m, "-q", f"{quality:g}", "--overwrite", "--quiet"],
                             [*lic, "decode", "IN", "-o", "OUT", "--overwrite", "--quiet"], ".lic")
    missing = {}
    if shutil.which("avifenc") and shutil.which("avifdec"):
        tools["avifenc -s 6"] = (["avifenc", "-s", "6", "-j", str(threads), "--min", "0", "--max", "63",
                                  "-a", "end-usage=q", "-a", f"cq-level={avif_cq}", "IN", "OUT"],
                                 ["avifdec", "-j", str(threads), "IN", "OUT"], ".avif")
    else:
        missing["avif"] = "avifenc/avifdec not installed (Debian: libavif-bin)"
    if shutil.which("cjxl") and shutil.which("djxl"):
        tools["cjxl -e 7"] = (["cjxl", "IN", "OUT", "-d", f"{jxl_distance:g}", "-e", "7",
                               f"--num_threads={threads}"],
                              ["djxl", "IN", "OUT", f"--num_threads={threads}"], ".jxl")
    else:
        missing["jxl"] = "cjxl/djxl not installed (Debian: libjxl-tools)"
    return tools, missing


def time_cli(images: Sequence[Path], tools: dict[str, tuple[list[str], list[str], str]],
             threads: int, progress=None) -> list[ToolTimes]:
    """Run every tool's encode then decode on every image, as whole processes.

    The tools take turns image by image, so slow drifts of the machine's load fall on all of
    them alike. ``OMP_NUM_THREADS`` is not touched: ``lic`` uses torch's default (all cores),
    the others get ``threads`` through their own flags."""
    from PIL import Image

    out = {name: ToolTimes(name, " ".join(enc)) for name, (enc, _, _) in tools.items()}
    with tempfile.TemporaryDirectory(prefix="lic-bench-") as tmp:
        tmp = Path(tmp)
        for img in images:
            with Image.open(img) as im:
                w, h = im.size
            for name, (enc, dec, suffix) in tools.items():
                coded = tmp / f"coded{suffix}"
                png = tmp / "decoded.png"
                fill = lambda argv, i, o: [str(i) if a == "IN" else str(o) if a == "OUT" else a for a in argv]
                out[name].encode_s.append(_timed(fill(enc, img, coded)))
                out[name].decode_s.append(_timed(fill(dec, coded, png)))
                out[name].bpp.append(8 * coded.stat().st_size / (w * h))
                if progress:
                    progress(1)
    return list(out.values())


# ---- stages inside one process -------------------------------------------------------

class Stopwatch:
    """Wall time of named calls while a block runs (nested calls count in the outer one only)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._depth = 0

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            if self._depth:
                return fn(*args, **kwargs)
            self._depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t0
                self._depth -= 1
        return timed

    @contextlib.contextmanager
    def patch(self, targets: Sequence[tuple[object, str, str]]) -> Iterator["Stopwatch"]:
        """``targets``: (object, attribute, stage name); each attribute is timed in the block."""
        saved = []
        for obj, attr, name in targets:
            if obj is None or not hasattr(obj, attr):
                continue
            saved.append((obj, attr, getattr(obj, attr), attr in vars(obj)))
            setattr(obj, attr, self.wrap(name, getattr(obj, attr)))
        try:
            yield self
        finally:
            for obj, attr, orig, own in reversed(saved):
                if own:
                    setattr(obj, attr, orig)
                else:
                    delattr(obj, attr)


def _stage_targets(net) -> list[tuple[object, str, str]]:
    """What to time in a loaded model and in the modules coding goes through."""
    import liccodec.codec as codec
    import liccodec.entropy as entropy
    from liccodec import runtime
    from liccodec.nn import integer
    from liccodec.runtime import encoder

    latent = net.latent
    return [
        (codec, "unpack", "container"), (codec, "pack", "container"),
        (net.g_a, "forward", "analysis g_a"), (net.g_s, "forward", "synthesis g_s"),
        (latent.h_a, "forward", "hyper analysis h_a"),
        (getattr(latent, "lrp", None), "forward", "latent residual prediction"),
        (integer.IntegerNet, "__call__", "integer networks (h_s, slice nets)"),
        # decoding runs the numpy decoder (liccodec.runtime): the same stages there
        (runtime.IntegerChain, "__call__", "integer networks (h_s, slice nets)"),
        (runtime.Synthesis, "__call__", "synthesis g_s"),
        (runtime.ResidualPrediction, "__call__", "latent residual prediction"),
        # and encoding the numpy encoder (liccodec.runtime.encoder)
        (encoder.Analysis, "__call__", "analysis g_a"), (encoder.HyperAnalysis, "__call__", "hyper analysis h_a"),
        (entropy.StreamWriter, "add", "rANS"), (entropy.StreamWriter, "finish", "rANS"),
        (entropy.StreamReader, "take", "rANS"),
    ]


@dataclass
class StageProfile:
    model: str
    image: str
    pixels: int
    encode: dict[str, float]
    decode: dict[str, float]
    startup: dict[str, float]


def profile_stages(model: str, image: Path, quality: float, repeats: int = 3) -> StageProfile:
    """Median stage times of ``repeats`` in-process encodes and decodes of ``image``
    (after one untimed warm-up), plus the start-up costs measured in a fresh process."""
    import liccodec
    from liccodec.weights import load_model

    net = load_model(model)
    data = liccodec.encode(image, model=model, quality=quality)  # warm-up
    liccodec.decode(data)
    runs: dict[str, list[dict[str, float]]] = {"encode": [], "decode": []}
    for _ in range(repeats):
        for what in ("encode", "decode"):
            sw = Stopwatch()
            with sw.patch(_stage_targets(net)):
                t0 = time.perf_counter()
                if what == "encode":
                    liccodec.encode(image, model=model, quality=quality)
                else:
                    liccodec.decode(data)
                total = time.perf_counter() - t0
            stages = dict(sw.seconds)
            stages["other (image I/O, tensors, glue)"] = total - sum(stages.values())
            stages["total"] = total
            runs[what].append(stages)

    def median(rs: list[dict[str, float]]) -> dict[str, float]:
        keys = dict.fromkeys(k for r in rs for k in r)
        return {k: statistics.median(r.get(k, 0.0) for r in rs) for k in keys}

    from PIL import Image

    with Image.open(image) as im:
        pixels = im.size[0] * im.size[1]
    return StageProfile(model, image.name, pixels, median(runs["encode"]), median(runs["decode"]),
                        startup_costs(model))


_STARTUP = """
import time, sys
t0 = time.perf_counter(); import liccodec.cli.main; t1 = time.perf_counter()
from liccodec import runtime
from liccodec.weights import get_spec
if get_spec(sys.argv[1]).arch in runtime.SUPPORTED:
    runtime.load_decoder(sys.argv[1]); t2 = time.perf_counter()
    from liccodec.runtime.encoder import load_encoder
    load_encoder(sys.argv[1]); t3 = time.perf_counter()
    print("numpy", t1 - t0, t2 - t1, t3 - t2)
else:
    import torch; t2 = time.perf_counter()
    from liccodec.weights import load_model; load_model(sys.argv[1]); t3 = time.perf_counter()
    print("torch", t1 - t0, t2 - t1, t3 - t2)
"""


def startup_costs(model: str) -> dict[str, float]:
    """Seconds a fresh ``lic`` process spends before it codes: its own imports, then for the
    architectures the numpy codec runs, reading and verifying (sha256) the weights into the
    numpy decoder and building the numpy encoder (which shares them in one process; a
    ``lic encode`` process pays both); for the others, importing torch and building the
    torch model (verified too), which both directions pay."""
    res = subprocess.run([sys.executable, "-c", _STARTUP, model], capture_output=True, text=True, check=True)
    kind, *times = res.stdout.split()
    cli, first, second = map(float, times)
    if kind == "numpy":
        return {"import lic CLI": cli, "load + verify weights, numpy decoder": first,
                "build the numpy encoder on them": second}
    return {"import lic CLI": cli, "import torch": first, "load + verify weights, torch model": second}


# ---- the report ----------------------------------------------------------------------

def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def render(command: str, machine: str, threads: int, images: Sequence[Path], tools: list[ToolTimes],
           missing: dict[str, str], profiles: Sequence[StageProfile]) -> str:
    """The benchmark as Markdown: whole-process times with ratios, then the stage profiles."""
    lines = [f"Command: `{command}`", "", f"Machine: {machine}; {threads} threads per codec; "
             f"{len(images)} images ({', '.join(p.name for p in images)}).", ""]
    if tools:
        ref = next((t for t in tools if t.name.startswith("avifenc")), None)
        lines += ["### Whole processes (PNG in, PNG out), seconds per image", "",
                  "| codec | command | bpp | encode s | decode s | encode+decode s | decode vs avifdec | "
                  "encode+decode vs AVIF encode |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for t in tools:
            lines.append(f"| {t.name} | `{t.command}` | {statistics.fmean(t.bpp):.3f} | {t.encode:.3f} | "
                         f"{t.decode:.3f} | {t.encode + t.decode:.3f} | "
                         f"{_ratio(t.decode, ref.decode) if ref else '-'} | "
                         f"{_ratio(t.encode + t.decode, ref.encode) if ref else '-'} |")
        lines.append("")
    for name, why in missing.items():
        lines.append(f"- {name} left out: {why}")
    if missing:
        lines.append("")
    for p in profiles:
        lines += [f"### Where {p.model}'s time goes: {p.image} ({p.pixels / 1e6:.2f} Mpx), in one process", "",
                  "| stage | encode s | share | decode s | share |", "|---|---:|---:|---:|---:|"]
        keys = [k for k in dict.fromkeys([*p.encode, *p.decode]) if k != "total"]
        for k in keys:
            e, d = p.encode.get(k, 0.0), p.decode.get(k, 0.0)
            lines.append(f"| {k} | {e:.3f} | {100 * e / p.encode['total']:.0f}% | {d:.3f} | "
                         f"{100 * d / p.decode['total']:.0f}% |")
        lines.append(f"| **total** | {p.encode['total']:.3f} | | {p.decode['total']:.3f} | |")
        lines += ["", "Start-up of a fresh process (seconds): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in p.startup.items()) + ".", ""]
    return "\n".join(lines)


def conv_macs(model: str, side: int = 256) -> dict[str, float]:
    """Multiply-adds per pixel (thousands) of every convolution and transposed convolution
    in a forward pass of ``model`` at ``side`` x ``side``, by part (g_a, g_s, latent.h_s, ...).
    GDN's 1x1 normalisation is not counted. Also ``params_M``: parameters by part, millions."""
    from liccodec.weights import get_spec

    spec = get_spec(model)
    return arch_macs(spec.arch, spec.config, side)


def arch_macs(arch: str, config: dict, side: int = 256) -> dict[str, float]:
    """:func:`conv_macs` of an architecture built from ``config`` (no weights needed: an
    architecture that has none shipped yet, or a recipe's ``[model]`` table without ``arch``)."""
    import torch
    from torch import nn

    from liccodec.models import get_arch

    net = get_arch(arch).build(**config).eval()
    macs: dict[str, float] = defaultdict(float)

    def part(name: str) -> str:
        bits = name.split(".")
        return ".".join(bits[:2]) if bits[0] == "latent" else bits[0]

    def hook(name: str):
        def count(m, inputs, out):
            extra = getattr(m, "extra", None)  # nn.layers.WidenedConv2d reads its new inputs too
            c_in = m.in_channels + (extra.shape[1] if isinstance(extra, torch.Tensor) else 0)
            taps = m.weight.shape[2] * m.weight.shape[3] * c_in // m.groups * m.out_channels
            x = inputs[0] if isinstance(m, nn.ConvTranspose2d) else out
            macs[part(name)] += x.numel() // x.shape[1] * taps
        return count

    for name, m in net.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.register_forward_hook(hook(name))
    with torch.no_grad():
        net(torch.rand(1, 3, side, side), torch.tensor([0.0]))
    out = {k: round(v / side**2 / 1e3, 1) for k, v in macs.items()}
    out["total"] = round(sum(macs.values()) / side**2 / 1e3, 1)
    params: dict[str, int] = defaultdict(int)
    for name, p in net.named_parameters():
        params[part(name) if not name.startswith("latent") else "latent"] += p.numel()
    out.update({f"params_M {k}": round(v / 1e6, 2) for k, v in params.items()})
    return out
