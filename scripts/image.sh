#!/usr/bin/env bash
# make image: build the connector image from the Containerfile with no container registry.
#
#  1. A Debian bookworm base (the distribution of the Containerfile's default base) made from
#     Debian's packages with mmdebstrap, cached by point release under $MCP_IMAGE_CACHE.
#  2. The connector's pinned wheels (requirements-connector.txt) fetched by this machine's pip
#     into .dev/image/wheels: the build itself never talks to a Python index.
#  3. buildah builds the Containerfile against that base (--build-arg BASE) into local container
#     storage as localhost/mcp-connector:<version>, and writes an OCI archive under .dev/image/.
#
# Needs root and the packages of scripts/install-image-tools.sh.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
PY="${PY:-$repo/.venv/bin/python}"
CACHE="${MCP_IMAGE_CACHE:-$HOME/.cache/mcp-connector/images}"
OUT="$repo/.dev/image"
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
SECURITY=http://deb.debian.org/debian-security
# The project's build backend, as a wheel for the index-less build (pyproject's build-system).
SETUPTOOLS=setuptools==84.2.1
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

say() { printf '[image] %s\n' "$*"; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }

for tool in mmdebstrap buildah podman; do
  command -v "$tool" >/dev/null || die "$tool is missing: run 'bash scripts/install-image-tools.sh' (Debian packages)"
done
[[ $(id -u) -eq 0 ]] || die "needs root (mmdebstrap and buildah build the base and the image as root here)"
[[ -x "$PY" ]] || die "$PY is missing: run 'make venv'"
pyver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ "$pyver" == 3.11 ]] || die "the wheels are fetched for Debian $SUITE's Python 3.11, but $PY is $pyver"
version="$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
image="localhost/mcp-connector:$version"
started=$SECONDS

# --- 1. the base ------------------------------------------------------------------------------
# Slim like Debian's own slim images: minbase, merged /usr set up as debootstrap does (not by the
# usrmerge package, which would pull in perl), no documentation, manuals or translations.
mm_args=(
  --variant=minbase --format=tar --aptopt='Acquire::Languages "none"'
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*'
)
sources=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY $SUITE-security main")
recipe="$(printf '%s\n' "${mm_args[@]}" "${sources[@]}" | sha256sum | cut -c1-12)"
release="$(curl -fsS --max-time 20 "$MIRROR/dists/$SUITE/InRelease" | sed -n 's/^Version: //p' | head -1 || true)"
mkdir -p "$CACHE" "$OUT"
if [[ -n "$release" ]]; then
  base_tar="$CACHE/debian-$SUITE-$release-$recipe.tar"
else
  base_tar="$(ls -t "$CACHE"/debian-"$SUITE"-*-"$recipe".tar 2>/dev/null | head -1 || true)"
  [[ -n "$base_tar" ]] || die "cannot read $SUITE's point release from $MIRROR and no base is cached in $CACHE"
  say "mirror unreachable: using the cached base $(basename "$base_tar")"
fi
if [[ ! -f "$base_tar" ]]; then
  say "making the Debian $SUITE $release base with mmdebstrap (cached as $base_tar)"
  t=$SECONDS
  mmdebstrap --quiet "${mm_args[@]}" "$SUITE" "$base_tar.partial" "${sources[@]}" </dev/null >"$OUT/mmdebstrap.log" 2>&1 \
    || { tail -30 "$OUT/mmdebstrap.log" >&2; die "mmdebstrap failed (log: $OUT/mmdebstrap.log)"; }
  mv "$base_tar.partial" "$base_tar"
  say "base made in $((SECONDS - t))s ($(du -m "$base_tar" | cut -f1) MB)"
fi
base_name="$(basename "$base_tar" .tar)"
base_image="localhost/mcp-connector-base:${base_name#debian-}"
if ! podman image exists "$base_image"; then
  say "importing $(basename "$base_tar") as $base_image"
  podman import --quiet "$base_tar" "$base_image" >/dev/null
fi

# Everything the build reads: an image labelled with the same digest is up to date.
inputs="$( { printf '%s\n' "$base_image" "$SETUPTOOLS"; cat Containerfile .containerignore requirements-connector.txt pyproject.toml
  find src -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16)"
label=org.mcp-connector.inputs
if [[ -z "${MCP_IMAGE_REBUILD:-}" ]] && podman image exists "$image" \
   && [[ "$(podman image inspect --format "{{index .Labels \"$label\"}}" "$image")" == "$inputs" ]] \
   && [[ -f "$OUT/mcp-connector-$version.oci.tar" ]]; then
  say "$image is up to date (inputs $inputs; MCP_IMAGE_REBUILD=1 rebuilds it)"
  exit 0
fi

# --- 2. the wheels ----------------------------------------------------------------------------
rm -rf "$OUT/wheels"
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.11 --implementation cp --dest "$OUT/wheels" \
  -r requirements-connector.txt "$SETUPTOOLS"

# --- 3. the image -----------------------------------------------------------------------------
say "building $image from Containerfile on $base_image"
t=$SECONDS
previous="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
buildah bud --quiet --isolation chroot "${ULIMITS[@]}" --pull=never \
  --build-arg "BASE=$base_image" --label "$label=$inputs" \
  --build-arg "PIP_OPTIONS=--no-index --find-links=/wheels" \
  --volume "$OUT/wheels:/wheels:ro" \
  --file Containerfile --tag "$image" . >"$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log" >&2; die "buildah bud failed (log: $OUT/build.log)"; }
build_s=$((SECONDS - t))
# The previous build of this tag is now untagged: remove it (only it; it may still be in use).
if [[ -n "$previous" && "$previous" != "$(podman image inspect --format '{{.Id}}' "$image")" ]]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
archive="$OUT/mcp-connector-$version.oci.tar"
rm -f "$archive"
buildah push --quiet "$image" "oci-archive:$archive:mcp-connector:$version"
size_mb=$(( $(podman image inspect --format '{{.Size}}' "$image") / 1000000 ))
say "built $image in ${build_s}s: ${size_mb} MB; OCI archive $archive ($(du -m "$archive" | cut -f1) MB)"
say "done in $((SECONDS - started))s"
