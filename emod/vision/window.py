"""A minimal local window (Tk), since opencv-python-headless has no GUI.

Frames are handed over as PNG bytes to a Tk PhotoImage; ``show`` returns False once
the user has closed the window.
"""

from __future__ import annotations

import base64
import os

import cv2
import numpy as np


class Window:
    def __init__(self, title: str):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise RuntimeError("no display (DISPLAY is unset)")
        import tkinter as tk

        self.tk = tk
        self.root = tk.Tk()
        self.root.title(title)
        self.label = tk.Label(self.root)
        self.label.pack()
        self.closed = False
        self.root.protocol("WM_DELETE_WINDOW", self.close)
        self.photo = None

    def show(self, bgr: np.ndarray) -> bool:
        if self.closed:
            return False
        ok, png = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 0])
        if ok:
            self.photo = self.tk.PhotoImage(data=base64.b64encode(png.tobytes()))
            self.label.configure(image=self.photo)
        self.root.update()
        return not self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.root.destroy()
            except Exception:
                pass
