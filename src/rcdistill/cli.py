"""`rcd`: one subcommand per pipeline stage, plus params checking and sampling."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import effective_yaml, load_params, parse_set
from .errors import ParamsError, RcdError, UserError


# The params block each stage command trains or judges with: a file without it is refused
# instead of silently running on defaults.
STAGE_SECTIONS = {"prompts": "prompts", "evaluators": "evaluators", "teacher": "teacher", "teacher-gate": "teacher",
                  "cache-latents": "cache", "distill": "distill", "consistency": "consistency",
                  "evaluate": "evaluate", "register": "registry"}


def _params(args):
    p = load_params(args.params)
    section = STAGE_SECTIONS.get(args.cmd)
    if section and section not in p.model_fields_set:
        raise ParamsError(f"{args.params}: no '{section}:' block, which `rcd {args.cmd}` needs; "
                          "see the repository's params.yaml")
    return p


def cmd_params_check(args) -> int:
    p = _params(args)
    print(f"{args.params}: ok (unseen concepts: {', '.join(p.world.unseen) or 'none'}; teacher: {p.teacher.source} at {p.teacher.path})")
    return 0


def cmd_params_show(args) -> int:
    """Every key with the value the stages will use: the file's, or the default it leaves out."""
    print(effective_yaml(load_params(args.params)), end="")
    return 0


def cmd_params_use(args) -> int:
    """Write a profile's effective params (every key spelled out, as DVC tracks them) to --params,
    with any `--set key=value` overrides applied and validated."""
    from .io import atomic_write_text

    overrides = parse_set(args.set)
    p = load_params(args.profile, overrides)
    target = Path(args.params)
    sets = "".join(f" --set {item}" for item in args.set)
    header = (f"# written by `rcd params use {args.profile}{sets}`: that profile with every default spelled out\n"
              "# (DVC tracks keys the profile leaves out); edit freely, `rcd params check` validates.\n")
    atomic_write_text(target, header + effective_yaml(p))
    print(f"{target}: now {args.profile} (teacher: {p.teacher.source} at {p.teacher.path}; "
          f"prompts: {p.prompts.source}); run `dvc repro`")
    return 0


def cmd_prompts(args) -> int:
    from .world.prompts import write_prompts

    out = write_prompts(_params(args))
    print(f"prompts written to {out}/")
    return 0


def cmd_evaluators(args) -> int:
    from .evaluators.stage import METRICS_FILE, run_evaluators_stage
    from .io import atomic_dir, atomic_write_json

    p = _params(args)
    if p.prompts.source != "world":  # real models are judged by the user's Inception and open_clip files
        note = {"skipped": "prompts.source is not 'world': no world classifier or world CLIP to train"}
        with atomic_dir(Path(p.evaluators.out_dir)) as tmp:
            atomic_write_json(tmp / "skipped.json", note)
        atomic_write_json(METRICS_FILE, note)
        print(f"evaluators: {note['skipped']}")
        return 0
    metrics = run_evaluators_stage(p)
    print(f"evaluators written to {p.evaluators.out_dir}/ ; accuracies: {metrics}")
    return 0


def cmd_teacher(args) -> int:
    from .teacher.stage import run_teacher_stage

    p = _params(args)
    metrics = run_teacher_stage(p)
    if p.teacher.source == "pretrained":
        print(f"pretrained teacher {p.teacher.path} loads offline; recorded in models/teacher/pretrained.json")
        return 0
    print(f"teacher pipeline written to {p.teacher.path}/ ; step checks: "
          + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()) + "; the gate is the teacher_gate stage")
    return 0


def cmd_teacher_gate(args) -> int:
    from .teacher.gate import run_teacher_gate

    m = run_teacher_gate(_params(args))
    print("teacher gate passed: " + (m.get("reason") or ", ".join(
        f"{k}: shape {m[k]['shape']:.3f} colour {m[k]['colour']:.3f}" for k in ("seen", "unseen") if k in m)))
    return 0


def cmd_cache_latents(args) -> int:
    from .cache.latents import build_cache, load_manifest

    folder = build_cache(_params(args), rebuild=args.rebuild, worker=args.worker)
    m = load_manifest(folder)
    have, want = sum(s["rows"] for s in m["shards"]), m["identity"]["n_rows"]
    state = "complete" if have == want else f"{have} of {want} latents so far (other workers still running?)"
    print(f"teacher latents cached in {folder}/: {state} (manifest.json lists prompts, seeds, shards, checksums)")
    return 0


def cmd_distill(args) -> int:
    from .distill.stage import run_distill_stage

    p = _params(args)
    metrics = run_distill_stage(p, stop_after=args.stop_after)
    if "helper" in metrics:
        return 0  # a data-parallel helper process: the main process reports
    if "stopped_at" in metrics:
        print(f"stopped after step {metrics['stopped_at']} (checkpoints in {p.distill.work_dir}/; rerun to resume)")
        return 0
    print(f"student pipeline written to {p.distill.out_dir}/ ({metrics['student']}: "
          f"{metrics['student_unet_params'] / 1e6:.2f}M UNet parameters, {metrics['param_ratio']:.2f}x the teacher's)")
    return 0


