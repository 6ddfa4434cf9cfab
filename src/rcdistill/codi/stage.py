"""The CoDi stages: `conditions` derives the conditions; `codi_reference`, `codi` and `codi_adapter`
train one conditional model each (the diffusion-loss reference, CoDi full, CoDi parameter-efficient)
into a CoDiPipeline folder; `codi_eval` scores every model at its eval steps on both eval sets."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from diffusers import DDIMScheduler
from safetensors.torch import load_file

from ..cache.latents import load_cache
from ..config import Params
from ..errors import GateFailed, UserError
from ..evaluators.classifier import load_classifier
from ..images import grid
from ..io import atomic_dir, atomic_write_json, atomic_write_text
from ..sampling import DEFAULTS_FILE, generate, load_pipeline
from ..stage_table import eval_samples_file, metrics_file, plot_file
from ..teacher_verdict import TEACHER_GATE_METRICS, teacher_gate_passed
from ..students import load_init_unet
from ..tracking import stage_run
from ..distill.consistency import lcm_scheduler
from ..distill.loop import release_checkpoints
from ..distill.training_run import LossHistory, join_run, training_data
from .conditions import model_input
from .objective import RUN_NAMES, codi_train, trainable_parameters
from .data import EVAL_SETS, eval_rows, load_eval_set, load_train_conditions, write_conditions
from .pipeline import CoDiPipeline, generate_conditioned
from .scores import score, swapped
from .texts import text_view

LOSS_FIELDS = ("step", "total", "consistency", "clean", "diffusion", "lr", "samples_per_s")
SHEET = 10


def _condition_sheet(images: torch.Tensor, conditions: dict[str, torch.Tensor]) -> "Image":
    """Rows: decoded cached latents, their edge maps, their low-res copies (upsampled)."""
    n, size = min(SHEET, len(images)), images.shape[-1]
    edge = conditions["edge"][:n].expand(-1, 3, -1, -1)
    low = ((model_input(conditions["lowres"][:n], size) + 1) * 127.5).round().to(torch.uint8)
    return grid(torch.cat([images[:n], edge, low]), ncol=n, scale=4)


def run_conditions_stage(params: Params) -> dict:
    latents, _, cache_identity = load_cache(params.cache.out_dir, expect_teacher=params.teacher.path)
    s = params.sampling
    teacher = load_pipeline(params.teacher.path, s.scheduler)
    kept_file = Path(eval_samples_file("teacher"))
    if not kept_file.is_file():
        raise UserError(f"{kept_file}: missing; run the teacher_gate stage (its eval samples are the test images)")
    kept = load_file(kept_file)
    images, rows = {}, {}
    for name in EVAL_SETS:
        rows[name] = eval_rows(params.prompts.out_dir, name, params.codi.eval_per_set)
        if not rows[name]:
            continue
        if len(kept.get(name, [])):  # the gate's own teacher images: as many as it drew
            rows[name] = rows[name][: len(kept[name])]
            images[name] = kept[name][: len(rows[name])]
        else:  # no gate drew any (a pretrained teacher): draw them with the sampling settings
            images[name] = generate(teacher, [r["text"] for r in rows[name]], [r["seed"] for r in rows[name]], s.steps,
                                    s.guidance_scale, s.batch_size, desc=f"teacher ({name})")
    c = params.conditions
    return write_conditions(c.out_dir, teacher.vae, latents, cache_identity, images, rows, c.edge_threshold,
                            c.lowres_factor, _condition_sheet)


def conditional_pipeline(teacher, net, scheduler, view: str) -> CoDiPipeline:
    return CoDiPipeline(vae=teacher.vae, text_encoder=teacher.text_encoder, tokenizer=teacher.tokenizer,
                        unet=net.unet, adapter=net.adapter, scheduler=scheduler, text_view=view)


def run_codi_stage(params: Params, run: str, stop_after: int | None = None) -> dict:
    cfg, stage = params.codi.loop(run), RUN_NAMES[run]
    mode = "full" if run == "reference" else run
    view = text_view(params)
    if teacher_gate_passed() is False:
        raise GateFailed(f"{TEACHER_GATE_METRICS}: the teacher failed its quality gate; nothing is distilled from it")
    latents, captions, rc_pool, cache_identity = training_data(params)
    conditions = load_train_conditions(params.conditions.out_dir, params.codi.task, cache_identity)
    teacher = load_pipeline(params.teacher.path, None)  # its own noise schedule; no sampling settings read
    backbone, init_id = load_init_unet(params.codi.init_dir, params.teacher.path, teacher, key="codi.init_dir")
    size = teacher.unet.config.sample_size * teacher.vae_scale_factor
    cond_id = hashlib.sha256(conditions.numpy().tobytes()).hexdigest()
    more = {"init": init_id, "task": params.codi.task, "conditions": cond_id, "run": run, "text": view}
    if not join_run(cfg, cache_identity, stage, **more):
        codi_train(cfg, run, teacher, backbone, latents, conditions, captions, rc_pool, size, stop_after=stop_after,
                   text_view=view)
        return {"helper": True}
    with stage_run(params, stage, ("codi", "conditions")) as log:
        log.mlflow.set_tags({"task": params.codi.task, "text": view, "mode": mode, "init_id": init_id})
        history = LossHistory(cfg.work_dir, log, stage, LOSS_FIELDS)
        net = codi_train(cfg, run, teacher, backbone, latents, conditions, captions, rc_pool, size, history,
                         stop_after=stop_after, text_view=view)
        if stop_after is not None and stop_after < cfg.steps:
            return {"stopped_at": stop_after}
        if run == "reference":
            scheduler = DDIMScheduler.from_config(teacher.scheduler.config)
        else:
            scheduler = lcm_scheduler(teacher.scheduler.config, cfg.num_ddim_timesteps)
        net = net.to(teacher.device, torch.float32)
        if mode == "adapter":
            net.unet.requires_grad_(False)
        pipe = conditional_pipeline(teacher, net, scheduler, view)
        pipe.set_progress_bar_config(disable=True)
        metrics = {"task": params.codi.task, "text": view, "mode": mode,
                   "objective": "diffusion" if run == "reference" else "codi",
                   "default_steps": cfg.default_steps, "guidance_scale": cfg.guidance_scale,
                   "trainable_params": trainable_parameters(net),
                   "total_params": sum(p.numel() for p in net.parameters()),
                   "adapter_params": sum(p.numel() for p in net.adapter.parameters()),
                   "unet_params": sum(p.numel() for p in net.unet.parameters())}
        atomic_write_text(Path(plot_file(stage)), history.csv())
        defaults = {"steps": cfg.default_steps, "guidance_scale": cfg.guidance_scale, "task": params.codi.task,
                    "lowres_factor": params.conditions.lowres_factor, "edge_threshold": params.conditions.edge_threshold}
        with atomic_dir(cfg.out_dir) as tmp:
            pipe.save_pretrained(tmp, safe_serialization=True)
            atomic_write_json(tmp / DEFAULTS_FILE, defaults)
            sheet = sample_sheet(pipe, params, cfg.default_steps, cfg.guidance_scale)
            sheet.save(tmp / "samples.png")
            log.image(sheet, f"{stage}_samples.png")
        log({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        atomic_write_json(Path(metrics_file(stage)), {stage: metrics})
    release_checkpoints(cfg.work_dir)
    return metrics


def sample_sheet(pipe: CoDiPipeline, params: Params, steps: int, guidance_scale: float):
    """Per eval set: the conditions (top) and the model's images for them (below)."""
    size, parts = pipe.image_size, []
    for name in EVAL_SETS:
        meta, tensors = load_eval_set(params.conditions.out_dir, name)
        if not meta["n"]:
            continue
        cond = tensors[params.codi.task][:SHEET]
        shown = ((model_input(cond, size) + 1) * 127.5).round().to(torch.uint8).expand(-1, 3, -1, -1)
        images = generate_conditioned(pipe, meta["texts"][:SHEET], meta["seeds"][:SHEET], cond, steps, guidance_scale)
        parts += [shown, images]
    return grid(torch.cat(parts), ncol=SHEET, scale=3)


