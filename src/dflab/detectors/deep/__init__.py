"""Deep detectors (PyTorch + timm): images to tensors and batched forward passes (``tensors``), the one
training loop with checkpoints (``training``), pair/triplet sampling for metric learning (``pairs``),
the torch side of the detector contract with Grad-CAM (``torch_detector``), and the networks (``cnn``,
``mesonet``, ``siamese``)."""
