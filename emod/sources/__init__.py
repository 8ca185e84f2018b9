"""Frame sources: one module each, one base class (:mod:`emod.sources.base`), chosen by :func:`open_source`."""

from emod.sources.select import open_source

__all__ = ["open_source"]
