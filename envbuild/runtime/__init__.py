"""Files run by path inside a model's own environment; envbuild never imports them as modules."""
