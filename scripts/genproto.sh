#!/usr/bin/env bash
# Regenerates the Go code under proto/ from proto/regionkv/*.proto with gogo's
# protoc-gen-gofast v1.3.2. The output is committed; `make verify` checks it is current.
set -euo pipefail
cd "$(dirname "$0")/.."

GOGO_VERSION=v1.3.2
RAFT_VERSION=v3.6.0
MODCACHE=$(go env GOMODCACHE)
GOBIN_DIR=$(go env GOPATH)/bin

command -v protoc >/dev/null || { echo "genproto: protoc not found (apt-get install -y protobuf-compiler)" >&2; exit 1; }
if [ ! -x "$GOBIN_DIR/protoc-gen-gofast" ]; then
  GOBIN=$GOBIN_DIR go install github.com/gogo/protobuf/protoc-gen-gofast@$GOGO_VERSION
fi
go mod download github.com/gogo/protobuf go.etcd.io/raft/v3

GOGO="$MODCACHE/github.com/gogo/protobuf@$GOGO_VERSION"
RAFTPB="$MODCACHE/go.etcd.io/raft/v3@$RAFT_VERSION/raftpb"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Each proto package is generated in its own protoc run (gofast wants one package per run).
for f in proto/regionkv/*.proto; do
  PATH="$GOBIN_DIR:$PATH" protoc \
    -I proto -I "$RAFTPB" -I "$GOGO" -I "$GOGO/protobuf" \
    --gofast_out=plugins=grpc,Mraft.proto=go.etcd.io/raft/v3/raftpb:"$out" \
    "$f"
done

src="$out/github.com/regionkv/regionkv/proto"
for d in "$src"/*/; do
  pkg=$(basename "$d")
  mkdir -p "proto/$pkg"
  rm -f "proto/$pkg"/*.pb.go
  cp "$d"*.pb.go "proto/$pkg/"
done
gofmt -w proto/*/*.pb.go
