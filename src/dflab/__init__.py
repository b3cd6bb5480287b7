"""deepfake-lab: tell whether a face image or video is a deepfake, and run the detection lab."""

__version__ = "0.1.0"
