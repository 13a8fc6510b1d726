"""Do file size and PSNR rise with quality across charm.mse's join at quality 7, where the
residual layer starts? (docs/ratecontrol.md; session 30)

Codes every image of FOLDER at the qualities below (one analysis, real files, decoded) and
prints, per image, bytes/PSNR at each, then every pair of neighbouring qualities where the
file did not get both bigger and better.

    python docs/residual/monotone.py ../shared/data/kodak
"""
import sys

from liccodec.codec import analyse, decode_rgb, encode_analysis
from liccodec.eval.bench import load_images
from liccodec.eval.metrics import psnr_rgb
from liccodec.imageio import split

from PIL import Image

QUALITIES = (6.5, 6.75, 6.9, 7.0, 7.001, 7.01, 7.1, 7.25, 7.5, 7.75, 8.0, 8.5)


def main(folder: str) -> None:
    for im in load_images(folder):
        a = analyse(split(Image.fromarray(im.rgb)), "charm.mse")
        rows = []
        for q in QUALITIES:
            data = encode_analysis(a, round(q * 1000)).data
            rows.append((len(data), psnr_rgb(decode_rgb(data)[1], im.rgb)))
        print(im.name, " ".join("%d/%.3f" % r for r in rows), flush=True)
        for (qa, ra), (qb, rb) in zip(zip(QUALITIES, rows), zip(QUALITIES[1:], rows[1:])):
            if not (rb[0] > ra[0] and rb[1] > ra[1]):
                print(f"  {qa} -> {qb}: {ra[0]} B {ra[1]:.3f} dB -> {rb[0]} B {rb[1]:.3f} dB")


if __name__ == "__main__":
    main(sys.argv[1])
