"""X/Y/Z plot axes for DNP's options, registered like sd-dynamic-thresholding and ADetailer register theirs.

An axis value reaches the script through p: ``apply`` puts it in ``p.dnp_xyz`` (a new dict per cell, since the
plot shallow-copies p for each cell), and the script reads those values in preference to its UI arguments.
Values are checked by ``confirm`` before the plot starts, so a bad one stops it with a message naming the axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..args import DnpArgs, DnpArgsError, from_mapping
from ..negatives import MERGE_MODES

XYZ_ATTR = "dnp_xyz"
PREFIX = "[DNP]"
ON_OFF = ("off", "on")


def axis_values(p: Any) -> dict[str, Any]:
    return dict(getattr(p, XYZ_ATTR, None) or {})


def with_axis_values(p: Any, args: DnpArgs) -> DnpArgs:
    """The script's arguments with this cell's axis values in place of the UI's."""
    values = axis_values(p)
    if not values:
        return args
    return from_mapping({**args.to_dict(), **values})


def _setter(key: str, convert: Callable[[Any], Any]) -> Callable[[Any, Any, Any], None]:
    def apply(p: Any, x: Any, xs: Any) -> None:
        setattr(p, XYZ_ATTR, {**axis_values(p), key: convert(x)})

    return apply


def _confirm(key: str, convert: Callable[[Any], Any]) -> Callable[[Any, Sequence[Any]], None]:
    def confirm(p: Any, values: Sequence[Any]) -> None:  # the plot calls it with every value before it starts
        for x in values:
            try:
                from_mapping({key: convert(x)})
            except DnpArgsError as e:
                raise RuntimeError(f"X/Y/Z plot: {PREFIX} axis value {x!r}: {e}") from None

    return confirm


def _on_off(x: Any) -> bool:
    text = str(x).strip().lower()
    if text not in ON_OFF:
        raise DnpArgsError(f"'enabled' must be one of {', '.join(ON_OFF)}, not {x!r}")
    return text == "on"


def axes(xyz: Any, captioners: Sequence[str]) -> list[Any]:
    """The AxisOptions, built with the plot module's own classes."""

    def option(label: str, key: str, type_: Callable[[Any], Any], convert: Callable[[Any], Any], **kw: Any) -> Any:
        return xyz.AxisOption(f"{PREFIX} {label}", type_, _setter(key, convert), confirm=_confirm(key, convert), **kw)

    def choices(values: Sequence[str]) -> Callable[[], list[str]]:
        return lambda: list(values)

    same = lambda x: x  # noqa: E731 - the value as the plot parsed it
    return [
        option("Auto-DNP", "enabled", str, _on_off, choices=choices(ON_OFF), format_value=xyz.format_value_add_label),
        option("DNS scale", "dns_scale", float, same),
        option("DNS steps", "dns_steps", int, same),
        option("Captioner", "captioner", str, same, choices=choices(captioners)),
        option("Merge", "merge", str, same, choices=choices(MERGE_MODES)),
        option("DNS preview", "dns_preview", float, same),
    ]


def find_xyz_module(scripts_data: Sequence[Any]) -> Any | None:
    for data in scripts_data:
        if getattr(data.script_class, "__module__", "") == "xyz_grid.py" and hasattr(data, "module"):
            return data.module
    return None


def register(captioners: Sequence[str]) -> None:
    """on_before_ui: add the axes to the X/Y/Z plot once (the WebUI may build the UI again on reload)."""
    from modules import scripts

    xyz = find_xyz_module(scripts.scripts_data)
    if xyz is None:  # the built-in script is disabled or missing: nothing to add to
        return
    if any(str(getattr(o, "label", "")).startswith(PREFIX) for o in xyz.axis_options):
        return
    xyz.axis_options.extend(axes(xyz, captioners))
