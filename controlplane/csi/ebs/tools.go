//go:build tools

// Package tools keeps the EBS CSI driver's main package in go.mod.
package tools

import (
	_ "github.com/kubernetes-sigs/aws-ebs-csi-driver/cmd"
)
