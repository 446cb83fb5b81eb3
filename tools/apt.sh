# Shared by the tools/install_*.sh scripts (source it; it defines functions and runs nothing).
# Debian packages installed non-interactively, as root or through sudo, without recommends.

# The command prefix for root-only steps: "" as root, "sudo" otherwise; fails without either.
# Usage: SUDO=$(root_prefix "what for")
root_prefix() {
  if [[ "$(id -u)" == "0" ]]; then
    echo ""
  elif command -v sudo >/dev/null 2>&1; then
    echo "sudo"
  else
    echo "need root or sudo to $1" >&2
    return 1
  fi
}

# apt_install PACKAGE...: refresh the index and install the packages quietly. Waits up to two
# minutes for the dpkg lock (two installs started side by side, e.g. two CI checkouts on one
# machine, otherwise fail at once with "Could not get lock").
apt_install() {
  local sudo
  sudo=$(root_prefix "apt-get install $*") || return 1
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get -o DPkg::Lock::Timeout=120 update -qq
  $sudo apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "$@" >/dev/null
}
