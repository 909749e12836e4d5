"""The three-stage Deep Compression pipeline: prune → trained quantization → Huffman-coded .dcz.

    train (or load) baseline → [prune → retrain] × rounds → k-means weight sharing → centroid
    fine-tuning → encode .dcz → reload the model from the file → evaluate it.

With a state folder, :meth:`Pipeline.run` checkpoints after every stage, prune round and training
epoch, and ``resume`` continues a killed run from there (see :mod:`deepcompress.runstate`).
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ._io import atomic_write_text
from .checkpoint import load_checkpoint, save_checkpoint
from .data import DIGITS, is_mnist_folder, open_train_test
from .finetune import prepare_data
from .format.dcz import read_dcz
from .format.model import model_from_dcz, round_for_storage, save_model
from .metrics.energy import EnergyMeter
from .models import create_model, model_info
from .models.fold_bn import fold_batchnorm, normalize_batchnorm
from .prune import (
    AGP,
    PruningMethod,
    apply_mask,
    check_layer_names,
    current_mask,
    current_weight,
    hessian_diagonal,
    iterative_sparsity,
    make_method,
    obd_saliency,
    prunable_layers,
    prune_model,
    remove_masks,
    resolve_layer_setting,
    scale_targets,
    sparsity_report,
)
from .prune.schedule import Targets
from .quantize import share_layer
from .quantize.mixed import bits_for_accuracy, choose_bits
from .quantize.sharing import shared_state
from .recipe import PruneStage, QuantizeStage, Recipe
from .report import dense_bytes, layer_rows, markdown_table, totals
from .runstate import STATE_FILE, RunState, fingerprint, kill_point
from .training import TrainConfig, evaluate, fit, is_main_process, make_loader, resolve_device, set_seed


@dataclass
class Data:
    """Train and test sets of one task (images are evaluated in smaller batches)."""

    train: Dataset
    test: Dataset
    name: str = ""
    eval_batch_size: int = 1000
    val: Dataset | None = None  # held-out training data for choices made during the run


def load_data(spec: str | os.PathLike, model: nn.Module, seed: int = 0) -> Data:
    """The pipeline's data for ``model``: an MNIST IDX folder or "digits" (train / test splits), or an
    image folder split as ``deepcompress train`` splits it (``test_`` images are the test split), with
    the model's input size and normalisation and training-time augmentation."""
    if str(spec) == DIGITS or is_mnist_folder(spec):
        train, test = open_train_test(spec)
        return Data(train, test, str(spec))
    size = model_info(model).input_size
    prep = prepare_data(spec, model, size[-1] if size else None, seed=seed)
    if prep.test is None:
        raise ValueError(f"{spec}: no test images to measure the compressed model on")
    return Data(prep.train, prep.test, str(spec), eval_batch_size=32, val=prep.val)


def _loader(ds: Dataset, batch_size: int, shuffle: bool, seed: int, distributed: bool | None = None) -> DataLoader:
    """A seeded loader; under torchrun a shuffled one is sharded across the ranks unless ``distributed``
    is False (batches that every rank must see alike, e.g. for Hessian estimates)."""
    return make_loader(ds, batch_size, shuffle=shuffle, seed=seed, distributed=distributed)


