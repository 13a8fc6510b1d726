"""Engines that run a folder conversion beyond this process (see ``liccodec.batch``).

The local engine (worker processes on this machine) lives in ``liccodec.batch``; the
modules here are optional and import their framework only when used.

* ``ray``: tasks on a Ray cluster, local or remote (``pip install 'liccodec[ray]'``).
"""
