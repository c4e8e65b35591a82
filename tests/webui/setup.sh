#!/usr/bin/env bash
# Makes a runnable WebUI for tests/webui (CPU, offline launch):
#   bash tests/webui/setup.sh a1111|forge DIR
# and prints the SD_WEBUI_DIR / SD_WEBUI_PYTHON to run the suite with.
#
# Source, first found: $SD_WEBUI_SRC (the host's .tar.gz, a folder holding it, or a source tree with
# launch.py), ../shared/webui/<archive> beside this checkout, else git clones of the upstream repositories
# at the commits the host's launch_utils pins (needs internet).
# The venv gets the host's own pins (requirements_versions.txt; setuptools lifted to 80.9.0 for torch's
# needs) and torch 2.14.1 + torchvision 0.29.1 from ONE shared site folder ($DNP_TORCH_SITE, default in
# ~/.cache/sd-webui-dnp), named by a .pth file: pip sees torch as installed, and both hosts share ~5 GB.
# Idempotent: DIR/.dnp-setup holds the key of a finished build; the same key again is a no-op.
set -euo pipefail

HOST=${1:-}
DIR=${2:-}
if [[ -z $HOST || -z $DIR || ! $HOST =~ ^(a1111|forge)$ ]]; then
    echo "usage: bash tests/webui/setup.sh a1111|forge DIR" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# A1111 pins gradio 3.41.2, which answers 403 to every file= URL whose real path has a part starting with
# "." (its dotfile guard): in such a DIR the UI's own scripts never load and the page is broken.
if [[ $HOST == a1111 ]]; then
    real=$(realpath -m "$DIR")
    if [[ /$real/ == */.* ]]; then
        echo "setup.sh: $real has a folder whose name starts with '.': A1111's gradio 3.41.2 refuses to serve" \
            "files from such a path (403), so its UI would not load. Choose a DIR without one." >&2
        exit 2
    fi
fi
PY=${PYTHON:-python3}
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
CACHE=${DNP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sd-webui-dnp}
PYTAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
TORCH_SITE=${DNP_TORCH_SITE:-$CACHE/torch-2.14.1-torchvision-0.29.1-$PYTAG}

if [[ $HOST == a1111 ]]; then
    ARCHIVE=a1111-v1.10.1.tar.gz
    TOP=stable-diffusion-webui
    UPSTREAM="https://github.com/AUTOMATIC1111/stable-diffusion-webui.git 82a973c04367123ae98bd9abdf80d9eda9b910e2"
    REPOS=(
        "stable-diffusion-webui-assets https://github.com/AUTOMATIC1111/stable-diffusion-webui-assets.git 6f7db241d2f8ba7457bac5ca9753331f0c266917"
        "stable-diffusion-stability-ai https://github.com/Stability-AI/stablediffusion.git cf1d67a6fd5ea1aa600c4df58e5b47da45f6bdbf"
        "generative-models https://github.com/Stability-AI/generative-models.git 45c443b316737a4ab6e40413d7794a7f5657c19f"
        "k-diffusion https://github.com/crowsonkb/k-diffusion.git ab527a9a6d347f364e3d185ba6d714e22d80cb3c"
        "BLIP https://github.com/salesforce/BLIP.git 48211a1594f1321b00f14c9f7a5b4813144b2fb9"
    )
    # clip: only A1111's CLIP interrogator imports it; launch_utils would pip-install it from GitHub
    EXTRA=(clip-anytorch==2.6.0)
else
    ARCHIVE=forge-dfdcbab6.tar.gz
    TOP=stable-diffusion-webui-forge
    UPSTREAM="https://github.com/lllyasviel/stable-diffusion-webui-forge.git dfdcbab685e57677014f05a3309b48cc87383167"
    REPOS=(
        "huggingface_guess https://github.com/lllyasviel/huggingface_guess.git 84826248b49bb7ca754c73293299c4d4e23a548d"
        "stable-diffusion-webui-assets https://github.com/AUTOMATIC1111/stable-diffusion-webui-assets.git 6f7db241d2f8ba7457bac5ca9753331f0c266917"
        "BLIP https://github.com/salesforce/BLIP.git 48211a1594f1321b00f14c9f7a5b4813144b2fb9"
    )
    EXTRA=(joblib==1.4.2)  # imported by Forge's preprocessors, missing from its requirements
fi

# ---------------------------------------------------------------------------------------- the source
SOURCE=""
SOURCE_KIND=""
if [[ -n ${SD_WEBUI_SRC:-} ]]; then
    if [[ -f $SD_WEBUI_SRC ]]; then SOURCE=$SD_WEBUI_SRC SOURCE_KIND=archive
    elif [[ -f $SD_WEBUI_SRC/$ARCHIVE ]]; then SOURCE=$SD_WEBUI_SRC/$ARCHIVE SOURCE_KIND=archive
    elif [[ -f $SD_WEBUI_SRC/launch.py ]]; then SOURCE=$SD_WEBUI_SRC SOURCE_KIND=tree
    else
        echo "SD_WEBUI_SRC=$SD_WEBUI_SRC is neither $ARCHIVE, a folder holding it, nor a WebUI source tree" >&2
        exit 2
    fi
