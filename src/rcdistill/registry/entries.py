"""What the registry holds: the RC student and the few-step student, each its own model and gate."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import GateRules, Params
from ..errors import UserError
from ..sampling import folder_defaults


@dataclass
class RegistryEntry:
    key: str                # its block in metrics/evaluate.json
    model_name: str
    folder: str             # the pipeline folder logged as the model's artifact
    gate: GateRules
    steps: int              # the pyfunc's default sampling
    guidance_scale: float
    scheduler: str | None   # "ddim"; None: the folder's own (LCMScheduler)
    description: str

    def tags(self, params: Params) -> dict[str, str]:
        if self.key == "student_fast":
            c = params.consistency
            return {"student": f"{params.distill.student}+lcm", "rc_prob": str(c.rc_prob), "init": c.init,
                    "steps": str(self.steps)}
        return {"student": params.distill.student, "rc_prob": str(params.distill.rc_prob)}


def registry_entries(params: Params, evaluated: dict) -> list[RegistryEntry]:
    """The student always; the few-step student when it was evaluated and its folder exists."""
    r, s, d = params.registry, params.sampling, params.distill
    entries = [RegistryEntry("student", r.model_name, d.out_dir, r.gate, s.steps, float(s.guidance_scale), "ddim",
                             f"Student `{d.student}` distilled with Random Conditioning (rc_prob {d.rc_prob}, "
                             f"{d.steps} steps x {d.batch_size})")]
    c = params.consistency
    if "student_fast" in evaluated and (Path(c.out_dir) / "model_index.json").exists():
        own = folder_defaults(c.out_dir)
        entries.append(RegistryEntry(
            "student_fast", r.fast_model_name, c.out_dir, r.fast_gate, own.get("steps", c.default_steps),
            float(own.get("guidance_scale", c.guidance_scale)), None,
            f"Few-step student: latent consistency distillation with Random Conditioning (rc_prob {c.rc_prob}, "
            f"{c.steps} steps x {c.batch_size}, init {c.init}) of `{d.student}`; samples with LCMScheduler in "
            f"{own.get('steps', c.default_steps)} steps, guidance embedded, no CFG pass"))
    return entries


def entry_for(params: Params, which: str) -> RegistryEntry:
    """`student` or `student_fast`, for promoting by hand (no evaluate metrics needed)."""
    found = [e for e in registry_entries(params, {"student_fast": {}}) if e.key == which]
    if not found:
        raise UserError(f"consistency.out_dir: {params.consistency.out_dir} holds no few-step student to promote")
    return found[0]
