#!/usr/bin/env bash
# Builds the test-bed tools from Go modules and caches them outside the repo, keyed by version and
# by the content of the tool's wrapper module (gomod/<tool>: go.mod, go.sum and its top-level Go
# files), so a changed go.mod or go.sum rebuilds even when the version stays.
# Idempotent: a tool whose cache folder is complete is only linked again. A failed build
# names the tool, the version and the command, and leaves nothing in the cache. Builds hold a
# lock on the cache, so two checkouts running this at once build each tool once.
#
# Usage: build-tools.sh [etcd|kubernetes|pulumi|pulumi-kubernetes|pulumi-yaml|pulumi-sdkgen|crossplane|crossplane-function ...]   (default: all, in that order)
# MCP_TOOLS_CACHE overrides the cache folder, MCP_TOOLS_BIN the folder the tools are linked into.
# Go builds run one at a time: two at once on a small machine only makes both slower.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=versions.env
source "$repo/testbed/versions.env"
cache="${MCP_TOOLS_CACHE:-$HOME/.cache/mcp-connector/tools}"
bin_dir="${MCP_TOOLS_BIN:-$repo/.dev/bin}"
mkdir -p "$cache" "$bin_dir"

# -mod=readonly: the committed go.mod/go.sum are the lock files; a build never rewrites them.
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0

say() { printf '[tools] %s\n' "$*"; }

# run TOOL VERSION CMD...: runs a build step, failing loudly with what was being built.
run() {
  local tool="$1" version="$2"; shift 2
  if ! "$@"; then
    say "FAILED building $tool $version: $*" >&2
    exit 1
  fi
}

# cached TOOL VERSION: true when the tool's cache folder is complete.
cached() { [[ -f "$cache/$1-$2/.complete" ]]; }

