#!/usr/bin/env bash
# Installs, from Debian packages, whatever decree needs that is missing.
# A no-op when everything is present; works as root or through sudo.
set -euo pipefail

pkgs=(build-essential pkg-config libuv1-dev libpq-dev libjansson-dev liburing-dev check
      libsubunit-dev libhttp-parser-dev postgresql postgresql-contrib curl)

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
	sudo=()
elif command -v sudo >/dev/null 2>&1; then
	sudo=(sudo)
else
	echo "deps: missing ${missing[*]} and neither root nor sudo is available" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
