"""`rcd`: one subcommand per pipeline stage, plus params checking, the registry and sampling."""
from __future__ import annotations

import argparse
import functools
import json
import sys
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .config import effective_yaml, load_params, parse_set
from .errors import ParamsError, RcdError, UserError


from .roster import STUDENTS
from .stage_table import BY_SUBCOMMAND, STAGES

FAST = "student_fast"  # `rcd promote --fast`: the few-step student

CRASH_EXIT_CODE = 4


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

    from .params_view import stage_params

    row = BY_SUBCOMMAND[args.cmd]
    return importlib.import_module(row.entry).run(stage_params(_params(args), row), args)


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

    which = FAST if args.fast else args.model
    name, model_version, decision = promote(_params(args), args.version, args.force, which)
    if args.json:
        print(json.dumps({"model_name": name, "version": model_version, "promoted": decision.promote,
                          "reason": decision.reason}))
    else:
        print(f"{name} v{model_version}: {'champion' if decision.promote else 'not promoted'}: {decision.reason}")
    return 0 if decision.promote else 1


def cmd_summary(args) -> int:
    from .stage_table import metrics_file
    from .summary import summary_lines

    if args.json:  # what the summary is made of, for scripts
        files = {name: Path(metrics_file(name)) for name in ("evaluate", "register")}
        print(json.dumps({k: json.loads(f.read_text()) if f.exists() else None for k, f in files.items()}))
        return 0
    print("\n".join(summary_lines()))
    return 0


def cmd_students(args) -> int:
    # the student variants (bk_small, ...), not the roster's STUDENTS (the registered models)
    from .students import SD_V1_UNET_CONFIG, count_params, student_config
    from .students import STUDENTS as VARIANTS

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
    rows = []
    for name, spec in VARIANTS.items():
        cfg = student_config(config, name)
        n = count_params(cfg)
        rows.append({"name": name, "params": n, "ratio": n / teacher, "channels": cfg["block_out_channels"],
                     "description": spec.description})
    if args.json:
        print(json.dumps({"teacher": label, "teacher_params": teacher, "students": rows}))
        return 0
    print(f"students of the {label} (teacher UNet: {teacher / 1e6:.1f}M parameters)")
    print(f"{'name':<9} {'params':>10} {'ratio':>6} {'channels':<24} description")
    for r in rows:
        print(f"{r['name']:<9} {r['params'] / 1e6:>9.1f}M {r['ratio']:>6.2f} {str(r['channels']):<24} {r['description']}")
    return 0


def _sample_conditioned(args) -> int:
    """`rcd sample --condition edge.png`: a CoDi folder, its task's condition image and the prompts."""
    import torch

    from .codi.conditions import read_condition
    from .codi.pipeline import generate_conditioned
    from .codi.stage import load_codi_pipeline
    from .codi.texts import view_text
    from .images import grid
    from .sampling import folder_defaults

    own = folder_defaults(args.model)
    if "task" not in own:
        raise UserError(f"--model {args.model}: --condition needs an image-conditioned (CoDi) folder, e.g. models/codi")
    path = Path(args.condition or args.condition_from)
    if not path.is_file():
        raise UserError(f"--condition {path}: file not found")
    pipe = load_codi_pipeline(args.model)
    try:
        cond = read_condition(path.read_bytes(), own["task"], bool(args.condition_from), own["edge_threshold"],
                              own["lowres_factor"], pipe.image_size)
    except OSError as err:
        raise UserError(f"--condition {path}: not an image file ({err})") from None
    steps = args.steps or own["steps"]
    guidance = own["guidance_scale"] if args.guidance is None else args.guidance
    prompts = [pr for pr in args.prompts for _ in range(args.per_prompt)]
    try:
        read = [view_text(pr, pipe.config.text_view) for pr in args.prompts]
    except ValueError as err:
        raise UserError(f"prompt: {err}") from None
    if read != list(args.prompts):
        print(f"this model reads only the colour of a prompt ({', '.join(repr(r) for r in read)}); "
              f"the {own['task']} condition gives the rest")
    seeds = [args.seed + i for i in range(len(prompts))]
    images = generate_conditioned(pipe, prompts, seeds, cond[None].expand(len(prompts), -1, -1, -1).contiguous(),
                                  steps, guidance)
    shown = cond.expand(3, -1, -1) if cond.shape[0] == 1 else cond
    shown = torch.nn.functional.interpolate(shown[None].float(), size=images.shape[-2:], mode="nearest").to(torch.uint8)
    out = grid(torch.cat([shown, images]), ncol=len(prompts) + 1, scale=args.scale, pad=2)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    out.save(args.output)
    print(f"wrote {args.output} (the {own['task']} condition, then {len(prompts)} image(s), {steps} steps)")
    return 0


