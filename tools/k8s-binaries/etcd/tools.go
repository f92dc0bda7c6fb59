//go:build tools

// Package tools records the command this module builds (etcd's main package is the module root
// of go.etcd.io/etcd/server/v3), so `go mod tidy` keeps its dependencies.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
