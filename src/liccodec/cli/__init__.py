"""The ``lic`` command line."""
from liccodec.cli.main import main

__all__ = ["main"]
