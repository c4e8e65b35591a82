import os
import sys
from pathlib import Path

import pytest

# Tiny models on 2 cores: more than one thread under load ran ~50x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the core tests need no torch
    pass


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight CLIP with OpenAI CLIP's real tokenizer (for the benchmark's scorer)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    torch.set_num_threads(1)
    from tests.tiny_clip import build_tiny_clip, clip_bpe_path

    try:
        clip_bpe_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))
