"""`rcd`: one subcommand per pipeline stage, plus params checking and sampling."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import effective_yaml, load_params, parse_set
from .errors import ParamsError, RcdError, UserError


from .roster import STUDENTS
from .stage_table import BY_SUBCOMMAND, STAGES


def _params(args):
    """The params file; a stage refuses one without its own block instead of running on defaults."""
    p = load_params(args.params)
    section = BY_SUBCOMMAND[args.cmd].section if args.cmd in BY_SUBCOMMAND else None
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


def cmd_stage(args) -> int:
    """Any pipeline stage: its module in `stages/` (the stage table names it)."""
    import importlib

    row = BY_SUBCOMMAND[args.cmd]
    return importlib.import_module(row.entry).run(_params(args), args)


def cmd_dvc_yaml(args) -> int:
    from .dvc_yaml import check_dvc_yaml, write_dvc_yaml

    if args.check:
        stale = check_dvc_yaml(Path(args.file))
        if stale:
            raise UserError(f"{args.file} differs from the stage table ({stale}); run `rcd dvc-yaml`")
        print(f"{args.file}: matches the stage table")
        return 0
    write_dvc_yaml(Path(args.file))
    print(f"{args.file} written from the stage table ({len(STAGES)} stages)")
    return 0


def cmd_promote(args) -> int:
    from .registry.stage import promote

    p = _params(args)
    from .registry.entries import entry_for

    which = STUDENTS[-1].name if args.fast else args.model
    version, decision = promote(p, args.version, args.force, which)
    verdict = "champion" if decision.promote else "not promoted"
    name = entry_for(p, which).model_name
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


def _cache_latents_options(sp) -> None:
    sp.add_argument("--rebuild", action="store_true", help="discard a cache made by another teacher or settings")
    sp.add_argument("--worker", metavar="I/N", help="data-parallel worker I of N (default: RANK/WORLD_SIZE "
                    "from accelerate launch or torchrun, else 0/1); each makes every N-th shard")


def _distill_options(sp) -> None:
    sp.add_argument("--stop-after", type=int, metavar="STEP", help="stop after this step, as a kill would "
                    "(the next run resumes from the newest checkpoint)")


# Options of the stage commands beyond --params (kept here: building the parser imports no stage).
STAGE_OPTIONS = {"cache_latents": _cache_latents_options, "distill": _distill_options}


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

    for row in STAGES:
        sp = sub.add_parser(row.subcommand, help=f"stage {row.name}: {row.summary}",
                            description=f"DVC stage {row.name}: {row.summary}. Reads params: {', '.join(row.params)}"
                            + (f"; data: {', '.join(row.deps)}" if row.deps else "")
                            + f"; writes: {', '.join(row.outs + row.metrics + row.plots)}.")
        STAGE_OPTIONS.get(row.name, lambda _: None)(sp)
        sp.set_defaults(fn=cmd_stage)
    dy = sub.add_parser("dvc-yaml", help="write dvc.yaml from the stage table (code deps: each stage's imports)")
    dy.add_argument("--file", default="dvc.yaml")
    dy.add_argument("--check", action="store_true", help="only check that the file matches (exit 2 if not)")
    dy.set_defaults(fn=cmd_dvc_yaml)
    pm = sub.add_parser("promote", help="run the promotion gate by hand for a registered version")
    pm.add_argument("--version", help="model version (default: the challenger)")
    pm.add_argument("--force", action="store_true", help="skip the gate")
    pm.add_argument("--model", default=STUDENTS[0].name, choices=[m.name for m in STUDENTS],
                    help=f"which student's registered model (default: {STUDENTS[0].name})")
    pm.add_argument("--fast", action="store_true", help=f"same as --model {STUDENTS[-1].name}")
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
