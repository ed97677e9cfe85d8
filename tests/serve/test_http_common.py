"""The ASGI helpers shared by the HTTP API families (serve/http/common.py)."""

import asyncio

import pytest

from modelport.serve.errors import ClientDisconnected
from modelport.serve.http import common
from modelport.serve.http.common import infer_watching
from modelport.serve.types import InferenceRequest, InferenceResponse

pytestmark = pytest.mark.anyio


class SlowPlane:
    """A data plane whose inference answers after ``delay`` seconds (or never), and records
    whether it was cancelled."""

    def __init__(self, delay: float | None) -> None:
        self.delay = delay
        self.cancelled = False

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        try:
            if self.delay is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return InferenceResponse(request.model_name, "1", [], request.id)


def _request() -> InferenceRequest:
    return InferenceRequest("m", [], id="r1")


async def test_a_client_that_leaves_cancels_the_inference(monkeypatch):
    monkeypatch.setattr(common, "WATCH_DISCONNECT_AFTER_S", 0.01)
    plane = SlowPlane(delay=None)

    async def receive():
        return {"type": "http.disconnect"}

    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(infer_watching(plane, _request(), receive), 5)
    assert plane.cancelled


async def test_a_client_that_stays_gets_the_answer(monkeypatch):
    monkeypatch.setattr(common, "WATCH_DISCONNECT_AFTER_S", 0.01)
    plane = SlowPlane(delay=0.1)
    received = []

    async def receive():  # the client sends nothing more and stays connected
        received.append(1)
        await asyncio.Event().wait()

    response = await infer_watching(plane, _request(), receive)
    assert (response.model_name, response.id) == ("m", "r1")
    assert received == [1]  # it did listen (the wait was longer than the threshold)
    assert not plane.cancelled


async def test_a_quick_answer_does_not_listen(monkeypatch):
    monkeypatch.setattr(common, "WATCH_DISCONNECT_AFTER_S", 10.0)
    plane = SlowPlane(delay=0)

    async def receive():
        raise AssertionError("a quick request must not start a listener")

    response = await infer_watching(plane, _request(), receive)
    assert response.model_name == "m"


async def test_a_cancel_from_elsewhere_is_not_taken_for_a_disconnect(monkeypatch):
    monkeypatch.setattr(common, "WATCH_DISCONNECT_AFTER_S", 10.0)
    plane = SlowPlane(delay=None)

    async def receive():
        await asyncio.Event().wait()

    task = asyncio.ensure_future(infer_watching(plane, _request(), receive))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
