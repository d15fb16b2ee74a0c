"""One Tune trial, crops -> scores: variants (the VARIANTS registry and the shared epoch step), train (run_trial, the
trainable), checkpoint (per-epoch state), features (the frozen-backbone cache), data (arrays, balanced batches,
degraded sets), models (Keras Xception + head), augment (train-time presets), cue (the shortcut check), metrics."""
