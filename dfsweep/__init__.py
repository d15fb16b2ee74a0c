"""dfsweep: does a deepfake detector trained on one dataset still work on another, and is V2 really better than V1?

Read top-down: config -> schema -> data_pipeline (scan, faces, pipeline, demo) -> trainables (models, augment, data,
train) -> orchestrator (sweep, collect, stats, report) -> cli.
"""

__version__ = "0.1.0"
