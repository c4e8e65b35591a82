"""Model locations are never request parameters: the Script's before_process hook and the API guard, on fakes."""

from __future__ import annotations

import warnings

import fastapi
import pytest

from dnp_ext import TITLE
from tests.test_host_glue import captioners, glue, prepared, snapshot, web  # noqa: F401 - fixtures

KEYS = ("dnp_blip2_model", "dnp_blip_model")


@pytest.mark.parametrize("key", KEYS)
def test_before_process_refuses_a_model_location_override(web, glue, captioners, key):  # noqa: F811
    p = prepared(web, prompt="a castle", batch_size=2, seed=5)
    p.override_settings = {"CLIP_stop_at_last_layers": 2, key: "/any/folder"}
    script = glue.script.DnpScript()
    script.before_process(p, {"enabled": True})
    # taken out before the WebUI applies the overrides (right after this hook); the rest stays
    assert p.override_settings == {"CLIP_stop_at_last_layers": 2}
    before = snapshot(p)
    script.process(p, {"enabled": True})  # no DNS work for a refused run
    assert snapshot(p) == before and not web.calls and not captioners.instances
    with pytest.raises(glue.errors.DnpError) as e:
        p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
    assert e.value.status_code == 422 and f"'{key}'" in str(e.value) and TITLE in str(e.value)


def test_before_process_leaves_other_overrides_alone(web, glue, captioners):  # noqa: F811
    p = prepared(web, prompt="a castle")
    p.override_settings = {"dnp_captioner_after": "unload"}
    before = snapshot(p)
    glue.script.DnpScript().before_process(p, {"enabled": False})
    assert snapshot(p) == before and "init" not in vars(p)


def test_api_guard_answers_422_and_passes_everything_else_unchanged():
    from dnp_ext.host import guard

    app = fastapi.FastAPI()
    seen: list[dict] = []

    @app.post("/sdapi/v1/txt2img")
    @app.post("/sdapi/v1/img2img")
    @app.post("/sdapi/v1/options")
    def echo(body: dict = fastapi.Body(...)) -> dict:  # noqa: B008 - FastAPI idiom
        seen.append(body)
        return body

    guard.install(app)
    guard.install(app)  # once only
    assert sum(m.cls is guard.RefuseModelPathOverrides for m in app.user_middleware) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    client = TestClient(app)
    for path in ("/sdapi/v1/txt2img", "/sdapi/v1/img2img"):
        for key in KEYS:
            r = client.post(path, json={"prompt": "x", "override_settings": {key: "/tmp"}})
            assert r.status_code == 422 and key in r.json()["detail"] and TITLE in r.json()["detail"], r.text
    assert not seen
    big = {"prompt": "x" * 200_000, "override_settings": {"CLIP_stop_at_last_layers": 2}}
    assert client.post("/sdapi/v1/txt2img", json=big).json() == big  # a body of many chunks, replayed whole
    assert client.post("/sdapi/v1/options", json={"dnp_blip2_model": "/a"}).json() == {"dnp_blip2_model": "/a"}
    assert seen == [big, {"dnp_blip2_model": "/a"}]
