"""Label Studio down, slow or failing: `push` and `pull` end in one line, record nothing, and the
next call succeeds once the server answers. Stub servers on 127.0.0.1 for 5xx and timeouts, the
real server for down-then-up; `make test-integration`."""

import http.server
import socket
import threading
import time
from pathlib import Path

import pytest

from star.cli import main
from star.labelling.project import Project

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "reviews"
FAST = ["--model", "tiny-random", "--lora-r", "4", "--epochs", "1", "--batch-size", "4"]


class Stub:
    """An HTTP server on 127.0.0.1 that answers every request with `status` after `delay`
    seconds, counting the requests."""

    def __init__(self, status: int, delay: float = 0.0):
        stub = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self):
                stub.requests += 1
                time.sleep(delay)
                body = b'{"detail": "stub says no"}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up waiting
                    pass

            do_GET = do_POST = do_PATCH = do_PUT = answer

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def project(tmp_path):
    path = tmp_path / "proj"
    assert main(["init", str(path), "--pool", str(EXAMPLES / "pool.jsonl"), *FAST]) == 0
    assert main(["next", str(path), "--k", "3", "--format", "label-studio"]) == 0
    return path


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: nobody listens


@pytest.fixture
def refused(tree_hash, capsys):
    """Run a push or pull that must fail: one line, exit 2, the project unchanged."""

    def check(project: Path, command: str, url: str, *extra: str) -> str:
        before = tree_hash(project)
        capsys.readouterr()
        args = [command, str(project), "--ls-url", url, "--ls-api-key", "x" * 40, *extra]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("star: error: Label Studio: ") and err.count("\n") == 1, err
        assert tree_hash(project) == before  # nothing recorded, nothing saved
        return err

    return check


@pytest.mark.parametrize("command, extra", [("push", []), ("pull", ["--ls-project", "1"])])
def test_a_server_answering_5xx_is_retried_then_refused(project, refused, command, extra):
    stub = Stub(503)
    try:
        err = refused(project, command, stub.url, *extra)
    finally:
        stub.close()
    assert "503" in err or "stub says no" in err
    assert stub.requests == 3  # the SDK's two retries, then the error


@pytest.mark.parametrize("command, extra", [("push", []), ("pull", ["--ls-project", "1"])])
def test_a_server_that_does_not_answer_times_out(project, refused, command, extra):
    stub = Stub(200, delay=5.0)
    start = time.perf_counter()
    try:
        refused(project, command, stub.url, "--ls-timeout", "0.5", *extra)
    finally:
        stub.close()
    assert time.perf_counter() - start < 5.0  # did not wait for the answer


def test_down_then_up(project, server, token, refused):
    refused(project, "push", dead_url())
    refused(project, "pull", dead_url(), "--ls-project", "1")
    assert main(["push", str(project), "--ls-url", server, "--ls-api-key", token]) == 0
    assert main(["pull", str(project), "--ls-url", server, "--ls-api-key", token]) == 0
    with Project.open(project) as p:
        assert p.label_studio_project(server) is not None
