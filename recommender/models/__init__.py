"""Confidence weighting and the models: implicit ALS, the repeat-purchase model, live-session fold-in."""