# module_key DIR: a digest of a wrapper module's lock files and top-level Go files.
module_key() {
  local dir="$repo/testbed/gomod/$1"
  cat "$dir/go.mod" "$dir/go.sum" "$dir"/*.go | sha256sum | cut -c1-12
}

# build TOOL VERSION FUNCTION: builds into a scratch folder and moves it into place only on success.
# VERSION is the cache key (the tool's version and its module key); FUNCTION gets the plain version.
build() {
  local tool="$1" version="$2" fn="$3" started
  if cached "$tool" "$version"; then
    say "$tool $version: cached"
    return
  fi
  exec 9>"$cache/.lock"
  if ! flock --nonblock 9; then
    say "$tool $version: waiting for another build on this machine (lock $cache/.lock)"
    flock 9
  fi
  if cached "$tool" "$version"; then
    flock --unlock 9
    say "$tool $version: cached (built by the other build)"
    return
  fi
  local scratch="$cache/.$tool-$version.partial"
  rm -rf "$scratch"; mkdir -p "$scratch"
  # shellcheck disable=SC2064  # expand now: scratch is local
  trap "rm -rf '$scratch'" EXIT
  say "$tool $version: building (first time on this machine; this takes minutes)"
  started=$SECONDS
  "$fn" "$scratch" "${version%+*}"
  touch "$scratch/.complete"
  rm -rf "${cache:?}/$tool-$version"
  mv "$scratch" "$cache/$tool-$version"
  trap - EXIT
  flock --unlock 9
  say "$tool $version: built in $((SECONDS - started))s"
}

build_kubernetes() {
  local out="$1" version="$2" minor ldflags="-s -w" pkg
  minor="${version#v1.}"; minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  cd "$repo/testbed/gomod/kubernetes"
  for cmd in kube-apiserver kube-controller-manager; do
    say "  go build $cmd"
    run kubernetes "$version" go build -trimpath -tags selinux,notest,grpcnotrace \
      -ldflags "$ldflags" -o "$out/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
}

build_etcd() {
  local out="$1" version="$2"
  cd "$repo/testbed/gomod/etcd"
  run etcd "$version" go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
}

build_pulumi() {
  local out="$1" version="$2"
  cd "$repo/testbed/gomod/pulumi"
  run pulumi "$version" go build -trimpath -tags osusergo,grpcnotrace \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version" \
    -o "$out/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
}

build_pulumi_kubernetes() {
  local out="$1" version="$2" work module
  work="$(mktemp -d)"
  cp "$repo/testbed/gomod/pulumi-kubernetes/"{go.mod,go.sum,main.go} "$work/"
  cd "$work"
  # `go list -m` prints an empty Dir for a module not yet in the module cache: download it first.
  run pulumi-kubernetes "$version" go mod download github.com/pulumi/pulumi-kubernetes/provider/v4
  module="$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi-kubernetes/provider/v4)"
  [[ -n "$module" && -d "$module" ]] || { say "FAILED building pulumi-kubernetes $version: module folder not found" >&2; exit 1; }
  # The generated embeds are git-ignored upstream, so the module lacks them: generate them here.
  cp "$module/cmd/pulumi-resource-kubernetes/"{schema.json,terraform-mapping.json,generate.go} .
  chmod u+w ./*
  run pulumi-kubernetes "$version" env VERSION="${version#v}" go run ./generate.go
  rm generate.go schema.json terraform-mapping.json
  run pulumi-kubernetes "$version" go build -trimpath \
    -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$version" \
    -o "$out/pulumi-resource-kubernetes" .
  cd / && rm -rf "$work"
}

build_pulumi_yaml() {
  local out="$1" version="$2"
  cd "$repo/testbed/gomod/pulumi-yaml"
  run pulumi-yaml "$version" go build -trimpath -tags osusergo,grpcnotrace \
    -ldflags "-s -w -X github.com/pulumi/pulumi-yaml/pkg/version.Version=$version" \
    -o "$out/pulumi-language-yaml" github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml
}

# Pulumi's SDK generators (pkg/v3/codegen) for TypeScript and Go: gen-sdk needs language hosts
# that are not served here (testbed/gomod/pulumi-sdkgen/main.go says more).
build_pulumi_sdkgen() {
  local out="$1" version="$2"
  cd "$repo/testbed/gomod/pulumi-sdkgen"
  run pulumi-sdkgen "$version" go build -trimpath -ldflags "-s -w" -o "$out/pulumi-sdkgen" .
}

build_crossplane() {
  local out="$1" version="$2" module
  cd "$repo/testbed/gomod/crossplane"
  run crossplane "$version" go build -trimpath \
    -ldflags "-s -w -X github.com/crossplane/crossplane/v2/internal/version.version=$version" \
    -o "$out/crossplane" github.com/crossplane/crossplane/v2/cmd/crossplane
  # `crossplane core init` installs the CRDs from the module's cluster/crds: keep them with the binary.
  run crossplane "$version" go mod download github.com/crossplane/crossplane/v2
  module="$(go list -m -f '{{.Dir}}' github.com/crossplane/crossplane/v2)"
  [[ -n "$module" && -d "$module/cluster/crds" ]] || { say "FAILED building crossplane $version: cluster/crds not found" >&2; exit 1; }
  mkdir -p "$out/crossplane-crds"
  cp "$module/cluster/crds/"*.yaml "$out/crossplane-crds/"
  chmod -R u+w "$out/crossplane-crds"
}

build_crossplane_function() {
  local out="$1" version="$2"
  cd "$repo/testbed/gomod/crossplane"
  run crossplane-function "$version" go build -trimpath -ldflags "-s -w" \
    -o "$out/function-testbed-compose" ./function
}

# The test bed's own composition function is versioned by its source and the wrapper's lock files.
function_version() {
  cat "$repo/testbed/gomod/crossplane/"{go.mod,go.sum,function/main.go} | sha256sum | cut -c1-12
}

link() { ln -sfn "$cache/$1-$2/$3" "$bin_dir/$3"; }

# key TOOL VERSION: the cache key, VERSION+<module key> (build() passes VERSION alone to the build).
key() { printf '%s+%s' "$2" "$(module_key "$1")"; }

wanted=("$@")
[[ ${#wanted[@]} -gt 0 ]] || wanted=(etcd kubernetes pulumi pulumi-kubernetes pulumi-yaml pulumi-sdkgen crossplane crossplane-function)
for tool in "${wanted[@]}"; do
  case "$tool" in
    etcd)
      k="$(key etcd "$ETCD_VERSION")"
      build etcd "$k" build_etcd
      link etcd "$k" etcd ;;
    kubernetes)
      k="$(key kubernetes "$KUBERNETES_VERSION")"
      build kubernetes "$k" build_kubernetes
      link kubernetes "$k" kube-apiserver
      link kubernetes "$k" kube-controller-manager ;;
    pulumi)
      k="$(key pulumi "$PULUMI_VERSION")"
      build pulumi "$k" build_pulumi
      link pulumi "$k" pulumi ;;
    pulumi-kubernetes)
      k="$(key pulumi-kubernetes "$PULUMI_KUBERNETES_VERSION")"
      build pulumi-kubernetes "$k" build_pulumi_kubernetes
      link pulumi-kubernetes "$k" pulumi-resource-kubernetes ;;
    pulumi-yaml)
      k="$(key pulumi-yaml "$PULUMI_YAML_VERSION")"
      build pulumi-yaml "$k" build_pulumi_yaml
      link pulumi-yaml "$k" pulumi-language-yaml ;;
    pulumi-sdkgen)
      k="$(key pulumi-sdkgen "$PULUMI_VERSION")"
      build pulumi-sdkgen "$k" build_pulumi_sdkgen
      link pulumi-sdkgen "$k" pulumi-sdkgen ;;
    crossplane)
      k="$(key crossplane "$CROSSPLANE_VERSION")"
      build crossplane "$k" build_crossplane
      link crossplane "$k" crossplane
      link crossplane "$k" crossplane-crds ;;
    crossplane-function)
      version="$(function_version)"
      build crossplane-function "$version" build_crossplane_function
      link crossplane-function "$version" function-testbed-compose ;;
    *)
      say "unknown tool '$tool' (expected etcd, kubernetes, pulumi, pulumi-kubernetes, pulumi-yaml, pulumi-sdkgen, crossplane, crossplane-function)" >&2
      exit 2 ;;
  esac
done
say "ready in $bin_dir: ${wanted[*]}"
