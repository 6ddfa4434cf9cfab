"""The pipeline in one table: each DVC stage's command, code, params, data, outputs, metrics and plots.

`dvc.yaml` is generated from this table (`rcd dvc-yaml`); the CLI, the Prefect flow and the tests
read it. A stage's code dependencies are not listed by hand: they are the import closure of its
entry module (`code_deps.py`), so a change anywhere in the code a stage runs makes it stale.

Paths that a params key names are written `${key}` (DVC interpolates them from params.yaml), so a
path is stated once and `dvc exp run -S distill.out_dir=x` tracks the folder it writes. The
metrics and plots files are fixed; the stage modules take their names from here.
No heavy imports: params validation and the flow read this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# The teacher stage's output. The toy teacher is trained into it (teacher.path must name it); a
# pretrained teacher lives wherever teacher.path says and this folder records which one it is.
TEACHER_DIR = "models/teacher"
# Eval-set samples a checking stage drew (teacher gate, the students' checks), one file per roster
# model: `evaluate` scores them instead of drawing them again (eval_samples.py).
EVAL_SAMPLES_DIR = "data/eval_samples"


def eval_samples_file(model: str) -> str:
    return f"{EVAL_SAMPLES_DIR}/{model}.safetensors"


@dataclass(frozen=True)
class Stage:
    name: str                         # DVC stage name
    command: str                      # the `rcd` subcommand that runs it (with its fixed flags)
    summary: str                      # one line: what it does (CLI help, README, flow)
    section: str                      # the params block it needs: a file without it is refused
    params: tuple[str, ...]           # params sections or keys it reads (DVC reruns it when they change)
    deps: tuple[str, ...] = ()        # data it reads (outputs of earlier stages)
    outs: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()     # JSON, kept in git (cache: false)
    plots: tuple[str, ...] = ()       # CSV, kept in git (cache: false)
    persist: bool = False             # outputs survive a rerun: the stage resumes from them
    notes: tuple[str, ...] = field(default=(), compare=False)  # comments written above it in dvc.yaml

    @property
    def entry(self) -> str:
        """The module that runs the stage; its import closure is the stage's code."""
        return f"rcdistill.stages.{self.name}"

    @property
    def subcommand(self) -> str:
        return self.command.split()[1]


_EVAL_SETS = ("${prompts.out_dir}/eval_seen.jsonl", "${prompts.out_dir}/eval_unseen.jsonl")

