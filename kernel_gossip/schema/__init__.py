"""The shapes that cross a boundary: the CLI's JSON (report), the webhook's signals, the
custom resources (resources) and their CRDs (crds)."""
