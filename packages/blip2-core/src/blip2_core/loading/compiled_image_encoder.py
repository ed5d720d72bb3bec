"""The image side of BLIP-2 (ViT + Q-Former + projection) as a compiled Paddle Inference graph, for CPU bf16.

paddle's CPU dygraph has no bfloat16 matmul kernel, so a bf16 image encoder on CPU runs through Paddle
Inference: the image side is exported once with ``paddle.jit`` to a static graph, cached on disk under a key
made of the model's config, a fingerprint of its weights, the image size, the dtype and paddle's version, and
run by oneDNN. In bfloat16 the ViT's blocks are saved in bf16 and run by oneDNN's bf16 kernels (fast on a CPU
with avx512_bf16 or AMX); the embedding and the Q-Former stay float32. It is part of the paddlepaddle wheel: no
extra dependency. The LLM's decode loop stays in dygraph fp32.

OpenVINO was measured too and is not used (see the README's speed section): it reads the graph only through
ONNX, and paddle2onnx cannot write a ViT-g + Q-Former ONNX file (over protobuf's 2 GB limit).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from paddle import nn

logger = logging.getLogger(__name__)

# Bumped when the exported graph changes for the same model, so that old cache entries are not reused.
EXPORT_FORMAT = 4
GRAPH_NAME = "image_features"
# the graph with text beside the queries, for a model whose Q-Former reads it (config qformer_text_input)
TEXT_GRAPH_NAME = "image_features_with_text"


def cpu_bf16_support() -> str | None:
    """The CPU feature that makes bf16 fast here ("amx_bf16" or "avx512_bf16"), or None."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return None
    for flag in ("amx_bf16", "avx512_bf16"):
        if flag in flags:
            return flag
    return None


def compiled_cache_dir() -> Path:
    """``$BLIP2_HOME/compiled``: one folder per exported graph."""
    from blip2_data.download import blip2_home

    return blip2_home() / "compiled"


class _ImageSide(nn.Layer):
    """What ``get_image_features`` runs, as one layer that ``paddle.jit`` can trace; ``blocks_dtype``: the dtype the
    ViT's blocks run in (its embedding and the Q-Former stay float32)."""

    def __init__(self, model: nn.Layer, blocks_dtype: str = "float32") -> None:
        super().__init__()
        self.vision_model = model.vision_model
        self.qformer = model.qformer
        self.language_projection = model.language_projection
        self.blocks_dtype = blocks_dtype

    def forward(
        self,
        pixel_values: paddle.Tensor,
        qformer_input_ids: paddle.Tensor | None = None,
        qformer_attention_mask: paddle.Tensor | None = None,
    ) -> paddle.Tensor:
        hidden = self.vision_model.embed(pixel_values).astype(self.blocks_dtype)
        for block in self.vision_model.blocks:
            hidden = block(hidden)
        out = self.qformer(hidden.astype("float32"), input_ids=qformer_input_ids, attention_mask=qformer_attention_mask)
        queries = out.last_hidden_state[:, : self.qformer.config.num_query_tokens]
        return self.language_projection(queries)


@contextlib.contextmanager
def _blocks_cast_to(model: nn.Layer, dtype: str) -> Iterator[None]:
    """The ViT's blocks in ``dtype`` (LayerNorms kept float32) while the graph is traced; their float32 weights
    put back after, so that the model is as it was."""
    swapped = []
    for block in model.vision_model.blocks:
        for layer in block.sublayers(include_self=True):
            if isinstance(layer, nn.LayerNorm):
                continue
            for param in layer.parameters(include_sublayers=False):
                if param.dtype == paddle.float32:
                    kept = paddle.empty([0])
                    param._share_buffer_to(kept)  # holds the float32 storage (no public call swaps it)
                    param.astype(dtype)._share_buffer_to(param)
                    swapped.append((param, kept))
    try:
        yield
    finally:
        for param, kept in swapped:
            kept._share_buffer_to(param)


def weights_fingerprint(layer: nn.Layer, samples: int = 64) -> str:
    """A hash of every parameter's name, shape, dtype and ``samples`` evenly spaced values.

    Cheap on a 4 GB model (no full copy), and different for any two checkpoints in practice: fine-tuned
    weights differ nearly everywhere.
    """
    digest = hashlib.sha256()
    for name, param in layer.state_dict().items():
        digest.update(f"{name}:{param.shape}:{param.dtype}".encode())
        digest.update(_samples(param, samples).tobytes())
    return digest.hexdigest()


