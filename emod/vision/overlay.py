"""Preview overlay: per-track boxes and labels, a probability-bar panel and a status header.

:func:`draw` paints in place on a BGR ``uint8`` frame with OpenCV.  Font size
and line thickness scale with the frame height (reference 480 px), so the
overlay stays legible at 640x480 and 1280x720 alike.  Layout:

* each track: a box in its smoothed label's colour and a filled caption
  ``#id label 87%`` above it (inside the frame when the box touches the top);
  tracks that were missed this update (``visible=False``) get a thin box;
* a header at the top-left: ``fps | infer ms | model | watts``;
* a translucent panel with 7 labelled bars of the smoothed probabilities of the
  largest visible face (outlined bar: the smoothed label), in the corner that covers
  the least face area (top-right under the header row first, then bottom-right,
  bottom-left, top-left). Faces are drawn last so they stay on top of the panels.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from emod.labels import LABELS
from emod.vision.track import Track

__all__ = ["LABEL_COLORS", "draw", "format_header"]

# BGR, one per entry of LABELS in canonical order (angry, disgust, fear, happy,
# sad, surprise, neutral): red, green, purple, yellow, blue, orange, grey.
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (40, 40, 230),
    (40, 160, 40),
    (170, 50, 170),
    (0, 215, 255),
    (220, 110, 20),
    (0, 140, 255),
    (190, 190, 190),
)
assert len(_PALETTE) == len(LABELS), "one colour per label"
LABEL_COLORS: dict[str, tuple[int, int, int]] = dict(zip(LABELS, _PALETTE))

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)


def format_header(info: Mapping[str, Any]) -> str:
    """The header text for ``info`` (keys fps, infer_ms, model, watts; missing/None -> "n/a")."""

    def num(key: str, fmt: str) -> str:
        value = info.get(key)
        return "n/a" if value is None else format(float(value), fmt)

    model = info.get("model") or "n/a"
    watts = num("watts", ".1f")
    watts = watts if watts == "n/a" else f"{watts} W"
    return f"{num('fps', '.1f')} fps | {num('infer_ms', '.1f')} ms | {model} | {watts}"


def _blend_rect(frame: np.ndarray, x0: int, y0: int, x1: int, y1: int, alpha: float = 0.6) -> None:
    """Darken ``frame[y0:y1, x0:x1]`` towards black by ``alpha`` (clipped to the frame)."""
    h, w = frame.shape[:2]
    x0, x1 = max(0, x0), min(w, x1)
    y0, y1 = max(0, y0), min(h, y1)
    if x1 > x0 and y1 > y0:
        roi = frame[y0:y1, x0:x1]
        roi[:] = (roi.astype(np.float32) * (1.0 - alpha)).astype(np.uint8)


def _text(frame: np.ndarray, text: str, org: tuple[int, int], scale: float, thick: int,
          color: tuple[int, int, int] = _WHITE) -> None:
    cv2.putText(frame, text, org, _FONT, scale, color, thick, cv2.LINE_AA)


def _caption(tr: Track, frame_w: int, scale: float, thick: int, header: tuple[int, int]) -> tuple[str, int, int, tuple]:
    """A face's caption text, its font metrics and where it goes (:func:`_caption_rect`)."""
    text = f"#{tr.id} {tr.smoothed.label} {tr.smoothed.confidence:.0%}"
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
    pad = max(2, thick * 2)
    return text, th, pad, _caption_rect(tr.box, frame_w, tw, th + base + 2 * pad, pad, header)


def _face_area(tr: Track, caption_rect: tuple[int, int, int, int]) -> tuple[float, ...]:
    """(x, y, w, h) covering a face's box and its caption: what the bar panel keeps off."""
    x0, y0, x1, y1 = caption_rect
    bx, by, bw, bh = tr.box
    left, top = min(bx, x0), min(by, y0)
    return left, top, max(bx + bw, x1) - left, max(by + bh, y1) - top


def _caption_rect(box: Sequence[float], frame_w: int, tw: int, ch: int, pad: int,
                  header: tuple[int, int] = (0, 0)) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a face's caption, ``tw`` wide and ``ch`` high: above the box's top-left corner, or
    inside its top edge where there is no room above it or it would cover the header (``header`` = its width, height)."""
    x, y = int(round(box[0])), int(round(box[1]))
    left = min(max(0, x), max(0, frame_w - tw - 2 * pad))
    top = y - ch
    if top < 0 or (top < header[1] and left < header[0]):
        top = max(0, y, header[1] if left < header[0] else 0)
    return left, top, left + tw + 2 * pad, top + ch


def _draw_track(frame: np.ndarray, tr: Track, scale: float, thick: int, caption: tuple) -> None:
    """The face's box and its caption, as :func:`_caption` laid it out."""
    x, y, w, h = (int(round(v)) for v in tr.box)
    color = LABEL_COLORS.get(tr.smoothed.label, _WHITE)
    cv2.rectangle(frame, (x, y), (x + w, y + h), color, (thick + 1) if tr.visible else 1)
    caption, th, pad, (x0, y0, x1, y1) = caption
    cv2.rectangle(frame, (x0, y0), (x1, y1), color, -1)
    _text(frame, caption, (x0 + pad, y0 + pad + th), scale, thick, _BLACK)


