// Package grpcreflection registers gRPC server reflection so that tools such
// as grpcurl can list and call regionkv's services without .proto files.
//
// gRPC reflection serves file descriptors from protobuf-go's registry
// (protoregistry.GlobalFiles). Our gogo-generated files get there through
// github.com/golang/protobuf's RegisterFile, and so does etcd raft's
// raft.proto, which our raft_serverpb imports. But raft.proto imports
// gogoproto/gogo.proto, which gogo registers only in its own registry, under
// the name "gogo.proto". A client that resolves every import (grpcurl does,
// before it describes or calls anything) then fails on the missing file.
// Register fills the gap: it copies gogo.proto's descriptor from gogo's
// registry into protoregistry.GlobalFiles under the path raft.proto imports,
// once per process, and then registers the reflection service.
//
// Both the store and the scheduler call Register instead of
// reflection.Register.
package grpcreflection

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"sync"

	gogoproto "github.com/gogo/protobuf/proto"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	// gogo.proto is registered by this package's init (in gogo's registry).
	_ "github.com/gogo/protobuf/gogoproto"
)

// GogoProtoPath is the import path of gogo.proto in files generated with
// gogo options (raft.proto): the path Register makes it available under.
const GogoProtoPath = "gogoproto/gogo.proto"

// gogoRegisteredName is the name gogo's own registry knows gogo.proto by.
const gogoRegisteredName = "gogo.proto"

var (
	once    sync.Once
	onceErr error
)

// RegisterGogoProto makes gogo.proto available in protoregistry.GlobalFiles
// under GogoProtoPath. It is idempotent and does nothing if a file is already
// registered under that path (another package may have done the same).
func RegisterGogoProto() error {
	once.Do(func() { onceErr = registerGogoProto() })
	return onceErr
}

func registerGogoProto() error {
	if _, err := protoregistry.GlobalFiles.FindFileByPath(GogoProtoPath); err == nil {
		return nil
	}
	gz := gogoproto.FileDescriptor(gogoRegisteredName)
	if gz == nil {
		return fmt.Errorf("grpcreflection: %s is not in gogo's registry", gogoRegisteredName)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return fmt.Errorf("grpcreflection: %s: %w", gogoRegisteredName, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return fmt.Errorf("grpcreflection: %s: %w", gogoRegisteredName, err)
	}
	fdp := new(descriptorpb.FileDescriptorProto)
	if err := proto.Unmarshal(raw, fdp); err != nil {
		return fmt.Errorf("grpcreflection: %s: %w", gogoRegisteredName, err)
	}
	fdp.Name = proto.String(GogoProtoPath)
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		return fmt.Errorf("grpcreflection: %s: %w", GogoProtoPath, err)
	}
	if err := protoregistry.GlobalFiles.RegisterFile(fd); err != nil {
		return fmt.Errorf("grpcreflection: register %s: %w", GogoProtoPath, err)
	}
	return nil
}

// Register registers the gRPC reflection service (v1 and v1alpha) on s,
// after making sure every file our services' descriptors import can be
// served (see the package comment). A failure to register gogo.proto is
// returned, but reflection is registered anyway: listing services still
// works, only describing the ones that depend on raft.proto does not.
func Register(s reflection.GRPCServer) error {
	err := RegisterGogoProto()
	reflection.Register(s)
	return err
}
