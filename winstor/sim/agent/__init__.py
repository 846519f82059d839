"""The node agent of the `controlplane` target: the embedded cluster's nodes, kubelets,
AWS and add-ons attached to a real Kubernetes control plane (see README.md here)."""
