# Shared by ./quickstart and ./run-tests: install what is missing from
# Debian's packages, then configure and build (incrementally) in build/.
# Sourced, not run.

ORRERY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ORRERY_BUILD="${ORRERY_BUILD_DIR:-$ORRERY_ROOT/build}"

# Every dependency, from Debian 12's archive.
ORRERY_DEBIAN_PACKAGES=(
  g++ cmake ninja-build ccache pkg-config
  libboost-graph-dev libboost-program-options-dev
  libeigen3-dev libhwloc-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin
)

orrery_log() { printf '[orrery] %s\n' "$*" >&2; }

orrery_install_dependencies() {
  local missing=() p
  for p in "${ORRERY_DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  orrery_log "installing from Debian's packages: ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      orrery_log "not root and no sudo: install these packages, then run again: ${missing[*]}"
      return 1
    fi
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { orrery_log "apt-get failed to install: ${missing[*]}"; return 1; }
}

# orrery_build [ninja targets...]: configure once, then build incrementally.
orrery_build() {
  if [ ! -f "$ORRERY_BUILD/build.ninja" ]; then
    orrery_log "configuring in $ORRERY_BUILD"
    cmake -S "$ORRERY_ROOT" -B "$ORRERY_BUILD" -G Ninja \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DORRERY_WERROR=ON >"$ORRERY_ROOT/.cmake-configure.log" 2>&1 ||
      { cat "$ORRERY_ROOT/.cmake-configure.log" >&2; return 1; }
    grep '^-- Orrery:' "$ORRERY_ROOT/.cmake-configure.log" | sed 's/^-- /[orrery] /' >&2
  fi
  orrery_log "building $* (in $ORRERY_BUILD)"
  cmake --build "$ORRERY_BUILD" --parallel "$(nproc)" ${1:+--target "$@"} ||
    { orrery_log "build failed"; return 1; }
}
