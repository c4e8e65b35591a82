"""DNP's X/Y/Z plot axes against a stand-in for the plot module (its AxisOption and axis list)."""

from __future__ import annotations

import copy
import types

import pytest

from dnp_ext.args import DnpArgs
from tests.test_host_glue import web  # noqa: F401 - fixture: the fake modules.* the host imports


class AxisOption:
    def __init__(self, label, type, apply, format_value=None, confirm=None, cost=0.0, choices=None, prepare=None):
        self.label, self.type, self.apply, self.confirm, self.choices = label, type, apply, confirm, choices


def plot_module() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        AxisOption=AxisOption, axis_options=[AxisOption("Nothing", str, None)], format_value_add_label=None
    )


def test_axes_registered_once_and_applied_per_cell(web, monkeypatch):  # noqa: F811
    from modules import scripts

    from dnp_ext.host import xyz

    plot = plot_module()
    monkeypatch.setattr(
        scripts,
        "scripts_data",
        [types.SimpleNamespace(script_class=type("Other", (), {"__module__": "other.py"}), module=None),
         types.SimpleNamespace(script_class=type("Script", (), {"__module__": "xyz_grid.py"}), module=plot)],
    )  # fmt: skip
    xyz.register(("blip2", "blip"))
    xyz.register(("blip2", "blip"))
    labels = [o.label for o in plot.axis_options]
    assert labels == [
        "Nothing",
        "[DNP] Auto-DNP",
        "[DNP] DNS scale",
        "[DNP] DNS steps",
        "[DNP] Captioner",
        "[DNP] Merge",
        "[DNP] DNS preview",
    ]
    axes = {o.label: o for o in plot.axis_options}
    assert axes["[DNP] Captioner"].choices() == ["blip2", "blip"] and axes["[DNP] Auto-DNP"].choices() == ["off", "on"]

    # the plot copies p for each cell (shallow): a cell's values never leak into p or another cell
    p = types.SimpleNamespace(prompt="x")
    cell = copy.copy(p)
    axes["[DNP] DNS scale"].apply(cell, 3.0, [3.0, 10.0])
    axes["[DNP] Auto-DNP"].apply(cell, "on", ["off", "on"])
    other = copy.copy(p)
    axes["[DNP] DNS scale"].apply(other, 10.0, [3.0, 10.0])
    axes["[DNP] DNS preview"].apply(other, 0.5, [0.5, 1.0])
    ui = DnpArgs(enabled=False, dns_scale=7.5, merge="replace")
    assert xyz.with_axis_values(cell, ui) == DnpArgs(enabled=True, dns_scale=3.0, merge="replace")
    assert xyz.with_axis_values(other, ui) == DnpArgs(enabled=False, dns_scale=10.0, merge="replace", dns_preview=0.5)
    assert xyz.with_axis_values(p, ui) is ui

    # bad values stop the plot before it starts, naming the axis and the key
    bad = [
        ("[DNP] DNS scale", [3.0, 999.0], "dns_scale"),
        ("[DNP] Merge", ["mix"], "merge"),
        ("[DNP] Auto-DNP", ["maybe"], "enabled"),
        ("[DNP] DNS steps", [-1], "dns_steps"),
        ("[DNP] DNS preview", [0.5, 0.0], "dns_preview"),
        ("[DNP] DNS preview", [1.5], "dns_preview"),
    ]
    for label, values, key in bad:
        with pytest.raises(RuntimeError, match=rf"\[DNP\].*'{key}'"):
            axes[label].confirm(p, values)
    axes["[DNP] DNS scale"].confirm(p, [0.0, 3.0, 50.0])
    axes["[DNP] DNS preview"].confirm(p, [0.25, 0.5, 1.0])