def cmd_sample(args) -> int:
    from .images import grid
    from .sampling import folder_defaults, generate, load_pipeline

    if not Path(args.model).is_dir():
        raise UserError(f"--model {args.model}: not a pipeline folder")
    if args.condition or args.condition_from:
        return _sample_conditioned(args)
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
    if args.unet_width < 32 or args.unet_width % 32:  # group norm's 32 groups, 8 attention heads
        raise UserError(f"--unet-width: {args.unet_width} is not a positive multiple of 32")
    with atomic_dir(Path(args.out)) as tmp:
        counts = build_sd_random(tmp / "teacher", args.latent_size, args.seed, args.unet_width)
        write_random_inception(tmp, args.seed + 1)
        write_random_open_clip(tmp, args.clip_model, args.seed + 2)
        (tmp / "sd_random.json").write_text(json.dumps({"latent_size": args.latent_size, "unet_width": args.unet_width, "seed": args.seed,
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
STAGE_OPTIONS = {"cache_latents": _cache_latents_options, "distill": _distill_options, "boot": _distill_options,
                 **{name: _distill_options for name in ("codi_reference", "codi", "codi_adapter")}}


EXIT_CODES = """exit codes:
  0  done
  1  a gate said no (teacher gate, evaluators gate, teacher checks, promotion)
  2  your input: params, files or options (one line says which)
  3  the MLflow registry failed (nothing promoted; may be transient)
  4  a crash (the traceback is printed)"""


def _version() -> str:
    try:
        return version("rcdistill")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it has none (None, off) or its help already says it."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    fmt = _HelpWithDefaults
    # --params after the subcommand too; SUPPRESS keeps a top-level value from being reset
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default=argparse.SUPPRESS, help="params file (default: params.yaml)")
    ap = argparse.ArgumentParser(prog="rcd", description=__doc__, epilog=EXIT_CODES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("--version", action="version", version=f"rcd (rcdistill) {_version()}")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    add = functools.partial(sub.add_parser, formatter_class=fmt, parents=[common])

    pr = add("params", help="check, show or switch the params file", description="Reads --params; "
             "`use` writes it (atomically).")
    prsub = pr.add_subparsers(dest="params_cmd", required=True, metavar="ACTION")
    padd = functools.partial(prsub.add_parser, formatter_class=fmt, parents=[common])
    padd("check", help="validate the params file (exit 2 and one line when a value is bad)",
         description="Reads --params; writes nothing.").set_defaults(fn=cmd_params_check)
    padd("show", help="print the effective params: every key, defaults filled in",
         description="Reads --params; prints YAML.").set_defaults(fn=cmd_params_show)
    pu = padd("use", help="make a profile (e.g. profiles/sd15/params.yaml) the params file, every default spelled out",
              description="Reads PROFILE, writes --params (every key spelled out, as DVC tracks them).")
    pu.add_argument("profile", help="a params file to start from, e.g. profiles/sd15/params.yaml")
    pu.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of the profile (dotted, value as YAML), repeatable")
    pu.set_defaults(fn=cmd_params_use)

    for row in STAGES:
        sp = add(row.subcommand, help=f"stage {row.name}: {row.summary}",
                 description=f"DVC stage {row.name}: {row.summary}. Reads params: {', '.join(row.params)}"
                 + (f"; data: {', '.join(row.deps)}" if row.deps else "")
                 + f"; writes: {', '.join(row.outs + row.metrics + row.plots)}.")
        STAGE_OPTIONS.get(row.name, lambda _: None)(sp)
        sp.set_defaults(fn=cmd_stage)
    dy = add("dvc-yaml", help="write dvc.yaml from the stage table (code deps: each stage's imports)",
             description="Reads src/rcdistill/stage_table.py and roster.py; writes --file.")
    dy.add_argument("--file", default="dvc.yaml", help="the file to write or check")
    dy.add_argument("--check", action="store_true", help="only check that the file matches (exit 2 if not)")
    dy.set_defaults(fn=cmd_dvc_yaml)
    pm = add("promote", help="run the promotion gate by hand for a registered version",
             description="Reads the MLflow registry (tracking.uri) and the gate in registry.*; moves the "
             "`champion` alias when the gate passes (exit 0), else exit 1.")
    pm.add_argument("--version", help="model version (default: the challenger)")
    pm.add_argument("--force", action="store_true", help="skip the gate")
    pm.add_argument("--model", default=STUDENTS[0].name, choices=[m.name for m in STUDENTS],
                    help="which student's registered model")
    pm.add_argument("--fast", action="store_true", help=f"same as --model {FAST}")
    pm.add_argument("--json", action="store_true", help="print the decision as one JSON object")
    pm.set_defaults(fn=cmd_promote)
    sm = add("summary", help="headline numbers from metrics/ (teacher vs students, registry)",
             description="Reads metrics/evaluate.json and metrics/register.json.")
    sm.add_argument("--json", action="store_true", help="print both metrics files as one JSON object")
    sm.set_defaults(fn=cmd_summary)
    st = add("students", help="list student variants with their parameter counts",
             description="Reads the teacher's unet/config.json (teacher.path), or SD v1.x's with --sd-v1.")
    st.add_argument("--sd-v1", action="store_true", help="for the SD v1.x UNet config instead of the params teacher")
    st.add_argument("--json", action="store_true", help="print the table as JSON")
    st.set_defaults(fn=cmd_students)

    sr = add("sd-random", help="build an SD v1-shaped pipeline with random weights, and random-weight "
             "Inception/open_clip judge files, offline (for profiles/sd-random)", description="Writes --out.")
    sr.add_argument("--out", default="models/sd_random", help="folder to write (teacher/ and the judge files)")
    sr.add_argument("--latent-size", type=int, default=64, help="UNet sample size (64: SD's 512x512 images)")
    sr.add_argument("--unet-width", type=int, default=320, help="the UNet's first block channels (320: SD's; "
                    "smaller only to check plumbing fast)")
    sr.add_argument("--clip-model", default="ViT-B-32", help="open_clip architecture of the CLIP-score judge")
    sr.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    sr.set_defaults(fn=cmd_sd_random)

    sp = add("sample", help="sample any pipeline folder", description="Reads --model (and --params for the "
             "sampling defaults); writes --output.")
    sp.add_argument("prompts", nargs="+", help="one or more prompts")
    sp.add_argument("--model", required=True, help="a StableDiffusionPipeline folder, e.g. models/student")
    sp.add_argument("-o", "--output", default="sample.png", help="image file to write")
    sp.add_argument("--per-prompt", type=int, default=1, help="images per prompt (a grid row each)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the first image (the next ones count up)")
    sp.add_argument("--steps", type=int, help="sampling steps (default: the folder's own, else sampling.steps)")
    sp.add_argument("--guidance", type=float, help="guidance scale (default: the folder's own, else sampling.guidance_scale)")
    sp.add_argument("--scheduler", choices=["ddim", "dpm", "euler", "pndm", "lcm"],
                    help="scheduler (default: the folder's own for a few-step student, else sampling.scheduler)")
    sp.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscaling of the output")
    cond = sp.add_mutually_exclusive_group()
    cond.add_argument("--condition", metavar="PNG", help="an image-conditioned model's condition: an edge map (white on "
                      "black) for an edge model, a low-res image for a super-resolution one")
    cond.add_argument("--condition-from", metavar="IMAGE", help="derive the condition from an ordinary picture, as "
                      "the conditions stage does (its edges, or its low-res copy)")
    sp.set_defaults(fn=cmd_sample)
    return ap


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cmd is None:  # `rcd` alone
        parser.print_help()
        return 0
    try:
        return args.fn(args)
    except RcdError as err:  # the user's to fix: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001  a crash: its own exit code, so it is never read as "a gate said no"
        traceback.print_exc()
        return CRASH_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
