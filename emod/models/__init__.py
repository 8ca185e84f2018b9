"""Emotion models: the registry of shipped models, preprocessing, and the runtimes that run them."""
