"""The Ray driver loop (owns: the only place that imports Ray and the DB together)."""
