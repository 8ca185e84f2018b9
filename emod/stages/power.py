"""Power stage: samples the best available power backend and publishes readings.

A missing or failing backend publishes ``watts: null``; emod never invents a reading.
"""

from __future__ import annotations

import time

import zmq

from emod import bus, protocol
from emod.stages.base import Stage


class PowerStage(Stage):
    name = "power"

    def setup(self) -> None:
        from emod.power.base import NullBackend
        from emod.power.select import open_backend

        self.pub = bus.bind(self.ctx, zmq.PUB, self.rundir, protocol.POWER, hwm=4)
        try:
            self.backend = open_backend(self.cfg.power.backend)
        except Exception as e:  # an explicitly requested backend that is absent: report it, publish nulls
            self.log.warning("power backend unavailable", backend=self.cfg.power.backend, error=str(e))
            self.backend = NullBackend(reason=str(e))
        self.watts = None
        self.samples = 0
        self.next_t = time.monotonic()
        self.log.info("power backend", backend=self.backend.name)

    def step(self) -> None:
        now = time.monotonic()
        if now < self.next_t:
            time.sleep(min(0.1, self.next_t - now))
            return
        self.next_t = now + self.cfg.power.period
        self.watts = self.backend.read()
        self.samples += 1
        self.pub.send_multipart(protocol.encode(b"power", {"t_mono": time.monotonic(), "watts": self.watts, "backend": self.backend.name}))

    def teardown(self) -> None:
        self.backend.close()
        self.pub.close()

    def stats(self) -> dict:
        return {"backend": self.backend.name, "watts": self.watts, "samples": self.samples}
