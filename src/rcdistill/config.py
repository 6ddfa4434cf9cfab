"""Typed params: params.yaml is read into pydantic models; a bad value is one clear line, exit 2."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ParamsError
from .roster import MODEL_NAMES
from .student_specs import STUDENTS
from .world.vocab import ATTRIBUTES, CONCEPTS


class Strict(BaseModel):
    # strict: no silent coercion (a bool or 2.0 for an int, "3" for a number); no NaN or infinity anywhere
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


def _names_a_folder(v: str) -> str:
    if not v.strip():
        raise ValueError("must name the pipeline folder whose UNet the model starts from")
    return v


InitFolder = Annotated[str, AfterValidator(_names_a_folder)]  # boot.init_dir, codi.init_dir


# ---------------------------------------------------------------- world and prompts
class WorldParams(Strict):
    image_size: int = Field(16, ge=16, le=1024, multiple_of=16)
    unseen: list[str] = Field(default_factory=lambda: ["triangle"])

    @field_validator("unseen")
    @classmethod
    def _known_and_leaves_something_seen(cls, v: list[str]) -> list[str]:
        for name in v:
            if name not in CONCEPTS:
                raise ValueError(f"unknown concept {name!r}; allowed: {', '.join(CONCEPTS)}")
        for attr in ("shape", "colour"):
            if set(ATTRIBUTES[attr]) <= set(v):
                raise ValueError(f"holds out every {attr}, so nothing would be seen; keep at least one")
        return sorted(set(v), key=v.index)

    def seen_values(self, attr: str) -> list[str]:
        return [x for x in ATTRIBUTES[attr] if x not in self.unseen]


class PromptsParams(Strict):
    source: Literal["world", "files"] = "world"
    seed: int = 1
    out_dir: str = "data/prompts"
    cache_pool_size: int = Field(400, ge=8, le=10_000_000)
    rc_pool_size: int = Field(0, ge=0, description="0: every distinct caption of the world")
    eval_per_set: int = Field(640, ge=4, le=100_000)
    # source: files (real models): user prompt files and the keywords that define "unseen"
    cache_file: str | None = None
    rc_file: str | None = None
    exclude_keywords: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _files_given(self):
        if self.source == "files":
            for key in ("cache_file", "rc_file"):
                if not getattr(self, key):
                    raise ValueError(f"prompts.source is 'files', so prompts.{key} must name a prompt file")
        return self


class SamplingParams(Strict):
    """How every stage samples a pipeline (teacher gate, latent cache, evaluation)."""
    scheduler: Literal["ddim", "dpm", "euler", "pndm"] = "ddim"
    steps: int = Field(25, ge=1, le=1000)
    guidance_scale: float = Field(3.0, ge=0.0, le=50.0)
    batch_size: int = Field(128, ge=1, le=4096)


# ---------------------------------------------------------------- evaluators
class ClassifierParams(Strict):
    train_images: int = Field(30000, ge=64)
    steps: int = Field(300, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(2e-3, gt=0, le=1)
    eval_images: int = Field(3000, ge=50)


class ClipParams(Strict):
    embed_dim: int = Field(64, ge=8)
    width: int = Field(64, ge=16, description="text transformer width (image tower: half of it)")
    layers: int = Field(2, ge=1)
    steps: int = Field(200, ge=1)
    batch_size: int = Field(128, ge=4)
    lr: float = Field(3e-3, gt=0, le=1)
    eval_images: int = Field(2000, ge=50)


class EvaluatorsGate(Strict):
    """Floors on the judges' own accuracy (lowest attribute), checked by the evaluators stage: a judge
    that cannot read the world would make every later accuracy meaningless."""
    classifier: float = Field(0.98, ge=0, le=1)      # attribute classifier on fresh renders
    clip_zero_shot: float = Field(0.90, ge=0, le=1)  # world CLIP, zero-shot shape and colour


class EvaluatorsParams(Strict):
    out_dir: str = "models/evaluators"
    seed: int = 2
    classifier: ClassifierParams = ClassifierParams()
    clip: ClipParams = ClipParams()
    gate: EvaluatorsGate = EvaluatorsGate()


# ---------------------------------------------------------------- teacher
class VaeParams(Strict):
    block_out_channels: list[int] = Field(default_factory=lambda: [16, 32, 64])
    latent_channels: int = Field(16, ge=1)
    mid_block_attention: bool = False
    steps: int = Field(1000, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(4e-3, gt=0, le=1)
    kl_weight: float = Field(1e-3, ge=0)


class TextEncoderParams(Strict):
    hidden_size: int = Field(64, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    max_length: int = Field(16, ge=8, le=77)
    steps: int = Field(400, ge=1)
    batch_size: int = Field(128, ge=4)
    lr: float = Field(2e-3, gt=0, le=1)

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.hidden_size % self.heads:
            raise ValueError(f"heads {self.heads} do not divide hidden_size {self.hidden_size}")
        return self


class UnetParams(Strict):
    block_out_channels: list[int] = Field(default_factory=lambda: [32, 64, 64])
    layers_per_block: int = Field(2, ge=1)
    attention_head_dim: int = Field(8, ge=1)
    train_images: int = Field(30000, ge=64)
    steps: int = Field(1500, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(2e-3, gt=0, le=1)
    drop_text: float = Field(0.1, ge=0, le=1)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction"
    snr_gamma: float = Field(5.0, ge=0, description="Min-SNR-gamma loss weight; 0: plain MSE (SD's recipe)")

    @model_validator(mode="after")
    def _heads_divide_widths(self):
        bad = [c for c in self.block_out_channels if c <= 0 or c % self.attention_head_dim]
        if bad:
            raise ValueError(f"attention_head_dim {self.attention_head_dim} does not divide block_out_channels {bad}")
        return self


class TeacherChecks(Strict):
    """Floors on the toy teacher's step checks, enforced by the teacher stage (lowest attribute)."""
    vae_recon: float = Field(0.95, ge=0, le=1)        # the classifier reads the VAE's reconstructions
    text: float = Field(0.95, ge=0, le=1)             # the text encoder's probe reads each attribute off a caption
    cond_uncond_gap: float = Field(0.05, ge=0)        # conditional and unconditional predictions differ


