"""DNS preview in the WebUI glue, against the fake WebUI's sampler loop (tests/fake_webui.py: sample)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fake_webui import fake_image
from tests.test_host_glue import captioners, generate, glue, web  # noqa: F401 - fixtures

ARGS = {"enabled": True, "show_dns": True}


def run(web, glue, sampler="Euler", steps=8, **args):  # noqa: F811
    payload = {"prompt": "a fox", "seed": 3, "subseed": 7, "batch_size": 2, "steps": steps, "sampler_name": sampler}
    return generate(web, glue, [{**ARGS, **args}], **payload)


def dns_and_main(web):  # noqa: F811
    dns = [c for c in web.calls if c.is_dns]
    main = [c for c in web.calls if not c.is_dns]
    return dns, main


def test_preview_one_is_the_full_dns(web, glue, captioners):  # noqa: F811
    _, processed = run(web, glue, dns_preview=1.0)
    dns, main = dns_and_main(web)
    assert dns[0].evaluations == 8 and main[0].evaluations == 8
    assert [im.tobytes() for im in processed.images[2:]] == [fake_image(dns[0].p, i).tobytes() for i in range(2)]
    assert "DNS preview" not in processed.infotexts[0] and "DNS preview" not in processed.infotexts[2]
    assert web.cfg_callbacks == {"denoiser": [], "after_cfg": []}


@pytest.mark.parametrize(("sampler", "evaluations"), [("Euler", 4), ("Heun", 7)])
def test_preview_stops_after_the_fraction_and_decodes_cfg_x0(web, glue, captioners, sampler, evaluations):  # noqa: F811
    _, processed = run(web, glue, sampler=sampler, dns_preview=0.5)
    dns, main = dns_and_main(web)
    # 4 of 8 steps: the 4th step's first evaluation ends it (Heun: 3 steps x 2 + 1)
    assert dns[0].evaluations == evaluations
    assert main[0].evaluations == 8 * (2 if sampler == "Heun" else 1), "the main run must not be touched"
    # the DNS image decodes the CFG-combined x0 of step index 3 (first evaluation), not the cond branch's
    x0 = [[30.0], [30.5]]
    assert [im.tobytes() for im in processed.images[2:]] == [fake_image(dns[0].p, i, x0[i]).tobytes() for i in range(2)]
    assert "DNS preview: 0.5" in processed.infotexts[0] and "DNS preview: 0.5" in processed.infotexts[2]
    assert web.cfg_callbacks == {"denoiser": [], "after_cfg": []}, "callbacks must be gone after the DNS run"


def test_preview_is_deterministic_and_progress_counts_the_short_pass(web, glue, captioners):  # noqa: F811
    seen: list[tuple[int, int]] = []
    web.cfg_callbacks["after_cfg"].append(lambda params: seen.append((web.state.sampling_steps, 0)))
    _, a = run(web, glue, dns_preview=0.25)
    _, b = run(web, glue, dns_preview=0.25)
    assert [np.asarray(x).tolist() for x in a.images] == [np.asarray(x).tolist() for x in b.images]
    dns_steps = [s for s, _ in seen if s != 8]
    assert dns_steps and set(dns_steps) == {2}  # 0.25 of 8 steps; the main run's 8 stay 8


def test_preview_with_fewer_dns_steps_rounds_up(web, glue, captioners):  # noqa: F811
    run(web, glue, steps=8, dns_steps=5, dns_preview=0.5)
    dns, _ = dns_and_main(web)
    assert dns[0].steps == 5 and dns[0].evaluations == 3
