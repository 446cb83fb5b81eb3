#!/usr/bin/env bash
# PostgreSQL for the integration tests (the configuration a cluster uses: MLflow's backend store,
# the decision store): Debian's `postgresql` package, its `main` cluster started on 127.0.0.1:5432
# and, for loopback TEST use only, `trust` authentication from 127.0.0.1 for the `postgres` role
# (the tests create a fresh database each). Idempotent; needs root (or sudo) and apt. Without it
# the PostgreSQL tests skip with a message. Never run this on a server that holds real data.
# Usage: bash tools/install_postgres.sh
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
SUDO=$(root_prefix "set up PostgreSQL")

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [[ -z "$(ls /etc/postgresql 2>/dev/null)" ]]; then
  apt_install postgresql
fi
VERSION=$(ls /etc/postgresql | sort -V | tail -1)
HBA=/etc/postgresql/$VERSION/main/pg_hba.conf
if ! $SUDO grep -q "^# fraudops-tests" "$HBA"; then
  # First match wins in pg_hba.conf: put the loopback trust lines on top.
  $SUDO sed -i '1i # fraudops-tests: loopback trust for the test suite\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$HBA"
  RELOAD=1
fi
if ! pg_isready -h 127.0.0.1 -q 2>/dev/null; then
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$VERSION" main start
  for _ in $(seq 1 50); do pg_isready -h 127.0.0.1 -q && break; sleep 0.2; done
elif [[ -n "${RELOAD:-}" ]]; then
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$VERSION" main reload
fi
for db in test root; do
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" \
    | grep -q 1 || psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $db"
done
echo "PostgreSQL $VERSION ready on 127.0.0.1:5432"
