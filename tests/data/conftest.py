"""Fault injection for the endpoint clients' tests: it lives here, in the tests, not in `r1lab serve`."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def fail_first_requests():
    """``fail(server, count, status)``: a server from ``r1lab.rollout.server.make_server`` answers its first
    ``count`` POST requests with HTTP ``status`` (then serves normally), as an overloaded or broken endpoint
    would, to test clients' retries. Returns a record whose ``posts`` counts every POST it received."""

    def fail(server, count: int, status: int) -> SimpleNamespace:
        seen = SimpleNamespace(posts=0)
        lock = threading.Lock()

        class Failing(server.RequestHandlerClass):
            def do_POST(self):  # noqa: N802 - http.server's naming
                with lock:
                    seen.posts += 1
                    failing = seen.posts <= count
                if not failing:
                    super().do_POST()
                    return
                self.rfile.read(int(self.headers.get("Content-Length") or 0))  # the body, as the server would
                self._error(status, f"injected failure {seen.posts} of {count}")

        server.RequestHandlerClass = Failing
        return seen

    return fail
