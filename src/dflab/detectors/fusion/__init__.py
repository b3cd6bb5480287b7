"""Detectors made of detectors: score calibration maps (``calibration``) and ensembles (``ensemble``)."""
