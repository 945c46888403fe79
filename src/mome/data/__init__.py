"""Data: lesion collections (manifests), importers, MNI preprocessing, synthetic benchmark, patch sampling."""
