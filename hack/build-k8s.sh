#!/usr/bin/env bash
# build-k8s.sh - build pinned upstream Kubernetes control-plane binaries
# (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl), etcd and
# helm from the Go module proxy only (no GitHub, no dl.k8s.io), and the tests'
# kstatus CLI (hack/kstatus: sigs.k8s.io/cli-utils' kstatus library, pinned by
# that module's go.mod/go.sum) into the same bin dir.
#
# Idempotent: a binary is rebuilt only when it is missing, its build key
# (versions + ldflags + tags + Go version) changed, or it does not report the
# expected version. FORCE=1 rebuilds everything (uses the warm GOCACHE).
# kstatus's build key also hashes hack/kstatus/{go.mod,go.sum,main.go}, so an
# edit there rebuilds kstatus only (~25 s), never Kubernetes.
#
# Usage:  hack/build-k8s.sh       # build what is missing/stale, print versions
# Pins:   hack/versions.env (K8S_VERSION, ETCD_VERSION, HELM_VERSION, KSTATUS_VERSION)
# Env overrides: WORK FLYWHEEL_CACHE GOMODCACHE GOCACHE GO FORCE=1 BUILD_DATE
# Needs: go (>= the upstream go line), jq, flock, GNU time (/usr/bin/time), sha256sum.
# Measured on 2 cores: cold build 6m42s (peak 1.9 GB, kube-apiserver's link), no-op 0.6s;
# kstatus alone: 1m13s from empty Go caches, 26s beside a warm cache (peak 0.46 GB).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"

# ---- locations -----------------------------------------------------------------
# Pins (hack/versions.env): v1.35.8 is the newest 1.35.x the module proxy serves (its go.mod says
# `go 1.25.0`). NB: `go list -m -versions k8s.io/kubernetes` is incomplete (it lists only v1.35.4
# of the 1.35 line); v1.35.5/.6/.8 resolve when asked by exact version.
CACHE_ROOT=${FLYWHEEL_CACHE:-$HOME/.cache/flywheel}
WORK=${WORK:-$CACHE_ROOT/build}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
FORCE=${FORCE:-0}

# Self-contained Go caches (so the build is cold/warm independent of ~/go).
export GOMODCACHE=${GOMODCACHE:-$CACHE_ROOT/gomod}
export GOCACHE=${GOCACHE:-$CACHE_ROOT/gocache}
export GOTOOLCHAIN=local      # never try to download another toolchain
export CGO_ENABLED=0
export GOFLAGS=-buildvcs=false
export GOWORK=off
unset GOOS GOARCH

NICE=(nice -n 19)
TIME=(/usr/bin/time -v)
LOGS=$WORK/logs
mkdir -p "$WORK" "$LOGS" "$CACHE_ROOT"

