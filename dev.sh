#!/usr/bin/env bash
# freqnets developer entry point. Creates .venv in the repository and installs
# everything on first use, then runs one of:
#   ./dev.sh run    the main job: freqnets ablate (quick preset on the bundled data; extra args go to it)
#   ./dev.sh test   the test suite (pytest) and the linter (ruff)
# Set FREQNETS_TORCH to install another torch build, e.g. "torch==2.9.1 torchvision==0.24.1" on aarch64.
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PY="$VENV/bin/python"
TORCH_SPEC=${FREQNETS_TORCH:-"torch==2.14.1 torchvision==0.29.1"}
STAMP="$VENV/.freqnets-installed"

setup() {
    if [ ! -x "$PY" ]; then
        python3 -c 'import sys; assert sys.version_info >= (3, 11), "freqnets needs Python >= 3.11"'
        python3 -m venv "$VENV"
    fi
    # Reinstall when the dependencies, the compiled JPEG reader or the torch choice change.
    local want
    want="$(cat pyproject.toml setup.py freqnets/jpeg/_jpegc.c) $TORCH_SPEC"
    want=$(printf '%s' "$want" | sha256sum | cut -d' ' -f1)
    if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
        echo "dev.sh: installing into $VENV (first run takes a few minutes)" >&2
        "$PY" -m pip install --quiet --upgrade pip
        # shellcheck disable=SC2086
        "$PY" -m pip install --quiet $TORCH_SPEC
        "$PY" -m pip install --quiet -e '.[dev,experiments]'
        echo "$want" > "$STAMP"
    fi
}

case "${1:-}" in
    run)
        shift
        setup
        exec "$VENV/bin/freqnets" ablate "$@"
        ;;
    test)
        shift
        setup
        "$VENV/bin/ruff" check freqnets tests scripts
        exec "$PY" -m pytest "$@"
        ;;
    *)
        echo "usage: ./dev.sh run | ./dev.sh test [pytest args]" >&2
        exit 2
        ;;
esac
