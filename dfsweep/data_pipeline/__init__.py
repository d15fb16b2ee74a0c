"""Image folders -> manifest.parquet -> crops/*.parquet (scan, faces, pipeline) and the embedded demo set (demo)."""
