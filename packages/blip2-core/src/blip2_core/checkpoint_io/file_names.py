"""The file names of HF's checkpoint layout (and PaddleNLP's), shared by the readers and the writer."""

from __future__ import annotations

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
TORCH_NAME = "pytorch_model.bin"
TORCH_INDEX_NAME = "pytorch_model.bin.index.json"
PADDLE_NAME = "model_state.pdparams"
# Looked for in this order inside a directory: safetensors first, since it needs no trust.
DIRECTORY_FILES = (SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, TORCH_NAME, TORCH_INDEX_NAME, PADDLE_NAME)

TORCH_SUFFIXES = (".pth", ".bin", ".pt")
PADDLE_SUFFIXES = (".pdparams",)
