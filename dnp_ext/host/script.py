"""The WebUI Script class (A1111 and Forge): arguments in, per-image negatives out."""

from __future__ import annotations

import json
from typing import Any

from modules import scripts
from modules.shared import state

from .. import TITLE, ui
from ..args import MODEL_PATH_SETTINGS, DnpArgs, DnpArgsError, check_override_settings, from_script_args
from ..captioners.base import CaptionerError
from ..guidance import cfg1_warnings
from ..pipeline import DnpPlan, DnpResult, run_auto_dnp
from . import current, review, xyz
from .cache import RunMemo
from .errors import as_dnp_error
from .run import RunAdapter, apply_result, fail_run, torch_rng_kept

RESULT_ATTR = "_dnp_result"
REFUSED_ATTR = "_dnp_refused"
WARNINGS_ATTR = "_dnp_warnings"


class DnpScript(scripts.Script):
    _controls: ui.DnpControls | None = None
    _webui: dict[str, Any] | None = None
    _wired = False

    def title(self) -> str:
        return TITLE

    def show(self, is_img2img: bool) -> Any:
        return scripts.AlwaysVisible

    def _tab(self) -> str:
        return "img2img" if getattr(self, "is_img2img", False) else "txt2img"

    def ui(self, is_img2img: bool) -> list[Any]:
        host = current()
        tab = "img2img" if is_img2img else "txt2img"
        controls = ui.build(f"dnp_{tab}", captioners=host.captioners(), note=host.captioner_note())
        self.infotext_fields = controls.infotext_fields()
        self.paste_field_names = []
        self._controls = controls
        self._wire_review()
        return controls.inputs()

    def after_component(self, component: Any, **kwargs: Any) -> None:
        """Collect the tab's controls the review flow reads (they are built before this accordion)."""
        elem_id = kwargs.get("elem_id")
        inputs = review.webui_inputs(self._tab())
        if elem_id in inputs.values():
            if self._webui is None:
                self._webui = {}
            key = next(k for k, v in inputs.items() if v == elem_id)
            self._webui[key] = component
            self._wire_review()

    def _wire_review(self) -> None:
        webui = self._webui or {}
        if self._wired or self._controls is None or len(webui) < len(review.INPUT_SUFFIXES):
            return
        review.wire(self._controls, webui, self._tab())
        self._wired = True

    def before_process(self, p: Any, *script_args: Any) -> None:
        """Refuse a request whose override_settings names a captioner model location, before the WebUI applies
        its overrides (right after this hook): the key is taken out, the run stops at p.init with a 422."""
        overrides = getattr(p, "override_settings", None)
        try:
            check_override_settings(overrides)
        except DnpArgsError as e:
            for key in MODEL_PATH_SETTINGS:
                overrides.pop(key, None)
            setattr(p, REFUSED_ATTR, True)
            fail_run(p, as_dnp_error(e))

    def process(self, p: Any, *script_args: Any) -> None:
        setattr(p, RESULT_ATTR, None)
        if getattr(p, REFUSED_ATTR, False):
            return
        try:
            args = xyz.with_axis_values(p, from_script_args(script_args))
            if args.enabled:  # fail before any DNS work: a captioner that can't be used is known now
                current().check_captioner(args.captioner)
                current().captioner(args.captioner).check()
        except (DnpArgsError, CaptionerError) as e:
            fail_run(p, as_dnp_error(e))
            return
        if args.enabled and p.all_prompts:
            self._run(p, args)

    def _run(self, p: Any, args: DnpArgs) -> None:
        host = current()
        plan = DnpPlan.make(len(p.all_prompts), p.batch_size, args.per_image)
        if state.job_count == -1:
            state.job_count = p.n_iter
        # hires fix doubles job_count later, in p.init, unless a caller already counted it. While DNP runs, the
        # count is the true total (hires passes included); it is halved back before p.init (DNP jobs are even).
        hires_doubles = getattr(p, "enable_hr", False) and not getattr(state, "processing_has_refined_job_count", True)
        state.job_count = (2 * state.job_count if hires_doubles else state.job_count) + plan.jobs
        job_no = state.job_no
        try:
            adapter, memo = RunAdapter(host, p, args), RunMemo(host, p, args)
            with torch_rng_kept():
                result = run_auto_dnp(adapter, args, p.all_negative_prompts, p.batch_size, memo)
        except Exception as e:
            fail_run(p, as_dnp_error(e))
            return
        if result.interrupted:
            return  # the main loop sees state.interrupted and samples nothing
        if hires_doubles:
            state.job_count //= 2
        # a batch skipped during its DNS pass never gets its caption job: count it done, so progress ends at 100%
        state.job_no = max(state.job_no, job_no + plan.jobs)
        apply_result(p, args, result, host)
        state.textinfo = "DNP: generating with the diffusion-negative prompts"
        setattr(p, RESULT_ATTR, result)
        hires_cfg = getattr(p, "hr_cfg", None) if getattr(p, "enable_hr", False) else None  # Forge's hires CFG
        warnings = cfg1_warnings(p.cfg_scale, hires_cfg)
        setattr(p, WARNINGS_ATTR, warnings)
        for warning in warnings:
            p.comment(warning)  # the UI shows p's comments under the gallery; the infotext stays as it is

    def postprocess(self, p: Any, processed: Any, *script_args: Any) -> None:
        result: DnpResult | None = getattr(p, RESULT_ATTR, None)
        if result is None:
            return
        add_warnings_to_info(processed, getattr(p, WARNINGS_ATTR, None) or [])
        args = xyz.with_axis_values(p, from_script_args(script_args))
        if args.show_dns and result.dns_images:
            # after the generated images, in seed order; their infotext marks them as DNS images
            processed.images.extend(result.dns_images)
            processed.infotexts.extend(result.dns_infotexts)


def add_warnings_to_info(processed: Any, warnings: list[str]) -> None:
    """Put DNP's warnings into the API answer's `info` JSON as "dnp_warnings".

    The WebUI's info JSON (Processed.js) has no comments field, so this Processed's js() is wrapped; the
    infotexts are left as they are.
    """
    if not warnings:
        return
    js = processed.js

    def js_with_warnings() -> str:
        info = json.loads(js())
        info["dnp_warnings"] = list(warnings)
        return json.dumps(info, default=lambda o: None)

    processed.js = js_with_warnings
