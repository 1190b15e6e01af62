#!/usr/bin/env bash
# Install kustomize into .accessa/bin/ from the Go module proxy (no Docker, no curl | sh).
# Idempotent: does nothing when the pinned version is already there.
#   bash infra/k8s/install-kustomize.sh        (called by `make setup`/`make test`)
# v5.8.1 is the newest kustomize that builds with Go >= 1.24 (v5.8.2 needs 1.26, v5.8.3 1.27).
set -euo pipefail

VERSION="${KUSTOMIZE_VERSION:-v5.8.1}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN_DIR="$ROOT/.accessa/bin"
BIN="$BIN_DIR/kustomize"

if [[ -x "$BIN" ]] && "$BIN" version 2>/dev/null | grep -qx "$VERSION"; then
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "install-kustomize: Go is required (https://go.dev/dl/); the k8s manifest tests skip without it" >&2
  exit 1
fi
mkdir -p "$BIN_DIR"
echo "installing kustomize $VERSION into $BIN_DIR (go install, ~1 min on first build)"
GOBIN="$BIN_DIR" GOFLAGS="${GOFLAGS:-} -buildvcs=false" \
  go install "sigs.k8s.io/kustomize/kustomize/v5@$VERSION"
"$BIN" version
