package grpcreflection_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/regionkv/regionkv/internal/grpcreflection"
	"github.com/regionkv/regionkv/proto/kvpb"
	"github.com/regionkv/regionkv/proto/schedulerpb"
)

// TestResolveEveryImport does what grpcurl does before describing or
// calling a method: list the services, then fetch the file of each and,
// transitively, every file it imports, and build descriptors from them.
// Without gogo.proto under the path raft.proto imports, this fails.
func TestResolveEveryImport(t *testing.T) {
	g := grpc.NewServer()
	kvpb.RegisterKvServer(g, &kvpb.UnimplementedKvServer{})
	schedulerpb.RegisterSchedulerServer(g, &schedulerpb.UnimplementedSchedulerServer{})
	if err := grpcreflection.Register(g); err != nil {
		t.Fatal(err)
	}
	if err := grpcreflection.Register(grpc.NewServer()); err != nil { // idempotent
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(req *rpb.ServerReflectionRequest) *rpb.ServerReflectionResponse {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if e := resp.GetErrorResponse(); e != nil {
			t.Fatalf("%v: %s", req, e.ErrorMessage)
		}
		return resp
	}

	services := map[string]bool{}
	for _, s := range ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}).GetListServicesResponse().Service {
		services[s.Name] = true
	}
	for _, want := range []string{"regionkv.kvpb.Kv", "regionkv.schedulerpb.Scheduler", "grpc.reflection.v1.ServerReflection"} {
		if !services[want] {
			t.Errorf("services %v lack %s", services, want)
		}
	}

	files := map[string]*descriptorpb.FileDescriptorProto{}
	var fetch func(req *rpb.ServerReflectionRequest)
	fetch = func(req *rpb.ServerReflectionRequest) {
		for _, b := range ask(req).GetFileDescriptorResponse().FileDescriptorProto {
			fdp := new(descriptorpb.FileDescriptorProto)
			if err := proto.Unmarshal(b, fdp); err != nil {
				t.Fatal(err)
			}
			if files[fdp.GetName()] != nil {
				continue
			}
			files[fdp.GetName()] = fdp
			for _, dep := range fdp.Dependency {
				if files[dep] == nil {
					fetch(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: dep}})
				}
			}
		}
	}
	for _, svc := range []string{"regionkv.kvpb.Kv", "regionkv.schedulerpb.Scheduler"} {
		fetch(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: svc}})
	}
	for _, want := range []string{"raft.proto", grpcreflection.GogoProtoPath, "google/protobuf/descriptor.proto"} {
		if files[want] == nil {
			t.Errorf("reflection did not serve %s", want)
		}
	}
	set := &descriptorpb.FileDescriptorSet{}
	for _, f := range files {
		set.File = append(set.File, f)
	}
	reg, err := protodesc.NewFiles(set)
	if err != nil {
		t.Fatalf("descriptors served by reflection do not link: %v", err)
	}
	d, err := reg.FindDescriptorByName("regionkv.kvpb.Kv.RawPut")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("resolved %d files; %s", len(files), d.FullName())
}
