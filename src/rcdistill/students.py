"""BK-SDM students derived from any UNet2DConditionModel config, and their teacher-weight mapping.

Block removal (BK-SDM): `bk_base` keeps one resnet(+attention) pair per down stage and two per
up stage; `bk_small` also drops the mid block; `bk_tiny` also drops the innermost (plain) stage.
Channel-reduced students (in the spirit of the Random Conditioning paper's C-series) scale
every stage's width of a BK layout. Weights come from the teacher where a block survives:
down block k keeps teacher resnet/attention k; up block resnet 0 keeps teacher resnet 0 and
the others take the teacher's last ones (BK-SDM's choice), shifted by one stage for bk_tiny.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from .errors import UserError
from .fingerprint import folder_digest
from .student_specs import STUDENTS, StudentSpec  # noqa: F401

# Stable Diffusion v1.x U-Net (859.5M parameters), for sizing students offline.
SD_V1_UNET_CONFIG = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768, "attention_head_dim": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "norm_num_groups": 32, "act_fn": "silu", "flip_sin_to_cos": True, "freq_shift": 0,
}


def _round_channels(ch: int, width: float, multiple: int) -> int:
    return max(multiple, int(round(ch * width / multiple)) * multiple)


def student_config(teacher_config: dict, name: str) -> dict:
    """Config of student `name` for a teacher UNet config (a plain dict, e.g. unet.config)."""
    if name not in STUDENTS:
        raise ValueError(f"unknown student {name!r}; choose one of {', '.join(STUDENTS)}")
    spec = STUDENTS[name]
    cfg = {k: v for k, v in dict(teacher_config).items() if not k.startswith("_")}
    if cfg.get("layers_per_block", 2) < 2:
        raise ValueError("block removal needs a teacher with layers_per_block >= 2")
    cfg["layers_per_block"] = cfg.get("layers_per_block", 2) - 1
    down, up = list(cfg["down_block_types"]), list(cfg["up_block_types"])
    channels = list(cfg["block_out_channels"])
    if spec.layout in ("bk_small", "bk_tiny"):
        cfg["mid_block_type"] = None
    if spec.layout == "bk_tiny":
        if len(down) < 3:
            raise ValueError("bk_tiny needs a teacher with at least 3 stages")
        down, up, channels = down[:-1], up[1:], channels[:-1]
    if spec.widths:
        # channels stay multiples of the norm groups; on narrow teachers that may leave a stage as it was
        groups = cfg.get("norm_num_groups") or 32
        widths = [spec.widths[min(i, len(spec.widths) - 1)] for i in range(len(channels))]
        channels = [_round_channels(c, w, groups) for c, w in zip(channels, widths)]
    cfg.update(down_block_types=down, up_block_types=up, block_out_channels=channels)
    return cfg


def build_student(teacher_config: dict, name: str, device: str | torch.device = "cpu") -> UNet2DConditionModel:
    with torch.device(device):
        return UNet2DConditionModel.from_config(student_config(teacher_config, name))


def count_params(config: dict) -> int:
    """Parameter count of a UNet config, built on the meta device (no memory allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for p in UNet2DConditionModel.from_config(config).parameters())


def weight_mapping(teacher: UNet2DConditionModel, student: UNet2DConditionModel, name: str) -> dict[str, str]:
    """student parameter name -> teacher parameter name, for every student tensor with a teacher twin."""
    spec = STUDENTS[name]
    shift = 1 if spec.layout == "bk_tiny" else 0  # student up block j is teacher up block j+shift
    lt = teacher.config.layers_per_block
    ls = student.config.layers_per_block
    t_params = dict(teacher.state_dict())
    mapping: dict[str, str] = {}

    def translate(key: str) -> str:
        m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
        if m:
            j, kind, k, rest = int(m[1]), m[2], int(m[3]), m[4]
            k_t = 0 if k == 0 else k + (lt - ls)
            return f"up_blocks.{j + shift}.{kind}.{k_t}.{rest}"
        m = re.match(r"up_blocks\.(\d+)\.(upsamplers\..*)", key)
        if m:
            return f"up_blocks.{int(m[1]) + shift}.{m[2]}"
        return key

    for key, value in student.state_dict().items():
        src = translate(key)
        if src in t_params and t_params[src].shape == value.shape:
            mapping[key] = src
    return mapping


@torch.no_grad()
def init_from_teacher(student: UNet2DConditionModel, teacher: UNet2DConditionModel, name: str) -> dict[str, str]:
    """Copy every mapped teacher tensor into the student; returns the mapping used."""
    mapping = weight_mapping(teacher, student, name)
    s_params, t_params = student.state_dict(), teacher.state_dict()
    for dst, src in mapping.items():
        s_params[dst].copy_(t_params[src])
    return mapping


def feature_pairs(teacher: UNet2DConditionModel, student: UNet2DConditionModel, name: str) -> list[tuple[str, str]]:
    """(teacher module, student module) whose outputs feature distillation matches (stage outputs)."""
    shift = 1 if STUDENTS[name].layout == "bk_tiny" else 0
    pairs = []
    n_down = len(student.down_blocks)
    for i in range(n_down):
        if i == n_down - 1 and shift:
            # the student's last down stage lost its downsampler: match before the teacher's
            inner = "attentions" if hasattr(student.down_blocks[i], "attentions") else "resnets"
            t_last = len(getattr(teacher.down_blocks[i], inner)) - 1
            s_last = len(getattr(student.down_blocks[i], inner)) - 1
            pairs.append((f"down_blocks.{i}.{inner}.{t_last}", f"down_blocks.{i}.{inner}.{s_last}"))
        else:
            pairs.append((f"down_blocks.{i}", f"down_blocks.{i}"))
    if student.mid_block is not None and teacher.mid_block is not None:
        pairs.append(("mid_block", "mid_block"))
    for j in range(len(student.up_blocks)):
        pairs.append((f"up_blocks.{j + shift}", f"up_blocks.{j}"))
    return pairs


def load_init_unet(init_dir: str, teacher_path: str, teacher, student: str | None = None,
                   key: str = "boot.init_dir") -> tuple[UNet2DConditionModel, str]:
    """The UNet the student starts from (`init_dir`'s, with BK block removal when `student` names
    an architecture), and its identity (for resuming). `key`: the params key that named the folder
    (BOOT's and CoDi's students start from a pipeline folder's UNet)."""
    folder = Path(init_dir) / "unet"
    if not (folder / "config.json").exists():
        raise UserError(f"{key}: {folder} holds no UNet; name a pipeline folder (models/teacher, or "
                        "models/student after the distill stage)")
    same = folder.resolve() == (Path(teacher_path) / "unet").resolve()
    unet = teacher.unet if same else UNet2DConditionModel.from_pretrained(folder, local_files_only=True,
                                                                          use_safetensors=True)
    identity = f"{init_dir}:{folder_digest(folder)}"
    if student is None:
        return unet, identity
    try:
        small = build_student(dict(unet.config), student)
    except (ValueError, KeyError) as e:
        raise UserError(f"{key.rsplit('.', 1)[0]}.student: {student} cannot be cut from {folder} ({e}); "
                        "use null to keep it whole") from e
    init_from_teacher(small, unet, student)
    return small, f"{identity}+{student}"
