"""liccodec: a learned image codec.

Public API::

    data = liccodec.encode("photo.png", model="msh.mse", quality=4)
    image = liccodec.decode(data)          # a Pillow image
    liccodec.list_models()                 # shipped weight sets
    liccodec.load_model("msh.mse")         # the torch module, weights verified

``import liccodec.pillow`` registers .lic with Pillow (``Image.open``, ``Image.save``).
"""
from __future__ import annotations

__version__ = "0.2.0"
__all__ = ["__version__", "decode", "encode", "list_models", "load_model"]


def __getattr__(name: str):
    # Lazy: importing liccodec (e.g. for `lic --version`) does not import torch.
    if name in ("encode", "decode", "list_models"):
        from liccodec import codec

        return getattr(codec, name)
    if name == "load_model":
        from liccodec.weights import load_model

        return load_model
    raise AttributeError(name)
