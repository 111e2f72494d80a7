// Command function-testbed-compose is the test bed's composition function: a small
// patch-and-transform that Crossplane calls over gRPC, like any function package.
//
// The published functions (function-patch-and-transform, function-go-templating) are not
// served by the Go module proxy here, so the test bed builds this one from Crossplane's own
// function API (proto/fn/v1) in the same wrapper module as Crossplane core. Its input:
//
//	apiVersion: compose.testbed.mcp-connector.dev/v1alpha1
//	kind: Compose
//	resources:                        # composed resources, each marked ready once composed
//	- name: config                    # the resource's name in the pipeline
//	  base: {apiVersion: v1, kind: ConfigMap, data: {...}}
//	  patches:                        # copy XR fields into the resource
//	  - fromFieldPath: spec.region    # dotted path in the XR
//	    toFieldPath: data.region      # dotted path in the resource
//	    required: true                # if the XR lacks the field, do not compose this resource
//	connectionDetails:                # the XR's connection details (claims' XRs write them to a Secret)
//	- name: endpoint
//	  value: https://example.invalid  # a fixed value, or
//	  fromFieldPath: spec.id          # an XR field
//
// It serves only on the address it is given (127.0.0.1 in the test bed), with mutual TLS:
// its certificate and the CA that signed Crossplane's client certificate come from
// --tls-certs-dir (tls.crt, tls.key, ca.crt), as in a function pod.
//
// With --package-address it also serves its own package (an xpkg: one layer holding
// package.yaml, annotated io.crossplane.xpkg=base) from an in-memory OCI registry on that
// loopback address, so a Function object naming 127.0.0.1:<port>/<repository>:<tag> is
// installed by Crossplane's package manager the ordinary way (loopback registries are
// spoken to over plain HTTP by the registry client). No image is ever pulled from elsewhere.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"

	fnv1 "github.com/crossplane/crossplane/v2/proto/fn/v1"
)

type patch struct {
	FromFieldPath string
	ToFieldPath   string
	Required      bool
}

type composed struct {
	Name    string
	Base    map[string]any
	Patches []patch
}

type detail struct {
	Name          string
	Value         string
	FromFieldPath string
}

type input struct {
	Resources         []composed
	ConnectionDetails []detail
}

var errMissing = errors.New("field not found")

// get returns the value at a dotted path of an object.
func get(obj map[string]any, path string) (any, error) {
	var cur any = obj
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: %w", path, errMissing)
		}
		if cur, ok = m[part]; !ok {
			return nil, fmt.Errorf("%s: %w", path, errMissing)
		}
	}
	return cur, nil
}

// set puts a value at a dotted path of an object, making the maps on the way.
func set(obj map[string]any, path string, value any) {
	parts := strings.Split(path, ".")
	cur := obj
	for _, part := range parts[:len(parts)-1] {
		next, ok := cur[part].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[part] = next
		}
		cur = next
	}
	cur[parts[len(parts)-1]] = value
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func parseInput(in *structpb.Struct) (input, error) {
	var out input
	if in == nil {
		return out, errors.New("the Compose input is missing")
	}
	raw := in.AsMap()
	resources, _ := raw["resources"].([]any)
	for i, r := range resources {
		m, ok := r.(map[string]any)
		if !ok || str(m, "name") == "" {
			return out, fmt.Errorf("resources[%d] needs a name", i)
		}
		base, _ := m["base"].(map[string]any)
		if base == nil {
			return out, fmt.Errorf("resources[%d] (%s) needs a base", i, str(m, "name"))
		}
		c := composed{Name: str(m, "name"), Base: base}
		patches, _ := m["patches"].([]any)
		for _, p := range patches {
			pm, _ := p.(map[string]any)
			required, _ := pm["required"].(bool)
			c.Patches = append(c.Patches, patch{str(pm, "fromFieldPath"), str(pm, "toFieldPath"), required})
		}
		out.Resources = append(out.Resources, c)
	}
	details, _ := raw["connectionDetails"].([]any)
	for _, d := range details {
		dm, _ := d.(map[string]any)
		out.ConnectionDetails = append(out.ConnectionDetails, detail{str(dm, "name"), str(dm, "value"), str(dm, "fromFieldPath")})
	}
	return out, nil
}

type server struct {
	fnv1.UnimplementedFunctionRunnerServiceServer
}

func fatal(rsp *fnv1.RunFunctionResponse, msg string) *fnv1.RunFunctionResponse {
	rsp.Results = append(rsp.Results, &fnv1.Result{Severity: fnv1.Severity_SEVERITY_FATAL, Message: msg})
	return rsp
}

