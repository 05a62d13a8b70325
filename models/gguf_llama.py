"""LLaMA-family weights and tokenizer read from a GGUF file, with numpy only (no torch, no llama.cpp).

``read_gguf`` returns a :class:`LlamaConfig` and float32 weights named as in Hugging Face
transformers (``model.layers.0.self_attn.q_proj.weight`` …, torch ``Linear`` layout ``[out, in]``),
dequantised with ``gguf.quants.dequantize``. Two GGUF conventions are undone on the way:

- numpy arrays come out in row-major ``[out, in]`` order (GGUF lists shapes innermost-first);
- llama.cpp's converter permutes the rows of ``attn_q``/``attn_k`` within each head from the
  rotate-half rotary layout of HF to the interleaved pairs its kernel uses; :func:`unpermute_rope`
  restores the HF order, so the standard ``rotate_half`` rotary embedding applies.

``build_tokenizer`` rebuilds the byte-level BPE tokenizer (GPT-2 style; the ``smollm`` pre-tokenizer
splits every digit on its own first) from the ``tokenizer.ggml.*`` metadata as a ``tokenizers``
``Tokenizer``; control tokens (``<|endoftext|>`` = 0, ``<|im_start|>`` …) become special tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from gguf import GGUFReader
    from tokenizers import Tokenizer

# GGUF tensor name (per block, after "blk.{i}.") -> HF name (after "model.layers.{i}.")
_BLOCK_NAMES: dict[str, str] = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_TOP_NAMES: dict[str, str] = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_CONTROL_TOKEN = 3  # tokenizer.ggml.token_type value of control tokens
_USER_DEFINED_TOKEN = 4


@dataclass(frozen=True)
class LlamaConfig:
    """The architecture numbers the graph builder needs (read from ``llama.*`` GGUF metadata)."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_eps: float
    vocab_size: int
    max_positions: int
    tie_embeddings: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _field(reader: GGUFReader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise KeyError(f"GGUF metadata {key!r} missing")
        return default
    return field.contents()


def unpermute_rope(weight: npt.NDArray[np.float32], n_heads: int) -> npt.NDArray[np.float32]:
    """Undo llama.cpp's q/k row permutation (interleaved rotary pairs -> HF rotate-half halves)."""
    rows = weight.shape[0]
    return weight.reshape(n_heads, rows // n_heads // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def read_config(reader: GGUFReader) -> LlamaConfig:
    """:class:`LlamaConfig` from an open ``gguf.GGUFReader`` of a LLaMA-architecture file."""
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"not a LLaMA GGUF: general.architecture={arch!r}")
    hidden = int(_field(reader, "llama.embedding_length"))
    heads = int(_field(reader, "llama.attention.head_count"))
    head_dim = hidden // heads
    rope_dims = int(_field(reader, "llama.rope.dimension_count", head_dim))
    if rope_dims != head_dim:
        raise ValueError(f"partial rotary embeddings ({rope_dims} of {head_dim} dims) are not supported")
    names = {t.name for t in reader.tensors}
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    return LlamaConfig(
        num_layers=int(_field(reader, "llama.block_count")),
        hidden_size=hidden,
        intermediate_size=int(_field(reader, "llama.feed_forward_length")),
        num_heads=heads,
        num_kv_heads=int(_field(reader, "llama.attention.head_count_kv", heads)),
        head_dim=head_dim,
        rope_theta=float(_field(reader, "llama.rope.freq_base", 10000.0)),
        rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        vocab_size=int(_field(reader, "llama.vocab_size", vocab)),
        max_positions=int(_field(reader, "llama.context_length", 2048)),
        tie_embeddings="output.weight" not in names,
    )


def _hf_name(gguf_name: str) -> str | None:
    if gguf_name in _TOP_NAMES:
        return _TOP_NAMES[gguf_name]
    if gguf_name.startswith("blk."):
        _, index, rest = gguf_name.split(".", 2)
        if rest in _BLOCK_NAMES:
            return f"model.layers.{index}.{_BLOCK_NAMES[rest]}"
    return None


def read_gguf(path: Path | str) -> tuple[LlamaConfig, dict[str, npt.NDArray[np.float32]]]:
    """Config and float32 HF-named weights of the LLaMA model in the GGUF file at ``path``."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(path))
    config = read_config(reader)
    weights: dict[str, npt.NDArray[np.float32]] = {}
    for tensor in reader.tensors:
        name = _hf_name(tensor.name)
        if name is None:
            raise ValueError(f"unexpected GGUF tensor {tensor.name!r}")
        array = dequantize(tensor.data, tensor.tensor_type)
        shape = tuple(int(d) for d in reversed(tensor.shape))  # GGUF: innermost dimension first
        array = np.ascontiguousarray(array.reshape(shape), dtype=np.float32)
        if name.endswith("q_proj.weight"):
            array = unpermute_rope(array, config.num_heads)
        elif name.endswith("k_proj.weight"):
            array = unpermute_rope(array, config.num_kv_heads)
        weights[name] = array
    expected = 3 + 9 * config.num_layers - (1 if config.tie_embeddings else 0)
    if len(weights) != expected:
        raise ValueError(f"expected {expected} tensors, read {len(weights)}")
    return config, weights


def build_tokenizer(path: Path | str) -> Tokenizer:
    """``tokenizers.Tokenizer`` (byte-level BPE) rebuilt from the GGUF's ``tokenizer.ggml.*`` metadata.

    ``encode(text, add_special_tokens=False)`` gives the model's ids; no BOS is added (the file says
    ``add_bos_token=False``), and special-token strings in the text are matched as their ids.
    """
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    reader = GGUFReader(str(path))
    model = _field(reader, "tokenizer.ggml.model")
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    if model != "gpt2":
        raise ValueError(f"only byte-level BPE (gpt2) tokenizers are supported, not {model!r}")
    if pre not in ("smollm", "starcoder", "refact", "default", "gpt-2"):
        raise ValueError(f"unsupported pre-tokenizer {pre!r}")
    tokens: list[str] = _field(reader, "tokenizer.ggml.tokens")
    types: list[int] = _field(reader, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("smollm", "starcoder", "refact"):  # llama.cpp: "\p{N}" first, then the GPT-2 regex
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    special = [
        AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(types) if t == _CONTROL_TOKEN
    ]
    user = [
        AddedToken(tokens[i], special=False, normalized=False) for i, t in enumerate(types) if t == _USER_DEFINED_TOKEN
    ]
    tokenizer.add_special_tokens(special)
    if user:
        tokenizer.add_tokens(user)
    for added in special + user:
        if tokenizer.token_to_id(added.content) != vocab[added.content]:
            raise ValueError(f"added token {added.content!r} got a new id")
    return tokenizer
