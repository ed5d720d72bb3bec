"""Tiny model shapes shared by the parity fixtures and the benchmark (no dependencies: both envs import it)."""

VISION = dict(
    hidden_size=48,
    intermediate_size=104,
    num_hidden_layers=3,
    num_attention_heads=4,
    image_size=56,
    patch_size=14,
    layer_norm_eps=1e-6,
    qkv_bias=True,
    hidden_act="gelu",
)
QFORMER = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    cross_attention_frequency=2,
    encoder_hidden_size=48,
    layer_norm_eps=1e-12,
    hidden_act="gelu",
    use_qformer_text_input=True,
)

# the LLMs of the full-model fixtures
OPT = dict(
    model_type="opt",
    vocab_size=100,
    hidden_size=32,
    word_embed_proj_dim=32,
    num_hidden_layers=2,
    ffn_dim=37,
    num_attention_heads=4,
    max_position_embeddings=64,
    do_layer_norm_before=True,
    activation_function="relu",
    bos_token_id=2,
    eos_token_id=2,
    pad_token_id=1,
)
T5 = dict(
    model_type="t5",
    vocab_size=100,
    d_model=32,
    d_kv=8,
    d_ff=37,
    num_layers=2,
    num_decoder_layers=2,
    num_heads=4,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=20,
    feed_forward_proj="gated-gelu",
    dense_act_fn="gelu",  # FlanT5 in BLIP-2: exact GELU, not gelu_new (HF's conversion script forces it)
    tie_word_embeddings=False,
    decoder_start_token_id=0,
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=1,
)
# InstructBLIP's Vicuna, tiny: LLaMA (RMSNorm, rotary positions, SwiGLU), two key-value heads for four query heads
LLAMA = dict(
    model_type="llama",
    vocab_size=100,
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rms_norm_eps=1e-6,
    hidden_act="silu",
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)
