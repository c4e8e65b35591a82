import math

import pytest

from dnp_ext.args import FIELD_NAMES, DnpArgs, DnpArgsError, from_mapping, from_script_args


def test_defaults():
    a = from_mapping({})
    assert a == DnpArgs()
    assert a.to_dict() == {
        "enabled": False,
        "captioner": "blip2",
        "dns_scale": 7.5,
        "dns_steps": 0,
        "dns_preview": 1.0,
        "merge": "append",
        "per_image": True,
        "show_dns": False,
    }


def test_by_name_missing_keys_take_defaults():
    a = from_mapping({"enabled": True, "captioner": "blip", "dns_scale": 3})
    assert (a.enabled, a.captioner, a.dns_scale, a.merge) == (True, "blip", 3.0, "append")


def test_by_position_in_ui_order():
    a = from_script_args([True, "webui-blip", 5.0, 10, "replace", False, True])
    assert a == DnpArgs(True, "webui-blip", 5.0, 10, "replace", False, True)
    assert FIELD_NAMES[0] == "enabled"


def test_dict_in_first_slot_ignores_ui_defaults_after_it():
    a = from_script_args([{"enabled": True, "merge": "prepend"}, False, "blip", 1.0, 0, "append", True, False])
    assert a.enabled and a.merge == "prepend" and a.captioner == "blip2"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"enabeld": True}, "unknown argument(s) 'enabeld'"),
        ({"captioner": "gpt4"}, "'captioner' must be one of blip2, blip, webui-blip"),
        ({"dns_scale": "big"}, "'dns_scale' must be a number"),
        ({"dns_scale": -1}, "'dns_scale' must be between 0 and 50"),
        ({"dns_scale": math.nan}, "'dns_scale' must be between"),
        ({"dns_scale": True}, "'dns_scale' must be a number"),
        ({"dns_steps": 2.5}, "'dns_steps' must be a whole number"),
        ({"dns_steps": 1000}, "'dns_steps' must be between 0 and 150"),
        ({"merge": "insert"}, "'merge' must be one of append, prepend, replace"),
        ({"enabled": "yes"}, "'enabled' must be true or false"),
        ({"per_image": 2}, "'per_image' must be true or false"),
    ],
)
def test_bad_values_name_the_key(data, needle):
    with pytest.raises(DnpArgsError) as e:
        from_mapping(data)
    assert needle in str(e.value)


def test_too_many_positional_args():
    with pytest.raises(DnpArgsError, match="at most 8"):
        from_script_args([False] * 9)


def test_not_a_mapping():
    with pytest.raises(DnpArgsError, match="must be an object"):
        from_mapping(["enabled"])  # type: ignore[arg-type]


def test_string_booleans_and_numbers_from_json_forms():
    a = from_mapping({"enabled": "true", "dns_scale": "4.5", "dns_steps": 10.0})
    assert a.enabled is True and a.dns_scale == 4.5 and a.dns_steps == 10


@pytest.mark.parametrize("key", ["dnp_blip2_model", "dnp_blip_model"])
def test_override_settings_never_set_a_model_location(key):
    from dnp_ext.args import check_override_settings

    with pytest.raises(DnpArgsError, match=key):
        check_override_settings({"CLIP_stop_at_last_layers": 2, key: "/any/folder"})
    check_override_settings({"CLIP_stop_at_last_layers": 2, "dnp_captioner_after": "unload"})
    check_override_settings(None)


def test_dns_preview_is_a_fraction_of_the_dns_steps():
    from dnp_ext.args import preview_steps

    assert from_mapping({}).dns_preview == 1.0
    assert from_mapping({"dns_preview": 0.5}).dns_preview == 0.5
    assert from_script_args([True, "blip", 7.5, 0, "append", True, False, 0.25]).dns_preview == 0.25
    for bad in (0, -0.1, 1.5, "x", True, float("nan")):
        with pytest.raises(DnpArgsError, match="dns_preview"):
            from_mapping({"dns_preview": bad})
    assert preview_steps(1.0, 20) == 20 and preview_steps(0.5, 20) == 10 and preview_steps(0.5, 15) == 8
    assert preview_steps(0.01, 20) == 1 and preview_steps(0.3, 10) == 3  # 0.3 * 10 is 3.0000000000000004
