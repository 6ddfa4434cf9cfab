"""The data a stage run read, logged as MLflow datasets (`mlflow.log_input`): the latent cache, the
prompt pools and the eval sets, each with its digest, so a run's Inputs say what it trained or was
judged on. The digest is DVC's md5 from dvc.lock when DVC recorded the path (the same version
`dvc pull` fetches), else a content hash."""
from __future__ import annotations

from pathlib import Path

from .config import Params
from .dvc_lock import dvc_hashes
from .fingerprint import file_sha256, folder_digest

TRAINING, EVALUATION = "training", "evaluation"
MLFLOW_DIGEST_CHARS = 36  # the store's column width


def stage_datasets(params: Params, stage: str) -> list[tuple[str, Path, str]]:
    """(name, path, context) of each dataset `stage` reads."""
    prompts = Path(params.prompts.out_dir)
    train = [("latent_cache", Path(params.cache.out_dir), TRAINING),
             ("cache_prompts", prompts / "cache.jsonl", TRAINING), ("rc_pool", prompts / "rc.jsonl", TRAINING)]
    evals = [("eval_seen", prompts / "eval_seen.jsonl", EVALUATION),
             ("eval_unseen", prompts / "eval_unseen.jsonl", EVALUATION)]
    return {"cache_latents": [("cache_prompts", prompts / "cache.jsonl", TRAINING)], "teacher_gate": evals,
            "distill": train + evals, "consistency": train + evals, "evaluate": evals,
            "register": evals}.get(stage.split("-", 1)[0], [])


def digest(path: Path, recorded: dict[str, str]) -> str:
    md5 = recorded.get(path.as_posix()) or recorded.get(path.as_posix().rstrip("/"))
    if md5:
        return md5.removesuffix(".dir")[:MLFLOW_DIGEST_CHARS]
    return (folder_digest(path) if path.is_dir() else file_sha256(path))[:MLFLOW_DIGEST_CHARS]


def log_stage_inputs(mlflow, params: Params, stage: str) -> list[str]:
    """Log every dataset of `stage` that exists; returns their names."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    recorded = dvc_hashes()
    logged = []
    for name, path, context in stage_datasets(params, stage):
        if not path.exists():
            continue
        source = LocalArtifactDatasetSource(str(path.resolve()))
        mlflow.log_input(MetaDataset(source, name=name, digest=digest(path, recorded)), context=context)
        logged.append(name)
    return logged
