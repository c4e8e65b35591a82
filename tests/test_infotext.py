from dnp_ext.args import DnpArgs
from dnp_ext.infotext import (
    DNS_IMAGE,
    KEY_CAPTION,
    KEY_CAPTIONER,
    KEY_DNP,
    KEY_DNS_SCALE,
    KEY_DNS_STEPS,
    dns_image_params,
    generation_params,
    parse_pasted,
)


def _round_trip(params: dict) -> dict:
    """Write params the way the WebUI writes infotext, read them back the way it parses them."""
    # A1111: create_infotext joins "k: quote(v)"; parse_generation_parameters splits on the same regex.
    import json
    import re

    def quote(v):
        text = str(v)
        if "," not in text and "\n" not in text and ":" not in text:
            return text
        return json.dumps(text, ensure_ascii=False)

    line = ", ".join(f"{k}: {quote(v)}" for k, v in params.items())
    re_param = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
    out = {}
    for k, v in re_param.findall(line):
        out[k] = json.loads(v) if v.startswith('"') else v
    return out


def test_main_image_keys():
    a = DnpArgs(enabled=True, captioner="blip", dns_scale=5.0, dns_steps=12, merge="prepend", per_image=False)
    p = generation_params(a, dns_steps=12, captions=["x", "y"])
    assert p[KEY_DNP] == "auto, shared, prepend"
    assert p[KEY_CAPTIONER] == "blip"
    assert p[KEY_DNS_SCALE] == 5.0
    assert p[KEY_DNS_STEPS] == 12
    assert p[KEY_CAPTION] == ["x", "y"]


def test_paste_restores_settings_but_never_enables_dnp_again():
    a = DnpArgs(enabled=True, captioner="blip", dns_scale=5.0, dns_steps=12, merge="replace", per_image=False)
    params = _round_trip({k: v for k, v in generation_params(a, 12).items()})
    ui = parse_pasted(params)
    assert ui == {
        "enabled": False,
        "per_image": False,
        "merge": "replace",
        "captioner": "blip",
        "dns_scale": 5.0,
        "dns_steps": 12,
        "dns_preview": 1.0,
    }


def test_paste_of_a_dns_image_or_plain_image():
    assert parse_pasted(_round_trip(dns_image_params(DnpArgs(dns_scale=3.0)))) == {"enabled": False}
    assert parse_pasted({"Steps": "20"}) == {}


def test_paste_tolerates_hand_edited_values():
    ui = parse_pasted({KEY_DNP: "auto, per image, append", KEY_DNS_SCALE: "lots"})
    assert ui["enabled"] is False and ui["per_image"] is True and "dns_scale" not in ui


def test_dns_image_marker():
    assert dns_image_params(DnpArgs())[KEY_DNP] == DNS_IMAGE


def test_dns_preview_key_only_below_one_and_pasted_back():
    from dnp_ext.infotext import KEY_DNS_PREVIEW, dns_image_params

    assert KEY_DNS_PREVIEW not in generation_params(DnpArgs(enabled=True), 20)
    assert KEY_DNS_PREVIEW not in dns_image_params(DnpArgs(enabled=True))
    half = DnpArgs(enabled=True, dns_preview=0.5)
    assert generation_params(half, 20)[KEY_DNS_PREVIEW] == 0.5 and dns_image_params(half)[KEY_DNS_PREVIEW] == 0.5
    base = {"DNP": "auto, per image, append"}
    assert parse_pasted({**base, "DNS preview": "0.5"})["dns_preview"] == 0.5
    assert parse_pasted(base)["dns_preview"] == 1.0  # an infotext without the key was a full DNS
    assert "dns_preview" not in parse_pasted({**base, "DNS preview": "7"})
