#!/usr/bin/env bash
# Chromium for the analyst console's browser tests (tests/serving/test_console_browser.py):
# Debian's `chromium` package, driven headless by Playwright for Python through
# `executable_path` (Playwright never downloads a browser here). Idempotent; needs root (or sudo)
# and apt. Without it the browser tests fail (they never skip): CI runs this first.
# Usage: bash tools/install_chromium.sh
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "chromium already installed: $(chromium --version 2>/dev/null | head -1)"
  exit 0
fi

source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
# Without recommends: no desktop integration or extra fonts' recommends; the fonts the package
# depends on still come, so pages render real text.
apt_install chromium
echo "installed: $(chromium --version 2>/dev/null | head -1)"