def _samples(param: paddle.Tensor, samples: int) -> np.ndarray:
    """``samples`` evenly spaced values of ``param`` as float32, read in place where numpy can view it (DLPack):
    a weight memory-mapped at load is then read a page per sample, not copied whole."""
    count = int(np.prod(param.shape))
    step = max(1, count // samples)
    if param.place.is_cpu_place() and param.dtype in (paddle.float32, paddle.float16, paddle.float64):
        return np.from_dlpack(param.detach()).reshape(-1)[::step].astype(np.float32)
    return param.flatten()[::step].astype("float32").numpy()


def cache_key(model: nn.Layer, image_size: int, dtype: str = "float32") -> str:
    config = model.config
    described = json.dumps(
        {
            "format": EXPORT_FORMAT,
            "paddle": paddle.__version__,
            "image_size": image_size,
            "dtype": dtype,
            "vision": repr(config.vision_config),
            "qformer": repr(config.qformer_config),
            "text": bool(getattr(config, "qformer_text_input", False)),
            "weights": weights_fingerprint(_ImageSide(model)),
        },
        sort_keys=True,
    )
    return hashlib.sha256(described.encode()).hexdigest()[:24]


def export_image_side(model: nn.Layer, directory: Path, dtype: str = "float32") -> Path:
    """Trace ViT + Q-Former + projection for any batch size and save the graph into ``directory``.

    bfloat16: the ViT's blocks are traced and saved in bf16 (half the file, half the predictor's memory) and run
    by oneDNN's bf16 kernels as they are; Paddle Inference's own bf16 conversion of a float32 graph
    (``enable_onednn_bfloat16``) took about 100 s per load for ViT-g and kept the float32 weights beside the bf16
    ones. The embedding and the Q-Former stay float32 (oneDNN fails on the bf16 patch embedding's output).
    """
    size = model.config.vision_config.image_size
    spec = [paddle.static.InputSpec([None, 3, size, size], "float32", "pixel_values")]
    text = [paddle.static.InputSpec([None, None], "int64", n) for n in ("qformer_input_ids", "qformer_attention_mask")]
    graphs = {GRAPH_NAME: spec}
    if getattr(model.config, "qformer_text_input", False):  # a second graph, with the text beside the queries
        graphs[TEXT_GRAPH_NAME] = spec + text
    for name, inputs in graphs.items():
        side = _ImageSide(model, dtype)
        side.eval()
        # packed inside the cast: the packed weights are made from the cast ones, with no float32 copy of them
        with (
            _blocks_cast_to(model, dtype) if dtype != "float32" else contextlib.nullcontext(),
            _packed_attention(model),
        ):
            static = paddle.jit.to_static(side, input_spec=inputs, full_graph=True)
            paddle.jit.save(static, str(directory / name))
    return directory


@contextlib.contextmanager
def _packed_attention(model: nn.Layer) -> Iterator[None]:
    """Each ViT block's q/k/v weights packed into one matrix while the graph is traced (``Attention.pack_qkv``),
    so that the saved graph holds them packed: otherwise every predictor creation folds the re-layout again."""
    attentions = [block.attn for block in model.vision_model.blocks]
    try:
        for attention in attentions:
            attention.pack_qkv()
        yield
    finally:
        for attention in attentions:
            attention.unpack_qkv()


def exported_graph(model: nn.Layer, cache_dir: Path | None = None, dtype: str = "float32") -> Path:
    """The folder holding the model's exported image side: found in the cache, or exported once into it."""
    from filelock import FileLock

    root = Path(cache_dir) if cache_dir is not None else compiled_cache_dir()
    target = root / cache_key(model, model.config.vision_config.image_size, dtype)
    if (target / "done").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # two processes starting together export once
        if (target / "done").exists():
            return target
        logger.info("exporting the image encoder once into %s (a minute for ViT-g)", target)
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=root))
        try:
            export_image_side(model, staging, dtype)
            (staging / "done").write_text(paddle.__version__ + "\n")
            if target.exists():
                shutil.rmtree(target)  # an interrupted export (no "done")
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def release_weights(layer: nn.Layer) -> None:
    """Free the memory of ``layer``'s parameters (their names and shapes stay): after the compiled graph holds
    its own copy, the dygraph one is dead weight (4.4 GB for ViT-g + Q-Former). The layer cannot run after."""
    for param in layer.parameters():
        param._clear_data()  # paddle has no public call that frees a parameter's storage in place


