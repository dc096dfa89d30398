"""Shared fixtures: a repo-local model cache, the tiny random Llama (loaded once), a real Label
Studio server for the integration tests, and helpers."""

import dataclasses
import hashlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

# Built models (the converted embedded model, the tiny test model) are cached inside the
# checkout, so tests never touch the user's cache and later runs skip the conversion.
os.environ.setdefault("STAR_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "star"))

# Under pytest-xdist each worker, and every process it starts, gets its share of the cores:
# the tiny models gain little from a second thread, and oversubscribed workers lose more.
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
if (workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, CORES // workers)))


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one worker per core this process may use, at most 4 (each loads models and
    starts runs of its own; more would trade memory for little)."""
    return max(1, min(CORES, 4))


def tree_hash(path: Path) -> str:
    """A digest of every file under `path` (names and bytes; the lock file left out): equal
    before and after a refused command means it changed nothing."""
    digest = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and p.name != ".lock":
            digest.update(str(p.relative_to(path)).encode() + p.read_bytes())
    return digest.hexdigest()


@pytest.fixture(name="tree_hash")
def tree_hash_fixture():
    """`tree_hash` for test folders that cannot import this conftest by name."""
    return tree_hash


def flags(**options) -> list[str]:
    """Command-line flags from keywords: flags(init_size=4) == ["--init-size", "4"]."""
    return [x for k, v in options.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def signal_settings(**changes):
    """SignalSettings of a small gold-target run, with `changes`."""
    from star.engine.signals import SignalSettings

    settings = SignalSettings(
        target="gold",
        length_norm=False,
        mc_passes=1,
        mc_top=None,
        star_measure="pe",
        batch_tokens=64,
        mc_seed=5,
        merge=False,
        answer_kind="greedy:4",
        start_id=1,
    )
    return dataclasses.replace(settings, **changes)


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the seeded tiny Llama with the SmolLM2 tokenizer, fp32."""
    from star.config import ModelConfig
    from star.engine import model as models

    return models.load(ModelConfig(name=models.TINY, dtype="float32"))


@pytest.fixture(autouse=True)
def own_signal_cache(tmp_path, monkeypatch):
    """Base-model signals persist across runs by design; each test starts with none."""
    monkeypatch.setenv("STAR_SIGNAL_CACHE", str(tmp_path / "signal-cache"))


# ---------------------------------------------------------------- a real Label Studio
# For tests/integration (`make test-integration`): its own venv, 127.0.0.1, a throw-away data
# dir, started once per session and only when a test asks for it. Here, not in a conftest of
# that folder: a second module named conftest would hide this one's helpers.
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