elif [[ -f $ROOT/../shared/webui/$ARCHIVE ]]; then
    SOURCE=$(cd "$ROOT/../shared/webui" && pwd)/$ARCHIVE SOURCE_KIND=archive
else
    SOURCE_KIND=git
fi
case $SOURCE_KIND in
    archive) SOURCE_ID="archive sha256 $(sha256sum "$SOURCE" | cut -c1-64)" ;;
    tree) SOURCE_ID="tree $(cd "$SOURCE" && pwd)" ;;
    git) SOURCE_ID="git $UPSTREAM" ;;
esac
# Everything the build depends on: a change to any of it makes a new build.
KEY=$(printf '%s\n' "$HOST" "$SOURCE_ID" "$PYTAG" "$TORCH_SITE" "${TORCH_PINS[@]}" "${EXTRA[@]}" \
    | cat - "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)

export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
pip_in() {  # pip_in PYTHON ARGS...: quiet, without the notes about package-index folders lacking a package
    local py=$1
    shift
    "$py" -m pip install -q "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2)
}

report() {
    echo "SD_WEBUI_DIR=$DIR"
    echo "SD_WEBUI_PYTHON=$DIR/venv/bin/python"
}

mkdir -p "$(dirname "$DIR")"
DIR=$(cd "$(dirname "$DIR")" && pwd)/$(basename "$DIR")
if [[ -f $DIR/.dnp-setup && $(cat "$DIR/.dnp-setup") == "$KEY" && -x $DIR/venv/bin/python ]]; then
    echo "setup.sh: $HOST in $DIR is complete (key $KEY), nothing to do"
    report
    exit 0
fi
if [[ -e $DIR && -n $(ls -A "$DIR") && ! -f $DIR/.dnp-setup && ! -f $DIR/.dnp-setup-building ]]; then
    echo "setup.sh: $DIR exists and was not made by setup.sh; give an empty or new folder" >&2
    exit 2
fi
T0=$SECONDS
echo "setup.sh: building $HOST in $DIR from $SOURCE_KIND ${SOURCE:-$UPSTREAM}"
rm -rf "$DIR"
mkdir -p "$DIR"
touch "$DIR/.dnp-setup-building"

clone_at() {  # clone_at URL COMMIT DEST
    git init -q "$3"
    git -C "$3" fetch -q --depth 1 "$1" "$2"
    git -C "$3" -c advice.detachedHead=false checkout -q FETCH_HEAD
}

case $SOURCE_KIND in
    archive) tar -xzf "$SOURCE" -C "$DIR" --strip-components=1 "$TOP" ;;
    tree) cp -a "$SOURCE/." "$DIR/" ;;
    git)
        read -r url commit <<<"$UPSTREAM"
        clone_at "$url" "$commit" "$DIR.git-tmp" && cp -a "$DIR.git-tmp/." "$DIR/" && rm -rf "$DIR.git-tmp"
        for entry in "${REPOS[@]}"; do
            read -r name url commit <<<"$entry"
            clone_at "$url" "$commit" "$DIR/repositories/$name"
        done
        ;;
esac
[[ -f $DIR/launch.py ]] || { echo "setup.sh: no launch.py in the unpacked source" >&2; exit 1; }
echo "setup.sh: source ready ($((SECONDS - T0)) s)"

# ---------------------------------------------------------------------- torch, once for both hosts
if [[ ! -f $TORCH_SITE/.complete ]]; then
    echo "setup.sh: installing ${TORCH_PINS[*]} into the shared $TORCH_SITE"
    staging="$TORCH_SITE.partial-$$"
    rm -rf "$staging"
    pip_in "$PY" --no-compile --target "$staging" "${TORCH_PINS[@]}"
    touch "$staging/.complete"
    mkdir -p "$(dirname "$TORCH_SITE")"
    rm -rf "$TORCH_SITE"
    mv "$staging" "$TORCH_SITE"
    echo "setup.sh: torch ready ($((SECONDS - T0)) s)"
fi

# ------------------------------------------------------------------------------------- the venv
"$PY" -m venv "$DIR/venv"
VPY=$DIR/venv/bin/python
SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# after the venv's own site-packages: the host's pins (numpy, Pillow, ...) win over torch's copies
echo "$TORCH_SITE" >"$SITE/dnp-shared-torch.pth"
# the host's pins as they are, but LF endings (Forge's file is CRLF) and torch's setuptools
sed -e 's/\r$//' -e 's/^setuptools==69\.5\.1.*/setuptools==80.9.0/' "$DIR/requirements_versions.txt" \
    >"$DIR/.dnp-requirements.txt"
pip_in "$VPY" -r "$DIR/.dnp-requirements.txt" "${TORCH_PINS[@]}" "${EXTRA[@]}"
"$VPY" -m pip check
"$VPY" -c 'import torch, torchvision, transformers, gradio; print("setup.sh: torch", torch.__version__, "| torchvision", torchvision.__version__, "| transformers", transformers.__version__, "| gradio", gradio.__version__)'

rm -f "$DIR/.dnp-setup-building"
echo "$KEY" >"$DIR/.dnp-setup"
echo "setup.sh: $HOST ready in $((SECONDS - T0)) s; $(du -sh "$DIR" | cut -f1) in $DIR (+ shared torch $(du -sh "$TORCH_SITE" | cut -f1))"
report
