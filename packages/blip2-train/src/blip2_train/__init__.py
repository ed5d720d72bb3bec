"""Stage-1 and stage-2 BLIP-2 training on the PaddleNLP Trainer and Paddle fleet (not built yet)."""
