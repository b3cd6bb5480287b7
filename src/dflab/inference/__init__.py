"""Using a trained detector on a user's files: one prediction function for every front end
(``predict``), faces in a photo (``photo``), a video's per-frame scores and verdict (``video``), heatmap
overlays (``overlay``) and choosing the model to load (``models``)."""
