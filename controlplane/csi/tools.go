//go:build tools

// Package tools keeps the CSI sidecars' main packages in go.mod, so that they
// build at the versions pinned here (go build <package path>).
package tools

import (
	_ "github.com/kubernetes-csi/external-attacher/v4/cmd/csi-attacher"
	_ "github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner"
	_ "github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer"
)
