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


# stage -> (name, file under prompts.out_dir or None for the latent cache, context)
_DATASETS = {"latent_cache": (None, TRAINING), "cache_prompts": ("cache.jsonl", TRAINING),
             "rc_pool": ("rc.jsonl", TRAINING), "eval_seen": ("eval_seen.jsonl", EVALUATION),
             "eval_unseen": ("eval_unseen.jsonl", EVALUATION)}
_EVALS = ("eval_seen", "eval_unseen")
_TRAIN = ("latent_cache", "cache_prompts", "rc_pool") + _EVALS
STAGE_DATASETS = {"cache_latents": ("cache_prompts",), "teacher_gate": _EVALS, "distill": _TRAIN,
                  "consistency": _TRAIN, "evaluate": _EVALS, "register": _EVALS}


def stage_datasets(params: Params, stage: str) -> list[tuple[str, Path, str]]:
    """(name, path, context) of each dataset `stage` reads (only its own params keys are touched)."""
    out = []
    for name in STAGE_DATASETS.get(stage.split("-", 1)[0], ()):
        file, context = _DATASETS[name]
        out.append((name, Path(params.cache.out_dir) if file is None else Path(params.prompts.out_dir) / file, context))
    return out


def digest(path: Path, recorded: dict[str, str]) -> str:
    md5 = recorded.get(path.as_posix())
    if md5:
        return md5.removesuffix(".dir")[:MLFLOW_DIGEST_CHARS]
    return (folder_digest(path) if path.is_dir() else file_sha256(path))[:MLFLOW_DIGEST_CHARS]


def log_stage_inputs(mlflow, params: Params, stage: str) -> None:
    """Log every dataset of `stage` that exists."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    recorded = dvc_hashes()
    for name, path, context in stage_datasets(params, stage):
        if not path.exists():
            continue
        source = LocalArtifactDatasetSource(str(path.resolve()))
        mlflow.log_input(MetaDataset(source, name=name, digest=digest(path, recorded)), context=context)