// RunFunction composes the input's resources from the observed XR, on top of what earlier
// pipeline steps desired.
func (s *server) RunFunction(_ context.Context, req *fnv1.RunFunctionRequest) (*fnv1.RunFunctionResponse, error) {
	desired := req.GetDesired()
	if desired == nil {
		desired = &fnv1.State{}
	}
	if desired.Resources == nil {
		desired.Resources = map[string]*fnv1.Resource{}
	}
	rsp := &fnv1.RunFunctionResponse{Meta: &fnv1.ResponseMeta{Tag: req.GetMeta().GetTag()}, Desired: desired}
	in, err := parseInput(req.GetInput())
	if err != nil {
		return fatal(rsp, err.Error()), nil
	}
	xr := req.GetObserved().GetComposite().GetResource().AsMap()
	name, _ := get(xr, "metadata.name")
	for _, c := range in.Resources {
		obj, err := structpb.NewStruct(c.Base)
		if err != nil {
			return fatal(rsp, fmt.Sprintf("resource %s: %v", c.Name, err)), nil
		}
		body := obj.AsMap() // a deep copy of the base
		skip := false
		for _, p := range c.Patches {
			value, err := get(xr, p.FromFieldPath)
			if err != nil {
				skip = skip || p.Required
				continue
			}
			set(body, p.ToFieldPath, value)
		}
		if skip {
			log.Printf("xr %v: %s not composed: a required field is missing", name, c.Name)
			continue
		}
		st, err := structpb.NewStruct(body)
		if err != nil {
			return fatal(rsp, fmt.Sprintf("resource %s: %v", c.Name, err)), nil
		}
		desired.Resources[c.Name] = &fnv1.Resource{Resource: st, Ready: fnv1.Ready_READY_TRUE}
	}
	if len(in.ConnectionDetails) > 0 {
		if desired.Composite == nil {
			desired.Composite = &fnv1.Resource{}
		}
		if desired.Composite.ConnectionDetails == nil {
			desired.Composite.ConnectionDetails = map[string][]byte{}
		}
		for _, d := range in.ConnectionDetails {
			value := d.Value
			if d.FromFieldPath != "" {
				v, err := get(xr, d.FromFieldPath)
				if err != nil {
					continue
				}
				value = fmt.Sprint(v)
			}
			desired.Composite.ConnectionDetails[d.Name] = []byte(value)
		}
	}
	log.Printf("xr %v: composed %d resource(s)", name, len(desired.Resources))
	return rsp, nil
}

func serverTLS(dir string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificate in %s", filepath.Join(dir, "ca.crt"))
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// packageYAML is the package's metadata: a Function with no dependencies or CRDs.
func packageYAML(fn string) []byte {
	return []byte(fmt.Sprintf("apiVersion: meta.pkg.crossplane.io/v1beta1\nkind: Function\nmetadata:\n  name: %s\n", fn))
}

// servePackage serves an in-memory registry on address holding this function's package as
// repository:tag, and returns once the package was pushed to it.
func servePackage(address, repository, tag, fn string) error {
	lis, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", address, err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go func() { log.Fatalf("package registry: %v", srv.Serve(lis)) }()

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := packageYAML(fn)
	if err := tw.WriteHeader(&tar.Header{Name: "package.yaml", Mode: 0o644, Size: int64(len(body))}); err != nil {
		return err
	}
	if _, err := tw.Write(body); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, Annotations: map[string]string{"io.crossplane.xpkg": "base"}})
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(fmt.Sprintf("%s/%s:%s", lis.Addr(), repository, tag), name.StrictValidation)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img); err != nil {
		return fmt.Errorf("cannot push the package to %s: %w", ref, err)
	}
	log.Printf("serving package %s", ref)
	return nil
}

func main() {
	address := flag.String("address", "127.0.0.1:9443", "host:port to serve gRPC on")
	certs := flag.String("tls-certs-dir", os.Getenv("TLS_SERVER_CERTS_DIR"), "folder with tls.crt, tls.key and ca.crt")
	packageAddress := flag.String("package-address", "", "also serve this function's package from a registry on this host:port")
	repository := flag.String("package-repository", "mcp-testbed/function-testbed-compose", "repository of the served package")
	tag := flag.String("package-tag", "v0.1.0", "tag of the served package")
	fn := flag.String("function-name", "function-testbed-compose", "name in the package's metadata")
	flag.Parse()
	if *packageAddress != "" {
		if err := servePackage(*packageAddress, *repository, *tag, *fn); err != nil {
			log.Fatalf("cannot serve the package: %v", err)
		}
	}
	config, err := serverTLS(*certs)
	if err != nil {
		log.Fatalf("cannot load TLS certificates: %v", err)
	}
	lis, err := net.Listen("tcp", *address)
	if err != nil {
		log.Fatalf("cannot listen on %s: %v", *address, err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(config)))
	fnv1.RegisterFunctionRunnerServiceServer(srv, &server{})
	log.Printf("serving on %s", lis.Addr())
	if err := srv.Serve(lis); err != nil {
		log.Fatalf("serve: %v", err)
	}
}
