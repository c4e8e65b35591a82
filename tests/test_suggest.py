import base64
import io

import pytest
from PIL import Image

from dnp_ext.args import DnpArgsError
from dnp_ext.suggest import SuggestRequest, SuggestResult, parse_suggest_request


def test_defaults_and_dnp_args():
    req = parse_suggest_request({"prompt": "a cat"})
    assert req == SuggestRequest(prompt="a cat")
    a = req.dnp_args()
    assert a.enabled and a.per_image and a.show_dns and a.dns_scale == 7.5 and a.merge == "append"


def test_all_fields():
    body = {
        "prompt": "a cat",
        "negative_prompt": "ugly",
        "seed": 3,
        "subseed": 4,
        "subseed_strength": 0.5,
        "width": 64,
        "height": 128,
        "steps": 4,
        "sampler_name": "Euler",
        "scheduler": "Karras",
        "cfg_scale": 5,
        "batch_size": 2,
        "dns_scale": 3,
        "dns_steps": 2,
        "captioner": "blip",
        "merge": "replace",
    }
    req = parse_suggest_request(body)
    assert (req.width, req.height, req.batch_size, req.dns_scale, req.merge) == (64, 128, 2, 3.0, "replace")
    assert req.dnp_args().dns_steps == 2 and req.dnp_args().captioner == "blip"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "'prompt' is required"),
        ({"prompt": "x", "bogus": 1}, "unknown field(s) 'bogus'"),
        ({"prompt": 3}, "'prompt' must be a string"),
        ({"prompt": "x", "width": 65}, "'width' must be a multiple of 8"),
        ({"prompt": "x", "height": 4096}, "'height' must be between 64 and 2048"),
        ({"prompt": "x", "batch_size": 9}, "'batch_size' must be between 1 and 8"),
        ({"prompt": "x", "steps": 0}, "'steps' must be between 1 and 150"),
        ({"prompt": "x", "seed": 1.5}, "'seed' must be a whole number"),
        ({"prompt": "x", "captioner": "gpt"}, "'captioner' must be one of"),
        ({"prompt": "x", "merge": "insert"}, "'merge' must be one of"),
        ({"prompt": "x", "subseed_strength": 2}, "'subseed_strength' must be between 0 and 1"),
    ],
)
def test_bad_requests_name_the_field(body, needle):
    with pytest.raises(DnpArgsError) as e:
        parse_suggest_request(body)
    assert needle in str(e.value)


def test_not_an_object():
    with pytest.raises(DnpArgsError, match="must be an object"):
        parse_suggest_request(["prompt"])  # type: ignore[arg-type]


def test_to_json_embeds_each_infotext_in_its_png():
    images = [Image.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(2)]
    r = SuggestResult(["c0", "c1"], ["n0", "n1"], images, ["info0", "info1"], [1, 2], [5, 6], {"dns_scale": 7.5})
    out = r.to_json()
    assert out["captions"] == ["c0", "c1"] and out["seeds"] == [1, 2] and out["subseeds"] == [5, 6]
    assert out["info"] == {"dns_scale": 7.5, "infotexts": ["info0", "info1"]}
    for i, b64 in enumerate(out["images"]):
        im = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert im.info["parameters"] == f"info{i}"
        assert im.getpixel((0, 0)) == (i * 40, 0, 0)


@pytest.mark.parametrize("key", ["dnp_blip2_model", "dnp_blip_model"])
def test_suggest_override_settings_naming_a_model_location(key):
    with pytest.raises(DnpArgsError, match=f"'override_settings' may not set '{key}'"):
        parse_suggest_request({"prompt": "a cat", "override_settings": {key: "/tmp/x"}})
    # other overrides are not a suggest field at all
    with pytest.raises(DnpArgsError, match="override_settings"):
        parse_suggest_request({"prompt": "a cat", "override_settings": {"CLIP_stop_at_last_layers": 2}})
