"""Handcrafted-feature detectors: an extractor + a scikit-learn classifier (``classic``), ELA, block DCT
and spectrum features, each a family of registry rows."""
