#!/usr/bin/env bash
# Install Prometheus, promtool and the Pushgateway (Debian packages `prometheus` 2.42 and
# `prometheus-pushgateway` on bookworm) for the monitoring tests: `promtool check rules`,
# promtool rule unit tests, the scrape integration test and the drift job's push test. Idempotent; needs root (or sudo) and apt. Without them the tests skip with a message.
# Debian's package also installs a systemd unit; nothing is started here (no systemd in CI).
# Usage: bash tools/install_prometheus.sh
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 \
    && command -v prometheus-pushgateway >/dev/null 2>&1; then
  echo "prometheus, promtool and pushgateway already installed: $(promtool --version 2>&1 | head -1)"
  exit 0
fi

source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
# Without recommends: no node exporter and friends.
apt_install prometheus prometheus-pushgateway
echo "installed: $(promtool --version 2>&1 | head -1)"
