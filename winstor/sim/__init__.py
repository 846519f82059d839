"""The embedded cluster: emulated EKS (or kind) clusters served over HTTPS by `winstor sim up`.

The parts, each importing only the ones listed below it:

- `server`: the `winstor sim up` process - N clusters, one HTTPS port each, the
  kubeconfig written once every cluster answers.
- `cluster`: one cluster; the only module that knows all the parts and wires them
  together (`bootstrap` seeds what a fresh cluster holds).
- `controllers`: the control plane's controllers and the kubelets; they see the
  cluster through `controllers.base.ClusterParts`, not by importing it.
- `metrics`, `cloud`: the /metrics counters; the clusters' shared AWS (moto, `aws`).
- `nodes`: the Windows and Linux node models, the PowerShell interpreter and the
  probes' twins, the containers.
- `api`: the API server's wire protocol and the API machinery behind it (store,
  registry, schema, patch, admission, RBAC, events).
- `topology`, `timing`, `scenarios`, `tls`, `aws`: plans, the modelled latency
  clock, the scenario names, certificates, the moto backend - leaves.

Outside the sim only the CLI (`winstor sim ...`), the plugin (scenario names) and
the benchmark (the latency table) import it; everything else runs it as a process
(`winstor.targets.embedded`). tests/test_import_graph.py keeps all of this true.
"""
