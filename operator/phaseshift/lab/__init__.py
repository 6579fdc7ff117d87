"""The local lab: control plane, Prometheus, traffic model and demo (the imperative shell)."""
