#!/usr/bin/env bash
# Run the captioner tests against another transformers release without touching the dev venv.
#
#   tests/compat_transformers.sh VERSION [pytest args...]
#
# Installs transformers==VERSION (plus the tokenizers / huggingface_hub it needs) into .tf-VERSION/ under the
# repo root (git-ignored via /.tf*/) and runs tests/test_captioners.py with PYTHONPATH pointing there, so the
# venv's torch / numpy / pillow are reused.  PYTHON overrides the interpreter (default: .venv/bin/python).
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 TRANSFORMERS_VERSION [pytest args...]" >&2
    exit 2
fi
VERSION=$1
shift
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
TARGET=$ROOT/.tf-$VERSION

if [ ! -f "$TARGET/.complete" ]; then
    rm -rf "$TARGET"
    mkdir -p "$TARGET"
    # Pin everything the venv already has (except the packages that must follow transformers) so pip picks
    # the same versions, which are then pruned from the target and imported from the venv instead.
    CONSTRAINTS=$TARGET/.constraints.txt
    "$PY" -m pip freeze --exclude-editable \
        | grep -viE '^(transformers|tokenizers|huggingface[-_]hub|hf[-_]xet|torch|torchvision)([=@ ]|$)' \
        > "$CONSTRAINTS" || true
    if ! nice "$PY" -m pip install -q --disable-pip-version-check --target "$TARGET" \
            -c "$CONSTRAINTS" "transformers==$VERSION"; then
        echo "install with the venv's versions pinned failed; retrying unpinned" >&2
        rm -rf "$TARGET"
        mkdir -p "$TARGET"
        nice "$PY" -m pip install -q --disable-pip-version-check --target "$TARGET" "transformers==$VERSION"
    fi
    # Drop distributions the venv already has at the same version, so only one copy gets imported.
    "$PY" - "$TARGET" <<'EOF'
import csv
import shutil
import sys
from importlib import metadata
from pathlib import Path

target = Path(sys.argv[1])
venv = {}
for dist in metadata.distributions():
    name = (dist.metadata["Name"] or "").lower().replace("_", "-")
    if name and not str(dist._path).startswith(str(target)):  # type: ignore[attr-defined]
        venv[name] = dist.version
for info in sorted(target.glob("*.dist-info")):
    dist = metadata.PathDistribution(info)
    name = (dist.metadata["Name"] or "").lower().replace("_", "-")
    if venv.get(name) != dist.version:
        continue
    with open(info / "RECORD", newline="") as fh:
        for row in csv.reader(fh):
            path = (target / row[0]).resolve() if row else target
            if target.resolve() in path.parents and path.is_file():
                path.unlink()
    shutil.rmtree(info, ignore_errors=True)
# Remove the folders the pruning emptied (deepest first).
for d in sorted((p for p in target.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
    if not any(d.iterdir()):
        d.rmdir()
EOF
    touch "$TARGET/.complete"
fi

cd "$ROOT"
echo "transformers $(PYTHONPATH=$TARGET "$PY" -c 'import transformers; print(transformers.__version__)')" \
    "tokenizers $(PYTHONPATH=$TARGET "$PY" -c 'import tokenizers; print(tokenizers.__version__)')" \
    "huggingface_hub $(PYTHONPATH=$TARGET "$PY" -c 'import huggingface_hub; print(huggingface_hub.__version__)')"
PYTHONPATH=$TARGET${PYTHONPATH:+:$PYTHONPATH} exec "$PY" -m pytest tests/test_captioners.py -q -p no:cacheprovider "$@"
