"""Vision helpers for emod: face detection/cropping, per-face tracking, label smoothing and the preview overlay."""
