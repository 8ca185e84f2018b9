"""emod: an edge facial-emotion recognition daemon.

Data flow (one process per stage, ZeroMQ between them)::

    capture --frames--> infer --results--> display --preview--> emod-view
        \\_________________frames______________/
    every stage --telemetry--> launcher <--control-- emod-ctl / emod-stats
    power --power--> display, launcher
"""

__version__ = "0.1.0"
