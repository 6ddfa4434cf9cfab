"""Where a distillation step spends its time, and what the usual CPU tricks buy, in one run.

Times (ms per batch, median of --repeats) the three parts of a step on the same batch:
text encoding, teacher forward, student forward + backward + AdamW. From those it prints the
ceiling on any speed-up that skips text encoding (the only part a cache can remove), then
re-times teacher and student under each variant: bf16 autocast, channels_last, diffusers'
classic attention processor, and (with --compile) torch.compile.

    .venv/bin/python benchmarks/step_breakdown.py [--teacher models/teacher] [--student bk_small] [--compile]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from diffusers.models.attention_processor import AttnProcessor

import rcdistill  # noqa: F401
from rcdistill.sampling import load_pipeline
from rcdistill.students import build_student, init_from_teacher
from rcdistill.teacher.text_encoder import tokenize


def median_ms(fn, repeats: int) -> float:
    fn(), fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def parts(teacher, student, x, t, cond, repeats: int, ctx=contextlib.nullcontext) -> tuple[float, float]:
    opt = torch.optim.AdamW(student.parameters(), lr=1e-5)

    def teacher_forward():
        with torch.no_grad(), ctx():
            teacher(x, t, cond)

    def student_step():
        with ctx():
            out = student(x, t, cond).sample
        out.float().pow(2).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return median_ms(teacher_forward, repeats), median_ms(student_step, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="models/teacher")
    ap.add_argument("--student", default="bk_small")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (minutes to compile on CPU)")
    ap.add_argument("--out", default="benchmarks/results/step_breakdown.json")
    args = ap.parse_args()

    pipe = load_pipeline(args.teacher)
    teacher = pipe.unet.eval().requires_grad_(False)
    student = build_student(teacher.config, args.student)
    init_from_teacher(student, teacher, args.student)
    c, h, b = teacher.config.in_channels, teacher.config.sample_size, args.batch_size
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(b, c, h, h, generator=gen), torch.randint(0, 1000, (b,), generator=gen)
    ids = tokenize(pipe.tokenizer, [f"a small red circle, variant {i}" for i in range(b)])
    with torch.no_grad():
        cond = pipe.text_encoder(ids)[0]

    def encode():
        with torch.no_grad():
            pipe.text_encoder(tokenize(pipe.tokenizer, [f"a small red circle, variant {i}" for i in range(b)]))

    text_ms = median_ms(encode, args.repeats)
    base = parts(teacher, student, x, t, cond, args.repeats)
    total = text_ms + sum(base)
    res = {"device": platform.processor() or "cpu", "threads": torch.get_num_threads(), "batch_size": b,
           "student": args.student, "text_encode_ms": text_ms, "teacher_forward_ms": base[0],
           "student_step_ms": base[1], "ceiling_text_cache": total / sum(base), "variants": {}}
    print(f"text encode {text_ms:.1f} ms | teacher forward {base[0]:.1f} ms | student fwd+bwd+AdamW {base[1]:.1f} ms")
    print(f"ceiling for caching text embeddings: {res['ceiling_text_cache']:.3f}x")

    def variant(name, teacher_v, student_v, xv=x, ctx=contextlib.nullcontext):
        tm, sm = parts(teacher_v, student_v, xv, t, cond, args.repeats, ctx)
        res["variants"][name] = {"teacher_forward_ms": tm, "student_step_ms": sm, "ratio_vs_fp32": sum(base) / (tm + sm)}
        print(f"{name:>15}: teacher {tm:6.1f} ms, student {sm:6.1f} ms, step speed vs fp32 {sum(base) / (tm + sm):.2f}x")

    variant("bf16 autocast", teacher, student, ctx=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    cl_t = copy.deepcopy(teacher).to(memory_format=torch.channels_last)
    cl_s = copy.deepcopy(student).to(memory_format=torch.channels_last)
    variant("channels_last", cl_t, cl_s, xv=x.contiguous(memory_format=torch.channels_last))
    at_t, at_s = copy.deepcopy(teacher), copy.deepcopy(student)
    at_t.set_attn_processor(AttnProcessor())
    at_s.set_attn_processor(AttnProcessor())
    variant("classic attn", at_t, at_s)
    if args.compile:
        variant("torch.compile", torch.compile(copy.deepcopy(teacher)), torch.compile(copy.deepcopy(student)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