def _graph_file(directory: Path, name: str = GRAPH_NAME) -> Path | None:
    for suffix in (".json", ".pdmodel"):  # PIR (paddle 3) or the older program format
        if (directory / (name + suffix)).exists():
            return directory / (name + suffix)
    if name == GRAPH_NAME:
        raise FileNotFoundError(f"no exported graph in {directory}")
    return None


class _GraphRunner:
    """One exported graph in a Paddle Inference predictor: numpy arrays in, float32 features out."""

    def __init__(self, graph: Path, threads: int) -> None:
        import paddle.inference as inference

        config = inference.Config(str(graph), str(graph.with_suffix(".pdiparams")))
        config.disable_gpu()
        config.disable_glog_info()
        config.set_cpu_math_library_num_threads(threads)
        config.enable_onednn()  # a bf16 graph's ops pick oneDNN's bf16 kernels by their own dtype
        self._predictor = inference.create_predictor(config)
        self._inputs = [self._predictor.get_input_handle(n) for n in self._predictor.get_input_names()]
        self._output_name = self._predictor.get_output_names()[0]

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        for handle, array in zip(self._inputs, arrays):
            handle.reshape(list(array.shape))
            handle.copy_from_cpu(array)
        self._predictor.run()
        return self._predictor.get_output_handle(self._output_name).copy_to_cpu()


class CompiledImageEncoder:
    """``get_image_features`` through Paddle Inference on CPU: oneDNN, in bf16 or fp32.

    Call it like ``model.get_image_features``; returns float32 [batch, queries, llm_hidden]. Not thread-safe
    (one predictor per object).
    """

    def __init__(
        self, directory: str | os.PathLike, image_size: int, dtype: str = "bfloat16", threads: int | None = None
    ) -> None:
        if dtype not in ("bfloat16", "float32"):
            raise ValueError(f"the compiled CPU image encoder runs bfloat16 or float32, not {dtype!r}")
        self.dtype = dtype
        self.image_size = image_size
        self.directory = Path(directory)
        # As many threads as dygraph uses: use_all_cores() records its count, paddle's own default is one.
        self._threads = threads or int(os.environ.get("BLIP2_NUM_THREADS") or 1)
        self._graph = _GraphRunner(_graph_file(self.directory), self._threads)
        self._text_graph: _GraphRunner | None = None  # loaded on first use

    @classmethod
    def for_model(
        cls,
        model: nn.Layer,
        dtype: str = "bfloat16",
        cache_dir: str | os.PathLike | None = None,
        release_model_weights: bool = False,
    ) -> CompiledImageEncoder:
        """The model's image side, exported once (or found in the cache) and loaded into a predictor.

        ``release_model_weights``: free the dygraph ViT and Q-Former weights before the predictor loads its own
        copy, so that the two never sit in memory together (``model.vision_model`` cannot run after).
        """
        directory = exported_graph(model, Path(cache_dir) if cache_dir is not None else None, dtype)
        if release_model_weights:
            release_weights(model.vision_model)
            release_weights(model.qformer)
        return cls(directory, model.config.vision_config.image_size, dtype)

    def __call__(
        self,
        pixel_values: Any,
        interpolate_pos_encoding: bool = False,
        qformer_input_ids: Any = None,
        qformer_attention_mask: Any = None,
        image_embeds: Any = None,
    ) -> paddle.Tensor:
        """``get_image_features``' arguments, at the configured image size; with ``qformer_input_ids`` the text runs
        beside the queries (a second graph, exported for a model whose Q-Former reads text)."""
        if image_embeds is not None:
            raise ValueError("the compiled image encoder starts from pixels, not image_embeds; load in float32")
        if interpolate_pos_encoding:
            raise ValueError("the compiled image encoder runs its configured image size only; load in float32")
        pixels = _array(pixel_values, np.float32)
        if pixels.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"image is {pixels.shape[-2]}x{pixels.shape[-1]}, the model takes {self.image_size}")
        if qformer_input_ids is None:
            return paddle.to_tensor(self._graph(pixels).astype(np.float32))
        if self._text_graph is None:
            graph = _graph_file(self.directory, TEXT_GRAPH_NAME)
            if graph is None:
                raise ValueError("this model's Q-Former reads no text (config qformer_text_input is false)")
            self._text_graph = _GraphRunner(graph, self._threads)
        ids = _array(qformer_input_ids, np.int64)
        mask = np.ones_like(ids) if qformer_attention_mask is None else _array(qformer_attention_mask, np.int64)
        return paddle.to_tensor(self._text_graph(pixels, ids, mask).astype(np.float32))


def _array(value: Any, dtype: type) -> np.ndarray:
    array = value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)
    return np.ascontiguousarray(array, dtype=dtype)
