"""From a name or a path to a model ready to use, and back to files: known names, the Hub, fetching, reading and
saving, precision (dtype plan, compiled CPU bf16 image encoder), tokenizers and the model bundle.

Empty on purpose: importing a module here loads only what it needs.
"""
