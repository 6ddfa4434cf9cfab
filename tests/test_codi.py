"""CoDi: conditions, their scores, the adapter for every UNet layout, the pipeline folder, and the loss."""
import copy
from types import SimpleNamespace

import pytest
import torch

from rcdistill.codi.adapter import CoDiAdapter, ConditionedUNet
from rcdistill.codi.conditions import derive, edge_f1, edge_map, low_res, model_input, psnr
from rcdistill.config import CoDiParams
from rcdistill.world.render import random_attributes, render_attributes


@pytest.fixture(scope="module")
def renders():
    return render_attributes(random_attributes(16, seed=0), seed=0, image_size=32)


def test_edges_outline_the_shape_and_score_alignment(renders):
    edges = edge_map(renders, 0.15)
    frac = edges.float().mean().item()
    assert 0.01 < frac < 0.3  # an outline, not the whole image or nothing
    assert torch.equal(edge_f1(renders, edges, 0.15), torch.ones(16))
    shifted_1 = torch.roll(renders, 1, dims=-1)
    shifted_4 = torch.roll(renders, 4, dims=-1)
    assert edge_f1(shifted_1, edges, 0.15).mean() > 0.9          # within the 1-pixel tolerance
    assert edge_f1(shifted_4, edges, 0.15).mean() < 0.6          # off by 4 pixels: a miss
    noise = torch.randint(0, 256, renders.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert edge_f1(noise, edges, 0.15).mean() < 0.5              # edges everywhere are not the outline


def test_low_res_and_psnr(renders):
    low = low_res(renders, 4)
    assert low.shape == (16, 3, 8, 8) and low.dtype == torch.uint8
    assert torch.equal(derive("lowres", renders, 0.15, 4), low)
    assert (psnr(renders, renders) > 90).all()
    blurred = ((model_input(low, 32) + 1) * 127.5).round().to(torch.uint8)
    assert (psnr(blurred, renders) < psnr(renders, renders)).all()
    assert torch.equal(low_res(blurred, 4), low)  # the upsampled copy has exactly its low-res content
    x = model_input(derive("edge", renders, 0.15, 4), 32)
    assert x.shape == (16, 1, 32, 32) and set(x.unique().tolist()) <= {-1.0, 1.0}


def _student(tiny_pipeline, layout):
    from diffusers import UNet2DConditionModel

    from rcdistill.students import build_student, init_from_teacher

    teacher = UNet2DConditionModel.from_pretrained(tiny_pipeline / "unet")
    if layout is None:
        return teacher
    small = build_student(dict(teacher.config), layout)
    init_from_teacher(small, teacher, layout)
    return small


@pytest.mark.parametrize("layout", [None, "bk_small", "bk_tiny"])
def test_adapter_starts_as_the_unet_and_reads_the_condition(tiny_pipeline, layout):
    unet = _student(tiny_pipeline, layout).eval()
    assert (unet.mid_block is None) == (layout is not None)  # BK small/tiny: no mid block, no ControlNetModel
    adapter = CoDiAdapter.from_unet(unet, conditioning_channels=1, downscale=4).eval()
    net = ConditionedUNet(unet, adapter)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([10, 500])
    states = torch.randn(2, 16, unet.config.cross_attention_dim, generator=g)
    cond_a, cond_b = -torch.ones(2, 1, 32, 32), torch.ones(2, 1, 32, 32)
    with torch.no_grad():
        plain = unet(x, t, states).sample
        assert torch.allclose(net(x, t, states, cond_a), plain, atol=1e-6)   # zero convs: the UNet itself
        for p in adapter.parameters():  # as after training: the condition path is live
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        assert not torch.allclose(net(x, t, states, cond_a), net(x, t, states, cond_b), atol=1e-4)


def test_pipeline_folder_round_trip(tiny_pipeline, tmp_path):
    from diffusers import LCMScheduler, StableDiffusionPipeline

    from rcdistill.codi.pipeline import CoDiPipeline, generate_conditioned

    sd = StableDiffusionPipeline.from_pretrained(tiny_pipeline, safety_checker=None, requires_safety_checker=False)
    unet = _student(tiny_pipeline, "bk_small")
    adapter = CoDiAdapter.from_unet(unet, conditioning_channels=3, downscale=4)
    torch.nn.init.normal_(adapter.zero_convs[0].weight, std=0.1)
    pipe = CoDiPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=unet, adapter=adapter,
                        scheduler=LCMScheduler.from_config(sd.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    cond = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    texts, seeds = ["a red circle", "a blue square", ""], [1, 2, 3]
    before = generate_conditioned(pipe, texts, seeds, cond, 2)
    pipe.save_pretrained(tmp_path / "codi", safe_serialization=True)
    loaded = CoDiPipeline.from_pretrained(tmp_path / "codi", local_files_only=True, use_safetensors=True)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.adapter) is CoDiAdapter and loaded.unet.mid_block is None
    assert before.shape == (3, 3, 32, 32) and before.dtype == torch.uint8
    assert torch.equal(generate_conditioned(loaded, texts, seeds, cond, 2), before)
    # each image is a function of its own prompt, seed and condition: a batch of one gives the same
    # image (up to one grey level: batched kernels round differently)
    alone = generate_conditioned(loaded, texts[1:2], seeds[1:2], cond[1:2], 2)
    assert (alone.int() - before[1:2].int()).abs().max() <= 1

    # a colour-reading model keeps its text view in the folder and reads only the colour of a prompt
    colour = CoDiPipeline(**pipe.components, text_view="colour")
    colour.save_pretrained(tmp_path / "colour", safe_serialization=True)
    colour = CoDiPipeline.from_pretrained(tmp_path / "colour", local_files_only=True, use_safetensors=True)
    colour.set_progress_bar_config(disable=True)
    assert colour.config.text_view == "colour" and loaded.config.text_view == "caption"
    assert torch.equal(generate_conditioned(colour, ["a red circle", "A BLUE square"], seeds[:2], cond[:2], 2),
                       generate_conditioned(loaded, ["red", "blue"], seeds[:2], cond[:2], 2))
    with pytest.raises(ValueError, match="names no colour"):
        generate_conditioned(colour, ["a circle"], seeds[:1], cond[:1], 2)


def _objective(tiny_pipeline, mode="full", **method):
    from diffusers import StableDiffusionPipeline

    from rcdistill.codi.objective import CoDiObjective, conditioned_student
    from rcdistill.distill.data import TextBank

    sd = StableDiffusionPipeline.from_pretrained(tiny_pipeline, safety_checker=None, requires_safety_checker=False)
    cfg = CoDiParams(method={"num_ddim_timesteps": 10, **method}).loop(mode)
    student = conditioned_student(_student(tiny_pipeline, "bk_small"), mode, 1, 4, 8)
    conditions = derive("edge", render_attributes(random_attributes(6, seed=1), seed=1), 0.15, 4)
    bank = TextBank(sd.text_encoder, sd.tokenizer, [], "off", torch.device("cpu"))
    return CoDiObjective(cfg, sd.unet, student, conditions, 32, sd.scheduler.config, bank, torch.device("cpu"))


def _batch(paired, texts=None, n=None):
    g = torch.Generator().manual_seed(3)
    b = len(paired)
    from rcdistill.distill.data import RCBatch
    return RCBatch(torch.randn(b, 4, 8, 8, generator=g), torch.randn(b, 4, 8, 8, generator=g),
                   n if n is not None else torch.randint(10, (b,), generator=g), texts or ["a red circle"] * b,
                   torch.tensor(paired), torch.rand(b, generator=g), torch.arange(b))


def test_clean_term_only_where_the_text_is_the_latents_own_caption_or_none(tiny_pipeline):
    obj = _objective(tiny_pipeline)
    cond = torch.randn(4, 16, 32, generator=torch.Generator().manual_seed(0))
    nullctx = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    unpaired = obj.loss(_batch([False] * 4), cond, nullctx)
    assert unpaired["clean"].item() == 0.0 and unpaired["total"].item() == pytest.approx(unpaired["consistency"].item())
    dropped = obj.loss(_batch([True] * 4, texts=[""] * 4), cond, nullctx)   # no text: the condition alone
    assert dropped["clean"].item() > 0                                       # still defines the latent
    paired = obj.loss(_batch([True] * 4), cond, nullctx)
    assert paired["clean"].item() > 0
    assert paired["total"].item() == pytest.approx(paired["consistency"].item() + paired["clean"].item(), rel=1e-5)


def test_consistency_target_at_the_first_solver_step_is_the_ode_point(tiny_pipeline):
    """At s = 0 the target is z_s itself; with PREv and an exact teacher that is the clean latent."""
    obj = _objective(tiny_pipeline, prev_noise=True, clean_weight=0.0)
    batch = _batch([True] * 3, n=torch.zeros(3, dtype=torch.long))
    nullctx = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    cond = torch.randn(3, 16, 32, generator=torch.Generator().manual_seed(0))
    # replace the teacher by one that knows z0: its clean prediction is exact, so z_s = a_s z0 + s_s e
    kind = obj.kind
    assert kind == "epsilon"
    start = obj.solver_t[batch.timesteps]
    a, s = obj.scales.at(start)
    # an oracle teacher: its eps-prediction is the true noise
    obj.teacher = type("Oracle", (), {"dtype": torch.float32,
                                      "__call__": lambda self, x, t, c: SimpleNamespace(sample=batch.noise.clone())})()
    out = obj.loss(batch, cond, nullctx)
    with torch.no_grad():
        pred = obj.student(a * batch.latents + s * batch.noise, start, cond, obj.condition(batch))
    x0 = (a * batch.latents + s * batch.noise - s * pred) / a
    z_s = obj.scales.alphas[0] * batch.latents + obj.scales.sigmas[0] * batch.noise
    assert out["consistency"].item() == pytest.approx(torch.nn.functional.mse_loss(x0, z_s).item(), rel=1e-4)


def test_the_teacher_takes_its_ode_step_with_the_batchs_teacher_texts(tiny_pipeline):
    """With colour texts the student reads "red" and the frozen teacher a whole caption: the
    teacher's text moves the target; an EMA ODE step reads the student's text only."""
    import dataclasses

    nullctx = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    for ode_from, moves in (("teacher", True), ("ema", False)):
        obj = _objective(tiny_pipeline, ode_from=ode_from, clean_weight=0.0)
        batch = _batch([True] * 3, texts=["red"] * 3)
        cond = obj.bank(batch.texts)
        a, b = (obj.loss(dataclasses.replace(batch, teacher_texts=[t] * 3), cond, nullctx)["consistency"].item()
                for t in ("a small red circle in the middle", "big red square, top left"))
        assert (a != pytest.approx(b, rel=1e-6)) is moves, (ode_from, a, b)


def test_adapter_mode_trains_the_adapter_alone(tiny_pipeline):
    obj = _objective(tiny_pipeline, mode="adapter")
    backbone = copy.deepcopy(obj.student.unet.state_dict())
    adapter_before = copy.deepcopy(obj.student.adapter.state_dict())
    opt = torch.optim.AdamW([p for p in obj.student.parameters() if p.requires_grad], lr=1e-2)
    nullctx = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    cond = torch.randn(4, 16, 32, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        obj.loss(_batch([True, False, True, True]), cond, nullctx)["total"].backward()
        opt.step()
        opt.zero_grad()
    assert all(torch.equal(v, obj.student.unet.state_dict()[k]) for k, v in backbone.items())
    assert any(not torch.equal(v, obj.student.adapter.state_dict()[k]) for k, v in adapter_before.items())
    from rcdistill.codi.objective import trainable_parameters
    assert trainable_parameters(obj.student) == sum(p.numel() for p in obj.student.adapter.parameters())


def test_params_refuse_runs_the_grid_cannot_sample():
    from rcdistill.errors import ParamsError  # noqa: F401
    with pytest.raises(ValueError, match="beyond the solver grid"):
        CoDiParams(method={"num_ddim_timesteps": 4}, eval_steps={"full": [8]})
    with pytest.raises(ValueError, match="unknown run"):
        CoDiParams(eval_steps={"student": [4]})
    with pytest.raises(ValueError, match="warmup_steps"):
        CoDiParams(train={"warmup_steps": 500})
    from rcdistill.config import parse_params
    from rcdistill.codi.texts import text_view
    files = {"prompts": {"source": "files", "cache_file": "c.txt", "rc_file": "r.txt"},
             "teacher": {"source": "pretrained", "path": "t"}}
    with pytest.raises(ParamsError, match="codi.text: colour"):
        parse_params({**files, "codi": {"text": "colour"}})
    assert text_view(parse_params(files)) == "caption" and text_view(parse_params({})) == "colour"  # auto


def test_colour_texts_leave_the_rest_to_the_condition_and_the_teacher_reads_whole_captions():
    from rcdistill.codi.texts import ViewedSampler, colour_of
    from rcdistill.distill.data import RCSampler

    captions = ["a small red circle in the middle", "big blue square, top left", "a cross coloured green"]
    pool = ["a yellow triangle", "purple diamond", "white circle, centered"]
    base = RCSampler(torch.zeros(3, 4, 2, 2), captions, pool, 0.5, 0.2, torch.ones(10, dtype=torch.float64), 0)
    view = ViewedSampler(base, captions, "colour")
    n_rc = 0
    for step in range(20):
        plain, b = base.sample(8, step), view.sample(8, step)
        assert torch.equal(plain.index, b.index) and torch.equal(plain.latents, b.latents)  # same draws
        for i, text, student, teacher in zip(b.index.tolist(), plain.texts, b.texts, b.teacher_texts):
            if not text:
                assert student == teacher == ""                  # dropped: no text for either
                continue
            assert student == colour_of(text)                    # the student reads the text's colour only
            own = captions[i]                                    # the teacher: the latent's caption in that colour
            assert teacher == own.replace(colour_of(own), student)
            n_rc += text not in captions
        own_colour = torch.tensor([colour_of(captions[i]) == c for i, c in zip(b.index.tolist(), b.texts)])
        assert torch.equal(b.paired, plain.paired | own_colour)  # an RC text of the own colour is paired again
    assert n_rc > 10
    assert ViewedSampler(base, captions, "caption").sample(8, 3).texts == base.sample(8, 3).texts


# ---------------------------------------------------------------- the stages, on the tiny project
def _rcd(ws, *args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "rcdistill.cli", *args], cwd=ws, capture_output=True, text=True,
                          timeout=600)


def test_stages_write_scored_registered_models(tiny_project):
    import json

    ev = json.loads((tiny_project / "metrics/codi_eval.json").read_text())["codi_eval"]
    assert ev["task"] == "edge" and {e["text"] for e in ev["models"].values()} == {"colour"}
    assert {run: sorted(e["steps"]) for run, e in ev["models"].items()} == {
        "reference": ["4"], "full": ["1", "2"], "adapter": ["2"]}
    cell = ev["models"]["full"]["steps"]["2"]["unseen"]
    assert cell["n"] == 8 and 0 <= cell["edge_f1"] <= 1 and cell["psnr"] > 0 and "shape_se" in cell
    assert sum(v["n"] for v in cell["by_concept"]["shape"].values()) == 8     # every image under the shape its condition shows
    full = json.loads((tiny_project / "metrics/codi.json").read_text())["codi"]
    adapter = json.loads((tiny_project / "metrics/codi_adapter.json").read_text())["codi_adapter"]
    assert full["trainable_params"] == full["total_params"]                      # backbone and adapter
    assert adapter["trainable_params"] == adapter["adapter_params"] < adapter["total_params"]  # adapter alone
    reg = json.loads((tiny_project / "metrics/codi_register.json").read_text())
    assert reg["codi"]["model_name"] == "rcdistill-codi" and reg["codi_adapter"]["version"] == 1
    cond = json.loads((tiny_project / "data/conditions/manifest.json").read_text())
    assert cond["n_train"] == 32 and cond["eval"]["unseen"]["n"] == 8


def test_registered_model_takes_prompts_and_condition_images(tiny_project):
    import mlflow
    import pandas as pd

    from rcdistill.codi.conditions import example_condition_png

    mlflow.set_tracking_uri(f"sqlite:///{tiny_project / 'mlruns/mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/rcdistill-codi@champion")
    frame = pd.DataFrame({"prompt": ["a red circle", "a blue square"], "condition_png": [example_condition_png(32)] * 2})
    a = model.predict(frame, params={"seed": 5})
    assert a.shape == (2, 32, 32, 3) and a.dtype == "uint8"
    assert (model.predict(frame, params={"seed": 5}) == a).all()   # seeded: reproducible


def test_sample_with_a_condition_and_bad_input(tiny_project, tmp_path):
    import base64

    from rcdistill.codi.conditions import example_condition_png

    edge = tmp_path / "edge.png"
    edge.write_bytes(base64.b64decode(example_condition_png(32)))
    out = tmp_path / "s.png"
    r = _rcd(tiny_project, "sample", "--model", "models/codi", "--condition", str(edge), "a red circle", "-o", str(out))
    assert r.returncode == 0 and out.is_file(), r.stderr[-2000:]
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    r = _rcd(tiny_project, "sample", "--model", "models/codi", "--condition", str(bad), "a red circle")
    assert r.returncode == 2 and "--condition" in r.stderr and "Traceback" not in r.stderr
    r = _rcd(tiny_project, "sample", "--model", "models/student", "--condition", str(edge), "a red circle")
    assert r.returncode == 2 and "CoDi" in r.stderr
    r = _rcd(tiny_project, "sample", "--model", "models/codi", "--condition", str(edge), "a circle")
    assert r.returncode == 2 and "prompt:" in r.stderr and "names no colour" in r.stderr and "Traceback" not in r.stderr


def test_killed_codi_run_resumes_to_the_same_weights(tiny_project):
    import shutil

    from safetensors.torch import load_file

    done = {k: v.clone() for k, v in load_file(tiny_project / "models/codi/adapter/diffusion_pytorch_model.safetensors").items()}
    shutil.rmtree(tiny_project / "outputs/codi")
    r = _rcd(tiny_project, "codi", "--stop-after", "2")
    assert r.returncode == 0 and "stopped after step 2" in r.stdout, r.stderr[-2000:]
    assert [p.name for p in (tiny_project / "outputs/codi").glob("checkpoint-*")] == ["checkpoint-2"]
    r = _rcd(tiny_project, "codi")
    assert r.returncode == 0, r.stderr[-2000:]
    assert not list((tiny_project / "outputs/codi").glob("checkpoint-*"))  # the model is out: released
    again = load_file(tiny_project / "models/codi/adapter/diffusion_pytorch_model.safetensors")
    assert all(torch.equal(done[k], again[k]) for k in done)


def test_swapped_texts_name_another_shape_or_colour_and_keep_the_conditions_labels():
    from rcdistill.codi.scores import swapped
    from rcdistill.evaluate.concepts import row_labels

    rows = [{"text": f"t{i}", "shape": s, "colour": c, "size": "small", "position": "center"}
            for i, (s, c) in enumerate([("circle", "red"), ("circle", "blue"), ("square", "green"), ("cross", "red")])]
    partner, labels = swapped(rows)
    assert partner == [2, 2, 3, 0]                                   # the next row with another shape
    own = row_labels(rows)
    assert torch.equal(labels["shape"], own["shape"])                # shape from the condition's row
    assert torch.equal(labels["colour"], own["colour"][torch.tensor(partner)])   # colour from the caption's
    partner, labels = swapped(rows, "colour")
    assert partner == [1, 2, 3, 1]                                   # the next row with another colour
    assert torch.equal(labels["shape"], own["shape"])
    assert torch.equal(labels["colour"], own["colour"][torch.tensor(partner)])


def test_by_concept_scores_each_value_and_what_it_was_read_as():
    from rcdistill.codi.scores import by_concept
    from rcdistill.world import COLOURS, SHAPES

    def idx(values, names):
        return torch.tensor([values.index(x) for x in names])

    labels = {"shape": idx(SHAPES, ["triangle", "triangle", "triangle", "circle"]),
              "colour": idx(COLOURS, ["red", "red", "blue", "blue"])}
    pred = {"shape": idx(SHAPES, ["triangle", "circle", "circle", "circle"]),
            "colour": idx(COLOURS, ["red", "red", "blue", "red"])}
    out = by_concept(pred, labels)
    assert {a: set(v) for a, v in out.items()} == {"shape": {"triangle", "circle"}, "colour": {"red", "blue"}}
    tri = out["shape"]["triangle"]
    assert tri["n"] == 3 and abs(tri["acc"] - 1 / 3) < 1e-9 and tri["read_as"] == {"circle": 2}
    assert abs(tri["acc_se"] - (1 / 3 * 2 / 3 / 3) ** 0.5) < 1e-9
    assert out["shape"]["circle"] == {"n": 1, "acc": 1.0, "acc_se": 0.0, "read_as": {}}
    assert out["colour"]["blue"]["acc"] == 0.5 and out["colour"]["blue"]["read_as"] == {"red": 1}
