"""Latent codecs: rate estimate in ``forward``, real bits in ``compress``/``decompress``."""
