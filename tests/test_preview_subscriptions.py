"""The display stage knows whether a viewer watches from the subscribed topics, and a peer that sends
unsubscriptions it never subscribed cannot switch the preview off for real viewers (issue 14, kind 12)."""

from __future__ import annotations

import socket
import time

import pytest
import zmq

from _fixtures import short_tmp, wait_for  # noqa: F401
from emod import bus, config, protocol


class _Log:
    def __getattr__(self, name):
        return lambda *a, **k: None


def _display(rundir):
    from emod.stages.display import DisplayStage

    cfg = config.Config()
    cfg.daemon.runtime_dir = str(rundir)
    cfg.display.window = "off"
    stage = DisplayStage(cfg, _Log())
    stage.setup()
    return stage


def _zmtp10(rundir, *bodies: bytes) -> socket.socket:
    """A raw peer speaking ZeroMQ's old wire format (ZMTP/1.0, as random bytes may): empty identity, then BODIES."""
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(str(bus.socket_path(rundir, protocol.PREVIEW)))
    raw.sendall(b"\x01\x00" + b"".join(bytes([len(b) + 1, 0]) + b for b in bodies))
    return raw


def _steps_until(stage, predicate, timeout: float, what: str):
    return wait_for(lambda: (stage.step(), predicate())[1], timeout, 0, what)


GARBAGE = [(b"\x01", b"\x00(\xdf\xaa\x9cq\xdf\x1d\x1a", b"\x00"), (b"\x00xyz", b"\x00pre")]  # the first as random bytes spelt it


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_unsubscriptions_pass_the_xpub_but_leave_the_topic_set(short_tmp, garbage) -> None:
    """The XPUB passes up a garbage peer's unsubscriptions (a message count would drop to 0), the topic set keeps `preview`."""
    pub = bus.bind(zmq.Context.instance(), zmq.XPUB, short_tmp, protocol.PREVIEW, hwm=2)
    viewer = bus.connect(zmq.Context.instance(), zmq.SUB, short_tmp, protocol.PREVIEW, hwm=2, topic=protocol.PREVIEW_TOPIC)
    raw = None
    try:
        topics: set[bytes] = set()
        wait_for(lambda: (bus.read_subscriptions(pub, topics), topics)[1], 10, 0.02, "the viewer's subscription")
        raw = _zmtp10(short_tmp, *garbage)
        passed: list[bytes] = []
        def all_passed():
            while pub.poll(0):
                passed.append(pub.recv())
            return sum(m[:1] == b"\x00" for m in passed) >= sum(g[:1] == b"\x00" for g in garbage)
        wait_for(all_passed, 10, 0.02, "the garbage to come through the XPUB")
        count = 1 + sum(1 if m[:1] == b"\x01" else -1 for m in passed)  # what counting messages would believe
        assert count <= 0
        for m in passed:  # the same messages, applied as read_subscriptions applies them
            (topics.add if m[:1] == b"\x01" else topics.discard)(m[1:])
        assert protocol.PREVIEW_TOPIC in topics
    finally:
        if raw is not None:
            raw.close()
        viewer.close()
        pub.close()


@pytest.mark.parametrize("garbage", GARBAGE[:1])
def test_the_display_keeps_serving_a_viewer_through_garbage(short_tmp, garbage) -> None:
    """The display stage still counts a viewer as watching while and after a garbage peer sends unsubscriptions."""
    stage = _display(short_tmp)
    viewer = bus.connect(zmq.Context.instance(), zmq.SUB, short_tmp, protocol.PREVIEW, hwm=2, topic=protocol.PREVIEW_TOPIC)
    raw = None
    try:
        _steps_until(stage, lambda: stage.subscribed, 10, "the viewer's subscription")
        raw = _zmtp10(short_tmp, *garbage)
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:
            stage.step()
            assert stage.subscribed, f"the viewer was forgotten after {garbage}"
    finally:
        if raw is not None:
            raw.close()
        viewer.close()
        stage.teardown()


def test_a_subscription_to_another_topic_is_not_a_viewer(short_tmp) -> None:
    """A peer subscribing only to a topic preview messages never match does not turn JPEG encoding on; leaving turns it off."""
    stage = _display(short_tmp)
    ctx = zmq.Context.instance()
    other = bus.connect(ctx, zmq.SUB, short_tmp, protocol.PREVIEW, hwm=2, topic=b"xyz")
    try:
        _steps_until(stage, lambda: b"xyz" in stage.topics, 10, "the other subscription")
        assert not stage.subscribed
        viewer = bus.connect(ctx, zmq.SUB, short_tmp, protocol.PREVIEW, hwm=2, topic=protocol.PREVIEW_TOPIC)
        _steps_until(stage, lambda: stage.subscribed, 10, "the viewer")
        viewer.close()
        _steps_until(stage, lambda: not stage.subscribed, 10, "the viewer to leave")
    finally:
        other.close()
        stage.teardown()
