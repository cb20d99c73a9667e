#!/usr/bin/env bash
# Install the system libraries quantviz needs on a fresh Debian/Ubuntu machine (idempotent).
#
# The PySide6 wheel bundles Qt but not the system libraries Qt links against: QtGui needs
# OpenGL/EGL, fontconfig, xkbcommon, GLib and D-Bus (also for QT_QPA_PLATFORM=offscreen), and
# the xcb platform plugin (the window on X11) needs the xcb-* utility libraries. The list is
# `readelf -d` NEEDED of PySide6/Qt/plugins/platforms/libqxcb.so, its xcbglintegrations and
# Qt/lib/libQt6{Core,Gui,Widgets,DBus,XcbQpa}.so.6, mapped to packages with `dpkg -S`
# (Debian 12; the same names on Ubuntu 22.04/24.04, where apt resolves the t64 renames).
#
# A library already present (ldconfig's cache) is not installed again; when everything is
# present the script changes nothing and needs no network. It installs with apt-get as root
# or through sudo; when it cannot, it prints the packages and exits 1.
# Environment: QUANTVIZ_DEPS_DRY_RUN=1 prints what it would install and exits 0.
set -euo pipefail

# soname                   Debian package
LIBS="
libGL.so.1                 libgl1
libEGL.so.1                libegl1
libfontconfig.so.1         libfontconfig1
libfreetype.so.6           libfreetype6
libglib-2.0.so.0           libglib2.0-0
libgthread-2.0.so.0        libglib2.0-0
libdbus-1.so.3             libdbus-1-3
libxkbcommon.so.0          libxkbcommon0
libxkbcommon-x11.so.0      libxkbcommon-x11-0
libX11.so.6                libx11-6
libX11-xcb.so.1            libx11-xcb1
libxcb.so.1                libxcb1
libxcb-cursor.so.0         libxcb-cursor0
libxcb-glx.so.0            libxcb-glx0
libxcb-icccm.so.4          libxcb-icccm4
libxcb-image.so.0          libxcb-image0
libxcb-keysyms.so.1        libxcb-keysyms1
libxcb-randr.so.0          libxcb-randr0
libxcb-render.so.0         libxcb-render0
libxcb-render-util.so.0    libxcb-render-util0
libxcb-shape.so.0          libxcb-shape0
libxcb-shm.so.0            libxcb-shm0
libxcb-sync.so.1           libxcb-sync1
libxcb-util.so.1           libxcb-util1
libxcb-xfixes.so.0         libxcb-xfixes0
libxcb-xkb.so.1            libxcb-xkb1
"
me="install_system_deps"

if [ "$(uname -s)" != Linux ]; then
  echo "$me: $(uname -s): Qt's libraries come with the PySide6 wheel; nothing to install"
  exit 0
fi

ldconfig_bin=$(command -v ldconfig || echo /sbin/ldconfig)
have_libs=$("$ldconfig_bin" -p 2>/dev/null || true)

missing_libs=()
missing_pkgs=()
add_pkg() {
  local p
  for p in "${missing_pkgs[@]+"${missing_pkgs[@]}"}"; do [ "$p" = "$1" ] && return 0; done
  missing_pkgs+=("$1")
}
while read -r so pkg; do
  [ -n "$so" ] || continue
  if ! grep -q "^[[:space:]]*${so//./\\.} " <<<"$have_libs"; then
    missing_libs+=("$so")
    add_pkg "$pkg"
  fi
done <<<"$LIBS"

# Debian's python3 has no ensurepip (so no `python3 -m venv`) without python3-venv.
py=$(command -v python3 || true)
if [ -n "$py" ] && [ "$(readlink -f "$py")" = "/usr/bin/python3.$("$py" -c 'import sys; print(sys.version_info[1])')" ] \
   && ! "$py" -c "import ensurepip" 2>/dev/null; then
  missing_libs+=("ensurepip")
  add_pkg python3-venv
fi

if [ ${#missing_pkgs[@]} -eq 0 ]; then
  echo "$me: all system libraries are present"
  exit 0
fi
echo "$me: missing ${missing_libs[*]}"
echo "$me: needs ${missing_pkgs[*]}"

if [ "${QUANTVIZ_DEPS_DRY_RUN:-}" = 1 ]; then
  echo "$me: dry run, nothing installed"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "$me: error: no apt-get on this machine; install the packages providing ${missing_libs[*]} with its package manager" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  run=()
elif command -v sudo >/dev/null; then
  run=(sudo)
else
  echo "$me: error: not root and no sudo; as root run: apt-get install -y ${missing_pkgs[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
install=("${run[@]+"${run[@]}"}" apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}")
# A fresh image has empty package lists: refresh them when the first attempt fails.
if ! "${install[@]}" >/dev/null 2>&1; then
  if ! "${run[@]+"${run[@]}"}" apt-get update -qq || ! "${install[@]}"; then
    echo "$me: error: could not install ${missing_pkgs[*]} (as root run: apt-get update && apt-get install -y ${missing_pkgs[*]})" >&2
    exit 1
  fi
fi
echo "$me: installed ${missing_pkgs[*]}"
