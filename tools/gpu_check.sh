#!/usr/bin/env bash
# The GPU check in one command (docs/gpu.md), for a fresh GPU machine holding only this
# repository and the wheels of tools/gpu_wheels.sh in .gpu-wheels/ (it cannot download):
#
#     tools/gpu_check.sh OUT_DIR                # the real run: under 8 minutes on one H200
#     tools/gpu_check.sh --dry-run OUT_DIR      # every step on the CPU with tiny budgets
#     tools/gpu_check.sh --steps gpu-recipe OUT_DIR
#
# It installs the wheels and seqkit itself into a fresh --target folder put on PYTHONPATH
# (--no-index, --no-deps, --no-build-isolation: nothing is fetched, and torch, which no wheel
# there provides, is never reinstalled), then runs tools/gpu_check.py with the same arguments:
# OUT_DIR receives gpu_check.json and gpu_check.log, and a summary table is printed.
# The dry run installs nothing into its Python (the development venv already has seqkit); it
# checks instead that the wheels would install on CPython 3.12 and that seqkit builds offline.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
WHEELS=${SEQKIT_GPU_WHEELS:-"$ROOT/.gpu-wheels"}
DRY=0
for arg in "$@"; do
    if [[ $arg == --dry-run ]]; then DRY=1; fi
done

SCRATCH=$(mktemp -d /tmp/seqkit-gpu-check.XXXXXX)
export GPU_CHECK_INSTALL_LOG="$SCRATCH/install.log"
PIP=("$PY" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check)
TARGET_312=(--python-version 3.12 --implementation cp --only-binary=:all:
            --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64)

# Each command says `|| return 1`: errexit does not apply inside a function called from `if`.
install() {
    local site="$SCRATCH/site" torch_before torch_after
    if [[ $DRY == 1 ]]; then
        if compgen -G "$WHEELS/*.whl" >/dev/null; then
            echo "dry run: would the $(ls "$WHEELS"/*.whl | wc -l) wheels in $WHEELS install on CPython 3.12?"
            "${PIP[@]}" --dry-run --ignore-installed --target "$SCRATCH/py312" "${TARGET_312[@]}" "$WHEELS"/*.whl || return 1
        else
            echo "dry run: no wheels in $WHEELS (tools/gpu_wheels.sh makes them); their check is skipped"
        fi
        echo "dry run: seqkit builds offline (installed into $site, which stays off the path)"
        "${PIP[@]}" --no-build-isolation --target "$site" "$ROOT" || return 1
        return 0
    fi
    if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
        echo "error: no wheels in $WHEELS: run tools/gpu_wheels.sh where pip can download, and bring the folder" >&2
        return 1
    fi
    torch_before=$("$PY" -c 'import torch; print(torch.__version__)') || return 1
    "${PIP[@]}" --target "$site" "$WHEELS"/*.whl || return 1
    "${PIP[@]}" --no-build-isolation --target "$site" "$ROOT" || return 1
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    torch_after=$("$PY" -c 'import torch; print(torch.__version__)') || return 1
    if [[ $torch_before != "$torch_after" ]]; then
        echo "error: torch changed from $torch_before to $torch_after during the install" >&2
        return 1
    fi
    "$PY" -c 'import datasets, fastapi, pydantic, rouge_score, seqkit; print("imports ok, torch", __import__("torch").__version__)'
}

start=$SECONDS
if ! install >"$GPU_CHECK_INSTALL_LOG" 2>&1; then
    cat "$GPU_CHECK_INSTALL_LOG" >&2
    echo "error: the install step failed (log above)" >&2
    rm -rf "$SCRATCH"
    exit 1
fi
echo "install: ok in $((SECONDS - start)) s" >>"$GPU_CHECK_INSTALL_LOG"
tail -1 "$GPU_CHECK_INSTALL_LOG"
status=0
"$PY" tools/gpu_check.py "$@" || status=$?
rm -rf "$SCRATCH"
exit $status
