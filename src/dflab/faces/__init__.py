"""Faces: find them in frames (``detection`` interface, ``mtcnn``, ``blazeface``, chosen by name in
``finder``), box geometry (``geometry``), tracks over frames (``tracking``), crops extracted from videos
and photos with a per-file cache (``crops``, ``dflab faces extract``), the crop policy that frames
every database's faces alike (``framing``), and video datasets turned into face-crop rows
(``videorows``)."""

from dflab.faces.detection import Face, FaceDetector
from dflab.faces.crops import extract_faces, read_sources
from dflab.faces.finder import FACE_DETECTORS, get_face_detector
from dflab.faces.geometry import crop_face, crop_region

__all__ = ["Face", "FaceDetector", "FACE_DETECTORS", "get_face_detector", "extract_faces", "read_sources",
           "crop_face", "crop_region"]
