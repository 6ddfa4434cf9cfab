"""The student variants by name (no heavy imports: params validation reads this)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StudentSpec:
    layout: str  # bk_base | bk_small | bk_tiny
    widths: tuple[float, ...] = ()  # per-stage channel multipliers (C-series); the last repeats inward
    claims_params_sd_v1: float | None = None  # published size (M) for an SD v1 teacher, checked in tests
    description: str = ""


STUDENTS: dict[str, StudentSpec] = {
    "bk_base": StudentSpec("bk_base", (), 579.4, "one resnet+attn pair fewer per stage"),
    "bk_small": StudentSpec("bk_small", (), 482.3, "bk_base without the mid block"),
    "bk_tiny": StudentSpec("bk_tiny", (), 323.4, "bk_small without the innermost stage"),
    # Channel-reduced, sized like the Random Conditioning paper's C-series for an SD v1 teacher.
    "c_base": StudentSpec("bk_base", (1.0, 1.0, 0.975), 553.0, "bk_base, inner stages at 97.5% width"),
    "c_small": StudentSpec("bk_small", (0.9, 0.9, 0.95), 425.0, "bk_small at 90/90/95% width"),
    "c_tiny": StudentSpec("bk_tiny", (1.0, 1.0, 0.975), 314.0, "bk_tiny, inner stage at 97.5% width"),
    "c_micro": StudentSpec("bk_tiny", (0.8, 0.9, 0.8), 220.0, "bk_tiny at 80/90/80% width"),
}
