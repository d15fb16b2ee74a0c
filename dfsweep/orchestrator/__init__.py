"""The driver: run (prepare -> sweep -> report, used by the CLI and the benchmarks), sweep (plan and run the Tune
trials), predict (score new files with a trained model and its model card)."""
