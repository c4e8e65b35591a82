"""Benchmark of diffusion-negative prompting against a running WebUI: `python -m dnp_ext.bench`.

Generation needs only the standard library; scoring needs torch, transformers and Pillow.
"""
