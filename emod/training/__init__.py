"""Training helpers shared by tools/train.py and tools/optimize.py (torch is imported here, never by the daemon core)."""
