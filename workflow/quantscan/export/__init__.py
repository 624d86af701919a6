"""Model files for deployment: the bit-packed low-bit format (``packed``) and ONNX (``onnx``: fp32
export, static int8 quantization, ONNX Runtime sessions)."""
