//go:build tools

// Package tools keeps external-provisioner's main package in go.mod.
package tools

import (
	_ "github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner"
)
