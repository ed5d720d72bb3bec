"""Composes EVA-ViT, Q-Former and an LLM into BLIP-2 by name-or-path; checkpoint formats; blip2-merge and blip2-predict (not built yet)."""
