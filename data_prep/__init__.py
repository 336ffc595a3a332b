"""Dataset preparation: one module per dataset (download, checks, manifests)."""
