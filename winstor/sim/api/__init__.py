"""The emulated API server and what stands behind its wire: the Kubernetes API machinery.

`apiserver` speaks the REST protocol (routing, watch streams, exec websockets,
discovery, tables); `registry` applies a request to the `store` - defaulting
(`defaults`), admission (`admission`), validation and patching against the
OpenAPI `schema` (`patch`), selectors (`selectors`); `rbac` and `tokens`
authenticate and authorise; `events` records Events as real components do;
`faults` injects the flaky-API scenario's failures.

Nothing here imports the rest of the sim: the controllers, the node models and
the cluster that assembles them all build on this package, never the reverse.
"""
