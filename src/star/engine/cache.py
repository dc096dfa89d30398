"""Base-model signals kept across runs: computed once per example and model, then shared by
every run, seed, strategy and sweep on the machine.

The base model never changes, so its scores (and its own greedy answers) for an example depend
only on the weights, the dtype, the tokens and how they are measured. Layout:

    $STAR_CACHE/signals/<namespace>/<random name>.safetensors  ($STAR_SIGNAL_CACHE/... if set)

`namespace` is a hash of everything an entry depends on besides its tokens (weights
fingerprint, dtype, signal kind, target mode, length normalisation, answer length); an entry's
key hashes the namespace with its prompt and target tokens. A file holds n entries as tensors
with a first dimension of n, their keys and a sha256 of the tensor bytes in its metadata. Files
are written to a temporary name and renamed, and never modified: two sweeps writing at once
each add their own file, and a reader sees whole files only. A file that does not load or does
not match its checksum (cut short, damaged) is removed and its entries are computed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from star.engine import distributed

log = logging.getLogger(__name__)

VERSION = 1  # bump when what an entry means changes; old entries are then never read


def signal_root(model_cache: Path) -> Path:
    """Where signals are kept: $STAR_SIGNAL_CACHE, else `signals` in the model cache."""
    return Path(os.environ.get("STAR_SIGNAL_CACHE") or model_cache / "signals").expanduser()


def weights_fingerprint(model) -> str:
    """sha256 of the base weights (names, dtypes, shapes, bytes); LoRA parameters excluded.

    Hashes the tensors in place (no copy): ~1 s for SmolLM2-135M in fp32.
    """
    h = hashlib.sha256()
    weights = {
        # the same name with or without a PEFT wrapper around the model
        name.removeprefix("base_model.model.").replace(".base_layer.", "."): p
        for name, p in model.state_dict().items()
        if "lora_" not in name
    }
    for name, p in sorted(weights.items()):
        t = p.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().data if t.numel() else b"")
    return h.hexdigest()


def namespace(**parts: object) -> str:
    """The hash of what every entry of one kind depends on besides its tokens."""
    text = json.dumps({"version": VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def entry_key(space: str, prompt_ids: Sequence[int], target_ids: Sequence[int]) -> str:
    text = json.dumps([space, list(prompt_ids), list(target_ids)])
    return hashlib.sha256(text.encode()).hexdigest()


def _checksum(columns: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(columns):
        t = columns[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().data if t.numel() else b"")
    return h.hexdigest()


class SignalCache:
    """Entries of one namespace: rows of named tensors, looked up by key; kept in this
    process only when `root` is None (the cache switched off: nothing outlives the run)."""

    def __init__(self, root: Path | None, space: str):
        self.space = space
        self.folder = root / space if root is not None else None
        self._rows: dict[str, dict[str, torch.Tensor]] | None = None
        self._seen: set[str] = set()  # files already read

    def key(self, prompt_ids: Sequence[int], target_ids: Sequence[int]) -> str:
        return entry_key(self.space, prompt_ids, target_ids)

    def rows(self) -> dict[str, dict[str, torch.Tensor]]:
        """Every valid entry on disk (files added since the last call are read too)."""
        if self._rows is None:
            self._rows = {}
        if self.folder is not None and self.folder.is_dir():
            for path in sorted(self.folder.glob("*.safetensors")):
                if path.name not in self._seen:
                    self._read(path)
        return self._rows

    def _read(self, path: Path) -> None:
        self._seen.add(path.name)
        try:
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
                columns = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
            keys = json.loads(meta["keys"])
            if meta.get("sha256") != _checksum(columns) or any(
                len(c) != len(keys) for c in columns.values()
            ):
                raise ValueError("checksum mismatch")
        except (OSError, ValueError, KeyError, SafetensorError, json.JSONDecodeError) as e:
            log.warning("signal cache: %s is damaged (%s); its entries will be recomputed", path, e)
            path.unlink(missing_ok=True)
            return
        assert self._rows is not None
        for i, key in enumerate(keys):
            self._rows[key] = {name: c[i] for name, c in columns.items()}

    def put(self, keys: list[str], columns: dict[str, torch.Tensor], write: bool = True) -> None:
        """Add n entries: `columns` maps a name to an (n, ...) tensor; `write=False` keeps
        them in this process only."""
        if not keys:
            return
        columns = {k: v.detach().cpu().contiguous() for k, v in columns.items()}
        rows = self.rows()
        for i, key in enumerate(keys):
            rows[key] = {name: c[i] for name, c in columns.items()}
        if self.folder is None or not write:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self.folder)
        os.close(fd)
        try:
            meta = {"keys": json.dumps(keys), "sha256": _checksum(columns)}
            save_file(columns, tmp, metadata=meta)
            final = Path(tmp).with_name(Path(tmp).name[1:-4] + ".safetensors")
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._seen.add(final.name)

    def fetch(
        self, keys: list[str], compute: Callable[[list[int]], dict[str, torch.Tensor]]
    ) -> list[dict[str, torch.Tensor]]:
        """The entry of every key, in order; `compute(missing positions)` fills the rest
        (returning (m, ...) columns for those m positions), which are then stored."""
        rows = self.rows()
        # under several processes computing is collective: the main process decides what is
        # missing, and only it writes (the others keep the same rows in memory)
        missing = distributed.from_main([i for i, k in enumerate(keys) if k not in rows])
        if missing:
            fresh = compute(missing)
            unique = {keys[i]: j for j, i in enumerate(missing)}  # a repeated key stored once
            picks = torch.tensor(list(unique.values()), dtype=torch.long)
            columns = {name: c[picks] for name, c in fresh.items()}
            self.put(list(unique), columns, write=distributed.is_main())
            log.info("signal cache: %d of %d entries computed", len(missing), len(keys))
        rows = self.rows()  # files another process wrote meanwhile are read as well
        return [rows[k] for k in keys]
