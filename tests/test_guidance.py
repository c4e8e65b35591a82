import torch

from dnp_ext.guidance import (
    ClassifierFreeGuidance,
    DiffusionNegativeGuidance,
    NegativePromptGuidance,
    dns_to_webui_cfg_scale,
    webui_cfg_scale_to_dns,
)

g = torch.Generator().manual_seed(0)
E_EMPTY, E_P, E_N = (torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64) for _ in range(3))


def test_cfg_eq3_by_hand():
    out = ClassifierFreeGuidance(7.0)(E_N, E_P)
    assert torch.allclose(out, E_N + 7.0 * E_P - 7.0 * E_N)
    # scale 1 is the conditional prediction, scale 0 the unconditional one
    assert torch.allclose(ClassifierFreeGuidance(1.0)(E_N, E_P), E_P)
    assert torch.allclose(ClassifierFreeGuidance(0.0)(E_N, E_P), E_N)


def test_negative_guidance_eq4_three_terms():
    out = NegativePromptGuidance(7.5)(E_EMPTY, E_P, E_N)
    assert torch.allclose(out, E_EMPTY + 7.5 * (E_P - E_N))
    # with n = empty it is ordinary CFG
    assert torch.allclose(NegativePromptGuidance(7.5)(E_EMPTY, E_P, E_EMPTY), ClassifierFreeGuidance(7.5)(E_EMPTY, E_P))


def test_dns_eq19_by_hand():
    s = 7.5
    out = DiffusionNegativeGuidance(s)(E_EMPTY, E_P)
    assert torch.allclose(out, (1 + s) * E_EMPTY - s * E_P)


def test_dns_is_webui_cfg_with_swapped_prompts_and_scale_plus_one():
    for s in (0.0, 1.0, 3.0, 7.5, 12.0):
        dns = DiffusionNegativeGuidance(s)
        assert dns.webui_cfg_scale == s + 1
        # WebUI CFG with positive "" (cond = eps_empty) and negative p (uncond = eps_p)
        webui = ClassifierFreeGuidance(dns.webui_cfg_scale)(E_P, E_EMPTY)
        assert torch.allclose(webui, dns(E_EMPTY, E_P))
        assert torch.allclose(dns.as_cfg()(E_P, E_EMPTY), dns(E_EMPTY, E_P))


def test_off_by_one_would_be_wrong():
    # Using the paper's s directly as the WebUI scale gives eq. 19 with s - 1: the public runner's bug.
    s = 7.5
    wrong = ClassifierFreeGuidance(s)(E_P, E_EMPTY)
    assert not torch.allclose(wrong, DiffusionNegativeGuidance(s)(E_EMPTY, E_P))
    assert torch.allclose(wrong, DiffusionNegativeGuidance(s - 1)(E_EMPTY, E_P))


def test_scale_conversions_round_trip():
    assert dns_to_webui_cfg_scale(7.5) == 8.5
    assert webui_cfg_scale_to_dns(dns_to_webui_cfg_scale(3.25)) == 3.25


def test_works_on_floats():
    assert DiffusionNegativeGuidance(2.0)(1.0, 3.0) == 1.0 + 2.0 * (1.0 - 3.0)
