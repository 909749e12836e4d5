"""Compression recipes (YAML or TOML): the settings of every pipeline stage, Distiller/SparseML style.

Per-layer settings (``sparsity``, ``quality``, ``bits``, ``index_bits``) are a single value or a
mapping whose keys are layer names, glob patterns, ``depthwise``/``pointwise``, ``conv``/``fc`` or
``default``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .prune import ESTIMATORS, METHODS, SCHEDULES, SCOPES
from .quantize import INITS
from .training import TrainConfig


@dataclass
class ObdSettings:
    """How OBD estimates the Hessian diagonal (see :mod:`deepcompress.prune.obd`)."""

    estimator: str = "gauss-newton"  # gauss-newton | hutchinson
    batches: int = 8  # training batches averaged over
    batch_size: int = 64
    probes: int = 1  # Rademacher vectors per batch (Hutchinson)


@dataclass
class AgpSettings:
    """Gradual pruning (Zhu & Gupta 2017) during the ``retrain`` run."""

    initial_sparsity: float = 0.0  # s_i at t0
    begin: float = 0.0  # t0, as a fraction of the retraining steps
    end: float = 0.75  # t0 + nΔt, as a fraction of the retraining steps
    frequency: int = 100  # Δt, optimiser steps between mask updates


@dataclass
class PruneStage:
    method: str = "magnitude"  # magnitude | obd | random
    sparsity: Any = None  # final per-layer sparsity targets (one number with scope: global)
    quality: Any = None  # or Han's threshold rule: |w| < quality × std
    rounds: int = 1  # prune → retrain iterations reaching the targets (schedule: iterative)
    retrain: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=0))
    schedule: str = "iterative"  # oneshot | iterative | agp
    scope: str = "layer"  # layer | global
    obd: ObdSettings = field(default_factory=ObdSettings)
    agp: AgpSettings = field(default_factory=AgpSettings)


@dataclass
class MixedSettings:
    """Bits per layer chosen for a size target (see :mod:`deepcompress.quantize.mixed`)."""

    average_bits: float | None = None  # size target: index bits per non-zero weight, averaged over all layers
    max_drop: float | None = None  # or accuracy target: validation accuracy each layer alone may cost
    candidates: list[int] = field(default_factory=lambda: [2, 3, 4, 5, 6, 8])
    estimator: str = "none"  # Hessian diagonal weighting the error: none (plain WCSS) | gauss-newton | hutchinson
    batches: int = 4  # training batches the Hessian diagonal is averaged over
    batch_size: int = 32


@dataclass
class QuantizeStage:
    bits: Any = field(default_factory=lambda: {"conv": 8, "fc": 5})
    init: str = "linear"
    max_iter: int = 300
    relocate_empty: bool = False  # move empty clusters onto outlying weights (scikit-learn style)
    fold_bn: bool | str = False  # true: fold BatchNorm into the convs first; "affine": statistics into γ, β
    mixed: MixedSettings | None = None  # choose the bits per layer (replaces ``bits``)
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=0))


@dataclass
class EncodeStage:
    index_bits: Any = field(default_factory=lambda: {"conv": 8, "fc": 5})
    raw_dtype: str = "float32"
    codebook_dtype: str = "float32"


@dataclass
class Recipe:
    """Every setting of a compression run."""

    model: str = "lenet-300-100"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneStage | None = field(default_factory=PruneStage)
    quantize: QuantizeStage | None = field(default_factory=QuantizeStage)
    encode: EncodeStage = field(default_factory=EncodeStage)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bad(section: str, keys: set[str], known: set[str]) -> None:
    if keys - known:
        raise ValueError(f"recipe section {section!r}: unknown key(s) {sorted(keys - known)}; "
                         f"known: {sorted(known)}")


def _check_fraction(value: Any, what: str) -> None:
    values = value.values() if isinstance(value, dict) else [value]
    for v in values:
        if v is not None and not (isinstance(v, (int, float)) and 0 <= v < 1):
            raise ValueError(f"{what} must be in [0, 1), got {v!r}")


def _check_bits(value: Any, what: str, allow_auto: bool = False) -> None:
    values = value.values() if isinstance(value, dict) else [value]
    for v in values:
        if allow_auto and v == "auto":
            continue
        if not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16):
            raise ValueError(f"{what} must be integers in 1..16{' or auto' if allow_auto else ''}, got {v!r}")


def _settings(cls: type, d: Any, section: str) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"recipe section {section!r} must be a mapping, got {d!r}")
    _bad(section, set(d), set(cls.__dataclass_fields__))
    return cls(**d)


def _prune_stage(p: dict[str, Any]) -> PruneStage:
    _bad("prune", set(p), set(PruneStage.__dataclass_fields__))
    st = PruneStage(method=p.get("method", "magnitude"), sparsity=p.get("sparsity"), quality=p.get("quality"),
                    rounds=int(p.get("rounds", 1)),
                    retrain=TrainConfig.from_dict({"epochs": 0, **(p.get("retrain") or {})}),
                    schedule=p.get("schedule", "iterative"), scope=p.get("scope", "layer"),
                    obd=_settings(ObdSettings, p.get("obd") or {}, "prune.obd"),
                    agp=_settings(AgpSettings, p.get("agp") or {}, "prune.agp"))
    for key, allowed in (("method", METHODS), ("schedule", SCHEDULES), ("scope", SCOPES)):
        if getattr(st, key) not in allowed:
            raise ValueError(f"prune.{key} must be one of {', '.join(allowed)}, got {getattr(st, key)!r}")
    if (st.sparsity is None) == (st.quality is None):
        raise ValueError("prune: give exactly one of 'sparsity' and 'quality'")
    _check_fraction(st.sparsity, "prune.sparsity")
    if st.quality is not None and (st.method != "magnitude" or st.schedule == "agp" or st.scope == "global"):
        raise ValueError("prune.quality (Han's |w| < quality × std rule) works only with method: magnitude, "
                         "scope: layer and schedule: oneshot or iterative; give prune.sparsity instead")
    if st.scope == "global" and isinstance(st.sparsity, dict):
        raise ValueError("prune.scope: global ranks all layers against one threshold, so prune.sparsity must be "
                         f"one number, got a per-layer mapping {st.sparsity!r}")
    if st.rounds < 1:
        raise ValueError(f"prune.rounds must be >= 1, got {st.rounds}")
    if st.schedule != "iterative" and "rounds" in p and st.rounds != 1:
        raise ValueError(f"prune.rounds applies to schedule: iterative only (schedule is {st.schedule})")
    if st.obd != ObdSettings() and st.method != "obd":
        raise ValueError(f"prune.obd settings are used with method: obd only (method is {st.method})")
    if st.agp != AgpSettings() and st.schedule != "agp":
        raise ValueError(f"prune.agp settings are used with schedule: agp only (schedule is {st.schedule})")
    if st.obd.estimator not in ESTIMATORS:
        raise ValueError(f"prune.obd.estimator must be one of {', '.join(ESTIMATORS)}, got {st.obd.estimator!r}")
    for key in ("batches", "batch_size", "probes"):
        v = getattr(st.obd, key)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise ValueError(f"prune.obd.{key} must be an integer >= 1, got {v!r}")
    a = st.agp
    _check_fraction(a.initial_sparsity, "prune.agp.initial_sparsity")
    if not (isinstance(a.begin, (int, float)) and isinstance(a.end, (int, float)) and 0 <= a.begin < a.end <= 1):
        raise ValueError(f"prune.agp: need 0 <= begin < end <= 1 (fractions of the retraining steps), "
                         f"got begin={a.begin!r}, end={a.end!r}")
    if not (isinstance(a.frequency, int) and not isinstance(a.frequency, bool) and a.frequency >= 1):
        raise ValueError(f"prune.agp.frequency must be an integer >= 1 (optimiser steps), got {a.frequency!r}")
    if st.schedule == "agp" and st.retrain.epochs < 1:
        raise ValueError("prune.schedule: agp prunes during retraining, so prune.retrain.epochs must be >= 1")
    return st


def _mixed(d: Any) -> MixedSettings:
    m = _settings(MixedSettings, d, "quantize.mixed")
    if (m.average_bits is None) == (m.max_drop is None):
        raise ValueError("quantize.mixed: give exactly one of average_bits (a size target) and max_drop "
                         "(an accuracy target)")
    if m.average_bits is not None and not (isinstance(m.average_bits, (int, float))
                                           and not isinstance(m.average_bits, bool) and 1 <= m.average_bits <= 16):
        raise ValueError(f"quantize.mixed.average_bits must be a number in 1..16, got {m.average_bits!r}")
    if m.max_drop is not None and not (isinstance(m.max_drop, (int, float)) and not isinstance(m.max_drop, bool)
                                       and 0 <= m.max_drop < 1):
        raise ValueError(f"quantize.mixed.max_drop must be a fraction in [0, 1), got {m.max_drop!r}")
    if not isinstance(m.candidates, list) or not m.candidates:
        raise ValueError(f"quantize.mixed.candidates must be a non-empty list of bit widths, got {m.candidates!r}")
    _check_bits(dict(enumerate(m.candidates)), "quantize.mixed.candidates")
    if m.estimator not in (*ESTIMATORS, "none"):
        raise ValueError(f"quantize.mixed.estimator must be one of {', '.join(ESTIMATORS)}, none; "
                         f"got {m.estimator!r}")
    for key in ("batches", "batch_size"):
        v = getattr(m, key)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise ValueError(f"quantize.mixed.{key} must be an integer >= 1, got {v!r}")
    return m


def recipe_from_dict(d: dict[str, Any]) -> Recipe:
    """Build and validate a :class:`Recipe` from a parsed mapping (missing sections get defaults)."""
    if not isinstance(d, dict):
        raise ValueError("a recipe must be a mapping")
    d = dict(d)
    _bad("top level", set(d), {"model", "model_kwargs", "seed", "train", "prune", "quantize", "encode"})
    r = Recipe(model=d.get("model", "lenet-300-100"), model_kwargs=dict(d.get("model_kwargs") or {}),
               seed=int(d.get("seed", 0)), train=TrainConfig.from_dict(d.get("train")))
    if "prune" in d and d["prune"] is None:
        r.prune = None
    elif "prune" in d:
        r.prune = _prune_stage(dict(d["prune"] or {}))
    else:
        r.prune = None
    if "quantize" in d and d["quantize"] is None:
        r.quantize = None
    else:
        q = dict(d.get("quantize") or {})
        _bad("quantize", set(q), {"bits", "init", "max_iter", "relocate_empty", "fold_bn", "mixed", "finetune"})
        r.quantize = QuantizeStage(bits=q.get("bits", {"conv": 8, "fc": 5}), init=q.get("init", "linear"),
                                   max_iter=int(q.get("max_iter", 300)),
                                   relocate_empty=bool(q.get("relocate_empty", False)),
                                   fold_bn=q.get("fold_bn", False),
                                   mixed=_mixed(q["mixed"]) if q.get("mixed") is not None else None,
                                   finetune=TrainConfig.from_dict({"epochs": 0, **(q.get("finetune") or {})}))
        _check_bits(r.quantize.bits, "quantize.bits")
        if r.quantize.fold_bn not in (True, False, "affine"):
            raise ValueError(f"quantize.fold_bn must be true, false or affine, got {r.quantize.fold_bn!r}")
        if r.quantize.init not in INITS:
            raise ValueError(f"quantize.init must be one of {', '.join(INITS)}, got {r.quantize.init!r}")
    e = dict(d.get("encode") or {})
    _bad("encode", set(e), {"index_bits", "raw_dtype", "codebook_dtype"})
    r.encode = EncodeStage(index_bits=e.get("index_bits", {"conv": 8, "fc": 5}),
                           raw_dtype=e.get("raw_dtype", "float32"),
                           codebook_dtype=e.get("codebook_dtype", "float32"))
    _check_bits(r.encode.index_bits, "encode.index_bits", allow_auto=True)
    for key in ("raw_dtype", "codebook_dtype"):
        if getattr(r.encode, key) not in ("float32", "float16"):
            raise ValueError(f"encode.{key} must be float32 or float16, got {getattr(r.encode, key)!r}")
    return r


def load_recipe(path: str | os.PathLike, model: str | None = None) -> Recipe:
    """Read a recipe from a ``.yaml``/``.yml`` or ``.toml`` file.

    With ``model``, the recipe is for that model: one naming another model is refused (its layer names
    and settings belong to that model), one naming none gets ``model``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        d = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: cannot parse recipe: {e}") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{path}: cannot parse recipe: {getattr(e, 'problem', None) or e}{where}") from e
    d = d or {}
    if model is not None and isinstance(d, dict):
        if d.setdefault("model", model) != model:
            raise ValueError(f"{path} is a recipe for model {d['model']!r}, but the model is {model!r}; "
                             "use a recipe for this model (or one that names no model)")
    try:
        return recipe_from_dict(d)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from e


RECIPES_DIR = Path(__file__).parent / "recipes"


def builtin_recipe(name: str) -> Recipe:
    """A recipe shipped with the package (``lenet-300-100``, ``lenet-5``, ``demo``)."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
        raise ValueError(f"no built-in recipe {name!r}; built-in recipes: {', '.join(known)}")
    return load_recipe(path)
