// Command pulumi-sdkgen writes a component package's TypeScript or Go SDK from its schema with
// Pulumi's own code generators (pkg/v3/codegen, the CLI's version).
//
// `pulumi package gen-sdk` and `pulumi package add` hand code generation to the language's
// plugin (pulumi-language-nodejs, pulumi-language-go), whose Go modules are not served here;
// those plugins call these same generators. The schema comes from the real CLI reading the
// provider host: `pulumi package get-schema mcp-connector > schema.json`.
//
//	pulumi-sdkgen -language nodejs|go -schema schema.json -out DIR
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/blang/semver"

	gogen "github.com/pulumi/pulumi/pkg/v3/codegen/go"
	"github.com/pulumi/pulumi/pkg/v3/codegen/nodejs"
	"github.com/pulumi/pulumi/pkg/v3/codegen/schema"
)

const tool = "pulumi-sdkgen"

func main() {
	language := flag.String("language", "", "nodejs or go")
	schemaPath := flag.String("schema", "", "the package schema (JSON)")
	out := flag.String("out", "", "folder to write the SDK into")
	flag.Parse()
	if err := run(*language, *schemaPath, *out); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", tool, err)
		os.Exit(1)
	}
}

func run(language, schemaPath, out string) error {
	if schemaPath == "" || out == "" {
		return fmt.Errorf("-schema and -out are required")
	}
	raw, err := os.ReadFile(schemaPath)
	if err != nil {
		return err
	}
	var spec schema.PackageSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return fmt.Errorf("%s: %w", schemaPath, err)
	}
	// A self-contained component schema: no other package is referenced, so nothing is loaded.
	pkg, diags, err := schema.BindSpec(spec, noDependencies{}, schema.ValidationOptions{})
	if err != nil {
		return err
	}
	if diags.HasErrors() {
		return diags
	}
	// As `pulumi package add` generates a local SDK: Go gets a module of its own (go.mod).
	pkg.SupportPack = true
	var files map[string][]byte
	switch language {
	case "nodejs":
		files, err = nodejs.GeneratePackage(tool, pkg, nil, nil, true, noDependencies{})
	case "go":
		files, err = gogen.GeneratePackage(tool, pkg, nil)
	default:
		return fmt.Errorf("-language must be nodejs or go (got %q)", language)
	}
	if err != nil {
		return err
	}
	for name, content := range files {
		path := filepath.Join(out, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// noDependencies is the loader of a self-contained schema: any reference to another package is
// an error that names it, instead of a plugin download.
type noDependencies struct{}

func (noDependencies) LoadPackage(name string, _ *semver.Version) (*schema.Package, error) {
	return nil, fmt.Errorf("the schema references package %q; only self-contained schemas are supported", name)
}

func (l noDependencies) LoadPackageV2(_ context.Context, d *schema.PackageDescriptor) (*schema.Package, error) {
	return l.LoadPackage(d.Name, nil)
}

func (l noDependencies) LoadPackageReference(name string, v *semver.Version) (schema.PackageReference, error) {
	_, err := l.LoadPackage(name, v)
	return nil, err
}

func (l noDependencies) LoadPackageReferenceV2(_ context.Context, d *schema.PackageDescriptor) (schema.PackageReference, error) {
	return l.LoadPackageReference(d.Name, nil)
}
