import pytest
import torch

from rcdistill.students import (
    SD_V1_UNET_CONFIG, STUDENTS, build_student, count_params, feature_pairs, init_from_teacher, student_config,
)
from rcdistill.distill.taps import FeatureTaps


@pytest.mark.parametrize("name", list(STUDENTS))
def test_sd_v1_student_sizes_match_published_within_1_percent(name):
    assert abs(count_params(SD_V1_UNET_CONFIG) / 1e6 - 859.5) < 0.1
    n = count_params(student_config(SD_V1_UNET_CONFIG, name)) / 1e6  # meta device: nothing allocated
    claim = STUDENTS[name].claims_params_sd_v1
    assert abs(n / claim - 1) < 0.01, (name, n, claim)


def test_unknown_student_and_unfit_teacher_are_refused():
    with pytest.raises(ValueError, match="unknown student"):
        student_config(SD_V1_UNET_CONFIG, "bk_huge")
    with pytest.raises(ValueError, match="layers_per_block"):
        student_config({**SD_V1_UNET_CONFIG, "layers_per_block": 1}, "bk_base")


@pytest.fixture(scope="module")
def teacher(tiny_pipeline):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(tiny_pipeline / "unet").eval()


# Expected teacher source of a few student tensors (BK-SDM's mapping).
EXPECTED = {
    "bk_base": {"down_blocks.0.resnets.0.conv1.weight": "down_blocks.0.resnets.0.conv1.weight",
                "up_blocks.1.resnets.1.conv1.weight": "up_blocks.1.resnets.2.conv1.weight",
                "up_blocks.1.attentions.1.proj_in.weight": "up_blocks.1.attentions.2.proj_in.weight",
                "mid_block.resnets.0.conv1.weight": "mid_block.resnets.0.conv1.weight"},
    "bk_small": {"up_blocks.2.resnets.1.conv2.weight": "up_blocks.2.resnets.2.conv2.weight"},
    "bk_tiny": {"up_blocks.0.resnets.0.conv1.weight": "up_blocks.1.resnets.0.conv1.weight",
                "up_blocks.0.resnets.1.conv1.weight": "up_blocks.1.resnets.2.conv1.weight",
                "up_blocks.0.upsamplers.0.conv.weight": "up_blocks.1.upsamplers.0.conv.weight",
                "up_blocks.1.attentions.1.proj_out.weight": "up_blocks.2.attentions.2.proj_out.weight"},
}


@pytest.mark.parametrize("name", ["bk_base", "bk_small", "bk_tiny"])
def test_weight_copy_is_exact_on_mapped_blocks(teacher, name):
    student = build_student(teacher.config, name)
    mapping = init_from_teacher(student, teacher, name)
    t, s = teacher.state_dict(), student.state_dict()
    for dst, src in mapping.items():
        assert torch.equal(s[dst], t[src]), dst
    for dst, src in EXPECTED[name].items():
        assert mapping[dst] == src
    # every student tensor has a teacher twin, except the down stage that lost its downsampler (none here)
    assert len(mapping) == len(s), sorted(set(s) - set(mapping))[:5]
    if name != "bk_base":
        assert student.mid_block is None
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())


@pytest.mark.parametrize("name", ["bk_base", "bk_small", "bk_tiny", "c_micro"])
def test_feature_pairs_have_matching_shapes(teacher, name):
    student = build_student(teacher.config, name)
    pairs = feature_pairs(teacher, student, name)
    t_taps, s_taps = FeatureTaps(teacher, [a for a, _ in pairs]), FeatureTaps(student, [b for _, b in pairs])
    x, t, cond = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 16, 32)
    with torch.no_grad():
        assert teacher(x, t, cond).sample.shape == student(x, t, cond).sample.shape
    for a, b in zip(t_taps.take(), s_taps.take()):
        assert a.shape == b.shape


def test_students_command_lists_sd_v1_variants():
    from tests.conftest import rcd

    r = rcd("students", "--sd-v1")
    assert r.returncode == 0, r.stderr
    assert "bk_small" in r.stdout and "482.3M" in r.stdout and "859.5M" in r.stdout
