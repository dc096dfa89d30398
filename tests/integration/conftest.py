"""A real Label Studio for the integration tests (its own venv, 127.0.0.1, a throw-away data
dir), started once per session: `make test-integration`."""

import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

TOKEN = "star0integration0token0123456789abcdef0"


@pytest.fixture(scope="session")
def token() -> str:
    """The API token of the test server's user."""
    return TOKEN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    binary = os.environ.get("LABEL_STUDIO_BIN")
    if not binary:
        pytest.fail("LABEL_STUDIO_BIN is not set: run `make test-integration`")
    home = tmp_path_factory.mktemp("ls")
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(home),  # Label Studio writes ~/.config and ~/.local even for --help
        "LABEL_STUDIO_BASE_DATA_DIR": str(home / "data"),
        "LABEL_STUDIO_USERNAME": "annotator@example.com",
        "LABEL_STUDIO_PASSWORD": "annotator-password",
        "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # fixed when the org is created
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "COLLECT_ANALYTICS": "false",
        "LATEST_VERSION_CHECK": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
    }
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(
        [
            binary,
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(home / "data"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300  # the first start runs the database migrations (~1 min)
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                if b"UP" in r.read():
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("Label Studio did not start:\n" + (home / "server.log").read_text()[-2000:])
        time.sleep(1)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    log.close()
