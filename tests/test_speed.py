"""GPU efficiency switches: validated like every param, off (or `auto` = off) on CPU, and when
forced on they train the same student (checkpointing exactly, layout and compilation closely)."""
import pytest
import torch

from rcdistill.config import DistillParams
from rcdistill.distill.kd import distill
from rcdistill.distill.speed import enabled, make_optimizer
from rcdistill.errors import ParamsError
from rcdistill.config import load_params
from rcdistill.sampling import load_pipeline
from test_distill import _cfg, _data


def test_auto_means_cuda_only():
    assert enabled("auto", torch.device("cuda")) and not enabled("auto", torch.device("cpu"))
    assert enabled(True, torch.device("cpu")) and not enabled(False, torch.device("cuda"))
    cfg = DistillParams()
    assert not make_optimizer(cfg, [torch.nn.Parameter(torch.ones(2))], torch.device("cpu")).defaults.get("fused")
    forced = DistillParams(fused_adam=True)
    assert make_optimizer(forced, [torch.nn.Parameter(torch.ones(2))], torch.device("cpu")).defaults["fused"]


@pytest.mark.parametrize("field,value", [("compile", "maybe"), ("fused_adam", "sometimes"), ("tf32", 3),
                                         ("gradient_checkpointing", "yes please")])
def test_switches_are_validated(tmp_path, field, value):
    (tmp_path / "params.yaml").write_text(f"distill:\n  {field}: {value!r}\n")
    with pytest.raises(ParamsError, match=f"distill.{field}"):
        load_params(tmp_path / "params.yaml")


def _losses(work_dir, pipeline, stop_after=None, **switches) -> list[float]:
    """Total loss at every step of a tiny distillation with the given switches."""
    seen: list[float] = []
    latents, captions, pool = _data()
    distill(_cfg(work_dir, **switches), load_pipeline(str(pipeline)), latents, captions, pool,
            log=lambda m, step: seen.append(m["distill/loss_total"]), stop_after=stop_after)
    return seen


def _close(a: list[float], b: list[float], first: float, rest: float) -> bool:
    """Same first loss (same weights, same batch) to `first`; later ones to `rest` (Adam amplifies
    rounding differences on tiny gradients, so weights drift apart a little)."""
    rel = [abs(x - y) / abs(x) for x, y in zip(a, b)]
    return len(a) == len(b) and rel[0] < first and max(rel) < rest


def test_checkpointing_and_channels_last_train_the_same_student(tiny_pipeline, tmp_path):
    plain = _losses(tmp_path / "a", tiny_pipeline)
    assert len(plain) == 6
    assert _close(plain, _losses(tmp_path / "b", tiny_pipeline, gradient_checkpointing=True), 1e-6, 1e-5)
    assert _close(plain, _losses(tmp_path / "c", tiny_pipeline, channels_last=True), 1e-4, 2e-2)
    assert not _close(plain, [x * 1.05 for x in plain], 1e-4, 2e-2)  # the check can fail


@pytest.mark.slow
def test_compiled_loop_trains_the_same_student_and_resumes(tiny_pipeline, tmp_path):
    plain = _losses(tmp_path / "a", tiny_pipeline)
    compiled = _losses(tmp_path / "b", tiny_pipeline, stop_after=4, compile=True)  # killed after step 4
    compiled += _losses(tmp_path / "b", tiny_pipeline, compile=True)               # resumed
    assert _close(plain, compiled, 1e-4, 2e-2)
    from safetensors.torch import load_file

    # compiled in place: the checkpoint holds the plain module's keys, so any run can resume it
    keys = set(load_file(str(tmp_path / "b" / "checkpoint-6" / "model.safetensors")))
    assert keys and not any(k.startswith("_orig_mod") for k in keys)
