"""Stage `register`: log each student (the RC student, and the few-step student when there is one)
as an MLflow pyfunc, register it under its own model name (alias `challenger`) and run that
model's promotion gate (alias `champion`). The same folder never makes a second version."""
from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..codi.conditions import example_condition_png
from ..config import Params
from ..dvc_lock import dvc_hashes
from ..errors import RegistryError, UserError
from ..fingerprint import folder_digest
from ..io import atomic_write_json
from ..roster import REFERENCE, STUDENTS
from ..sampling import require_pipeline_folder
from ..stage_table import metrics_file
from ..tracking import flatten, git_commit, setup_mlflow, stage_run
from .card import model_card
from .entries import RegistryEntry, conditional_entries, entry_for, registry_entries
from .gate import Decision, decide

METRICS_FILE = Path(metrics_file("register"))
EVALUATE_METRICS = Path(metrics_file("evaluate"))
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
CODI_PYFUNC_FILE = Path(__file__).with_name("codi_pyfunc_model.py")
PACKAGE_DIR = Path(__file__).parents[1]  # a CoDi folder names rcdistill's adapter class: the package travels with it
CODI_METRICS = Path(metrics_file("codi_eval"))
COMPAT_FILE = Path(__file__).parents[1] / "_torchvision_compat.py"  # travels with the model (code_paths)
HEADLINE_METRICS = ("seen.shape", "unseen.shape", "unseen.fid", "ms_per_image")
# what the served model needs, pinned to the versions that logged it (a serving environment must
# not resolve a newer diffusers); a local build tag (torch's "+cpu") is not part of the pin
SERVING_PACKAGES = ("mlflow", "torch", "diffusers", "transformers", "numpy")
EXAMPLE_PROMPT = "a red circle"


def pinned_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg).split('+')[0]}" for pkg in SERVING_PACKAGES]


def _client(params: Params):
    from mlflow import MlflowClient

    setup_mlflow(params)
    return MlflowClient()