def load_codi_pipeline(folder: str | Path) -> CoDiPipeline:
    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise UserError(f"{folder}: not a CoDi pipeline folder (no model_index.json); run its stage first")
    pipe = CoDiPipeline.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _eval_sets(params: Params) -> dict[str, tuple[dict, list[dict], dict[str, torch.Tensor]]]:
    """Each non-empty eval set once: its manifest entry, its prompt rows (checked to be the prompts
    stage's) and its tensors."""
    out = {}
    for name in EVAL_SETS:
        meta, tensors = load_eval_set(params.conditions.out_dir, name)
        if not meta["n"]:
            continue
        rows = eval_rows(params.prompts.out_dir, name, meta["n"])
        if [r["text"] for r in rows] != meta["texts"]:
            raise UserError(f"{params.conditions.out_dir}: its eval set {name} is not the prompts stage's; "
                            "rerun conditions")
        out[name] = meta, rows, tensors
    return out


def run_codi_eval_stage(params: Params) -> dict:
    """Every run at each of its eval steps on both sets; the baselines the issue names, labelled."""
    c = params.conditions
    classifier = load_classifier(params.evaluators.out_dir) if params.prompts.source == "world" else None
    sets = _eval_sets(params)
    results: dict = {"task": params.codi.task, "models": {}}
    for run, steps_list in params.codi.eval_steps.items():
        if not steps_list:
            continue
        pipe = load_codi_pipeline(getattr(params.codi, run).out_dir)
        own = json.loads((Path(getattr(params.codi, run).out_dir) / DEFAULTS_FILE).read_text())
        view = pipe.config.text_view
        entry = {"guidance_scale": own["guidance_scale"], "text": view, "steps": {}}
        for steps in steps_list:
            cell = {}
            for name, (meta, rows, tensors) in sets.items():
                conditions = tensors[params.codi.task]
                measured = (tensors["images"], tensors["edge"], tensors["lowres"], classifier, c.edge_threshold,
                            c.lowres_factor)
                images = generate_conditioned(pipe, meta["texts"], meta["seeds"], conditions, steps,
                                              own["guidance_scale"])
                cell[name] = score(images, rows, *measured)
                if classifier is not None:  # each condition with another row's text: does it follow both?
                    partner, labels = swapped(rows, "colour" if view == "colour" else "shape")
                    images = generate_conditioned(pipe, [meta["texts"][j] for j in partner], meta["seeds"], conditions,
                                                  steps, own["guidance_scale"])
                    cell[f"{name}_swapped"] = score(images, rows, *measured, labels)
            entry["steps"][str(steps)] = cell
        results["models"][run] = entry
    return results


def report(params: Params, run: str, m: dict) -> int:
    """The training stages' last line."""
    out_dir = getattr(params.codi, run).out_dir
    if "helper" in m:
        return 0
    if "stopped_at" in m:
        print(f"stopped after step {m['stopped_at']} (checkpoints in {getattr(params.codi, run).work_dir}/; rerun to resume)")
        return 0
    print(f"{params.codi.task}-conditioned {m['objective']} model ({m['mode']}) written to {out_dir}/: "
          f"{m['trainable_params'] / 1e6:.2f}M of {m['total_params'] / 1e6:.2f}M parameters trained; "
          f"{m['default_steps']} steps by default")
    return 0
