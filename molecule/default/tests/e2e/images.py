"""Pixel checks for screenshots: "shows a picture", not "black" or "one flat colour"."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageStat


@dataclass(frozen=True)
class PixelStats:
    """What a screenshot looks like, in numbers."""

    width: int
    height: int
    mean: float  # mean grey level 0..255
    stddev: float  # grey level standard deviation
    colours: int  # distinct grey levels (capped by the 256 bins)
    lit_fraction: float  # share of pixels brighter than 24/255
    bright_pixels: int  # pixels brighter than 127/255 (text on a console, a logo, a desktop)

    def is_picture(self, min_stddev: float = 4.0, min_colours: int = 2) -> bool:
        """True when the image is neither black nor a single flat colour."""
        return self.lit_fraction > 0.001 and self.stddev >= min_stddev and (
            self.colours >= min_colours
        )


def stats(image: Image.Image | bytes | str | Path) -> PixelStats:
    """Compute :class:`PixelStats` for a PIL image, PNG bytes or a file path."""
    if isinstance(image, bytes):
        image = Image.open(io.BytesIO(image))
    elif isinstance(image, (str, Path)):
        image = Image.open(image)
    grey = image.convert("L")
    hist = grey.histogram()
    total = grey.width * grey.height
    st = ImageStat.Stat(grey)
    return PixelStats(
        width=grey.width,
        height=grey.height,
        mean=st.mean[0],
        stddev=st.stddev[0],
        colours=sum(1 for n in hist if n),
        lit_fraction=sum(hist[25:]) / total if total else 0.0,
        bright_pixels=sum(hist[128:]),
    )
