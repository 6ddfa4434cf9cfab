import json

import pytest

from rcdistill.config import load_params
from rcdistill.io import read_jsonl
from rcdistill.world.captions import names_concept
from rcdistill.prompt_pools import build_pools, write_prompts
from rcdistill.world.vocab import CONCEPTS


@pytest.mark.parametrize("unseen", [["triangle"], ["cross", "purple"]])
def test_pools_respect_held_out_concepts(workdir, unseen):
    params = load_params("params.yaml", {"world.unseen": unseen, "prompts.cache_pool_size": 300,
                                         "prompts.eval_per_set": 60})
    pools = build_pools(params)
    for row in pools["cache"] + pools["eval_seen"]:
        assert not any(names_concept(row["text"], c) for c in unseen), row
        assert row["shape"] not in unseen and row["colour"] not in unseen
    for row in pools["eval_unseen"]:
        assert any(names_concept(row["text"], c) for c in unseen), row
    rc_texts = [r["text"] for r in pools["rc"]]
    for concept in unseen:
        assert sum(names_concept(t, concept) for t in rc_texts) > 100
    # the RC pool has many more distinct texts than the cache pool
    assert len(set(rc_texts)) >= 10 * len({r["text"] for r in pools["cache"]})
    assert all(CONCEPTS[c] in ("shape", "colour") for c in unseen)


def test_prompts_stage_is_deterministic(workdir):
    params = load_params("params.yaml")
    out = write_prompts(params)
    first = {f.name: f.read_text() for f in out.iterdir()}
    write_prompts(params)
    assert first == {f.name: f.read_text() for f in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cache"] == 32 and summary["n_eval_seen"] == 8
    seeds = [r["seed"] for r in read_jsonl(out / "eval_seen.jsonl")]
    assert len(set(seeds)) == len(seeds)