log() { printf '[build-k8s] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
gorun() { "${NICE[@]}" "$GO" "$@"; }
for c in "$GO" jq flock sha256sum /usr/bin/time; do
  command -v "$c" >/dev/null || die "missing prerequisite: $c"
done

[[ $K8S_VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "K8S_VERSION must look like v1.N.M"
K8S_MINOR=${BASH_REMATCH[1]}; K8S_PATCH=${BASH_REMATCH[2]}
STAGING_VERSION=v0.$K8S_MINOR.$K8S_PATCH
[[ ${KSTATUS_VERSION:-} =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "KSTATUS_VERSION must look like vX.Y.Z (hack/versions.env)"
KSTATUS_DIR=$HERE/kstatus   # a module of ours (go.mod + go.sum committed), built in place
BIN=$CACHE_ROOT/k8s-$K8S_VERSION/bin
mkdir -p "$BIN"
# One build at a time per output dir (a concurrent run waits, then finds the
# binaries up to date).
exec 9>"$CACHE_ROOT/.build-k8s-$K8S_VERSION.lock"
flock 9
GOVERSION=$("$GO" env GOVERSION)

# Module timestamp from the proxy's .info = fixed, reproducible buildDate.
module_time() { # module version
  local esc info
  esc=$(sed -E 's/[A-Z]/!\L&/g' <<<"$1")
  info=$GOMODCACHE/cache/download/$esc/@v/$2.info
  if [[ ! -f $info ]]; then
    info=$(cd "$WORK" && gorun mod download -json "$1@$2" | jq -r .Info)
  fi
  jq -r .Time "$info"
}
BUILD_DATE=${BUILD_DATE:-$(module_time k8s.io/kubernetes "$K8S_VERSION")}
BUILD_DATE=$(date -u -d "$BUILD_DATE" +%Y-%m-%dT%H:%M:%SZ)

# ---- ldflags / tags -----------------------------------------------------------
K8S_LDFLAGS="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$K8S_MINOR"
  K8S_LDFLAGS+=" -X $p.gitTreeState=clean -X $p.buildDate=$BUILD_DATE"
done
K8S_TAGS=selinux,notest,grpcnotrace   # same tags as upstream hack/lib/golang.sh
ETCD_LDFLAGS="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module-proxy-$ETCD_VERSION"
HELM_LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
HELM_LDFLAGS+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  HELM_LDFLAGS+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$K8S_MINOR"
done

# name -> group|package|expected version string
declare -A PKG=(
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
  [etcd]=go.etcd.io/etcd/server/v3
  [helm]=helm.sh/helm/v3/cmd/helm
  [kstatus]=flywheel.dev/hack/kstatus
)
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
ALL_BINS=("${K8S_BINS[@]}" etcd helm kstatus)

group_of() { case $1 in etcd|helm|kstatus) echo "$1";; *) echo k8s;; esac; }
ldflags_of() { case $1 in etcd) echo "$ETCD_LDFLAGS";; helm) echo "$HELM_LDFLAGS";; kstatus) echo "-s -w";; *) echo "$K8S_LDFLAGS";; esac; }
tags_of() { case $1 in etcd|helm|kstatus) echo "";; *) echo "$K8S_TAGS";; esac; }
version_of() { case $1 in etcd) echo "$ETCD_VERSION";; helm) echo "$HELM_VERSION";; kstatus) echo "$KSTATUS_VERSION";; *) echo "$K8S_VERSION";; esac; }
# The module dir a binary is built in: generated wrappers under $WORK, kstatus in the repo.
dir_of() { case $1 in kstatus) echo "$KSTATUS_DIR";; *) echo "$WORK/$(group_of "$1")";; esac; }

# What the binary itself reports (must match version_of).
reported_version() { # name
  local b=$BIN/$1
  case $1 in
    kubectl) "$b" version --client -o json 2>/dev/null | jq -r .clientVersion.gitVersion ;;
    etcd)    "$b" --version 2>/dev/null | sed -n 's/^etcd Version: /v/p' ;;
    helm)    "$b" version --template '{{.Version}}' 2>/dev/null ;;
    kstatus) "$b" --version 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "sigs.k8s.io/cli-utils") print $(i + 1)}' ;;
    *)       "$b" --version 2>/dev/null | sed -n 's/^Kubernetes //p' ;;
  esac
}

# Wrapper-module generation keys (bump gen-rev when the generator changes).
genkey_of() { # group
  case $1 in
    k8s)  echo "k8s $K8S_VERSION staging=$STAGING_VERSION gen-rev=2" ;;
    etcd) echo "go.etcd.io/etcd/server/v3 $ETCD_VERSION gen-rev=1" ;;
    helm) echo "helm.sh/helm/v3 $HELM_VERSION gen-rev=1" ;;
    kstatus) echo "kstatus $KSTATUS_VERSION src=$(cd "$KSTATUS_DIR" && cat go.mod go.sum main.go | sha256sum | cut -c1-16)" ;;
  esac
}

build_key() { # name
  printf '%s\n' "$1" "${PKG[$1]}" "$(version_of "$1")" "$(ldflags_of "$1")" "$(tags_of "$1")" \
    "$(genkey_of "$(group_of "$1")")" "$GOVERSION" "CGO_ENABLED=0 -trimpath" | sha256sum | cut -c1-16
}

up_to_date() { # name
  [[ $FORCE == 1 ]] && return 1
  [[ -x $BIN/$1 && -f $BIN/.buildkey.$1 ]] || return 1
  [[ $(cat "$BIN/.buildkey.$1") == "$(build_key "$1")" ]] || return 1
  [[ $(reported_version "$1") == "$(version_of "$1")" ]]
}

# ---- wrapper modules ----------------------------------------------------------
# Each wrapper is regenerated only when its pin changes (.genkey).
timed() { # label cmd... ; records /usr/bin/time -v into $LOGS/label.time
  local label=$1; shift
  "${TIME[@]}" -o "$LOGS/$label.time" "$@"
}

