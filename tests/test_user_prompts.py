import json

from rcdistill.config import load_params
from rcdistill.io import read_jsonl
from rcdistill.user_prompts import names_keyword
from rcdistill.prompt_pools import write_prompts
from tests.conftest import REPO, rcd


def test_sd15_profile_is_valid():
    r = rcd("--params", str(REPO / "profiles/sd15/params.yaml"), "params", "check")
    assert r.returncode == 0, r.stderr


def test_prompt_files_and_exclusion_keywords(workdir):
    (workdir / "cache.txt").write_text("a photo of a dog on a sofa\na red car\n# comment\n\na bowl of fruit\na Cat asleep\n")
    (workdir / "rc.txt").write_text("\n".join([f"a dog number {i}" for i in range(10)] +
                                              [f"a city street {i}" for i in range(20)]) + "\n")
    p = load_params("params.yaml", {"prompts.source": "files", "prompts.cache_file": "cache.txt",
                                    "prompts.rc_file": "rc.txt", "prompts.exclude_keywords": ["dog", "cat"],
                                    "prompts.eval_per_set": 5})
    out = write_prompts(p)
    cache = [r["text"] for r in read_jsonl(out / "cache.jsonl")]
    assert cache == ["a red car", "a bowl of fruit"]
    assert len(read_jsonl(out / "rc.jsonl")) == 30
    assert all(names_keyword(r["text"], ["dog"]) for r in read_jsonl(out / "eval_unseen.jsonl"))
    assert not any(names_keyword(r["text"], ["dog"]) for r in read_jsonl(out / "eval_seen.jsonl"))
    assert json.loads((out / "summary.json").read_text())["n_eval_unseen"] == 5


def test_missing_prompt_file_is_one_line_exit_2(workdir):
    import yaml

    data = yaml.safe_load((workdir / "params.yaml").read_text())
    data["prompts"] = {"source": "files", "cache_file": "nope.txt", "rc_file": "nope.txt"}
    (workdir / "params.yaml").write_text(yaml.safe_dump(data))
    r = rcd("prompts")
    assert r.returncode == 2 and "prompts.cache_file: prompt file nope.txt not found" in r.stderr
    assert not (workdir / "data").exists()
    data["prompts"] = {"source": "files"}
    (workdir / "params.yaml").write_text(yaml.safe_dump(data))
    r = rcd("params", "check")
    assert r.returncode == 2 and "prompts.cache_file must name a prompt file" in r.stderr
