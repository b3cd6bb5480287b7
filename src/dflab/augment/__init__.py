"""Images made harder or made fake on purpose: self-blended pseudo-fakes (``sbi``), the degradations of
robustness curves (``perturb``), and the random augmentation of CNN training (``policy``)."""