STAGES: tuple[Stage, ...] = (
    Stage("prompts", "rcd prompts", "write the prompt pools (cache, RC) and the seen/unseen eval sets",
          "prompts", ("world", "prompts"), outs=("${prompts.out_dir}",)),
    Stage("evaluators", "rcd evaluators", "train the world classifier and the world CLIP (the judges)",
          "evaluators", ("world.image_size", "prompts.source", "evaluators"), outs=("${evaluators.out_dir}",),
          metrics=("metrics/evaluators.json",),
          notes=("not world.unseen: the evaluators know every concept",)),
    Stage("teacher", "rcd teacher", "train the toy teacher pipeline (or record a pretrained one)",
          "teacher", ("world.image_size", "teacher.source", "teacher.path", "teacher.seed", "teacher.vae",
                      "teacher.text_encoder", "teacher.unet", "teacher.checks"),
          deps=("${evaluators.out_dir}",), outs=(TEACHER_DIR,), metrics=("metrics/teacher_checks.json",),
          notes=("trained on the whole world: no eval set and no held-out list, so another world.unseen",
                 "never retrains it (teacher_gate re-judges it in seconds); the classifier checks its VAE")),
    Stage("teacher_gate", "rcd teacher-gate", "the teacher's quality gate on the seen and unseen eval sets",
          "teacher", ("teacher.gate", "teacher.source", "teacher.path", "sampling", "prompts.source"),
          deps=(TEACHER_DIR, "${evaluators.out_dir}") + _EVAL_SETS, outs=(eval_samples_file("teacher"),),
          metrics=("metrics/teacher.json", "metrics/teacher_verdict.json"),
          notes=("a failure stops everything downstream; the stages that must not start from a failed",
                 "teacher depend on its verdict file alone, which another eval set leaves unchanged")),
    Stage("cache_latents", "rcd cache-latents --rebuild", "teacher latents for the cache prompt pool",
          "cache", ("teacher.path", "sampling", "cache"),
          deps=("${prompts.out_dir}/cache.jsonl", TEACHER_DIR, "metrics/teacher_verdict.json"), outs=("${cache.out_dir}",),
          persist=True,
          notes=("--rebuild: latents of another teacher or settings are discarded, never mixed; the same",
                 "identity resumes a killed run shard by shard (persist: complete shards survive)")),
    Stage("distill", "rcd distill", "Random Conditioning distillation of the teacher into a BK student",
          "distill", ("distill", "sampling", "prompts.source", "teacher.path", "teacher.gate.eval_per_set"),
          deps=("${cache.out_dir}", "${prompts.out_dir}", TEACHER_DIR, "${evaluators.out_dir}"),
          outs=("${distill.out_dir}", eval_samples_file("student")), metrics=("metrics/distill.json",),
          plots=("plots/distill_loss.csv",)),
    Stage("consistency", "rcd consistency", "few-step student: latent consistency distillation with RC",
          "consistency", ("consistency", "sampling", "prompts.source", "teacher.path", "teacher.gate.eval_per_set"),
          deps=("${cache.out_dir}", "${prompts.out_dir}", TEACHER_DIR, "${distill.out_dir}", "${evaluators.out_dir}"),
          outs=("${consistency.out_dir}", eval_samples_file("student_fast")), metrics=("metrics/consistency.json",),
          plots=("plots/consistency_loss.csv",)),
    Stage("boot", "rcd boot", "one-step student from noise and texts alone: BOOT with RC texts, no latents",
          "boot", ("boot", "sampling", "teacher.path"),
          deps=("${prompts.out_dir}/${boot.text_pool}_texts.txt", TEACHER_DIR, "${boot.init_dir}/unet",
                "metrics/teacher_verdict.json"),
          outs=("${boot.out_dir}",), metrics=("metrics/boot.json",), plots=("plots/boot_loss.csv",),
          notes=("no latents and no images: texts, noise and the teacher; the texts are a sorted list,",
                 "so a held-out experiment (another world.unseen) leaves the RC pool's BOOT student alone")),
    Stage("conditions", "rcd conditions", "edge maps and low-res copies of the decoded cached latents and the "
          "teacher's eval images", "conditions", ("conditions", "codi.eval_per_set", "teacher.path", "sampling"),
          deps=("${cache.out_dir}", TEACHER_DIR, eval_samples_file("teacher")) + _EVAL_SETS,
          outs=("${conditions.out_dir}",),
          notes=("image-free: every training pair is a cached teacher latent and a function of its decoding;",
                 "the test conditions come from the teacher's own eval images (its gate kept them, or drawn here)")),
    *(Stage(name, f"rcd {name.replace('_', '-')}", summary, "codi",
            ("codi.task", "codi.text", "codi.init_dir", "codi.train", f"codi.{run}", "conditions", "teacher.path",
             "prompts.source")
            + (("codi.method.drop_text", "codi.method.embedding_channels") if run == "reference" else ("codi.method",)),
            deps=("${cache.out_dir}", "${prompts.out_dir}/rc.jsonl", TEACHER_DIR, "${codi.init_dir}/unet",
                  "${conditions.out_dir}", "metrics/teacher_verdict.json"),
            outs=(f"${{codi.{run}.out_dir}}",), metrics=(f"metrics/{name}.json",), plots=(f"plots/{name}_loss.csv",),
            notes=notes)
      for name, run, summary, notes in (
          ("codi_reference", "reference", "conditional reference: the plain diffusion loss on cached latents and "
           "their conditions, sampled in many steps", ("CoDi's baseline (a) and (b): no RC text, there is no image of one",)),
          ("codi", "full", "CoDi: a few-step image-conditioned student (backbone and adapter) with RC texts", ()),
          ("codi_adapter", "adapter", "CoDi parameter-efficient: the backbone frozen, only the adapter trained",
           ()))),
    Stage("codi_eval", "rcd codi-eval", "the conditional models on the seen and held-out conditions at 1-25 steps: "
          "edge F1, PSNR, low-res consistency, shape, colour", "codi",
          ("codi.task", "codi.eval_steps", "codi.reference", "codi.full", "codi.adapter", "conditions", "prompts.source"),
          deps=("${conditions.out_dir}", "${codi.reference.out_dir}", "${codi.full.out_dir}", "${codi.adapter.out_dir}",
                "${evaluators.out_dir}") + _EVAL_SETS,
          metrics=("metrics/codi_eval.json",)),
    Stage("evaluate", "rcd evaluate", "teacher vs students on the seen and unseen eval sets, same seeds",
          "evaluate", ("evaluate", "sampling", "world", "prompts.source", "teacher.path"),
          deps=_EVAL_SETS + (TEACHER_DIR, "${distill.out_dir}", "${consistency.out_dir}", "${boot.out_dir}",
                             "${evaluators.out_dir}")
          + tuple(eval_samples_file(m) for m in ("teacher", "student", "student_fast")),
          outs=("${evaluate.out_dir}",), metrics=("metrics/evaluate.json",),
          plots=("plots/concept_accuracy.csv", "plots/quality_vs_steps.csv"),
          notes=("evaluate.out_dir: sample grids, teacher (top) and student (bottom) on the same prompts and seeds",)),
    Stage("register", "rcd register", "register the students in MLflow and gate their promotion",
          "registry", ("registry", "tracking", "sampling", "world.image_size", "teacher.path", "distill", "consistency",
                       "boot"),
          deps=("${distill.out_dir}", "${consistency.out_dir}", "${boot.out_dir}", "metrics/evaluate.json",
                "${evaluate.out_dir}") + _EVAL_SETS,
          metrics=("metrics/register.json",),
          notes=("the registry itself lives in the MLflow store (mlruns/); this stage records what it did;",
                 "distill, consistency and boot: each model's card and tags say how it was trained")),
    Stage("codi_register", "rcd codi-register", "register the image-conditioned models in MLflow and gate their "
          "promotion", "registry",
          ("registry.promote", "registry.codi_model_name", "registry.codi_adapter_model_name", "registry.codi_gate",
           "tracking", "world.image_size", "teacher.path", "codi"),
          deps=("${codi.full.out_dir}", "${codi.adapter.out_dir}", "metrics/codi_eval.json", "metrics/codi.json",
                "metrics/codi_adapter.json", "metrics/evaluate.json") + _EVAL_SETS,
          metrics=("metrics/codi_register.json",),
          notes=("its own stage: the text-to-image students register without the conditional models' stages",)),
)

BY_NAME = {s.name: s for s in STAGES}
BY_SUBCOMMAND = {s.subcommand: s for s in STAGES}

# The Prefect flow runs the stages from this one on; `dvc repro cache_latents` reproduces the
# ones before it (prompts, evaluators, teacher, teacher_gate) when they are stale.
FIRST_FLOW_STAGE = "cache_latents"
FLOW_STAGES = tuple(s.name for s in STAGES[[s.name for s in STAGES].index(FIRST_FLOW_STAGE):])


def stage(name: str) -> Stage:
    return BY_NAME[name]


def metrics_file(name: str, index: int = 0) -> str:
    """The stage's metrics file (its `index`-th): the stage modules write where dvc.yaml looks."""
    return BY_NAME[name].metrics[index]


def plot_file(name: str, index: int = 0) -> str:
    return BY_NAME[name].plots[index]
