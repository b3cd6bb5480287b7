"""Synthetic deepfake lab: procedurally drawn faces (``faces``), two face manipulations and the lab
layout on disk (``demo_lab``). Numbers measured on it say nothing about real deepfakes; it exists so the
whole pipeline runs with no data and no weights (``dflab demo``, the tests)."""

from dflab.data.synthetic.faces import (DOMAINS, FaceIdentity, FramePose, draw_identity, draw_poses, make_face,
                                        make_video_frames, render_frame)
from dflab.data.synthetic.demo_lab import make_lab, manipulate_resample_paste, manipulate_soft_blend

__all__ = ["DOMAINS", "FaceIdentity", "FramePose", "draw_identity", "draw_poses", "make_face", "make_video_frames",
           "render_frame", "make_lab", "manipulate_resample_paste", "manipulate_soft_blend"]
