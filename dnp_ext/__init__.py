"""sd-webui-dnp: diffusion-negative prompting (Desai & Vasconcelos, ECCV 2024) for Stable Diffusion WebUI.

The package splits into a host-independent core (guidance, negatives, args, infotext, captioners, pipeline)
that imports without a WebUI, and glue (``dnp_ext.host``, ``ui``, ``api``) that touches the WebUI.
"""

TITLE = "Diffusion-Negative Prompting"
# The WebUI's API finds alwayson scripts by their lower-cased title.
API_KEY = TITLE.lower()
__version__ = "0.1.0"
