"""Deep detectors (PyTorch + timm): images to tensors and batched forward passes (``tensors``), the one
training loop with checkpoints (``training``), pair/triplet sampling for metric learning (``pairs``),
ImageNet and published weights into the networks (``pretrained``), onnxruntime as the scoring backend
(``onnx_backend``), the torch side of the detector contract with Grad-CAM (``torch_detector``), and the
networks (``cnn``, ``ela_cnn``, ``mesonet``, ``siamese``)."""
