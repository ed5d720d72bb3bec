"""COCO caption (pycocoevalcap), VQAv2 and retrieval evaluation for BLIP-2 (not built yet)."""
