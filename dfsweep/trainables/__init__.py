"""Trials: Keras Xception detectors (models), augmentation (augment), crops -> arrays (data), the Tune trainable (train)."""
