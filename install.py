"""Run by the WebUI at start-up (Extensions tab install too). Installs only what is missing.

It never upgrades or downgrades a package the WebUI pins (torch, transformers, gradio, ...): everything
DNP needs already ships with AUTOMATIC1111 1.10.1 and Forge; this only covers stripped-down installs.
"""

from __future__ import annotations

import launch  # the WebUI's own helpers: is_installed / run_pip

# (import name, pip requirement used only when the package is absent)
REQUIREMENTS = [
    ("transformers", "transformers>=4.30.2"),
    ("PIL", "Pillow"),
]
MIN_TRANSFORMERS = (4, 27)  # Blip2ForConditionalGeneration appeared in 4.27


def main() -> None:
    installed = []
    for module, requirement in REQUIREMENTS:
        if not launch.is_installed(module):
            launch.run_pip(f"install {requirement}", f"sd-webui-dnp requirement: {requirement}")
            installed.append(requirement)
    # one line in the WebUI's log, so an install from the Extensions tab shows what it did
    print(f"[sd-webui-dnp] install.py: installed {', '.join(installed)}" if installed else
          "[sd-webui-dnp] install.py: all requirements present, nothing installed or changed")  # fmt: skip
    try:
        import transformers

        version = tuple(int(x) for x in transformers.__version__.split(".")[:2])
        if version < MIN_TRANSFORMERS:
            print(
                f"[sd-webui-dnp] transformers {transformers.__version__} has no BLIP-2; the blip2 captioner "
                "will not load (blip and webui-blip still work). Left as is: the WebUI pins it."
            )
    except Exception as e:  # report, never break the WebUI's start-up
        print(f"[sd-webui-dnp] could not check transformers: {e}")


main()
