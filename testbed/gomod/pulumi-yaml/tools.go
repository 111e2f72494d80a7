//go:build tools

// Package tools pins the main package this wrapper builds.
package tools

import _ "github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml"