def cmd_consistency(args) -> int:
    from .distill.consistency_stage import run_consistency_stage

    p = _params(args)
    m = run_consistency_stage(p)
    if "helper" in m:
        return 0
    check = "; ".join(f"{n} shape {m[n]['shape']:.3f} colour {m[n]['colour']:.3f}" for n in ("seen", "unseen") if n in m)
    print(f"few-step student written to {p.consistency.out_dir}/ (LCMScheduler, {m['steps']} steps, guidance "
          f"{m['guidance_scale']} embedded, no CFG pass){': ' + check if check else ''}")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate.stage import run_evaluate_stage
    from .summary import summary_lines

    p = _params(args)
    run_evaluate_stage(p)
    print("\n".join(line for line in summary_lines() if not line.startswith("registry:")))
    print(f"metrics/evaluate.json, plots/quality_vs_steps.csv, grids in {p.evaluate.out_dir}/")
    return 0


def cmd_register(args) -> int:
    from .registry.stage import run_register_stage

    result = run_register_stage(_params(args))
    for r in (result, result.get("student_fast")):
        if r:
            what = "registered as new version" if r["new_version"] else "already registered as version"
            print(f"{r['model_name']}: {what} {r['version']} (alias challenger); "
                  + (f"promoted to champion: {r['reason']}" if r["promoted"] else f"not promoted: {r['reason']}"))
    return 0


def cmd_promote(args) -> int:
    from .registry.stage import promote

    p = _params(args)
    version, decision = promote(p, args.version, args.force, "student_fast" if args.fast else "student")
    verdict = "champion" if decision.promote else "not promoted"
    name = p.registry.fast_model_name if args.fast else p.registry.model_name
    print(f"{name} v{version}: {verdict}: {decision.reason}")
    return 0 if decision.promote else 1


def cmd_summary(args) -> int:
    from .summary import summary_lines

    print("\n".join(summary_lines()))
    return 0


def cmd_students(args) -> int:
    from .students import SD_V1_UNET_CONFIG, STUDENTS, count_params, student_config

    if args.sd_v1:
        config, label = SD_V1_UNET_CONFIG, "SD v1.x UNet config"
    else:
        from diffusers import UNet2DConditionModel

        p = _params(args)
        path = Path(p.teacher.path)
        if not (path / "unet" / "config.json").exists():
            raise UserError(f"{path / 'unet/config.json'} not found; build the teacher or use --sd-v1")
        config, label = dict(UNet2DConditionModel.load_config(path / "unet")), f"teacher at {path}"
    teacher = count_params(config)
    print(f"students of the {label} (teacher UNet: {teacher / 1e6:.1f}M parameters)")
    print(f"{'name':<9} {'params':>10} {'ratio':>6} {'channels':<24} description")
    for name, spec in STUDENTS.items():
        cfg = student_config(config, name)
        n = count_params(cfg)
        print(f"{name:<9} {n / 1e6:>9.1f}M {n / teacher:>6.2f} {str(cfg['block_out_channels']):<24} {spec.description}")
    return 0


def cmd_sample(args) -> int:
    from .images import grid
    from .sampling import folder_defaults, generate, load_pipeline

    if not Path(args.model).is_dir():
        raise UserError(f"--model {args.model}: not a pipeline folder")
    p = load_params(args.params) if Path(args.params).exists() else None
    own = folder_defaults(args.model)  # a few-step student brings its steps, guidance and scheduler
    steps = args.steps or own.get("steps") or (p.sampling.steps if p else 25)
    guidance = next(g for g in (args.guidance, own.get("guidance_scale"), p.sampling.guidance_scale if p else 7.5)
                    if g is not None)
    pipe = load_pipeline(args.model, args.scheduler or (None if own else p.sampling.scheduler if p else "ddim"))
    prompts = [pr for pr in args.prompts for _ in range(args.per_prompt)]
    seeds = [args.seed + i for i in range(len(prompts))]
    images = generate(pipe, prompts, seeds, steps, guidance)
    ncol = args.per_prompt if len(args.prompts) > 1 else min(8, len(prompts))
    out = grid(images, ncol=ncol, scale=args.scale, pad=2 if len(prompts) > 1 else 0)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    out.save(args.output)
    print(f"wrote {args.output} ({len(prompts)} image(s), {steps} steps, guidance {guidance})")
    return 0


