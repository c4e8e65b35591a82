"""The WebUI Script class (A1111 and Forge): arguments in, per-image negatives out."""

from __future__ import annotations

from typing import Any

from modules import scripts
from modules.shared import state

from .. import TITLE, ui
from ..args import DnpArgs, DnpArgsError, from_script_args
from ..captioners.base import CaptionerError
from ..pipeline import DnpPlan, DnpResult, run_auto_dnp
from . import current, review
from .cache import RunMemo
from .errors import as_dnp_error
from .run import RunAdapter, apply_result, fail_run

RESULT_ATTR = "_dnp_result"


class DnpScript(scripts.Script):
    _controls: ui.DnpControls | None = None
    _webui: dict[str, Any] | None = None
    _wired = False

    def title(self) -> str:
        return TITLE

    def show(self, is_img2img: bool) -> Any:
        return False if is_img2img else scripts.AlwaysVisible

    def ui(self, is_img2img: bool) -> list[Any]:
        host = current()
        controls = ui.build("dnp_txt2img", captioners=host.captioners(), note=host.captioner_note())
        self.infotext_fields = controls.infotext_fields()
        self.paste_field_names = []
        self._controls = controls
        self._wire_review()
        return controls.inputs()

    def after_component(self, component: Any, **kwargs: Any) -> None:
        """Collect the txt2img controls the review flow reads (they are built before this accordion)."""
        elem_id = kwargs.get("elem_id")
        if elem_id in review.WEBUI_INPUTS.values():
            if self._webui is None:
                self._webui = {}
            key = next(k for k, v in review.WEBUI_INPUTS.items() if v == elem_id)
            self._webui[key] = component
            self._wire_review()

    def _wire_review(self) -> None:
        webui = self._webui or {}
        if self._wired or self._controls is None or len(webui) < len(review.WEBUI_INPUTS):
            return
        review.wire(self._controls, webui)
        self._wired = True

    def process(self, p: Any, *script_args: Any) -> None:
        setattr(p, RESULT_ATTR, None)
        try:
            args = from_script_args(script_args)
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

    def postprocess(self, p: Any, processed: Any, *script_args: Any) -> None:
        result: DnpResult | None = getattr(p, RESULT_ATTR, None)
        if result is None:
            return
        args = from_script_args(script_args)
        if args.show_dns and result.dns_images:
            # after the generated images, in seed order; their infotext marks them as DNS images
            processed.images.extend(result.dns_images)
            processed.infotexts.extend(result.dns_infotexts)
