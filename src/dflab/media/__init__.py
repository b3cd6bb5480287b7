"""Media files in, pixels out: the one list of file formats (``formats``), the image loader
(``images``), video probing and frame sampling (``video``), and parallel, cached per-file work over
many images (``extraction``)."""
