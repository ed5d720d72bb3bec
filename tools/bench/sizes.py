"""Model sizes the benchmark can run, as HF ``Blip2Config`` arguments (one place for both sides)."""

TINY_VISION = dict(
    hidden_size=48, intermediate_size=104, num_hidden_layers=3, num_attention_heads=4, image_size=56, patch_size=14
)
VIT_G = dict(
    hidden_size=1408,
    intermediate_size=6144,
    num_hidden_layers=39,
    num_attention_heads=16,
    image_size=224,
    patch_size=14,
)
QFORMER_TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
)
QFORMER = dict()  # BLIP-2's: 12 x 768, cross-attention every 2nd layer
OPT_TINY = dict(
    model_type="opt",
    vocab_size=100,
    hidden_size=32,
    word_embed_proj_dim=32,
    num_hidden_layers=2,
    ffn_dim=37,
    num_attention_heads=4,
    max_position_embeddings=64,
)
OPT_125M = dict(
    model_type="opt",
    vocab_size=50272,
    hidden_size=768,
    word_embed_proj_dim=768,
    num_hidden_layers=12,
    ffn_dim=3072,
    num_attention_heads=12,
    max_position_embeddings=2048,
)
OPT_2_7B = dict(
    model_type="opt",
    vocab_size=50272,
    hidden_size=2560,
    word_embed_proj_dim=2560,
    num_hidden_layers=32,
    ffn_dim=10240,
    num_attention_heads=32,
    max_position_embeddings=2048,
)

SIZES = {
    # name: (vision, qformer, text, num_query_tokens, images per call, new tokens)
    "tiny": (TINY_VISION, QFORMER_TINY, OPT_TINY, 8, 8, 20),
    "vitg-opt125m": (VIT_G, QFORMER, OPT_125M, 32, 2, 20),
    "vitg-opt2.7b": (VIT_G, QFORMER, OPT_2_7B, 32, 1, 10),
}
