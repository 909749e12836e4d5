"""Crash-safe, resumable pipeline runs: the state a killed run continues from.

A run with a state folder (``OUT.dcz.state/`` beside the output) writes ``state.safetensors`` after
every stage, every prune round and every training epoch, atomically (temp file + rename, so a kill
leaves the previous checkpoint intact). The one file holds, as safetensors tensors plus a JSON
journal in its metadata (no pickle):

- the model's state_dict, with the structure needed to rebuild it: pruned layers (``weight_orig`` +
  ``weight_mask`` of :mod:`torch.nn.utils.prune`) and weight-shared layers (``weight_codebook`` +
  ``weight_index`` + the forward pre-hook of :mod:`deepcompress.quantize.sharing`);
- the stages and rounds completed, the results so far and stage-internal progress;
- inside a training run: the optimiser and grad-scaler state, the epoch, the training history, the
  DataLoader shuffle generator (a :class:`~deepcompress.training.FitState`) and what the stage
  computed before training;
- the global random states (torch, CUDA, numpy, Python) and any named generator the pipeline tracks;
- a fingerprint of the recipe, the data and the starting model: resuming a different run is refused.

Resuming restores the model and random states and continues at the next epoch, so a run killed at
any point and resumed writes the same .dcz, byte for byte, as an uninterrupted one (on the CPU; CUDA
kernels are not bit-reproducible in general).

Adding a stage: run it through ``Pipeline._stage(name, model, fn)`` and it is checkpointed under its
name and skipped by a resumed run once done; its training runs go through ``Pipeline._fit`` with a
key of their own. A stage that changes the model's modules (not only their values, as pruning masks
and weight sharing do, which :meth:`RunState.save` records and :meth:`RunState.restore` rebuilds) must
be rebuilt in :meth:`RunState.restore` too before the saved state_dict can be loaded.

Test hook: when the environment variable ``DEEPCOMPRESS_TEST_KILL_AT`` names a checkpoint (``baseline@2``
= after epoch 2 of baseline training, ``prune.1`` = after prune round 1, ``quantize.finetune@1``,
``prune``, ``quantize``, …) or ``encode`` (the .dcz written, before it is reloaded), the process kills
itself there with SIGKILL; the crash-safety tests use it to interrupt runs at exact places.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import Dataset

from ._io import atomic_path
from .checkpoint import SAFETENSORS_ERRORS, read_safetensors
from .models import model_info
from .models.fold_bn import fold_structure
from .prune import apply_mask
from .quantize.sharing import install_shared, is_shared
from .training import FitState, History, rng_state, set_rng_state

KILL_AT_ENV = "DEEPCOMPRESS_TEST_KILL_AT"
STATE_FILE = "state.safetensors"
FORMAT = "deepcompress-runstate"


class RunStateError(ValueError):
    """A run state is unreadable, or belongs to another run (recipe, data or model differ)."""


def kill_point(name: str) -> None:
    """Test hook: SIGKILL this process when ``DEEPCOMPRESS_TEST_KILL_AT`` equals ``name``."""
    if os.environ.get(KILL_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def state_dir_for(out: str | os.PathLike) -> Path:
    """Where the run state of the run writing ``out`` lives: ``OUT.state/`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".state")


def _sha256(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fingerprint(recipe: dict[str, Any], train: Dataset, test: Dataset, model: nn.Module,
                train_baseline: bool) -> dict[str, Any]:
    """What identifies a run: the recipe, the data (sizes and a hash of test samples at the start, middle
    and end, not its path, which may be spelt differently; training samples may be augmented randomly)
    and the starting model's weights."""
    n_train, n_test = len(train), len(test)  # type: ignore[arg-type]
    samples = {}
    for i in sorted({0, n_test // 2, n_test - 1} if n_test else set()):
        x, y = test[i]
        samples[f"{i}.x"], samples[f"{i}.y"] = torch.as_tensor(x), torch.as_tensor(y)
    return {"recipe": recipe, "train_baseline": train_baseline,
            "data": {"train": n_train, "test": n_test, "sha256": _sha256(samples)},
            "model": {"class": type(model).__name__, "sha256": _sha256(model.state_dict())}}


def _differences(saved: Any, now: Any, path: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(now, dict):
        return [d for k in sorted(set(saved) | set(now), key=str)
                for d in _differences(saved.get(k), now.get(k), f"{path}.{k}" if path else str(k))]
    return [] if saved == now else [f"{path} ({json.dumps(saved)} saved, {json.dumps(now)} now)"]


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able copy of ``obj`` with every tensor moved into ``tensors`` (replaced by a reference)."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().clone(memory_format=torch.contiguous_format)  # channels-last too
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _flatten(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, _flatten(v, f"{prefix}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__items__"]}
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def _fit_to_dict(s: FitState) -> dict[str, Any]:
    return {"epoch": s.epoch, "phase": s.phase, "optimizer": s.optimizer, "scaler": s.scaler,
            "history": s.history.to_dict(), "best": s.best, "bad_epochs": s.bad_epochs, "seconds": s.seconds,
            "rng": s.rng, "loader_rng": s.loader_rng, "best_state": s.best_state}


def _fit_from_dict(d: dict[str, Any]) -> FitState:
    return FitState(**{**d, "history": History(**d["history"])})


class RunState:
    """The checkpoints of one pipeline run, in ``folder``; see the module docstring.

    Open it with :meth:`open`, rebuild the model with :meth:`restore`, skip what :meth:`done` says is
    done, continue the training run :meth:`fit_resume` returns, and :meth:`save` after every step.
    """

    def __init__(self, folder: str | os.PathLike, fingerprint: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=float))
        self.completed: list[str] = []
        self.results: dict[str, Any] = {}
        self.progress: dict[str, Any] = {}  # stage-internal results so far (e.g. prune rounds)
        self.last: str | None = None  # the checkpoint the state was loaded from
        self._saved: dict[str, Any] | None = None  # the loaded journal, tensors resolved
        self._generators: dict[str, torch.Generator] = {}

    @property
    def path(self) -> Path:
        return self.folder / STATE_FILE

    @classmethod
    def open(cls, folder: str | os.PathLike, fingerprint: dict[str, Any], resume: bool) -> RunState:
        """With ``resume``, the state saved in ``folder`` (checked against ``fingerprint``) when there is
        one; otherwise a fresh state, and anything saved in ``folder`` is deleted."""
        state = cls(folder, fingerprint)
        if resume and state.path.exists():
            state._load()
        elif not resume:
            state.clear()
        return state

    @property
    def resumed(self) -> bool:
        """Whether this run continues a saved one."""
        return self.last is not None

    def _load(self) -> None:
        where = self.path
        try:
            meta, tensors = read_safetensors(where)
        except SAFETENSORS_ERRORS as e:
            raise RunStateError(f"{where}: unreadable run state ({e}); delete {self.folder} to start over") from e
        if meta.get("format") != FORMAT:
            raise RunStateError(f"{where}: not a deepcompress run state; delete {self.folder} to start over")
        try:
            saved = _unflatten(json.loads(meta["state"]), tensors)
            saved_fingerprint, completed = saved["fingerprint"], list(saved["completed"])
            results, progress, last = dict(saved["results"]), dict(saved["progress"]), saved["last"]
            missing = {"model", "structure", "rng", "generators", "fit"} - set(saved)
            if missing:
                raise KeyError(", ".join(sorted(missing)))
        except (KeyError, TypeError, ValueError, RecursionError) as e:
            raise RunStateError(f"{where}: corrupt run state ({type(e).__name__}: {e}); "
                                f"delete {self.folder} to start over") from e
        diffs = _differences(saved_fingerprint, self.fingerprint)
        if diffs:
            raise RunStateError(f"{self.folder} holds a different run, cannot resume: " + "; ".join(diffs[:3])
                                + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
                                + "; run without --resume to start over")
        self.completed, self.results, self.progress, self.last = completed, results, progress, last
        self._saved = saved

    def restore(self, model: nn.Module) -> None:
        """Give the freshly built starting ``model`` the saved structure and weights, and restore the
        random states; does nothing for a fresh run."""
        if self._saved is None:
            return
        s = self._saved
        layers = dict(model.named_modules())
        state = s["model"]
        try:
            if s["structure"].get("folded"):
                fold_structure(model)
            for name in s["structure"]["pruned"]:
                apply_mask(layers[name], state[f"{name}.weight_mask"])
            for name in s["structure"]["shared"]:
                install_shared(layers[name], state[f"{name}.weight_codebook"], state[f"{name}.weight_index"])
            model.load_state_dict(state, strict=True)
            set_rng_state(s["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise RunStateError(f"{self.path}: the saved model does not fit this model ({e}); "
                                f"delete {self.folder} to start over") from e

    def done(self, key: str) -> bool:
        """Whether the step ``key`` finished before the run was interrupted."""
        return key in self.completed

    def fit_resume(self, key: str) -> tuple[FitState, dict[str, Any]] | None:
        """The training run ``key`` was interrupted in: its :class:`FitState` and what the stage computed
        before training (the ``extra`` given to :meth:`save`); None unless resuming inside ``key``."""
        fit = self._saved["fit"] if self._saved is not None else None
        try:
            if fit is None or fit["key"] != key:
                return None
            return _fit_from_dict(fit["state"]), fit["extra"]
        except (KeyError, TypeError) as e:
            raise RunStateError(f"{self.path}: corrupt training state ({e}); delete {self.folder} to start over") \
                from e

    def track(self, name: str, generator: torch.Generator) -> None:
        """Save ``generator``'s state with every checkpoint; when resuming, set it to the saved state."""
        saved = self._saved["generators"].get(name) if self._saved is not None else None
        if saved is not None:
            generator.set_state(saved)
        self._generators[name] = generator

    def save(self, key: str, model: nn.Module, results: dict[str, Any], fit: FitState | None = None,
             extra: dict[str, Any] | None = None) -> None:
        """Checkpoint after step ``key`` (or, with ``fit``, after an epoch of the training run ``key``)."""
        if fit is None:
            self.completed.append(key)
        point = key if fit is None else f"{key}@{fit.epoch}"
        modules = dict(model.named_modules())
        journal = {
            "fingerprint": self.fingerprint, "completed": self.completed, "last": point,
            "results": json.loads(json.dumps(results, default=float)),
            "progress": json.loads(json.dumps(self.progress, default=float)),
            "structure": {"pruned": [n for n, m in modules.items()
                                     if "weight_orig" in m._parameters and hasattr(m, "weight_mask")],
                          "shared": [n for n, m in modules.items() if is_shared(m)],
                          "folded": bool(model_info(model).kwargs.get("fold_bn"))},
            "model": model.state_dict(), "rng": rng_state(),
            "generators": {n: g.get_state() for n, g in self._generators.items()},
            "fit": None if fit is None else {"key": key, "state": _fit_to_dict(fit),
                                             "extra": json.loads(json.dumps(extra or {}, default=float))},
        }
        tensors: dict[str, torch.Tensor] = {}
        meta = {"format": FORMAT, "version": "1", "state": json.dumps(_flatten(journal, "", tensors))}
        self.folder.mkdir(exist_ok=True)
        with atomic_path(self.path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
            with open(tmp, "rb") as f:  # on disk before it replaces the previous checkpoint
                os.fsync(f.fileno())
        self._saved = None  # a resumed run has moved past what it loaded
        kill_point(point)

    def clear(self) -> None:
        """Delete the state folder (after the run has finished)."""
        shutil.rmtree(self.folder, ignore_errors=True)
