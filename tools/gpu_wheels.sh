#!/usr/bin/env bash
# Prepare the wheels that tools/gpu_check.sh installs on the GPU machine, which cannot download.
#
#     tools/gpu_wheels.sh [DIR]        # default DIR: .gpu-wheels (ignored by git, never committed)
#
# That machine (docs/gpu.md) runs Python 3.12 with torch (CUDA), onnxruntime, onnx, sentencepiece,
# sacrebleu, safetensors, tensorboard, tqdm, pyarrow and the rest of PRESENT below; it lacks
# pydantic, datasets, rouge-score and fastapi. This resolves seqkit's own requirements for
# CPython 3.12 on manylinux (pip download), keeps only what PRESENT does not name, and builds
# the one sdist-only requirement (rouge-score) into a pure-Python wheel. torch is never
# requested, so no torch wheel can reach the folder and nothing there can reinstall torch.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-"$ROOT/.gpu-wheels"}
PY=${PYTHON:-python3}
LIMIT_MIB=64  # what one call to the GPU machine can carry beside the working tree

# The GPU image's packages, as its package list named them on 2026-11-17 (normalized names).
PRESENT="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops
equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio
h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig
interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich
sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece
sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy
tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig
werkzeug wheel wrapt xarray xxhash yarl zipp"
# Versions seen there, pinned so the resolver picks requirements that agree with them.
PINS="huggingface-hub==1.33.0 numpy==2.5.2"
# rouge-score publishes only an sdist; its own requirements are resolved with the rest.
SDIST_ONLY="rouge-score==0.1.2"
SDIST_REQUIRES="absl-py nltk six>=1.14"

# seqkit's requirements (core, train, serve) from pyproject.toml, less those already there,
# plus pytest for the `cuda` tests.
mapfile -t REQS < <("$PY" - "$ROOT/pyproject.toml" "$PRESENT" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
present = set(sys.argv[2].split())
extras = project["optional-dependencies"]
for req in [*project["dependencies"], *extras["train"], *extras["serve"], "pytest>=8"]:
    name = re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")
    if name not in present and name != "rouge-score":
        print(req)
EOF
)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp
          --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64)
"$PY" -m pip download -q "${PLATFORM[@]}" -d "$WORK/all" "${REQS[@]}" $SDIST_REQUIRES $PINS
"$PY" -m pip wheel -q --no-deps -w "$WORK/all" "$SDIST_ONLY"

mkdir -p "$DIR"
rm -f "$DIR"/*.whl
for wheel in "$WORK"/all/*.whl; do
    name=$(basename "$wheel" | cut -d- -f1 | tr '[:upper:]_.' '[:lower:]--')
    case " $(echo $PRESENT) " in
        *" $name "*) ;;  # already on the GPU machine: leave it out
        *) cp "$wheel" "$DIR/" ;;
    esac
done

if ls "$DIR" | grep -qi '^torch-'; then
    echo "error: a torch wheel reached $DIR; it would reinstall torch on the GPU machine" >&2
    exit 1
fi
total=$(du -cb "$DIR"/*.whl | tail -1 | cut -f1)
ls -1 "$DIR"
echo "$(ls "$DIR"/*.whl | wc -l) wheels in $DIR, $(( total / 1024 )) KiB together"
if (( total > LIMIT_MIB * 1024 * 1024 )); then
    echo "error: the wheels exceed ${LIMIT_MIB} MiB, more than one call to the GPU machine can carry" >&2
    exit 1
fi
