"""Training and search: the training recipe, model presets, datasets, the model search."""