def cmd_sd_random(args) -> int:
    import json

    from .evaluate.random_judges import write_random_inception, write_random_open_clip
    from .io import atomic_dir
    from .teacher.sd_random import build_sd_random

    if args.latent_size < 8 or args.latent_size % 8:
        raise UserError(f"--latent-size: {args.latent_size} is not a positive multiple of 8")
    with atomic_dir(Path(args.out)) as tmp:
        counts = build_sd_random(tmp / "teacher", args.latent_size, args.seed)
        write_random_inception(tmp, args.seed + 1)
        write_random_open_clip(tmp, args.clip_model, args.seed + 2)
        (tmp / "sd_random.json").write_text(json.dumps({"latent_size": args.latent_size, "seed": args.seed,
                                                        "clip_model": args.clip_model, "params": counts}, indent=2))
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file()) / 2**30
    print(f"SD v1-shaped random pipeline in {args.out}/teacher (UNet {counts['unet'] / 1e6:.1f}M, text encoder "
          f"{counts['text_encoder'] / 1e6:.1f}M, VAE {counts['vae'] / 1e6:.1f}M; latents {args.latent_size}x"
          f"{args.latent_size}) and random judges beside it; {size:.1f} GB")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rcd", description=__doc__)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    pr = sub.add_parser("params", help="params utilities")
    prsub = pr.add_subparsers(dest="params_cmd", required=True)
    prsub.add_parser("check", help="validate params.yaml").set_defaults(fn=cmd_params_check)
    prsub.add_parser("show", help="print the effective params: every key, defaults filled in"
                     ).set_defaults(fn=cmd_params_show)
    pu = prsub.add_parser("use", help="make a profile (e.g. profiles/sd15/params.yaml) the params file, "
                          "every default spelled out")
    pu.add_argument("profile")
    pu.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of the profile (dotted, value as YAML), repeatable")
    pu.set_defaults(fn=cmd_params_use)

    sub.add_parser("prompts", help="stage: write prompt pools and eval sets").set_defaults(fn=cmd_prompts)
    sub.add_parser("evaluators", help="stage: train the world classifier and CLIP").set_defaults(fn=cmd_evaluators)
    sub.add_parser("teacher", help="stage: train the toy teacher pipeline").set_defaults(fn=cmd_teacher)
    sub.add_parser("teacher-gate", help="stage: the teacher's quality gate on the seen and unseen eval sets"
                   ).set_defaults(fn=cmd_teacher_gate)

    cl = sub.add_parser("cache-latents", help="stage: teacher latents for the cache prompt pool")
    cl.add_argument("--rebuild", action="store_true", help="discard a cache made by another teacher or settings")
    cl.add_argument("--worker", metavar="I/N", help="data-parallel worker I of N (default: RANK/WORLD_SIZE "
                    "from accelerate launch or torchrun, else 0/1); each makes every N-th shard")
    cl.set_defaults(fn=cmd_cache_latents)
    di = sub.add_parser("distill", help="stage: Random Conditioning distillation into a student")
    di.add_argument("--stop-after", type=int, metavar="STEP", help="stop after this step, as a kill would "
                    "(the next run resumes from the newest checkpoint)")
    di.set_defaults(fn=cmd_distill)
    sub.add_parser("consistency", help="stage: few-step student by latent consistency distillation with RC"
                   ).set_defaults(fn=cmd_consistency)
    sub.add_parser("evaluate", help="stage: teacher vs student on the seen and unseen eval sets").set_defaults(
        fn=cmd_evaluate)
    sub.add_parser("register", help="stage: register the student in MLflow, gate its promotion").set_defaults(
        fn=cmd_register)
    pm = sub.add_parser("promote", help="run the promotion gate by hand for a registered version")
    pm.add_argument("--version", help="model version (default: the challenger)")
    pm.add_argument("--force", action="store_true", help="skip the gate")
    pm.add_argument("--fast", action="store_true", help="the few-step student's model (registry.fast_model_name)")
    pm.set_defaults(fn=cmd_promote)
    sub.add_parser("summary", help="headline numbers from metrics/ (teacher vs student, registry)").set_defaults(
        fn=cmd_summary)
    st = sub.add_parser("students", help="list student variants with their parameter counts")
    st.add_argument("--sd-v1", action="store_true", help="for the SD v1.x UNet config instead of the params teacher")
    st.set_defaults(fn=cmd_students)

    sr = sub.add_parser("sd-random", help="build an SD v1-shaped pipeline with random weights, and random-weight "
                        "Inception/open_clip judge files, offline (for profiles/sd-random)")
    sr.add_argument("--out", default="models/sd_random")
    sr.add_argument("--latent-size", type=int, default=64, help="UNet sample size (64: SD's 512x512 images)")
    sr.add_argument("--clip-model", default="ViT-B-32", help="open_clip architecture of the CLIP-score judge")
    sr.add_argument("--seed", type=int, default=0)
    sr.set_defaults(fn=cmd_sd_random)

    sp = sub.add_parser("sample", help="sample any pipeline folder")
    sp.add_argument("prompts", nargs="+")
    sp.add_argument("--model", required=True)
    sp.add_argument("-o", "--output", default="sample.png")
    sp.add_argument("--per-prompt", type=int, default=1, help="images per prompt (a grid row each)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--steps", type=int)
    sp.add_argument("--guidance", type=float)
    sp.add_argument("--scheduler", choices=["ddim", "dpm", "euler", "pndm", "lcm"])
    sp.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscaling of the output")
    sp.set_defaults(fn=cmd_sample)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except RcdError as err:  # the user's to fix: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
