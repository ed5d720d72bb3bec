"""The pieces blip2-eva-vit and blip2-qformer share, each of which installs alone: a float32 LayerNorm, the
shape-checked weight loading, configs from dicts, and paddle's CPU thread count."""

# threads first, before any module that imports paddle: it reads OMP_NUM_THREADS before paddle's import rewrites it.
from .threads import cpu_vendor, thread_count, use_all_cores, user_omp_threads

# isort: split
from .configs import config_from_dict
from .layers import LayerNormFp32
from .weights import BFLOAT16_WORDS, LoadReport, assign_weights, in_dtype

__all__ = [
    "BFLOAT16_WORDS",
    "LayerNormFp32",
    "LoadReport",
    "assign_weights",
    "config_from_dict",
    "cpu_vendor",
    "in_dtype",
    "thread_count",
    "use_all_cores",
    "user_omp_threads",
]
