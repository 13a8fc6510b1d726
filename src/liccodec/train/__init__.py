"""Training: config, data, loop, export of shipped weights."""
