"""dfsweep: does a deepfake detector trained on one dataset still work on another, and is a candidate really better
than its baseline?

Read top-down. Contracts first: config (one frozen dataclass per stage), schema (every file format), crops (the crops
format's reader/writer and PNG codec), perturbations (the robustness registry), storage (one run URI for every
artifact). Then the three stages, which talk only through files: data_pipeline (folders -> manifest -> crops, on Ray
Data), trainables (one Tune trial: crops -> scores), verdict (scores -> summary, tables, figures, report.html; no Ray,
TensorFlow, Keras, torch or sklearn). Then orchestrator (the driver: prepare -> sweep -> report, predict) and cli.
"""

__version__ = "0.1.0"
