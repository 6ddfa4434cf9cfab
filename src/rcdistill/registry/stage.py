"""Stage `register`: log the student as an MLflow pyfunc, register it (alias `challenger`) and
run the promotion gate (alias `champion`). The same student folder never makes a second version."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..config import Params
from ..errors import UserError
from ..io import atomic_write_json
from ..tracking import flatten, git_commit, setup_mlflow, stage_run
from .card import model_card
from .gate import Decision, decide
from .lineage import dvc_hashes, folder_digest

METRICS_FILE = Path("metrics/register.json")
EVALUATE_METRICS = Path("metrics/evaluate.json")
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")


def _client(params: Params):
    from mlflow import MlflowClient

    setup_mlflow(params)
    return MlflowClient()


def _version_by_alias(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _find_version(client, name: str, digest: str):
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    return next((v for v in versions if v.tags.get("student_digest") == digest), None)


def version_metrics(client, mv) -> dict[str, float]:
    """The student metrics logged in the run that registered this version."""
    run = client.get_run(mv.run_id)
    return {k.removeprefix("student."): v for k, v in run.data.metrics.items() if k.startswith("student.")}


def promote(params: Params, version: str | None = None, force: bool = False) -> tuple[str, Decision]:
    """Move `champion` to `version` (default: the `challenger`) if the gate passes (or `force`)."""
    client = _client(params)
    name = params.registry.model_name
    mv = client.get_model_version(name, version) if version else _version_by_alias(client, name, "challenger")
    if mv is None:
        raise UserError(f"registry.model_name {name!r}: no challenger version to promote")
    champion = _version_by_alias(client, name, "champion")
    if champion is not None and champion.version == mv.version:
        return mv.version, Decision(True, f"version {mv.version} is already the champion")
    if force:
        decision = Decision(True, "promoted by hand with --force (gate skipped)")
    else:
        decision = decide(version_metrics(client, mv), version_metrics(client, champion) if champion else None,
                          params.registry.gate)
    if decision.promote:
        client.set_registered_model_alias(name, "champion", mv.version)
    client.set_model_version_tag(name, mv.version, "gate", decision.reason)
    return mv.version, decision


def _log_student_model(params: Params, log, card: str, samples: Path | None):
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature

    s = params.sampling
    size = params.world.image_size
    signature = infer_signature(["a red circle"], np.zeros((1, size, size, 3), np.uint8),
                                params={"seed": 0, "steps": s.steps, "guidance_scale": float(s.guidance_scale)})
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model_card.md").write_text(card)
        log.artifact(Path(tmp) / "model_card.md")
    if samples is not None:
        log.artifact(samples)
    return mlflow.pyfunc.log_model(
        name="student", python_model=str(PYFUNC_FILE), artifacts={"pipeline": params.distill.out_dir},
        signature=signature, model_config={"steps": s.steps, "guidance_scale": float(s.guidance_scale)},
        pip_requirements=["mlflow", "torch", "diffusers", "transformers", "numpy"])


def run_register_stage(params: Params) -> dict:
    import mlflow

    if not EVALUATE_METRICS.exists():
        raise UserError(f"{EVALUATE_METRICS}: not found; run the evaluate stage first")
    if not (Path(params.distill.out_dir) / "model_index.json").exists():
        raise UserError(f"distill.out_dir: {params.distill.out_dir} is not a pipeline folder; run the distill stage")
    metrics = json.loads(EVALUATE_METRICS.read_text())
    name = params.registry.model_name
    digest = folder_digest(params.distill.out_dir)
    client = _client(params)
    mv = _find_version(client, name, digest)
    created = mv is None
    if created:
        lineage, commit = dvc_hashes(), git_commit()
        samples = Path(params.evaluate.out_dir) / "samples.png"
        with stage_run(params, "register", tuple(type(params).model_fields)) as log:
            run_id = mlflow.active_run().info.run_id
            log({f"student.{k}": v for k, v in flatten(metrics["student"]).items()})
            log({f"teacher.{k}": v for k, v in flatten(metrics["teacher"]).items()})
            card = model_card(name, "(new)", metrics, params.model_dump(), lineage, commit, run_id)
            info = _log_student_model(params, log, card, samples if samples.exists() else None)
            tags = {"student_digest": digest, "git_commit": commit, "student": params.distill.student,
                    "rc_prob": str(params.distill.rc_prob),
                    **{f"dvc.{path}": md5 for path, md5 in lineage.items()},
                    **{f"metric.{k}": f"{v:.6g}" for k, v in flatten(metrics["student"]).items()},
                    **{f"param.{k}": str(v)[:5000] for k, v in flatten(params.model_dump()).items()}}
            mv = mlflow.register_model(info.model_uri, name, tags=tags)
            client.update_model_version(name, mv.version, description=model_card(
                name, mv.version, metrics, params.model_dump(), lineage, commit, run_id))
    client.set_registered_model_alias(name, "challenger", mv.version)
    if params.registry.promote:
        _, decision = promote(params, mv.version)
    else:
        decision = Decision(False, "registry.promote is false: registered as challenger only")
    champion = _version_by_alias(client, name, "champion")
    result = {"model_name": name, "version": int(mv.version), "new_version": created, "run_id": mv.run_id,
              "promoted": decision.promote, "reason": decision.reason,
              "champion_version": int(champion.version) if champion else None}
    atomic_write_json(METRICS_FILE, result)
    return result
