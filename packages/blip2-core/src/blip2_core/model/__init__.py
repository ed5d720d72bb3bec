"""The BLIP-2 models themselves: configs, the two model classes, the LLM bridge and decoding.

Empty on purpose: ``model.generation_settings`` and ``model.config`` are read by command-line parsers that must
not import paddle.
"""