class GateParams(Strict):
    shape: float = Field(0.90, ge=0, le=1)
    colour: float = Field(0.90, ge=0, le=1)
    eval_per_set: int = Field(640, ge=4)


class TeacherParams(Strict):
    source: Literal["toy", "pretrained"] = "toy"
    path: str = "models/teacher"
    seed: int = 3
    vae: VaeParams = VaeParams()
    text_encoder: TextEncoderParams = TextEncoderParams()
    unet: UnetParams = UnetParams()
    checks: TeacherChecks = TeacherChecks()
    gate: GateParams = GateParams()


# ---------------------------------------------------------------- latent cache and distillation
class CacheParams(Strict):
    out_dir: str = "data/latents"
    seed: int = 1000
    latents_per_prompt: int = Field(1, ge=1, le=1000)
    shard_size: int = Field(64, ge=1, le=100_000)
    dtype: Literal["float32", "float16"] = "float32"   # how latents are stored
    teacher_dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"  # how the teacher samples them


class LossWeights(Strict):
    task: float = Field(1.0, ge=0)
    out: float = Field(1.0, ge=0)
    feat: float = Field(1.0, ge=0)


class TrainLoopParams(Strict):
    """What every training loop shares (src/rcdistill/distill/loop.py)."""
    out_dir: str = "models/student"
    work_dir: str = "outputs/distill"    # checkpoints; a killed run resumes from the newest
    seed: int = 4
    steps: int = Field(450, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0, le=1)
    lr_schedule: Literal["constant_with_warmup", "cosine", "linear"] = "cosine"
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(1e-2, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    ema: bool = True
    ema_decay: float = Field(0.999, ge=0, lt=1)
    checkpoint_every: int = Field(250, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    teacher_dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    text_embeds: Literal["memory", "off"] = "memory"
    log_every: int = Field(25, ge=1)
    # GPU efficiency (distill/speed.py); `auto`: on for CUDA, off on CPU
    compile: bool = False                 # torch.compile of student, teacher (and LCM target): ~2 min once
    channels_last: bool = False
    fused_adam: Literal["auto"] | bool = "auto"
    tf32: Literal["auto"] | bool = "auto"
    gradient_checkpointing: bool = False  # trades ~30% step time for activation memory (larger batches)

    @field_validator("mixed_precision", "text_embeds", mode="before")
    @classmethod
    def _yaml_1_1_booleans(cls, v, info):
        # `dvc exp run -S` rewrites params.yaml with ruamel (YAML 1.2), which leaves `no` and `off`
        # unquoted; PyYAML (YAML 1.1) reads those back as False.
        if v is False:
            return {"mixed_precision": "no", "text_embeds": "off"}[info.field_name]
        return v

    @model_validator(mode="after")
    def _warmup_inside_training(self):
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps {self.warmup_steps} is not below steps {self.steps}: "
                             "the learning rate would never reach its value")
        return self


class RCTrainParams(TrainLoopParams):
    """A training loop over the latent cache with Random Conditioning texts (distill, consistency)."""
    rc_prob: float = Field(0.5, ge=0, le=1)
    drop_text: float = Field(0.1, ge=0, le=1)


class UnpairedParams(Strict):
    """How Random Conditioning's unpaired samples are drawn and weighted. The defaults are the paper's
    recipe (unpaired samples are treated like paired ones but for the task loss); the others are
    the variants benchmarks/rc_variants.py measures on concepts RC teaches poorly."""
    weight: float = Field(1.0, ge=0)        # weight of an unpaired sample in the output and feature losses (paired: 1)
    t_min: int = Field(0, ge=0)             # their timesteps come from the sampler, limited to t >= t_min
    target: Literal["conditional", "guided"] = "conditional"  # guided: the teacher's CFG output is their output target
    guidance_scale: float = Field(3.0, ge=1)  # for target: guided
    pairing: Literal["uniform", "matched"] = "uniform"  # matched: a cached latent sharing the most other attributes


class DistillParams(RCTrainParams):
    student: str = "bk_small"
    init: Literal["teacher", "random"] = "teacher"  # teacher: BK-SDM's copy of surviving blocks | random: from scratch
    timestep_sampler: Literal["uniform", "exp"] = "exp"
    exp_lambda: float = Field(5.0, gt=0)
    loss: LossWeights = LossWeights()
    unpaired: UnpairedParams = UnpairedParams()

    @field_validator("student")
    @classmethod
    def _known_student(cls, v: str) -> str:
        if v not in STUDENTS:
            raise ValueError(f"unknown student {v!r}; allowed: {', '.join(STUDENTS)}")
        return v


class ConsistencyParams(RCTrainParams):
    """Latent consistency distillation from the frozen teacher, on cached latents and RC texts."""
    out_dir: str = "models/student_fast"
    work_dir: str = "outputs/consistency"
    init: Literal["student", "teacher"] = "student"   # start from the RC student or from the teacher UNet
    num_ddim_timesteps: int = Field(50, ge=2, le=1000)  # the solver's grid: skip k = T // num_ddim_timesteps
    w_min: float = Field(1.0, ge=0)       # guidance w (teacher: cond + w (cond - uncond)), drawn uniformly
    w_max: float = Field(3.0, ge=0)
    time_cond_proj_dim: int = Field(256, ge=2, multiple_of=2)  # the guidance embedding's width
    huber_c: float = Field(1e-3, gt=0)
    default_steps: int = Field(4, ge=1, le=50)          # what the saved pipeline and its registry model use
    guidance_scale: float = Field(3.0, ge=1.0, le=50.0)  # embedded as w = guidance_scale - 1, no CFG pass
    seed: int = 5
    lr: float = Field(2e-4, gt=0, le=1)
    steps: int = Field(300, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    rc_prob: float = Field(0.2, ge=0, le=1)
    drop_text: float = Field(0.05, ge=0, le=1)
    checkpoint_every: int = Field(200, ge=1)
    ema_decay: float = Field(0.95, ge=0, lt=1)          # the EMA is the target network (LCM: 0.95)

    @model_validator(mode="after")
    def _w_range(self):
        if self.w_min > self.w_max:
            raise ValueError(f"consistency.w_min {self.w_min} is above consistency.w_max {self.w_max}")
        if self.default_steps > self.num_ddim_timesteps:
            raise ValueError(f"consistency.default_steps {self.default_steps} is beyond the solver grid "
                             f"(num_ddim_timesteps {self.num_ddim_timesteps})")
        if not self.ema:
            raise ValueError("consistency.ema must be true: the EMA copy is the consistency target network")
        return self


class BootParams(TrainLoopParams):
    """BOOT: a one-step student from noise and texts alone (no cached latent, no image)."""
    out_dir: str = "models/student_boot"
    work_dir: str = "outputs/boot"
    # the pipeline folder whose UNet the student starts from: the teacher's, or the RC student's
    # (models/student); a DVC dependency, so another start reruns the stage
    init_dir: InitFolder = "models/teacher"
    # BK block removal applied to that UNet before training (distill.student's names), as the distill
    # stage's BK-SDM init does: a smaller one-step student with no data anywhere; null keeps it whole
    student: str | None = "bk_small"
    text_pool: Literal["rc", "cache"] = "rc"          # rc: the RC pool (held-out concepts too) | cache: the cache captions only
    num_grid_steps: int = Field(50, ge=2, le=999)     # the DDIM grid the trajectory is bootstrapped on
    boundary_prob: float = Field(0.2, gt=0, lt=1)     # share of samples taught the boundary (teacher's x0 from noise)
    delta_min: float = Field(0.05, gt=0, le=1)        # the 1/delta^2 weight is capped at 1/delta_min^2
    guidance_scale: float = Field(3.0, ge=1.0, le=50.0)  # the teacher's CFG, baked in: the student samples without
    seed: int = 6
    lr: float = Field(1e-4, gt=0, le=1)
    steps: int = Field(1000, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    checkpoint_every: int = Field(250, ge=1)

    @field_validator("student")
    @classmethod
    def _known_student(cls, v: str | None) -> str | None:
        if v is not None and v not in STUDENTS:
            raise ValueError(f"unknown student {v!r}; allowed: {', '.join(STUDENTS)}, or null (the init UNet whole)")
        return v


class ConditionsParams(Strict):
    """Stage `conditions`: each cached latent's (and each teacher eval image's) conditions."""
    out_dir: str = "data/conditions"
    edge_threshold: float = Field(0.15, gt=0, lt=1)   # a neighbour difference above it (0..1, any channel) is an edge
    lowres_factor: int = Field(4, ge=2, le=16)        # x f super-resolution: f x f block means

    @field_validator("lowres_factor")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError("must be a power of two (the image side is one)")
        return v


class CoDiMethod(Strict):
    """What CoDi's loss does (src/rcdistill/codi/objective.py); the full and adapter runs share it."""
    ode_from: Literal["teacher", "ema", "online"] = "teacher"   # who takes the one-step ODE move t -> s
    teacher_guidance: float = Field(1.0, ge=1.0, le=50.0)     # ode_from teacher: its CFG (1: none, CoDi's code)
    prev_noise: bool = False           # "PREv": the ODE point keeps the true forward noise
    space: Literal["x0", "eps"] = "x0"  # where the consistency term compares the two predictions
    clean_weight: float = Field(1.0, ge=0)   # r: distance to the paired clean latent (own captions only)
    num_ddim_timesteps: int = Field(50, ge=2, le=1000)  # the solver grid: skip k = T // num_ddim_timesteps
    rc_prob: float = Field(0.2, ge=0, le=1)    # the caption replaced by a random RC-pool text
    drop_text: float = Field(0.05, ge=0, le=1)
    embedding_channels: int = Field(16, ge=1, le=1024)  # the adapter's condition embedding width


class CoDiShared(Strict):
    """Training-loop keys the three conditional runs (reference, full, adapter) share."""
    batch_size: int = Field(64, ge=1)
    lr_schedule: Literal["constant_with_warmup", "cosine", "linear"] = "cosine"
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    checkpoint_every: int = Field(200, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    teacher_dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    text_embeds: Literal["memory", "off"] = "memory"
    log_every: int = Field(25, ge=1)
    compile: bool = False
    channels_last: bool = False
    fused_adam: Literal["auto"] | bool = "auto"
    tf32: Literal["auto"] | bool = "auto"
    gradient_checkpointing: bool = False

    _yaml_1_1_booleans = field_validator("mixed_precision", "text_embeds", mode="before")(
        TrainLoopParams._yaml_1_1_booleans.__func__)


class CoDiRun(Strict):
    """One conditional model: where it goes, how long it trains, how it samples (defaults: CoDi full)."""
    out_dir: str = "models/codi"
    work_dir: str = "outputs/codi"
    seed: int = 8
    steps: int = Field(400, ge=1)
    lr: float = Field(1e-3, gt=0, le=1)
    ema_decay: float = Field(0.95, ge=0, lt=1)       # CoDi runs: the EMA is the consistency target network
    default_steps: int = Field(4, ge=1, le=1000)     # the saved pipeline's sampling steps
    guidance_scale: float = Field(1.0, ge=1.0, le=50.0)  # its text CFG when sampling (1: no CFG pass)


class CoDiReferenceRun(CoDiRun):
    """The diffusion-loss reference: many DDIM steps with text CFG."""
    out_dir: str = "models/codi_reference"
    work_dir: str = "outputs/codi_reference"
    seed: int = 7
    steps: int = Field(400, ge=1)
    lr: float = Field(3e-3, gt=0, le=1)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    default_steps: int = Field(25, ge=1, le=1000)
    guidance_scale: float = Field(3.0, ge=1.0, le=50.0)


class CoDiAdapterRun(CoDiRun):
    """CoDi parameter-efficient: the backbone frozen."""
    out_dir: str = "models/codi_adapter"
    work_dir: str = "outputs/codi_adapter"
    seed: int = 9
    lr: float = Field(3e-3, gt=0, le=1)


class CoDiLoop(TrainLoopParams, CoDiMethod):
    """The flat view the training loop reads: shared keys + method + one run."""
    ema: bool = True
    default_steps: int = 4
    guidance_scale: float = 1.0


class CoDiParams(Strict):
    """Image-conditioned few-step students (CoDi) from the teacher's cached latents and their conditions."""
    task: Literal["edge", "lowres"] = "edge"   # edge: edge map -> image | lowres: x lowres_factor super-resolution
    init_dir: InitFolder = "models/student"    # the pipeline folder whose UNet is the backbone (the RC student)
    # what the model reads of a text: caption (all of it) | colour (its colour word: the edge map gives
    # the rest; the teacher still reads whole captions; needs the world's prompts) | auto (colour with
    # the world's prompts, caption with prompt files)
    text: Literal["auto", "caption", "colour"] = "auto"
    method: CoDiMethod = CoDiMethod()
    train: CoDiShared = CoDiShared()
    reference: CoDiReferenceRun = CoDiReferenceRun()
    full: CoDiRun = CoDiRun()
    adapter: CoDiAdapterRun = CoDiAdapterRun()
    # teacher eval images per set turned into test conditions: the gate's own (up to as many as it
    # drew), or drawn by the conditions stage when no gate drew any (a pretrained teacher)
    eval_per_set: int = Field(320, ge=4, le=100_000)
    eval_steps: dict[str, list[int]] = Field(default_factory=lambda: {
        "reference": [25, 4], "full": [1, 2, 4], "adapter": [4]})

    @field_validator("eval_steps")
    @classmethod
    def _known_runs(cls, v: dict[str, list[int]]) -> dict[str, list[int]]:
        for name, steps in v.items():
            if name not in CODI_RUNS:
                raise ValueError(f"unknown run {name!r}; allowed: {', '.join(CODI_RUNS)}")
            if any(n < 1 for n in steps):
                raise ValueError(f"{name}: sampling steps must be >= 1")
        return v

    def loop(self, run: str) -> CoDiLoop:
        """The training loop's settings for run `run` (reference | full | adapter)."""
        try:
            return CoDiLoop.model_validate({**self.train.model_dump(), **self.method.model_dump(),
                                            **getattr(self, run).model_dump()})
        except ValidationError as err:
            raise ParamsError(_one_line(err, f"params.yaml codi.{run}")) from None

    @model_validator(mode="after")
    def _runs_fit(self):
        for run in CODI_RUNS:
            r = getattr(self, run)
            if self.train.warmup_steps >= r.steps:
                raise ValueError(f"codi.train.warmup_steps {self.train.warmup_steps} is not below codi.{run}.steps "
                                 f"{r.steps}: the learning rate would never reach its value")
        for run in ("full", "adapter"):
            steps = max([getattr(self, run).default_steps, *self.eval_steps.get(run, [])])
            if steps > self.method.num_ddim_timesteps:
                raise ValueError(f"codi.{run}: {steps} sampling steps are beyond the solver grid "
                                 f"(codi.method.num_ddim_timesteps {self.method.num_ddim_timesteps})")
        return self


CODI_RUNS = ("reference", "full", "adapter")


# ---------------------------------------------------------------- evaluation, registry, orchestration
EVAL_MODELS = MODEL_NAMES


class EvaluateParams(Strict):
    out_dir: str = "reports"              # sample grids (teacher and student side by side)
    eval_per_set: int = Field(640, ge=4, le=100_000)
    reference_per_prompt: int = Field(4, ge=1, le=100, description="rendered reference images per eval prompt")
    fid_features: Literal["world_clip", "inception"] = "world_clip"
    inception_path: str | None = None     # clean-fid's inception-2015-12-05.pt (real models; never downloaded)
    reference_dir: str | None = None      # real reference images for FID/KID (prompts.source: files)
    clip_model: str | None = None         # open_clip architecture name for CLIP score (real models)
    clip_checkpoint: str | None = None    # its weights, a local file
    kid_subsets: int = Field(20, ge=1)
    latency_repeats: int = Field(5, ge=1, le=1000)
    # diversity: the first N prompts of each eval set drawn with several seeds at the default steps
    diversity_prompts: int = Field(32, ge=0, le=10_000, description="0 skips the diversity metric")
    diversity_seeds: int = Field(4, ge=2, le=64)
    grid_prompts: int = Field(10, ge=1, le=100)
    # sampling steps per model (teacher and student: the `sampling` scheduler; student_fast: its LCM
    # scheduler); an empty list leaves the model out. Each model's own default is always sampled.
    steps: dict[str, list[int]] = Field(default_factory=lambda: {
        "teacher": [25, 4], "student": [25, 15, 8, 4], "student_fast": [8, 4, 2, 1], "student_boot": [1]})

    @field_validator("steps")
    @classmethod
    def _known_models_and_counts(cls, v: dict[str, list[int]]) -> dict[str, list[int]]:
        for model, counts in v.items():
            if model not in EVAL_MODELS:
                raise ValueError(f"unknown model {model!r}; allowed: {', '.join(EVAL_MODELS)}")
            for n in counts:
                if not 1 <= n <= 1000:
                    raise ValueError(f"{model}: {n} sampling steps is outside 1..1000")
        return {m: sorted(set(c), reverse=True) for m, c in v.items()}

    @model_validator(mode="after")
    def _inception_file(self):
        if self.fid_features == "inception" and not self.inception_path:
            raise ValueError("evaluate.fid_features is 'inception', so evaluate.inception_path must name the weights file")
        if bool(self.clip_model) != bool(self.clip_checkpoint):
            raise ValueError("evaluate.clip_model and evaluate.clip_checkpoint go together; set both or neither")
        return self


# `_swapped`: CoDi's sets with each condition given another row's text (codi_eval)
_SET_METRIC = r"(seen|unseen)(_swapped)?\.(shape|colour|size|position|fid|kid|clip_score|edge_f1|psnr|lowres_psnr)"
_MODEL_METRIC = (r"unet_params|ms_per_unet_step|s_per_image|ms_per_image|unet_step_ratio|param_ratio|image_time_ratio"
                 r"|trainable_params")
# what metrics/evaluate.json holds for one model: per set at its default steps, its sizes and times,
# and the same per step count (steps.<n>.<set>.<metric>, steps.<n>.ms_per_image)
GATE_METRIC = re.compile(rf"{_SET_METRIC}|{_MODEL_METRIC}|steps\.\d+\.({_SET_METRIC}|ms_per_image)")


_ACCURACY = re.compile(rf"(steps\.\d+\.)?(seen|unseen)(_swapped)?\.(shape|colour|size|position|edge_f1)")


def metric_range(name: str) -> tuple[float, float]:
    """What a gate metric can take: accuracies (and edge F1) are proportions, a CLIP score is 0..100,
    the rest (FID, KID, PSNR, times, ratios, counts) are non-negative."""
    if _ACCURACY.fullmatch(name):
        return 0.0, 1.0
    if name.endswith("clip_score"):
        return 0.0, 100.0
    return 0.0, float("inf")


class GateRules(Strict):
    """Promotion gate: absolute floors/ceilings and the largest allowed slip against the champion.

    Keys are student metric names from metrics/evaluate.json (e.g. `unseen.shape`, `seen.fid`,
    `unet_step_ratio`); names with fid, kid or latency in them are lower-is-better.
    """
    min: dict[str, float] = Field(default_factory=dict)
    max: dict[str, float] = Field(default_factory=dict)
    vs_champion: dict[str, float] = Field(default_factory=dict)

    @field_validator("min", "max", "vs_champion")
    @classmethod
    def _known_metrics(cls, v: dict[str, float], info) -> dict[str, float]:
        for name, value in v.items():
            if not GATE_METRIC.fullmatch(name):
                raise ValueError(f"unknown gate metric {name!r}; e.g. unseen.shape, seen.fid, ms_per_image, "
                                 "unet_step_ratio, image_time_ratio, steps.4.unseen.shape")
            if info.field_name == "vs_champion" and value < 0:
                raise ValueError(f"{name}: a negative slack ({value}) would demand improvement, not bound a slip")
            low, high = metric_range(name)
            if not low <= value <= high:  # a slack is bounded by the same range
                raise ValueError(f"{name}: {value} is outside what the metric can take ({low}..{high})")
        return v

    @model_validator(mode="after")
    def _floor_below_ceiling(self):
        for name in set(self.min) & set(self.max):
            if self.min[name] > self.max[name]:
                raise ValueError(f"{name}: floor {self.min[name]} is above ceiling {self.max[name]}; nothing could pass")
        return self


MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class RegisterParams(Strict):
    model_name: str = Field("rcdistill-student", min_length=1, pattern=MODEL_NAME)
    promote: bool = True                  # run the gate after registering (else: challenger only)
    gate: GateRules = GateRules(min={"unseen.shape": 0.6, "seen.shape": 0.75}, max={"unet_step_ratio": 0.9},
                                vs_champion={"unseen.shape": 0.02, "seen.shape": 0.02, "seen.colour": 0.02})
    # the few-step (consistency) student: its own registered model and gate, on its metrics at its
    # default steps (e.g. `unseen.shape` at 4 LCM steps, `ms_per_image`, `image_time_ratio`)
    fast_model_name: str = Field("rcdistill-student-fast", min_length=1, pattern=MODEL_NAME)
    fast_gate: GateRules = GateRules(min={"unseen.shape": 0.6, "seen.shape": 0.75, "seen.colour": 0.8},
                                     max={"image_time_ratio": 0.3, "ms_per_image": 100.0},
                                     vs_champion={"unseen.shape": 0.02, "seen.shape": 0.02})

    # the one-step BOOT student: its own registered model and gate, at its one step
    boot_model_name: str = Field("rcdistill-student-boot", min_length=1, pattern=MODEL_NAME)
    # floors: the targets (0.85x the teacher on shape, 0.8x on colour) on a teacher near 1.0
    boot_gate: GateRules = GateRules(min={"unseen.shape": 0.85, "seen.shape": 0.85, "unseen.colour": 0.8,
                                          "seen.colour": 0.8}, max={"image_time_ratio": 0.3},
                                     vs_champion={"unseen.shape": 0.02, "seen.shape": 0.02})

    # the image-conditioned CoDi models (full and adapter-only): their own registered models and gate,
    # on metrics/codi_eval.json at their default steps (edge F1, PSNR, shape and colour per set)
    codi_model_name: str = Field("rcdistill-codi", min_length=1, pattern=MODEL_NAME)
    codi_adapter_model_name: str = Field("rcdistill-codi-adapter", min_length=1, pattern=MODEL_NAME)
    # the held-out shape has no floor: no training condition shows one (docs/distillation.md, CoDi)
    codi_gate: GateRules = GateRules(min={"seen.edge_f1": 0.9, "unseen.edge_f1": 0.9, "seen.colour": 0.9,
                                          "unseen.colour": 0.9, "seen.shape": 0.65, "seen_swapped.shape": 0.65,
                                          "seen_swapped.colour": 0.9},
                                     vs_champion={"seen.shape": 0.05, "seen.edge_f1": 0.02})

    @model_validator(mode="after")
    def _names_apart(self):
        names = {"model_name": self.model_name, "fast_model_name": self.fast_model_name,
                 "boot_model_name": self.boot_model_name, "codi_model_name": self.codi_model_name,
                 "codi_adapter_model_name": self.codi_adapter_model_name}
        if len(set(names.values())) < len(names):
            raise ValueError(f"registry model names must differ from each other ({names})")
        return self


class OrchestrationParams(Strict):
    deployment: str = Field("rcdistill-scheduled", min_length=1)
    cron: str = "0 3 * * *"
    timezone: str = "UTC"
    retries: int = Field(1, ge=0, le=10)
    retry_delay_s: int = Field(30, ge=0)
    # a hung stage must not hold the one-run-per-workspace slot forever: each `dvc repro <stage>`
    # is stopped after stage_timeout_s, and the flow stops starting stages after flow_timeout_s
    stage_timeout_s: int = Field(3600, ge=1)
    flow_timeout_s: int = Field(4 * 3600, ge=1)

    @model_validator(mode="after")
    def _stage_inside_flow(self):
        if self.stage_timeout_s > self.flow_timeout_s:
            raise ValueError(f"orchestration.stage_timeout_s {self.stage_timeout_s} is above flow_timeout_s "
                             f"{self.flow_timeout_s}: one stage may not outlast the whole flow")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA time zone (e.g. UTC, Europe/Paris)") from None
        return v

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, v: str) -> str:
        from datetime import datetime

        from cronsim import CronSim, CronSimError

        try:
            CronSim(v, datetime(2026, 1, 1))
        except CronSimError as err:
            raise ValueError(f"not a cron expression ({err})") from None
        return v


class TrackingParams(Strict):
    uri: str = "sqlite:///mlruns/mlflow.db"
    artifacts: str = "mlruns/artifacts"
    experiment: str = "rcdistill"
    ui_url: str = "http://127.0.0.1:5000"   # where `mlflow ui` serves the store: links in Prefect artifacts


class Params(Strict):
    world: WorldParams = WorldParams()
    prompts: PromptsParams = PromptsParams()
    sampling: SamplingParams = SamplingParams()
    evaluators: EvaluatorsParams = EvaluatorsParams()
    teacher: TeacherParams = TeacherParams()
    cache: CacheParams = CacheParams()
    distill: DistillParams = DistillParams()
    consistency: ConsistencyParams = ConsistencyParams()
    boot: BootParams = BootParams()
    conditions: ConditionsParams = ConditionsParams()
    codi: CoDiParams = CoDiParams()
    evaluate: EvaluateParams = EvaluateParams()
    registry: RegisterParams = RegisterParams()
    orchestration: OrchestrationParams = OrchestrationParams()
    tracking: TrackingParams = TrackingParams()

    @model_validator(mode="after")
    def _outputs_apart(self):
        """Every folder a stage writes: named, and neither the same as nor inside another."""
        outs = {"prompts.out_dir": self.prompts.out_dir, "evaluators.out_dir": self.evaluators.out_dir,
                "cache.out_dir": self.cache.out_dir, "distill.out_dir": self.distill.out_dir,
                "distill.work_dir": self.distill.work_dir, "consistency.out_dir": self.consistency.out_dir,
                "consistency.work_dir": self.consistency.work_dir, "boot.out_dir": self.boot.out_dir,
                "boot.work_dir": self.boot.work_dir, "evaluate.out_dir": self.evaluate.out_dir,
                "conditions.out_dir": self.conditions.out_dir,
                **{f"codi.{r}.{k}": getattr(getattr(self.codi, r), k) for r in CODI_RUNS for k in ("out_dir", "work_dir")}}
        if self.teacher.source == "toy":
            outs["teacher.path"] = self.teacher.path
        parts = {}
        for key, value in outs.items():
            if not value.strip():
                raise ValueError(f"{key} is empty: it must name a folder")
            parts[key] = Path(value).parts
        keys = list(parts)
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                short, long_ = sorted((parts[a], parts[b]), key=len)
                if long_[:len(short)] == short:
                    raise ValueError(f"{a} ({outs[a]}) and {b} ({outs[b]}) overlap: one stage's output would "
                                     "overwrite or hold another's")
        if self.distill.unpaired.pairing == "matched" and self.prompts.source != "world":
            raise ValueError("distill.unpaired.pairing: matched pairs by the world's attributes; "
                             "prompts.source 'files' has none (use uniform)")
        if self.codi.text == "colour" and self.prompts.source != "world":
            raise ValueError("codi.text: colour reads the world's colour words; prompts.source 'files' has none "
                             "(use caption)")
        fast = self.evaluate.steps.get("student_fast", [])
        if fast and max(fast) > self.consistency.num_ddim_timesteps:
            raise ValueError(f"evaluate.steps.student_fast asks for {max(fast)} steps, beyond the few-step "
                             f"student's solver grid (consistency.num_ddim_timesteps {self.consistency.num_ddim_timesteps})")
        if any(n != 1 for n in self.evaluate.steps.get("student_boot", [])):
            raise ValueError("evaluate.steps.student_boot: the BOOT student samples in one step; list [1] or nothing")
        return self


def _one_line(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"]) or "<root>"
    value = e.get("input")
    if e["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}' (value {value!r}); remove it or check its spelling"
    msg = e["msg"].removeprefix("Value error, ")
    if not e["loc"]:  # a rule across sections: the message names the keys
        return f"{source}: {msg}"
    return f"{source}: bad value for '{key}': {value!r} ({msg})"


def parse_params(data: Any, source: str = "params.yaml") -> Params:
    if data is None:
        raise ParamsError(f"{source}: the file is empty; start from the repository's params.yaml")
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: top level must be a mapping of sections, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ParamsError(_one_line(err, source)) from None


def parse_set(items: list[str]) -> dict[str, Any]:
    """Command-line `--set key=value` items as dotted-key overrides (values parsed as YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParamsError(f"--set {item!r}: expected key=value")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ParamsError(f"--set {item!r}: the value is not valid YAML") from None
    return out


def effective_yaml(p: Params) -> str:
    """Every key with the value the stages will use, as YAML (defaults spelled out)."""
    return yaml.safe_dump(p.model_dump(mode="json"), sort_keys=False, default_flow_style=None, width=110)


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Read and validate params; `overrides` maps dotted keys to values (e.g. flow parameters)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    for dotted, value in (overrides or {}).items():
        node = data if isinstance(data, dict) else {}
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return parse_params(data, str(path))
