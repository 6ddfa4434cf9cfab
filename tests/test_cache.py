import json
import shutil

import pytest
import torch

from rcdistill.cache import latents as cache_mod
from rcdistill.cache.latents import CacheError, build_cache, load_cache
from rcdistill.config import load_params
from rcdistill.world.prompts import write_prompts
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
