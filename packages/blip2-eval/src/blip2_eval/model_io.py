"""Loading what a model-running evaluation needs: blip2-core's model bundle (model, tokenizers, eval image
processor), with load errors worded as input errors, and LAVIS's end of an OPT generation."""

from __future__ import annotations

from typing import Any

from .json_files import EvalInputError


def bundle_for_run(args: Any, *, stage1: bool) -> Any:
    """The bundle a model-running subcommand's arguments name (``--model``, ``--tokenizer``, ``--image_size``,
    ``--load_model_path``)."""
    return load_bundle_for_eval(
        args.model,
        stage1=stage1,
        tokenizer=args.tokenizer,
        image_size=args.image_size,
        load_model_path=args.load_model_path,
    )


def load_bundle_for_eval(
    name_or_path: str,
    *,
    stage1: bool,
    tokenizer: str | None,
    image_size: int | None,
    load_model_path: str | None = None,
) -> Any:
    """blip2-core's ``load_bundle`` in evaluation mode, with ``load_model_path``'s weights over the model
    (PaddleMIX's ``--load_model_path``); a model, tokenizer or file that cannot be loaded is an input error naming
    what was tried."""
    from blip2_core.loading.bundle import load_bundle
    from blip2_core.loading.pretrained import MissingWeightsError

    try:
        bundle = load_bundle(name_or_path, stage1=stage1, tokenizer=tokenizer, image_size=image_size)
    except MissingWeightsError as error:  # never scores of a model with random weights
        raise EvalInputError(str(error).replace("allow_missing_weights=True", "a complete model")) from None
    except ValueError as error:
        raise EvalInputError(str(error)) from None
    if load_model_path:
        from blip2_core.loading.pretrained import load_weights_over

        try:
            load_weights_over(bundle.model, load_model_path)
        except (OSError, ValueError) as error:
            raise EvalInputError(f"--load_model_path {load_model_path}: {error}") from None
    return bundle


def lavis_eos_token_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    """LAVIS ends OPT generations at "\\n" alone (its eos for OPT); other LLMs, and vocabularies without a
    single newline token, keep the model's own eos ids."""
    own = tuple(model.generation_config.eos_token_id)
    llm_type = getattr(getattr(model, "config", None), "llm_type", None)
    # FlanT5, and Vicuna (LAVIS's blip2_vicuna_instruct ends at </s>): their own eos
    if not model.language_model.is_decoder_only or llm_type not in (None, "opt"):
        return own
    try:
        newline = list(tokenizer("\n", add_special_tokens=False)["input_ids"])
    except TypeError:  # a tokenizer without add_special_tokens
        return own
    if len(newline) == 1 and newline[0] != getattr(tokenizer, "unk_token_id", None):
        return (int(newline[0]),)
    return own
