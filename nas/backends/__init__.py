"""Search drivers: Optuna (default) and Ray Tune."""
