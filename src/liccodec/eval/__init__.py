"""Evaluation: quality metrics, classical-codec baselines, RD curves, BD-rate, plots, reports.

The pieces, in the order ``lic eval`` uses them::

    images (uint8 HxWx3)
      -> codecs   (classical.py: Pillow / pillow-jxl / ffmpeg adapters; learned.py: liccodec models)
      -> metrics  (metrics.py: bpp, PSNR-RGB, MS-SSIM)
      -> curves   (bench.py measures, results.py stores them in CompressAI's JSON layout
                   and reads the published anchors)
      -> bdrate.py, plot.py, report.py

Nothing here is imported by the codec itself, and importing this package imports neither
torch nor matplotlib: each module pulls in what it needs when it is used.
"""
