"""Command-line entry points of the ``emod`` console scripts."""
