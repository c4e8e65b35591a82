import os
import sys
from pathlib import Path

# Tiny models on 2 cores: more than one thread under load ran ~50x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the core tests need no torch
    pass
