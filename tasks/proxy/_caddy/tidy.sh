#!/bin/sh
# Regenerates caddy.mod and caddy.sum, the go.mod and go.sum of the proxy
# program, pinned to CADDY_VERSION: `go generate ./tasks/proxy`, then
# review the diff. The go tool must be able to reach the module proxy.
set -eu
CADDY_VERSION=v2.11.9
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$here/main.go" "$tmp/"
cd "$tmp"
export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
go mod init maestro-deploy/proxy >/dev/null 2>&1
go get "github.com/caddyserver/caddy/v2@$CADDY_VERSION" >/dev/null 2>&1
# The lowest go version Caddy allows, not this toolchain's: any toolchain
# that can build Caddy can build the proxy (GoImage compiles with
# GOTOOLCHAIN=local).
go mod edit -go="$(go list -m -f '{{.GoVersion}}' github.com/caddyserver/caddy/v2)"
go mod tidy
# go get may have raised the version through another requirement: refuse.
grep -q "^require github.com/caddyserver/caddy/v2 $CADDY_VERSION\$" go.mod ||
  grep -q "^	github.com/caddyserver/caddy/v2 $CADDY_VERSION\$" go.mod ||
  { echo "caddy is not pinned to $CADDY_VERSION in the tidied go.mod" >&2; exit 1; }
cp go.mod "$here/caddy.mod"
cp go.sum "$here/caddy.sum"