class Pipeline:
    """Runs a :class:`Recipe` on a model and data, logging every stage into ``self.results``."""

    def __init__(self, recipe: Recipe, data: Data, device: str | torch.device | None = None,
                 progress: bool = True) -> None:
        self.recipe, self.data = recipe, data
        self.device = resolve_device(device)
        self.progress = progress
        self.results: dict[str, Any] = {"model": recipe.model, "data": data.name, "recipe": recipe.to_dict(),
                                        "device": str(self.device), "seconds": {}}
        self._test = _loader(data.test, data.eval_batch_size, False, 0)
        self.state: RunState | None = None
        self.teacher: nn.Module | None = None  # the dense model, when a stage distils from it

    def build_model(self) -> nn.Module:
        """The recipe's model, freshly initialised from the recipe's seed."""
        set_seed(self.recipe.seed)
        return create_model(self.recipe.model, **self.recipe.model_kwargs)

    def _eval(self, model: nn.Module) -> dict[str, float]:
        return evaluate(model, self._test, self.device)

    def _fit(self, model: nn.Module, cfg: TrainConfig, desc: str, key: str,
             extra: Callable[[], dict[str, Any]] | None = None, loader: DataLoader | None = None,
             after_step: Callable[[], None] | None = None) -> None:
        """Train, checkpointing every epoch as ``key`` (with ``extra()``, what the stage computed before
        training) and continuing from the saved epoch when the run resumes inside ``key``."""
        if not cfg.epochs:
            return
        loader = loader or _loader(self.data.train, cfg.batch_size, True, cfg.seed)
        state = self.state
        resume = state.fit_resume(key) if state is not None else None
        checkpoint = None if state is None else (
            lambda fs: state.save(key, model, self.results, fs, extra() if extra is not None else None))
        fit(model, loader, cfg, device=self.device, after_step=after_step, desc=desc, progress=self.progress,
            on_checkpoint=checkpoint, resume=resume[0] if resume is not None else None, teacher=self.teacher)

    def _resumed(self, key: str) -> dict[str, Any] | None:
        """What the stage computed before training run ``key``, when resuming inside it; else None."""
        resume = self.state.fit_resume(key) if self.state is not None else None
        return resume[1] if resume is not None else None

    def _stage(self, name: str, model: nn.Module, run: Callable[[], object]) -> None:
        """Run a stage, unless a resumed run has finished it; then checkpoint the model and results."""
        if self.state is not None and self.state.done(name):
            return
        run()
        if self.state is not None:
            self.state.save(name, model, self.results)

    def _log(self, msg: str) -> None:
        if self.progress and is_main_process():
            print(msg, flush=True)

    # ------------------------------------------------------------------ stages
    def train_baseline(self, model: nn.Module) -> None:
        t = time.perf_counter()
        self._fit(model, self.recipe.train, "baseline", "baseline")
        m = self._eval(model)
        self.results["baseline"] = {**m, "seconds": time.perf_counter() - t}
        self._log(f"baseline: accuracy {m['accuracy']:.4f} (error {100 * m['error']:.2f}%)")

    def prune(self, model: nn.Module, stage: PruneStage) -> None:
        """Prune with the stage's method, scope and schedule (one-shot, iterative or AGP), retraining."""
        t = time.perf_counter()
        layers = prunable_layers(model)
        setting = stage.sparsity if stage.sparsity is not None else stage.quality
        check_layer_names(setting, layers, "prune.sparsity" if stage.sparsity is not None else "prune.quality")
        method = make_method(stage.method, self.recipe.seed)
        if self.state is not None and isinstance(getattr(method, "generator", None), torch.Generator):
            self.state.track("prune.method", method.generator)
        importance = self._importance_fn(model, stage) if method.needs_importance else None
        if stage.quality is not None:
            targets = None
        elif stage.scope == "global":
            targets = float(stage.sparsity)
        else:
            targets = {name: value for name, module in layers.items()
                       if (value := resolve_layer_setting(stage.sparsity, name, module)) is not None}
        if stage.schedule == "agp":
            rounds = [self._prune_agp(model, stage, method, targets, importance)]
        else:
            progress = self.state.progress if self.state is not None else {}
            rounds = progress.setdefault("prune_rounds", [])
            for r in range(1, stage.rounds + 1):
                key = f"prune.{r}"
                if self.state is not None and self.state.done(key):
                    continue
                resumed = self._resumed(key)
                if resumed is not None:
                    before = resumed["before"]
                elif targets is None:
                    for name, module in layers.items():
                        value = resolve_layer_setting(stage.quality, name, module)
                        if value is not None:  # recipe checks: quality comes with method magnitude
                            apply_mask(module, method.quality_mask(current_weight(module), current_mask(module),
                                                                   value))
                else:
                    prune_model(model, method,
                                scale_targets(targets, lambda s, r=r: iterative_sparsity(s, r, stage.rounds)),
                                importance() if importance is not None else None)
                if resumed is None:
                    before = self._eval(model)
                cfg = TrainConfig.from_dict({**stage.retrain.to_dict(), "seed": stage.retrain.seed + r})
                self._fit(model, cfg, f"retrain {r}/{stage.rounds}", key, lambda before=before: {"before": before})
                rounds.append(self._prune_record(model, r, before))
                self._log_round(rounds[-1], f"prune round {r}/{stage.rounds}")
                if self.state is not None:
                    self.state.save(key, model, self.results)
            progress.pop("prune_rounds")
        remove_masks(model)
        self.results["prune"] = {"rounds": rounds, "seconds": time.perf_counter() - t, **rounds[-1]}

    def _importance_fn(self, model: nn.Module, stage: PruneStage) -> Callable[[], dict[str, torch.Tensor]]:
        """OBD saliencies of the model's current weights, from a few training batches."""
        obd = stage.obd
        loader = _loader(self.data.train, obd.batch_size, True, self.recipe.seed, distributed=False)
        if self.state is not None:
            self.state.track("prune.obd", loader.generator)
        return lambda: obd_saliency(model, loader, obd.estimator, obd.batches, probes=obd.probes,
                                    seed=self.recipe.seed)

    def _prune_agp(self, model: nn.Module, stage: PruneStage, method: PruningMethod, targets: Targets,
                   importance: Callable[[], dict[str, torch.Tensor]] | None) -> dict[str, Any]:
        cfg = stage.retrain
        loader = _loader(self.data.train, cfg.batch_size, True, cfg.seed + 1)
        total = cfg.epochs * len(loader)
        a = stage.agp
        begin, end = int(a.begin * total), int(a.end * total)
        if end - begin < a.frequency:
            raise ValueError(f"prune.agp: {end - begin} optimiser steps between begin and end is fewer than "
                             f"frequency = {a.frequency}; lower the frequency or retrain longer")
        agp = AGP(model, method, targets, a.initial_sparsity, begin, end, a.frequency, importance)
        resumed = self._resumed("prune.agp")
        if resumed is None:
            agp.start()
            before = self._eval(model)
        else:
            before, agp.t, agp.history = resumed["before"], resumed["agp_t"], resumed["agp_history"]
        self._fit(model, cfg, "AGP retrain", "prune.agp",
                  lambda: {"before": before, "agp_t": agp.t, "agp_history": agp.history}, loader, agp.step)
        record = {**self._prune_record(model, 1, before), "agp_updates": agp.history}
        self._log_round(record, f"AGP ({len(agp.history)} mask updates over {total} steps)")
        return record

    def _prune_record(self, model: nn.Module, r: int, before: dict[str, float]) -> dict[str, Any]:
        after = self._eval(model)
        return {"round": r, "accuracy_pruned": before["accuracy"], "accuracy": after["accuracy"],
                "error": after["error"], "log_loss": after["log_loss"], "layers": sparsity_report(model)}

    def _log_round(self, record: dict[str, Any], what: str) -> None:
        self._log(f"{what}: " + ", ".join(f"{k} {100 * (1 - v['sparsity']):.1f}%" for k, v in record["layers"].items())
                  + f" kept; accuracy {record['accuracy_pruned']:.4f} → {record['accuracy']:.4f} after retraining")

    def fold_batchnorm(self, model: nn.Module, mode: bool | str = True) -> None:
        """Fold BatchNorm into the convolutions before them (their statistics become weights and a bias),
        or with ``mode="affine"`` only its statistics into its own scale and shift."""
        before = self._eval(model)
        pairs = normalize_batchnorm(model) if mode == "affine" else len(fold_batchnorm(model))
        after = self._eval(model)
        self.results["fold_bn"] = {"mode": "affine" if mode == "affine" else "conv", "pairs": pairs,
                                   "accuracy_before": before["accuracy"],
                                   "accuracy": after["accuracy"], "log_loss_before": before["log_loss"],
                                   "log_loss": after["log_loss"]}
        self._log(f"folded {pairs} BatchNorm layers ({self.results['fold_bn']['mode']}): accuracy "
                  f"{before['accuracy']:.4f} → {after['accuracy']:.4f}")

    def quantize(self, model: nn.Module, stage: QuantizeStage) -> None:
        t = time.perf_counter()
        remove_masks(model)
        resumed = self._resumed("quantize.finetune")
        if resumed is not None:
            per_layer, before, mixed = resumed["per_layer"], resumed["before"], resumed["mixed"]
        else:
            if stage.fold_bn:
                self.fold_batchnorm(model, stage.fold_bn)
            layers = prunable_layers(model)
            check_layer_names(stage.bits, layers, "quantize.bits")
            setting, mixed = stage.bits, None
            if stage.mixed is not None:
                mixed = self._mixed_bits(model, stage)
                setting = mixed["bits"]
            per_layer = {}
            for name, module in layers.items():
                bits = resolve_layer_setting(setting, name, module)
                if bits is None:
                    continue
                per_layer[name] = {"bits": bits, **share_layer(module, bits, stage.init, self.recipe.seed,
                                                               stage.max_iter, stage.relocate_empty)}
            before = self._eval(model)
        finetune = stage.finetune
        if stage.fold_bn == "affine":  # the folded statistics must not be replaced by batch statistics
            finetune = TrainConfig.from_dict({**finetune.to_dict(), "freeze_bn": True})
        self._fit(model, finetune, "centroid fine-tuning", "quantize.finetune",
                  lambda: {"per_layer": per_layer, "before": before, "mixed": mixed})
        after = self._eval(model)
        self.results["quantize"] = {"layers": per_layer, **({"mixed": mixed} if mixed else {}),
                                    "accuracy_kmeans": before["accuracy"],
                                    "accuracy": after["accuracy"], "error": after["error"],
                                    "log_loss": after["log_loss"], "seconds": time.perf_counter() - t}
        self._log(f"quantized: accuracy {before['accuracy']:.4f} after k-means → {after['accuracy']:.4f} "
                  "after centroid fine-tuning")

    def _mixed_bits(self, model: nn.Module, stage: QuantizeStage) -> dict[str, Any]:
        """Bits per layer for the size target (k-means error, optionally Hessian-weighted) or for the
        accuracy target (measured on the validation split, never the test split)."""
        m = stage.mixed
        layers = prunable_layers(model)
        if m.max_drop is not None:
            if self.data.val is None:
                raise ValueError("quantize.mixed.max_drop needs validation data (the validation split of an "
                                 "image folder); give average_bits for this data")
            val = _loader(self.data.val, self.data.eval_batch_size, False, 0)
            choice = bits_for_accuracy(layers, lambda: evaluate(model, val, self.device)["accuracy"], m.max_drop,
                                       m.candidates, stage.init, self.recipe.seed, stage.max_iter)
            self._log(f"mixed precision for at most {m.max_drop:g} accuracy per layer ({choice['evaluations']} "
                      f"validation runs): {choice['average_bits']:.2f} bits per non-zero weight: "
                      + ", ".join(f"{k} {v}" for k, v in choice["bits"].items()))
            return choice
        hessian = None
        if m.estimator != "none":
            loader = _loader(self.data.train, m.batch_size, True, self.recipe.seed, distributed=False)
            hessian = hessian_diagonal(model, loader, m.estimator, m.batches, seed=self.recipe.seed)
        choice = choose_bits(layers, m.average_bits, m.candidates, hessian, stage.init,
                             self.recipe.seed, stage.max_iter)
        self._log(f"mixed precision: {choice['average_bits']:.2f} bits per non-zero weight "
                  f"(target {m.average_bits:g}{'' if choice['met'] else ', not reachable'}): "
                  + ", ".join(f"{k} {v}" for k, v in choice["bits"].items()))
        return choice

    def encode(self, model: nn.Module, path: str | os.PathLike) -> nn.Module:
        """Write the .dcz, reload the model from it, check it is bit-exact and evaluate it (under torchrun,
        rank 0 does; the other ranks return their in-memory model)."""
        t = time.perf_counter()
        enc = self.recipe.encode
        check_layer_names(enc.index_bits, prunable_layers(model), "encode.index_bits")
        round_for_storage(model, enc.raw_dtype, enc.codebook_dtype)
        if not is_main_process():
            return model
        in_memory = self._eval(model)
        records = save_model(model, path, enc.index_bits, enc.raw_dtype, enc.codebook_dtype,
                             meta={"recipe": self.recipe.model, "seed": self.recipe.seed})
        kill_point("encode")
        dcz = read_dcz(path)
        decoded = model_from_dcz(dcz, self.device)
        ref, _ = shared_state(model)
        got = decoded.state_dict()
        bit_exact = all(torch.equal(ref[k].cpu().to(got[k].dtype), got[k].cpu()) for k in ref)
        final = self._eval(decoded)
        # the ratio's numerator is the model as it came in (before BatchNorm folding changed its parameters)
        total = totals(records, dcz.size, self.results.get("input_dense_bytes", dense_bytes(model)))
        self.results.update(
            final={**final, "source": str(path)}, in_memory=in_memory, bit_exact=bit_exact,
            **{k: total[k] for k in ("dense_bytes", "file_bytes", "compression_ratio")},
            totals=total, layers=layer_rows(records))
        self.results["seconds"]["encode"] = time.perf_counter() - t
        self._log(f"wrote {path}: {total['file_bytes']:,} bytes, {total['compression_ratio']:.1f}× smaller than "
                  f"{total['dense_bytes']:,} dense fp32 bytes; decoded model accuracy {final['accuracy']:.4f} "
                  f"(error {100 * final['error']:.2f}%), bit-exact: {bit_exact}")
        return decoded

    def run(self, model: nn.Module, out_path: str | os.PathLike, train_baseline: bool = True,
            baseline_path: str | os.PathLike | None = None, state_dir: str | os.PathLike | None = None,
            resume: bool = False, pruned_path: str | os.PathLike | None = None) -> nn.Module:
        """All stages; returns the model decoded from the written .dcz.

        With ``train_baseline`` the model is first trained with the recipe's ``train`` settings (and saved
        to ``baseline_path`` when given); otherwise it is taken as already trained. The pruned and retrained
        model is saved to ``pruned_path`` when given (a starting point for other quantization settings:
        a recipe with ``prune: null``). With ``state_dir`` the
        run checkpoints into that folder, and ``resume`` continues the run saved there (``model`` must be
        the same starting model); :meth:`clear_state` deletes the folder once the results are safe.
        """
        set_seed(self.recipe.seed)
        start = time.perf_counter()
        self.results["input_dense_bytes"] = dense_bytes(model)
        model.to(self.device)
        self.check_layer_settings(model)
        given = copy.deepcopy(model) if not train_baseline and self._distils() else None
        if state_dir is not None:
            self._open_state(state_dir, model, train_baseline, resume)
        with EnergyMeter() as meter:  # measured where RAPL / NVML counters are readable
            self._stages(model, train_baseline, baseline_path, given, pruned_path)
            decoded = self.encode(model, out_path)
        resumed = self.state is not None and self.state.resumed
        self.results["energy"] = {"training": {**meter.reading.to_dict(), "what": "the stages run after resuming"
                                               if resumed else "this run's stages"}}
        for stage in ("baseline", "prune", "quantize"):
            if stage in self.results:
                self.results["seconds"][stage] = self.results[stage]["seconds"]
        self.results["seconds"]["total"] = time.perf_counter() - start
        return decoded

    def _stages(self, model: nn.Module, train_baseline: bool, baseline_path: str | os.PathLike | None,
                given: nn.Module | None, pruned_path: str | os.PathLike | None) -> None:
        """The training stages, each skipped when a resumed run had finished it."""
        if train_baseline:
            self._stage("baseline", model, lambda: self._baseline(model, baseline_path))
        else:
            self._stage("baseline", model, lambda: self.results.update(
                baseline={**self._eval(model), "seconds": 0.0, "given": True}))
        if self._distils():
            self.teacher = self._make_teacher(model, given)
        if self.recipe.prune is not None:
            self._stage("prune", model, lambda: self.prune(model, self.recipe.prune))
            if pruned_path is not None and is_main_process():
                save_checkpoint(pruned_path, model, {"prune": {k: v for k, v in self.results["prune"].items()
                                                               if k in ("accuracy", "error", "log_loss")}})
        if self.recipe.quantize is not None:
            self._stage("quantize", model, lambda: self.quantize(model, self.recipe.quantize))

    def _distils(self) -> bool:
        p, q = self.recipe.prune, self.recipe.quantize
        return (p is not None and p.retrain.distill > 0) or (q is not None and q.finetune.distill > 0)

    def _make_teacher(self, model: nn.Module, given: nn.Module | None) -> nn.Module:
        """The dense baseline, frozen: the given model, or a copy of the trained baseline (kept in the run
        state folder, so that a resumed run distils from the same teacher)."""
        teacher = given
        if teacher is None:
            path = self.state.folder / "teacher.safetensors" if self.state is not None else None
            if path is not None and path.is_file():
                teacher = load_checkpoint(path)
            else:
                teacher = copy.deepcopy(model)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    save_checkpoint(path, teacher)
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher.to(self.device).eval()

    def check_layer_settings(self, model: nn.Module) -> None:
        """Refuse per-layer recipe settings naming layers ``model`` lacks, before hours of training."""
        layers = prunable_layers(model)
        p, q = self.recipe.prune, self.recipe.quantize
        if p is not None:
            check_layer_names(p.sparsity if p.sparsity is not None else p.quality, layers,
                              "prune.sparsity" if p.sparsity is not None else "prune.quality")
        if q is not None:
            check_layer_names(q.bits, layers, "quantize.bits")
        check_layer_names(self.recipe.encode.index_bits, layers, "encode.index_bits")

    def _baseline(self, model: nn.Module, baseline_path: str | os.PathLike | None) -> None:
        self.train_baseline(model)
        if baseline_path is not None:
            save_checkpoint(baseline_path, model, {"baseline": self.results["baseline"]})

    def _open_state(self, folder: str | os.PathLike, model: nn.Module, train_baseline: bool, resume: bool) -> None:
        """Open the run state in ``folder``; when resuming, rebuild the model and results from it."""
        fp = fingerprint(self.recipe.to_dict(), self.data.train, self.data.test, model, train_baseline)
        if not resume and (Path(folder) / STATE_FILE).exists():
            self._log(f"discarding the saved run state in {folder} (pass --resume to continue it)")
        self.state = RunState.open(folder, fp, resume)
        if self.state.resumed:
            self.state.restore(model)
            self.results = {**self.state.results, "device": str(self.device)}
            self._log(f"resuming from {folder}: continuing after {self.state.last}")
        elif resume:
            self._log(f"no saved run state in {folder}; starting from the beginning")

    def clear_state(self) -> None:
        """Delete the run's state folder (once the .dcz and reports are written)."""
        if self.state is not None:
            self.state.clear()

    def write_reports(self, json_path: str | os.PathLike, markdown_path: str | os.PathLike) -> None:
        """The results as JSON and the report as Markdown."""
        atomic_write_text(json_path, json.dumps(self.results, indent=2, default=float) + "\n")
        atomic_write_text(markdown_path, self.markdown() + "\n")

    def markdown(self) -> str:
        r = self.results
        lines = [f"# {r['model']} compressed", "",
                 markdown_table(r["layers"], r["totals"]), "",
                 f"- dense fp32 parameters: {r['dense_bytes']:,} bytes",
                 f"- .dcz file: {r['file_bytes']:,} bytes → **{r['compression_ratio']:.1f}×**",
                 f"- baseline top-1 error: {100 * r['baseline']['error']:.2f}%",
                 f"- decoded model top-1 error: {100 * r['final']['error']:.2f}% "
                 f"(accuracy {r['final']['accuracy']:.4f}, log-loss {r['final']['log_loss']:.4f}, "
                 f"n = {r['final']['n']})",
                 f"- decoded weights bit-exact with the in-memory model: {r['bit_exact']}"]
        return "\n".join(lines)
