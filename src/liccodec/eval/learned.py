"""liccodec's own models as :class:`~liccodec.eval.classical.Codec` objects.

They go through the public API only (``liccodec.encode``, ``liccodec.decode``,
``liccodec.list_models``), so what is measured is exactly what a user gets: the full ``.lic``
file, header and checksum included. The API is imported when a codec is built, never at import
time, and a model that cannot run (API missing, unknown id, weights absent) is reported as
unavailable rather than failing the evaluation.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from liccodec.eval.classical import Codec, CodecUnavailable

#: How many qualities a learned model is evaluated at, spread evenly over its range.
DEFAULT_NUM_QUALITIES = 8


def _field(spec: Any, name: str) -> Any:
    return spec[name] if isinstance(spec, dict) else getattr(spec, name)


def model_specs() -> list[Any]:
    """``liccodec.list_models()``, or ``[]`` when the API is not there yet."""
    from liccodec.errors import LicError

    try:
        import liccodec

        return list(liccodec.list_models())
    except (ImportError, AttributeError, LicError):
        return []


def registered_models() -> dict[str, bool]:
    """Every registered model id, mapped to whether its weights are present."""
    return {str(_field(s, "id")): bool(_field(s, "available")) for s in model_specs()}


def spread_qualities(q_min: float, q_max: float, n: int = DEFAULT_NUM_QUALITIES) -> list[float]:
    """``n`` qualities evenly over ``[q_min, q_max]``, rounded to the millis the container stores."""
    if n < 2 or q_max <= q_min:
        return [round(float(q_min), 3)]
    return [round(float(q), 3) for q in np.linspace(q_min, q_max, n)]


#: ``<model id>+refine<N>`` evaluates a model's files encoded with N steps of latent refinement.
REFINE_SUFFIX = "+refine"


def parse_model(name: str) -> tuple[str, int]:
    """``"charm.mse+refine50"`` -> ``("charm.mse", 50)``; a plain id -> ``(id, 0)``."""
    base, sep, steps = name.partition(REFINE_SUFFIX)
    if not sep:
        return name, 0
    if not steps.isdigit() or int(steps) < 1:
        raise CodecUnavailable(f"{name!r}: write refinement as {base}{REFINE_SUFFIX}<steps>, steps >= 1")
    return base, int(steps)


class LiccodecCodec(Codec):
    """One liccodec model (``arch.tag``), evaluated at qualities spread across its range;
    ``arch.tag+refine<N>``: the same model with N steps of encoder-side refinement."""

    kind = "learned"
    setting_name = "quality"

    def __init__(self, model_id: str, threads: int = 1,
                 qualities: Sequence[float] | None = None,
                 num_qualities: int = DEFAULT_NUM_QUALITIES, span: str = "levels") -> None:
        super().__init__(threads)
        try:
            import liccodec

            encode, decode = liccodec.encode, liccodec.decode
        except (ImportError, AttributeError) as e:
            raise CodecUnavailable(f"liccodec's encode/decode API is not importable ({e})") from e
        model_id, self.refine = parse_model(model_id)
        specs = {str(_field(s, "id")): s for s in model_specs()}
        if model_id not in specs:
            known = ", ".join(sorted(specs)) or "none"
            raise CodecUnavailable(f"model {model_id!r} is not registered (registered: {known})")
        spec = specs[model_id]
        if not bool(_field(spec, "available")):
            raise CodecUnavailable(f"weights for {model_id} are not present")
        self._encode, self._decode = encode, decode
        self.spec = spec
        self.model_id = model_id
        self.name = self.label = model_id + (f"{REFINE_SUFFIX}{self.refine}" if self.refine else "")
        q_min, q_max = float(_field(spec, "quality_min")), float(_field(spec, "quality_max"))
        if span == "high":  # the top level and the residual layer's qualities above it
            from liccodec.residual import EXTRA

            q_min, q_max = q_max, q_max + EXTRA
        elif span == "low":  # the extrapolated qualities below the lowest level, and that level
            from liccodec.fixedpoint import BELOW

            q_min, q_max = q_min - BELOW, q_min
        elif span != "levels":
            raise ValueError(f"span must be levels, low or high, not {span!r}")
        self.settings = tuple(qualities) if qualities else tuple(spread_qualities(q_min, q_max,
                                                                                  num_qualities))
        self.quality_range = (q_min, q_max)

    def encode(self, image: Image.Image, setting: float) -> bytes:
        if self.refine:
            return self._encode(image, model=self.model_id, quality=float(setting), refine=self.refine)
        return self._encode(image, model=self.model_id, quality=float(setting))

    def decode(self, data: bytes) -> Image.Image:
        img = self._decode(data)
        return img if img.mode == "RGB" else img.convert("RGB")

    def version(self) -> str:
        import liccodec

        digest = ""
        try:
            digest = f", weights sha256 {str(_field(self.spec, 'sha256'))[:16]}"
        except (KeyError, AttributeError):
            pass
        refined = f", {self.refine} refinement steps" if self.refine else ""
        return f"liccodec {liccodec.__version__}{digest}{refined}"

    def describe(self) -> str:
        q_min, q_max = self.quality_range
        try:
            about = str(_field(self.spec, "description"))
        except (KeyError, AttributeError):
            about = ""
        refined = f", refine={self.refine}" if self.refine else ""
        return (f"liccodec.encode(image, model='{self.model_id}', quality=Q{refined}), Q in "
                f"[{q_min:g}, {q_max:g}]; PyTorch on CPU, torch.set_num_threads({self.threads})"
                + (f"; weights: {about}" if about else ""))


def make_models(model_ids: Sequence[str], threads: int = 1) -> tuple[list[Codec], dict[str, str]]:
    """Build the named models; those that cannot run come back as ``{id: note}``."""
    codecs: list[Codec] = []
    skipped: dict[str, str] = {}
    for mid in model_ids:
        try:
            codecs.append(LiccodecCodec(mid, threads))
        except CodecUnavailable as e:
            skipped[mid] = str(e)
    return codecs, skipped
