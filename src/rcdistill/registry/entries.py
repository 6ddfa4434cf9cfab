"""What the registry holds: one registered model per student of the roster, each with its own gate."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import GateRules, Params
from ..errors import UserError
from ..evaluate.models import eval_model
from ..roster import BY_NAME, STUDENTS, Model, folder, lookup


@dataclass
class RegistryEntry:
    key: str                # the roster name: its block in metrics/evaluate.json
    model_name: str
    folder: str             # the pipeline folder logged as the model's artifact
    gate: GateRules
    steps: int              # the pyfunc's default sampling
    guidance_scale: float
    scheduler: str | None   # "ddim"; None: the folder's own (LCMScheduler)
    description: str
    tags: dict[str, str]
    lineage: tuple[str, ...] = ()   # stages whose dvc.lock entries the version records
    samples: str | None = None      # the sample sheet logged beside it
    kind: str = "text"              # text: prompts -> images | conditional: prompts + condition images -> images


def make_entry(model: Model, params: Params) -> RegistryEntry:
    sampling = eval_model(model, params)
    sec = lookup(params, model.train_section)
    init = f", init {sec.init}" if hasattr(sec, "init") else ""
    how = (f"samples with its own scheduler in {sampling.default_steps} steps" if model.own_sampling
           else f"samples with {params.sampling.scheduler} in {sampling.default_steps} steps")
    # RC objectives pair latents with random texts at rc_prob; BOOT reads no latents, only a text pool.
    texts = ("rc_prob", str(sec.rc_prob)) if hasattr(sec, "rc_prob") else ("text_pool", sec.text_pool)
    description = (f"{model.summary}: `{params.distill.student}` ({model.train_section}: {texts[0]} {texts[1]}, "
                   f"{sec.steps} steps x {sec.batch_size}{init}); {how}")
    tags = {"model": model.name, "student": params.distill.student, texts[0]: texts[1], "steps": str(sampling.default_steps)}
    if init:
        tags["init"] = sec.init
    return RegistryEntry(model.name, getattr(params.registry, model.registry_name_key), sampling.path,
                         getattr(params.registry, model.gate_key), sampling.default_steps,
                         float(sampling.guidance_scale), sampling.scheduler, description, tags, model.lineage,
                         str(Path(params.evaluate.out_dir) / "samples.png"))


# the image-conditioned models: (key in metrics/codi_eval.json, run, registry name key, stage)
CONDITIONAL = (("codi", "full", "codi_model_name", "codi"), ("codi_adapter", "adapter", "codi_adapter_model_name", "codi_adapter"))


def conditional_entry(params: Params, key: str) -> RegistryEntry:
    _, run, name_key, stage = next(c for c in CONDITIONAL if c[0] == key)
    r, c = getattr(params.codi, run), params.codi
    mode = "backbone frozen, adapter trained" if run == "adapter" else "backbone and adapter trained"
    description = (f"Image-conditioned few-step model (CoDi, {mode}): {c.task} map + text -> image, "
                   f"from the teacher's cached latents alone (codi: rc_prob {c.method.rc_prob}, {r.steps} steps x "
                   f"{c.train.batch_size}, backbone {c.init_dir}); samples with its own LCMScheduler in {r.default_steps} steps")
    tags = {"model": key, "task": c.task, "mode": run, "rc_prob": str(c.method.rc_prob), "steps": str(r.default_steps)}
    return RegistryEntry(key, getattr(params.registry, name_key), r.out_dir, params.registry.codi_gate, r.default_steps,
                         float(r.guidance_scale), None, description, tags,
                         ("cache_latents", "conditions", "distill", stage, "codi_eval"),
                         str(Path(r.out_dir) / "samples.png"), kind="conditional")


def conditional_entries(params: Params, evaluated: dict) -> list[RegistryEntry]:
    """The CoDi models that codi_eval scored at their default steps and whose folders exist."""
    out = []
    for key, run, _, _ in CONDITIONAL:
        r = getattr(params.codi, run)
        if str(r.default_steps) in evaluated.get(run, {}).get("steps", {}) and (Path(r.out_dir) / "model_index.json").exists():
            out.append(conditional_entry(params, key))
    return out


def _built(model: Model, params: Params) -> bool:
    """Its stage has written its pipeline folder."""
    return (Path(folder(model, params)) / "model_index.json").exists()


def registry_entries(params: Params, evaluated: dict) -> list[RegistryEntry]:
    """Every student of the roster; an optional one when it was evaluated and its folder exists."""
    return [make_entry(m, params) for m in STUDENTS if not m.optional or (m.name in evaluated and _built(m, params))]


def entry_for(params: Params, which: str) -> RegistryEntry:
    """A student by roster name (or a CoDi model by its key), for promoting by hand (no metrics needed)."""
    if which in {c[0] for c in CONDITIONAL}:
        return conditional_entry(params, which)
    model = BY_NAME.get(which)
    if model is None or model not in STUDENTS:
        raise UserError(f"--model {which}: not a registered student; choose one of {', '.join(m.name for m in STUDENTS)}")
    if model.optional and not _built(model, params):
        raise UserError(f"{model.folder_key}: {folder(model, params)} holds no {which} to promote")
    return make_entry(model, params)
