"""Numeric helpers shared by scoring, fusion and metrics: probabilities to logits without infinities."""

from __future__ import annotations

import numpy as np
from scipy.special import logit

#: P(fake) is clipped to [LOGIT_CLIP, 1 - LOGIT_CLIP] before a logit, so that a 0 or a 1 counts as
#: strong evidence (about +-13.8), not as an infinity that swamps every other score.
LOGIT_CLIP = 1e-6


def clipped_logit(p) -> np.ndarray:
    return logit(np.clip(p, LOGIT_CLIP, 1.0 - LOGIT_CLIP))
