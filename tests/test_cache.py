import json
import shutil

import pytest
import torch

from rcdistill.cache import latents as cache_mod
from rcdistill.cache.latents import CacheError, build_cache, load_cache
from rcdistill.config import load_params
from rcdistill.prompt_pools import write_prompts
from tests.conftest import build_tiny_pipeline


@pytest.fixture
def params(workdir, tiny_pipeline):
    p = load_params("params.yaml", {"teacher.path": str(tiny_pipeline), "prompts.cache_pool_size": 10,
                                    "cache.shard_size": 4, "cache.latents_per_prompt": 1,
                                    "sampling.steps": 2, "sampling.batch_size": 3})
    write_prompts(p)
    return p


def _files(folder):
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


def test_cache_is_deterministic_and_complete(params, tmp_path):
    first = _files(build_cache(params))
    assert sorted(first) == ["manifest.json", "shard-00000.safetensors", "shard-00001.safetensors",
                             "shard-00002.safetensors"]
    manifest = json.loads(first["manifest.json"])
    assert [r["row"] for r in manifest["rows"][:5]] == [0, 1, 2, 3, 0]
    assert len({(r["prompt"], r["seed"]) for r in manifest["rows"]}) == 10
    latents, rows, ident = load_cache(params.cache.out_dir, expect_teacher=params.teacher.path)
    assert latents.shape == (10, 4, 8, 8) and len(rows) == 10
    assert ident["steps"] == 2 and ident["teacher_fingerprint"].startswith("sha256:")
    shutil.rmtree(params.cache.out_dir)
    assert _files(build_cache(params)) == first


def test_killed_cache_resumes_to_the_same_set(params, monkeypatch):
    clean = _files(build_cache(params))
    shutil.rmtree(params.cache.out_dir)
    real = cache_mod.generate
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # two shards done, killed while making the third
            (cache_mod.Path(params.cache.out_dir) / ".shard-00002.safetensors.tmp").write_bytes(b"partial")
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "generate", dying)
    with pytest.raises(KeyboardInterrupt):
        build_cache(params)
    partial = json.loads((cache_mod.Path(params.cache.out_dir) / "manifest.json").read_text())
    assert len(partial["shards"]) == 2
    monkeypatch.setattr(cache_mod, "generate", real)
    assert _files(build_cache(params)) == clean  # same files, no duplicates, no temp leftovers


def test_flipped_byte_is_caught_naming_the_shard(params):
    folder = build_cache(params)
    shard = folder / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="shard-00001.safetensors: checksum mismatch"):
        load_cache(folder)


def test_cache_from_another_teacher_or_settings_is_refused(params, tmp_path):
    build_cache(params)
    other = load_params("params.yaml", {"teacher.path": str(params.teacher.path), "prompts.cache_pool_size": 10,
                                        "cache.shard_size": 4, "sampling.steps": 3, "sampling.batch_size": 3})
    with pytest.raises(CacheError, match="another teacher or settings.*steps: 2 -> 3"):
        build_cache(other)
    build_cache(other, rebuild=True)
    other_teacher = build_tiny_pipeline(tmp_path / "other", seed=1)
    with pytest.raises(CacheError, match="other weights"):
        load_cache(params.cache.out_dir, expect_teacher=str(other_teacher))


def test_two_workers_make_the_same_files_as_one_and_resume_after_a_kill(params, monkeypatch, tmp_path):
    """Worker i of N makes shards i, i+N, ...; whatever the number of workers and kills, the cache
    ends byte-identical to a one-process run."""
    clean = _files(build_cache(params))
    shutil.rmtree(params.cache.out_dir)
    real = cache_mod.generate

    def dying(*args, **kwargs):
        raise KeyboardInterrupt  # worker 1 is killed before its first shard is written

    monkeypatch.setattr(cache_mod, "generate", dying)
    with pytest.raises(KeyboardInterrupt):
        build_cache(params, worker="1/2")
    monkeypatch.setattr(cache_mod, "generate", real)
    build_cache(params, worker="0/2")  # shards 0 and 2
    partial = json.loads((cache_mod.Path(params.cache.out_dir) / "manifest.json").read_text())
    assert [s["file"] for s in partial["shards"]] == ["shard-00000.safetensors", "shard-00002.safetensors"]
    with pytest.raises(CacheError, match="incomplete"):
        load_cache(params.cache.out_dir)
    build_cache(params, worker="1/2")  # the killed worker resumes: shard 1
    assert _files(cache_mod.Path(params.cache.out_dir)) == clean
    with pytest.raises(Exception, match="--worker '2/2'"):
        build_cache(params, worker="2/2")


@pytest.mark.slow
def test_two_worker_processes_at_once_match_one_process(params):
    """Two `rcd cache-latents --worker i/2` processes at the same time (the shared manifest under
    its file lock) give the files of one process."""
    import subprocess
    import sys

    import yaml

    clean = _files(build_cache(params))
    shutil.rmtree(params.cache.out_dir)
    cache_mod.Path("p.yaml").write_text(yaml.safe_dump(params.model_dump()))
    procs = [subprocess.Popen([sys.executable, "-m", "rcdistill.cli", "--params", "p.yaml", "cache-latents",
                               "--worker", f"{i}/2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    assert _files(cache_mod.Path(params.cache.out_dir)) == clean