setup_k8s_module() {
  local dir=$WORK/k8s key; key=$(genkey_of k8s)
  if [[ -f $dir/.genkey && $(cat "$dir/.genkey") == "$key" && -f $dir/go.sum ]]; then return; fi
  log "generating wrapper module $dir for k8s.io/kubernetes@$K8S_VERSION"
  rm -rf "$dir"; mkdir -p "$dir"
  (
    cd "$dir"
    local upmod upjson r
    upmod=$(gorun mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .GoMod)
    upjson=$(gorun mod edit -json "$upmod")
    gorun mod init example.invalid/flywheel-k8sbin 2>/dev/null
    local args=(-go="$(jq -r .Go <<<"$upjson")")
    # godebug lines, verbatim
    while IFS= read -r r; do [[ -n $r ]] && args+=(-godebug="$r"); done \
      < <(jq -r '(.GoDebug // [])[] | "\(.Key)=\(.Value)"' <<<"$upjson")
    # every ./staging/src/<path> replace -> <path> v0.<minor>.<patch>
    local n=0
    while IFS=$'\t' read -r old new newver; do
      if [[ $new == ./staging/src/* ]]; then
        [[ $new == "./staging/src/$old" ]] || die "unexpected staging replace $old => $new"
        args+=(-replace="$old=$old@$STAGING_VERSION"); n=$((n+1))
      elif [[ -n $newver ]]; then
        args+=(-replace="$old=$new@$newver")      # module->module replace: copy
      else
        die "upstream has a non-staging local replace $old => $new"
      fi
    done < <(jq -r '.Replace[]? | [.Old.Path, .New.Path, (.New.Version // "")] | @tsv' <<<"$upjson")
    (( n > 0 )) || die "no staging replaces found in upstream go.mod"
    while IFS= read -r r; do [[ -n $r ]] && args+=(-exclude="$r"); done \
      < <(jq -r '.Exclude[]? | "\(.Path)@\(.Version)"' <<<"$upjson")
    args+=(-require="k8s.io/kubernetes@$K8S_VERSION")
    gorun mod edit "${args[@]}"
    [[ $(gorun mod edit -json | jq -c '.GoDebug // []') == "$(jq -c '.GoDebug // []' <<<"$upjson")" ]] \
      || die "godebug lines were not copied"
    log "  $n staging replaces -> $STAGING_VERSION; godebug: $(jq -c '.GoDebug // []' <<<"$upjson")"
    local pkgs=() b
    for b in "${K8S_BINS[@]}"; do pkgs+=("${PKG[$b]}@$K8S_VERSION"); done
    timed download-k8s "${NICE[@]}" "$GO" get -tool "${pkgs[@]}"
    # Sanity: the selected build list must equal upstream's pins.
    local drift
    drift=$(LC_ALL=C join -t' ' \
      <(jq -r '.Require[] | select(.Version != "v0.0.0") | "\(.Path) \(.Version)"' <<<"$upjson" | LC_ALL=C sort) \
      <(gorun list -m -f '{{.Path}} {{.Version}}' all | LC_ALL=C sort) | awk '$2 != $3')
    [[ -z $drift ]] || { log "WARNING: build list differs from upstream go.mod:"; echo "$drift" >&2; }
    echo "$key" > .genkey
  )
}

setup_simple_module() { # group module version
  local group=$1 mod=$2 ver=$3 dir=$WORK/$1 key; key=$(genkey_of "$1")
  if [[ -f $dir/.genkey && $(cat "$dir/.genkey") == "$key" && -f $dir/go.sum ]]; then return; fi
  log "generating wrapper module $dir for $mod@$ver"
  rm -rf "$dir"; mkdir -p "$dir"
  (
    cd "$dir"
    gorun mod init "example.invalid/flywheel-${group}bin" 2>/dev/null
    gorun mod edit -go="$(gorun mod edit -json "$(gorun mod download -json "$mod@$ver" | jq -r .GoMod)" | jq -r .Go)"
    local pkg=${PKG[$group]}
    timed "download-$group" "${NICE[@]}" "$GO" get -tool "$pkg@$ver"
    echo "$key" > .genkey
  )
}

check_etcd_module() { # etcd's own replaces (../api etc.) must resolve to the same version
  local bad
  bad=$(cd "$WORK/etcd" && gorun list -m -f '{{.Path}} {{.Version}}' all \
        | awk -v v="$ETCD_VERSION" '$1 ~ /^go\.etcd\.io\/etcd\/(api|client\/pkg|client|pkg|server)\/v3$/ && $2 != v')
  [[ -z $bad ]] || die "etcd submodules not at $ETCD_VERSION: $bad"
}

check_kstatus_module() { # go.mod must pin the cli-utils of versions.env; fetch its modules
  local got
  got=$(cd "$KSTATUS_DIR" && gorun list -m -f '{{.Version}}' sigs.k8s.io/cli-utils) \
    || die "cannot read $KSTATUS_DIR/go.mod"
  [[ $got == "$KSTATUS_VERSION" ]] \
    || die "$KSTATUS_DIR/go.mod pins sigs.k8s.io/cli-utils $got, hack/versions.env says $KSTATUS_VERSION (edit go.mod, then go mod tidy)"
  (cd "$KSTATUS_DIR" && timed download-kstatus "${NICE[@]}" "$GO" mod download)
}

check_ldflag_vars() { # group: make sure every -X target exists (the linker ignores typos)
  local dir=$WORK/$1 flags x pkg var pdir
  flags=$(ldflags_of "$( [[ $1 == k8s ]] && echo kubectl || echo "$1")")
  for x in $(grep -o -- '-X [^ ]*' <<<"$flags" | cut -d' ' -f2 | cut -d= -f1 | sort -u); do
    pkg=${x%.*}; var=${x##*.}
    pdir=$(cd "$dir" && gorun list -f '{{.Dir}}' "$pkg")
    grep -qE "^[[:space:]]*(var[[:space:]]+)?$var[[:space:]]*(string[[:space:]]*)?=|^[[:space:]]*$var[[:space:]]+string" "$pdir"/*.go \
      || die "ldflags target $x not found in $pdir"
  done
}

build_one() { # name
  local name=$1 group dir out tags
  group=$(group_of "$name"); dir=$(dir_of "$name"); out=$BIN/$name; tags=$(tags_of "$name")
  log "building $name ($(version_of "$name"))"
  (
    cd "$dir"
    timed "build-$name" "${NICE[@]}" "$GO" build -trimpath ${tags:+-tags=$tags} \
      -ldflags="$(ldflags_of "$name")" -o "$out.tmp.$$" "${PKG[$name]}"
  )
  mv -f "$out.tmp.$$" "$out"
  build_key "$name" > "$BIN/.buildkey.$name"
  local got; got=$(reported_version "$name")
  [[ $got == "$(version_of "$name")" ]] || die "$name reports '$got', expected $(version_of "$name")"
}

time_field() { # file field-regex
  sed -n "s/^[[:space:]]*$2: //p" "$1" | head -1
}

# ---- main -----------------------------------------------------------------------
declare -A SETUP_DONE=()
todo=()
for b in "${ALL_BINS[@]}"; do up_to_date "$b" || todo+=("$b"); done

if (( ${#todo[@]} == 0 )); then
  log "all binaries up to date in $BIN"
else
  log "to build: ${todo[*]}  (GOMODCACHE=$GOMODCACHE GOCACHE=$GOCACHE $GOVERSION)"
  rm -f "$LOGS"/*.time
  for b in "${todo[@]}"; do
    g=$(group_of "$b")
    [[ -n ${SETUP_DONE[$g]:-} ]] || case $g in
      k8s)  setup_k8s_module; check_ldflag_vars k8s ;;
      etcd) setup_simple_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"; check_etcd_module; check_ldflag_vars etcd ;;
      helm) setup_simple_module helm helm.sh/helm/v3 "$HELM_VERSION"; check_ldflag_vars helm ;;
      kstatus) check_kstatus_module ;;
    esac
    SETUP_DONE[$g]=1
    build_one "$b"
  done
  # manifest
  {
    echo "# built $(date -u +%FT%TZ) with $GOVERSION CGO_ENABLED=0 -trimpath"
    echo "kubernetes=$K8S_VERSION staging=$STAGING_VERSION buildDate=$BUILD_DATE tags=$K8S_TAGS"
    echo "etcd=$ETCD_VERSION helm=$HELM_VERSION (helm k8sVersion stamped 1.$K8S_MINOR)"
    echo "kstatus: $("$BIN/kstatus" --version)"
    (cd "$BIN" && sha256sum "${ALL_BINS[@]}")
  } > "$BIN/../MANIFEST"
  # timing summary
  printf '%-26s %10s %12s\n' step wall maxrss_kB | tee "$LOGS/summary.txt" >&2
  for f in $(ls -tr "$LOGS"/*.time); do
    printf '%-26s %10s %12s\n' "$(basename "$f" .time)" \
      "$(time_field "$f" 'Elapsed (wall clock) time (h:mm:ss or m:ss)')" \
      "$(time_field "$f" 'Maximum resident set size (kbytes)')"
  done | tee -a "$LOGS/summary.txt" >&2
fi

log "versions:"
"$BIN/kube-apiserver" --version
"$BIN/kube-controller-manager" --version
"$BIN/kube-scheduler" --version
"$BIN/kubectl" version --client
"$BIN/etcd" --version
"$BIN/helm" version
"$BIN/kstatus" --version
