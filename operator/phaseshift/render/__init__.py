"""Pure builders: (ScalePlan, phase) -> desired Kubernetes objects, one module per component."""
