#!/usr/bin/env bash
# Installs the Debian packages `make image` and the test bed's pod runner use: mmdebstrap (a Debian
# root filesystem from packages), buildah (builds the Containerfile), podman + runc (runs it),
# skopeo (copies the built image to a registry of your choice). Idempotent; needs root (or sudo).
set -euo pipefail
packages=(mmdebstrap buildah podman runc skopeo curl ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "[image-tools] all installed: ${packages[*]}"
  exit 0
fi
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
echo "[image-tools] installing: ${missing[*]}"
started=$SECONDS
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "[image-tools] installed in $((SECONDS - started))s"
