"""Media files in, pixels out: the one list of file formats (``formats``), the image loader
(``images``), video probing and frame sampling (``video``), parallel, cached per-file work over many
images (``feature_extraction``), and what a file's bytes say beyond its pixels: metadata (``metadata``), JPEG
forensics (``jpeg_forensics``) and error level analysis (``ela``)."""
