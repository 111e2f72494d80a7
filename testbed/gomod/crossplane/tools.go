//go:build tools

// Package tools pins the main package this wrapper builds.
package tools

import _ "github.com/crossplane/crossplane/v2/cmd/crossplane"