def _missing(err) -> bool:
    """MLflow's 'no such registered model / version' (anything else is a registry failure)."""
    return getattr(err, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


@contextmanager
def _registry(params: Params, what: str):
    """Any MLflow failure inside becomes a RegistryError naming the store and what was being done."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as err:
        raise RegistryError(f"MLflow registry at {params.tracking.uri}: {what} failed ({err}); nothing promoted") from err


def _version_by_alias(client, name: str, alias: str):
    """The version holding `alias`, or None when the model or the alias does not exist yet. A store
    that cannot be read raises: 'no champion' must never stand for 'the registry failed'."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as err:
        if _missing(err):
            return None
        raise
    version = (model.aliases or {}).get(alias)
    return client.get_model_version(name, version) if version is not None else None


def _find_version(client, name: str, digest: str):
    """The version registered from the same folder (same digest), or None; a failed search raises
    (treating it as 'not found' would register a duplicate)."""
    versions = client.search_model_versions(f"name='{name}'")
    return next((v for v in versions if v.tags.get("student_digest") == digest), None)


def version_metrics(client, mv) -> dict[str, float]:
    """The model's metrics logged in the run that registered this version (`model.` prefix; runs
    of earlier versions logged them as `student.`)."""
    metrics = client.get_run(mv.run_id).data.metrics
    prefix = "model." if any(k.startswith("model.") for k in metrics) else "student."
    return {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}


def promote(params: Params, version: str | None = None, force: bool = False,
            which: str = STUDENTS[0].name) -> tuple[str, str, Decision]:
    """Move `champion` to `version` (default: the `challenger`) if the gate passes (or `force`);
    returns the registered model's name, the version and the decision."""
    entry = entry_for(params, which)
    client = _client(params)
    name = entry.model_name
    with _registry(params, f"promoting {name}"):
        mv = client.get_model_version(name, version) if version else _version_by_alias(client, name, "challenger")
        if mv is None:
            raise UserError(f"registry model {name!r}: no challenger version to promote")
        champion = _version_by_alias(client, name, "champion")
        if champion is not None and champion.version == mv.version:
            return name, mv.version, Decision(True, f"version {mv.version} is already the champion")
        if force:
            decision = Decision(True, "promoted by hand with --force (gate skipped)")
        else:
            decision = decide(version_metrics(client, mv), version_metrics(client, champion) if champion else None,
                              entry.gate)
        client.set_model_version_tag(name, mv.version, "gate", decision.reason)
        if decision.promote:  # last: a failure above leaves the champion where it was
            client.set_registered_model_alias(name, "champion", mv.version)
    return name, mv.version, decision


def _log_model(params: Params, entry: RegistryEntry, log, card: str, samples: Path | None):
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature

    size = params.world.image_size
    defaults = {"steps": entry.steps, "guidance_scale": entry.guidance_scale}
    if entry.kind == "conditional":
        import pandas as pd

        frame = pd.DataFrame({"prompt": [EXAMPLE_PROMPT], "condition_png": [example_condition_png(size)]})
        signature = infer_signature(frame, np.zeros((1, size, size, 3), np.uint8), params={"seed": 0, **defaults})
        example = (frame, {"seed": 0, "steps": 1})
        return _log_pyfunc(entry, CODI_PYFUNC_FILE, signature, example, defaults, [str(PACKAGE_DIR)], log, card, samples)
    signature = infer_signature([EXAMPLE_PROMPT], np.zeros((1, size, size, 3), np.uint8),
                                params={"seed": 0, **defaults})
    # one prompt, one step: MLflow runs it once to check the serving payload, and the UI shows it
    example = ([EXAMPLE_PROMPT], {"seed": 0, "steps": 1})
    return _log_pyfunc(entry, PYFUNC_FILE, signature, example, {**defaults, "scheduler": entry.scheduler},
                       [str(COMPAT_FILE)], log, card, samples)


def _log_pyfunc(entry: RegistryEntry, pyfunc_file: Path, signature, example, config: dict, code_paths: list[str],
                log, card: str, samples: Path | None):
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model_card.md").write_text(card)
        log.artifact(Path(tmp) / "model_card.md")
    if samples is not None:
        log.artifact(samples)
    return mlflow.pyfunc.log_model(
        name=entry.key, python_model=str(pyfunc_file), artifacts={"pipeline": entry.folder},
        signature=signature, input_example=example, model_config=config,
        code_paths=code_paths, pip_requirements=pinned_requirements())


def register_entry(params: Params, entry: RegistryEntry, metrics: dict) -> dict:
    import mlflow

    require_pipeline_folder(entry.folder)
    name = entry.model_name
    digest = folder_digest(entry.folder)
    client = _client(params)
    with _registry(params, f"looking up {name}"):
        mv = _find_version(client, name, digest)
    created = mv is None
    if created:
        lineage, commit = dvc_hashes(entry.lineage), git_commit()
        samples = Path(entry.samples) if entry.samples else None
        with stage_run(params, "register" if entry.key == STUDENTS[0].name else f"register-{entry.key}",
                       tuple(params.model_dump())) as log:  # every section the stage declares
            run_id = mlflow.active_run().info.run_id
            log({f"{REFERENCE.name}.{k}": v for k, v in flatten(metrics[REFERENCE.name]).items() if isinstance(v, (int, float))})
            info = _log_model(params, entry, log, model_card(entry, "(new)", metrics, params.model_dump(), lineage,
                                                             commit, run_id), samples if samples and samples.exists() else None)
            # on the run and on the logged model: its registered version shows them (MLflow 3)
            mlflow.log_metrics({f"model.{k}": float(v) for k, v in flatten(metrics[entry.key]).items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)}, model_id=info.model_id)
            # the full lineage and every param and metric live in the run and the model card; the
            # version keeps the few tags a user filters by, so aliases and card stay readable in the UI
            mlflow.set_tags({f"dvc.{path}": md5 for path, md5 in lineage.items()})
            flat = flatten(metrics[entry.key])
            tags = {"student_digest": digest, "git_commit": commit, **entry.tags,
                    **{f"metric.{k}": f"{flat[k]:.4g}" for k in HEADLINE_METRICS if isinstance(flat.get(k), (int, float))}}
            mv = mlflow.register_model(info.model_uri, name, tags=tags)
            client.update_model_version(name, mv.version, description=model_card(
                entry, mv.version, metrics, params.model_dump(), lineage, commit, run_id))
    with _registry(params, f"setting {name}'s challenger"):
        client.set_registered_model_alias(name, "challenger", mv.version)
    if params.registry.promote:
        _, _, decision = promote(params, mv.version, which=entry.key)
    else:
        decision = Decision(False, "registry.promote is false: registered as challenger only")
    with _registry(params, f"reading {name}'s champion"):
        champion = _version_by_alias(client, name, "champion")
    return {"model_name": name, "version": int(mv.version), "new_version": created, "run_id": mv.run_id,
            "promoted": decision.promote, "reason": decision.reason,
            "champion_version": int(champion.version) if champion else None}


def run_register_stage(params: Params) -> dict:
    """metrics/register.json: the first student's result at the top level, each other student's under its name."""
    if not EVALUATE_METRICS.exists():
        raise UserError(f"{EVALUATE_METRICS}: not found; run the evaluate stage first")
    metrics = json.loads(EVALUATE_METRICS.read_text())
    entries = registry_entries(params, metrics)
    result = register_entry(params, entries[0], metrics)
    for entry in entries[1:]:
        result[entry.key] = register_entry(params, entry, metrics)
    atomic_write_json(METRICS_FILE, result)
    return result


def run_codi_register_stage(params: Params) -> dict:
    """metrics/codi_register.json: each image-conditioned model's registration and gate verdict, on
    its metrics in metrics/codi_eval.json at its default steps (the card's teacher column: evaluate's)."""
    for path in (CODI_METRICS, EVALUATE_METRICS):
        if not path.exists():
            raise UserError(f"{path}: not found; run its stage first")
    evaluated = json.loads(CODI_METRICS.read_text())["codi_eval"]["models"]
    teacher = json.loads(EVALUATE_METRICS.read_text())[REFERENCE.name]
    result = {}
    for entry in conditional_entries(params, evaluated):
        cell = evaluated[entry.tags["mode"]]["steps"][str(entry.steps)]
        trained = json.loads(Path(metrics_file(entry.key)).read_text())[entry.key]
        mine = {**cell, "trainable_params": trained["trainable_params"], "unet_params": trained["unet_params"]}
        result[entry.key] = register_entry(params, entry, {REFERENCE.name: teacher, entry.key: mine})
    atomic_write_json(Path(metrics_file("codi_register")), result)
    return result