def _overlap(a: tuple[int, int, int, int], b: Sequence[float]) -> float:
    """Area shared by rectangle ``a`` (x0, y0, x1, y1) and box ``b`` (x, y, w, h), in pixels."""
    w = min(a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def _panel_origin(w: int, h: int, pw: int, ph: int, pad: int, top: int, boxes: Sequence[Sequence[float]]) -> tuple[int, int]:
    """Top-left corner for a pw x ph panel: the first of four corners covering the least face area."""
    corners = [(w - pw - pad, top), (w - pw - pad, h - ph - pad), (pad, h - ph - pad), (pad, top)]
    return min(corners, key=lambda c: sum(_overlap((c[0], c[1], c[0] + pw, c[1] + ph), b) for b in boxes))


def _draw_bars(frame: np.ndarray, tr: Track, scale: float, thick: int, y0: int,
               boxes: Sequence[Sequence[float]] = ()) -> None:
    h, w = frame.shape[:2]
    s = h / 480.0
    fs = scale * 0.85
    name_w = max(cv2.getTextSize(n, _FONT, fs, thick)[0][0] for n in LABELS)
    (_, th), _ = cv2.getTextSize("0", _FONT, fs, thick)
    pad = int(round(6 * s))
    row = th + int(round(8 * s))
    bar_w = int(round(70 * s))
    val_w = cv2.getTextSize("100%", _FONT, fs, thick)[0][0]
    title = f"#{tr.id} {tr.smoothed.label}"
    panel_w = name_w + bar_w + val_w + 4 * pad
    panel_h = row * (len(LABELS) + 1) + 2 * pad
    x0, y0 = _panel_origin(w, h, panel_w, panel_h, pad, y0, boxes)
    _blend_rect(frame, x0, y0, x0 + panel_w, y0 + panel_h)
    _text(frame, title, (x0 + pad, y0 + pad + th), fs, thick)
    probs = np.clip(np.asarray(tr.smoothed.probs, dtype=np.float64), 0.0, 1.0)
    for i, (name, p) in enumerate(zip(LABELS, probs)):
        cy = y0 + pad + row * (i + 1)
        color = LABEL_COLORS[name]
        _text(frame, name, (x0 + pad, cy + th), fs, thick, color)
        bx = x0 + 2 * pad + name_w
        outline = _WHITE if name == tr.smoothed.label else (80, 80, 80)
        cv2.rectangle(frame, (bx, cy), (bx + bar_w, cy + th), outline, 1)
        fill = int(round(bar_w * float(p)))
        if fill > 0:
            cv2.rectangle(frame, (bx, cy), (bx + fill, cy + th), color, -1)
        _text(frame, f"{p:.0%}", (bx + bar_w + pad, cy + th), fs, thick)


def draw(frame_bgr: np.ndarray, tracks: Sequence[Track], info: Mapping[str, Any]) -> None:
    """Draw ``tracks`` and the ``info`` header onto ``frame_bgr`` (H x W x 3 uint8) in place."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
        raise ValueError("frame_bgr must be an H x W x 3 uint8 array")
    h = frame_bgr.shape[0]
    s = h / 480.0
    scale = 0.5 * s
    thick = max(1, int(round(s)))

    header = format_header(info)
    (tw, th), base = cv2.getTextSize(header, _FONT, scale, thick)
    pad = int(round(6 * s))
    _blend_rect(frame_bgr, 0, 0, tw + 2 * pad, th + base + 2 * pad)
    _text(frame_bgr, header, (pad, pad + th), scale, thick)

    shown = [t for t in tracks if t.visible] or list(tracks)
    header_wh = (tw + 2 * pad, th + base + 2 * pad)
    captions = [_caption(t, frame_bgr.shape[1], scale, thick, header_wh) for t in tracks]  # laid out once per frame
    if shown:
        largest = max(shown, key=lambda t: t.box[2] * t.box[3])
        _draw_bars(frame_bgr, largest, scale, thick, th + base + 3 * pad,
                   [_face_area(t, c[3]) for t, c in zip(tracks, captions)])

    # faces last, so their boxes and captions stay readable over the panels; captions keep off the header
    for tr, caption in zip(tracks, captions):
        _draw_track(frame_bgr, tr, scale, thick, caption)
