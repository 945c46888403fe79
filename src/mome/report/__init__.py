"""HTML reports: subject and cohort pages (html), their slice figures (slices) and 3D viewer (viewer)."""
