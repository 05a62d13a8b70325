"""Torch-free ONNX graph of a LLaMA causal LM that returns per-token negative log-likelihood.

Inputs ``input_ids`` and ``attention_mask`` (int64 ``[B, T]``, right padding, 1 = real token); output
``nll`` (float32 ``[B, T]``): ``nll[:, t] = -log P(input_ids[:, t] | input_ids[:, :t])`` for ``t >= 1``,
0 at ``t = 0`` and at padded positions. Optional input ``score_from`` (int64 ``[B]`` or ``[1]``,
default 1; an initializer that is also a graph input): positions ``t < score_from`` are not scored
(0), so the LM head runs only where NLL is wanted, e.g. on the text after a context. No KV cache:
every call scores whole sequences.

The graph, written with ``onnx.helper`` from the float32 weights of ``models.gguf_llama``: token
embedding, ``num_layers`` × (RMSNorm → fused QKV → rotary (HF rotate-half) → grouped-query attention
with a causal + padding mask → output projection → RMSNorm → fused gate/up SwiGLU → down projection),
final RMSNorm, then for the ``M`` scored positions only (``NonZero`` → ``GatherND`` of the hidden state
before each): the tied LM head, ``logsumexp(logits) - logit[token]`` (``ReduceLogSumExp`` +
``GatherElements``: the log-softmax is never stored; the ``[M, vocab]`` logits are, ~200 KB per scored
token) and a ``ScatterND`` into the ``[B, T]`` output. Tricks that keep it exact and lean: the
``1/sqrt(head_dim)`` score scale is folded into the query weights (a power of two for 64-dim heads),
the sign of ``rotate_half`` is folded into the sine table, the rotary and position tables are sliced
to ``T`` (no ``Range``), and K/V are broadcast to their query-head group by ``MatMul`` instead of
being repeated.

``linear="q8"`` stores every linear layer as an 8-bit block-wise ``MatMulNBits`` (com.microsoft, block
32; asymmetric with uint8 zero points for the layers; symmetric for the LM head, which then
reproduces the GGUF's Q8_0 embedding exactly) with ``accuracy_level=4`` (int8 activations, per block).
Measured on SmolLM2-135M (Wikipedia sentences after 128 context tokens, 2 CPU threads,
``bench/lm_surprise.py``): 1.2–1.5× the fp32 tokens/s; per-token NLL vs fp32 mean |Δ| 0.06–0.07,
max |Δ| 0.54–0.79 nats, correlation 0.9995; per-sentence mean NLL max |Δ| 0.04–0.05. Of that, re-quantising Q4_1 weights to 8 bits alone gives up to
0.38 nats (a block-constant offset, removable by a correction MatMul, which then leaves the int8
activations as the main error: tried, not worth its ops); ``accuracy_level=0`` (fp32 compute) is
half the speed of fp32. ``reference_nll`` is the same model in plain numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper

from memstream.models.gguf_llama import LlamaConfig
from memstream.models.onnx_bert import _Graph

OPSET = 17
MS_DOMAIN = "com.microsoft"
OUTPUT_NAME = "nll"
SCORE_FROM = "score_from"
MASK_VALUE = -1e9  # additive attention mask; finite, so two of them never make -inf
Q8_BLOCK = 32

FloatArray = npt.NDArray[np.float32]


def rope_tables(config: LlamaConfig, positions: int) -> tuple[FloatArray, FloatArray]:
    """``cos`` and ``sin`` ``[positions, head_dim]`` of HF's rotary embedding (frequencies repeated twice)."""
    half = config.head_dim // 2
    inv_freq = 1.0 / (config.rope_theta ** (np.arange(0, half, dtype=np.float64) * 2 / config.head_dim))
    angles = np.outer(np.arange(positions, dtype=np.float64), inv_freq)
    angles = np.concatenate([angles, angles], axis=-1)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


# --- numpy reference ------------------------------------------------------------------------------


def _rms_norm(x: FloatArray, weight: FloatArray, eps: float) -> FloatArray:
    normed: FloatArray = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight  # numpy stubs: Any
    return normed


def _rotate_half(x: FloatArray) -> FloatArray:
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def reference_nll(
    weights: Mapping[str, FloatArray], config: LlamaConfig, ids: Sequence[int] | npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Per-token NLL (float64 ``[T]``, 0 at ``t = 0``) of one unpadded sequence: a plain float32 numpy
    forward pass with HF LLaMA semantics, for checking the graph."""
    ids = np.asarray(ids, dtype=np.int64)
    T, nh, kvh, hd = len(ids), config.num_heads, config.num_kv_heads, config.head_dim
    cos, sin = rope_tables(config, T)
    cos, sin = cos[:, None, :], sin[:, None, :]
    causal = np.triu(np.full((T, T), -np.inf, dtype=np.float32), k=1)
    embed = weights["model.embed_tokens.weight"]
    x = embed[ids]
    for i in range(config.num_layers):
        w: Callable[[str], FloatArray] = lambda key: weights[f"model.layers.{i}.{key}"]  # noqa: E731
        h = _rms_norm(x, w("input_layernorm.weight"), config.rms_eps)
        q = (h @ w("self_attn.q_proj.weight").T).reshape(T, nh, hd)
        k = (h @ w("self_attn.k_proj.weight").T).reshape(T, kvh, hd)
        v = (h @ w("self_attn.v_proj.weight").T).reshape(T, kvh, hd)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        k, v = np.repeat(k, nh // kvh, axis=1), np.repeat(v, nh // kvh, axis=1)  # head h uses kv head h // group
        scores = np.einsum("thd,shd->hts", q, k) / math.sqrt(hd) + causal
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        ctx = np.einsum("hts,shd->thd", probs, v).reshape(T, nh * hd)
        x = x + ctx @ w("self_attn.o_proj.weight").T
        h = _rms_norm(x, w("post_attention_layernorm.weight"), config.rms_eps)
        gate, up = h @ w("mlp.gate_proj.weight").T, h @ w("mlp.up_proj.weight").T
        x = x + (gate / (1.0 + np.exp(-gate)) * up) @ w("mlp.down_proj.weight").T
    x = _rms_norm(x, weights["model.norm.weight"], config.rms_eps)
    head = embed if config.tie_embeddings else weights["lm_head.weight"]
    logits = (x[:-1] @ head.T).astype(np.float64)
    top = logits.max(axis=-1, keepdims=True)
    lse = (top + np.log(np.exp(logits - top).sum(axis=-1, keepdims=True)))[:, 0]
    out = np.zeros(T, dtype=np.float64)
    out[1:] = lse - logits[np.arange(T - 1), ids[1:]]
    return out


# --- 8-bit block-wise weights -----------------------------------------------------------------------


def quantize_q8(
    weight: FloatArray, *, symmetric: bool, block: int = Q8_BLOCK
) -> tuple[npt.NDArray[np.uint8], FloatArray, npt.NDArray[np.uint8]]:
    """``MatMulNBits`` tensors (bits=8) of a torch-layout ``[N, K]`` weight: ``B`` uint8 ``[N, K/block, block]``,
    ``scales`` float32 ``[N, K/block]``, ``zero_points`` uint8 ``[N, K/block]``; ``w ≈ scale · (q - zp)``."""
    n, k = weight.shape
    if k % block:
        raise ValueError(f"input size {k} is not a multiple of the block size {block}")
    w = weight.astype(np.float32).reshape(n, k // block, block)
    if symmetric:
        scale = np.abs(w).max(axis=-1) / 127.0
        zero = np.full(scale.shape, 128.0, dtype=np.float32)
    else:
        lo, hi = np.minimum(w.min(axis=-1), 0.0), np.maximum(w.max(axis=-1), 0.0)
        scale = (hi - lo) / 255.0
        zero = np.clip(np.round(-lo / np.where(scale > 0, scale, 1.0)), 0, 255)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.round(w / scale[..., None]) + zero[..., None], 0, 255).astype(np.uint8)
    return q, scale, zero.astype(np.uint8)


# --- graph ------------------------------------------------------------------------------------------


class _LlamaGraph(_Graph):
    def __init__(self, linear: str, accuracy_level: int) -> None:
        super().__init__()
        self.accuracy_level = accuracy_level
        if linear not in ("fp32", "q8"):
            raise ValueError(f"unknown linear format {linear!r}; expected 'fp32' or 'q8'")
        self.linear_format = linear

    def matmul(self, x: str, weight: FloatArray, name: str, *, symmetric: bool = False) -> str:
        """``x @ weight.T`` for a torch-layout ``[out, in]`` weight: MatMul, or 8-bit MatMulNBits."""
        if self.linear_format == "fp32":
            return self.op("MatMul", [x, self.init(f"{name}.weight", weight.T.copy())], f"{name}/MatMul")
        q, scale, zero = quantize_q8(weight, symmetric=symmetric)
        inputs = [
            x,
            self.init(f"{name}.q8", q),
            self.init(f"{name}.scales", scale),
            self.init(f"{name}.zero_points", zero),
        ]
        n, k = weight.shape
        node = helper.make_node(
            "MatMulNBits",
            inputs,
            [f"{name}/MatMulNBits"],
            name=f"{name}/MatMulNBits",
            domain=MS_DOMAIN,
            K=k,
            N=n,
            bits=8,
            block_size=Q8_BLOCK,
            accuracy_level=self.accuracy_level,
        )
        self.nodes.append(node)
        output: str = node.output[0]  # protobuf containers are untyped (no google.protobuf stubs)
        return output

    def rms_norm(self, x: str, weight: FloatArray, eps: float, name: str) -> str:
        """RMSNorm in the op pattern onnxruntime fuses into SimplifiedLayerNormalization."""
        sq = self.op("Pow", [x, self.const(2.0, np.float32)], f"{name}/pow")
        mean = self.op("ReduceMean", [sq], f"{name}/mean", axes=[-1], keepdims=1)
        rms = self.op("Sqrt", [self.op("Add", [mean, self.const(eps, np.float32)], f"{name}/add_eps")], f"{name}/sqrt")
        normed = self.op("Div", [x, rms], f"{name}/div")
        return self.op("Mul", [normed, self.init(f"{name}.weight", weight)], f"{name}/scale")

    def rope(self, x: str, cos: str, sin: str, half: int, name: str) -> str:
        """``x·cos + rotate_half(x)·sin`` with the sign of rotate_half already in ``sin``."""
        a, b = self.op("Split", [x, self.const([half, half])], f"{name}/split", outputs=2, axis=-1)
        swapped = self.op("Concat", [b, a], f"{name}/swap", axis=-1)
        return self.op(
            "Add",
            [self.op("Mul", [x, cos], f"{name}/cos"), self.op("Mul", [swapped, sin], f"{name}/sin")],
            f"{name}/add",
        )


def build_llama_nll(
    config: LlamaConfig,
    weights: Mapping[str, FloatArray],
    *,
    linear: str = "fp32",
    max_positions: int | None = None,
    accuracy_level: int = 4,
    quantize_head: bool = True,
    metadata: Mapping[str, str] | None = None,
) -> onnx.ModelProto:
    """The per-token NLL graph (see the module docstring). ``linear`` is ``"fp32"`` or ``"q8"``;
    ``max_positions`` (default: the model's context length) sizes the rotary tables. For q8,
    ``accuracy_level`` is MatMulNBits' (4: int8 activations; 0: fp32 compute, exact but slow) and
    ``quantize_head=False`` keeps the LM head in fp32 (a ``Gemm`` on the embedding table)."""
    H, nh, kvh, hd = config.hidden_size, config.num_heads, config.num_kv_heads, config.head_dim
    group, half, F = nh // kvh, hd // 2, config.intermediate_size
    g = _LlamaGraph(linear, accuracy_level)
    f32 = np.float32

    # --- embeddings, rotary tables, masks ---------------------------------------------------------
    embed = weights["model.embed_tokens.weight"]
    embed_name = g.init("model.embed_tokens.weight", embed)
    x = g.op("Gather", [embed_name, "input_ids"], "embed")  # [B,T,H]
    seq_len = g.op("Slice", [g.op("Shape", ["input_ids"], "shape/bt"), g.const([1]), g.const([2])], "shape/t")
    n_positions = max_positions or config.max_positions
    cos_t, sin_t = rope_tables(config, n_positions)
    sin_t = np.concatenate([-sin_t[:, :half], sin_t[:, half:]], axis=-1)  # rotate_half's sign folded in
    cos = g.op(
        "Slice", [g.init("rope.cos", cos_t[:, None, :]), g.const([0]), seq_len, g.const([0])], "rope/cos"
    )  # [T,1,hd]
    sin = g.op("Slice", [g.init("rope.sin", sin_t[:, None, :]), g.const([0]), seq_len, g.const([0])], "rope/sin")

    mask_f = g.op("Cast", ["attention_mask"], "mask/float", to=TensorProto.FLOAT)
    pad_bias = g.op("Mul", [g.op("Sub", [g.const(1.0, f32), mask_f], "mask/inv"), g.const(MASK_VALUE, f32)], "mask/pad")
    pad_bias = g.op("Unsqueeze", [pad_bias, g.const([1, 2, 3])], "mask/pad5d")  # [B,1,1,1,T]
    square = g.op("Concat", [seq_len, seq_len], "mask/tt", axis=0)
    ones = g.op(
        "ConstantOfShape", [square], "mask/ones", value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    )
    future = g.op("Trilu", [ones, g.const(1)], "mask/future", upper=1)  # 1 above the diagonal
    causal = g.op("Mul", [future, g.const(MASK_VALUE, f32)], "mask/causal")  # [T,T]
    bias = g.op("Add", [pad_bias, causal], "mask/bias")  # [B,1,1,T,T]

    # --- decoder layers ---------------------------------------------------------------------------
    q_scale = 1.0 / math.sqrt(hd)
    for i in range(config.num_layers):
        p = f"model.layers.{i}"
        w: Callable[[str], FloatArray] = lambda key: weights[f"{p}.{key}"]  # noqa: E731
        h = g.rms_norm(x, w("input_layernorm.weight"), config.rms_eps, f"{p}.input_layernorm")
        qkv_w = np.concatenate(
            [w("self_attn.q_proj.weight") * q_scale, w("self_attn.k_proj.weight"), w("self_attn.v_proj.weight")]
        )
        qkv = g.matmul(h, qkv_w, f"{p}.self_attn.qkv_proj")
        q, k, v = g.op("Split", [qkv, g.const([nh * hd, kvh * hd, kvh * hd])], f"{p}/qkv_split", outputs=3, axis=-1)
        q = g.rope(g.op("Reshape", [q, g.const([0, 0, nh, hd])], f"{p}/q4d"), cos, sin, half, f"{p}/q_rope")
        k = g.rope(g.op("Reshape", [k, g.const([0, 0, kvh, hd])], f"{p}/k4d"), cos, sin, half, f"{p}/k_rope")
        q = g.op("Reshape", [q, g.const([0, 0, kvh, group, hd])], f"{p}/q5d")
        q = g.op("Transpose", [q], f"{p}/q_heads", perm=[0, 2, 3, 1, 4])  # [B,kvh,group,T,hd]
        k = g.op(
            "Unsqueeze", [g.op("Transpose", [k], f"{p}/k_heads", perm=[0, 2, 3, 1]), g.const([2])], f"{p}/k5d"
        )  # [B,kvh,1,hd,T]
        v = g.op("Reshape", [v, g.const([0, 0, kvh, hd])], f"{p}/v4d")
        v = g.op(
            "Unsqueeze", [g.op("Transpose", [v], f"{p}/v_heads", perm=[0, 2, 1, 3]), g.const([2])], f"{p}/v5d"
        )  # [B,kvh,1,T,hd]
        scores = g.op("Add", [g.op("MatMul", [q, k], f"{p}/scores"), bias], f"{p}/masked")  # [B,kvh,group,T,T]
        probs = g.op("Softmax", [scores], f"{p}/softmax", axis=-1)
        ctx = g.op("MatMul", [probs, v], f"{p}/context")  # [B,kvh,group,T,hd]
        ctx = g.op("Transpose", [ctx], f"{p}/context_t", perm=[0, 3, 1, 2, 4])
        ctx = g.op("Reshape", [ctx, g.const([0, 0, H])], f"{p}/context_merge")
        x = g.op("Add", [x, g.matmul(ctx, w("self_attn.o_proj.weight"), f"{p}.self_attn.o_proj")], f"{p}/attn_residual")

        h = g.rms_norm(x, w("post_attention_layernorm.weight"), config.rms_eps, f"{p}.post_attention_layernorm")
        gate_up = g.matmul(
            h, np.concatenate([w("mlp.gate_proj.weight"), w("mlp.up_proj.weight")]), f"{p}.mlp.gate_up_proj"
        )
        gate, up = g.op("Split", [gate_up, g.const([F, F])], f"{p}/gate_up_split", outputs=2, axis=-1)
        act = g.op("Mul", [gate, g.op("Sigmoid", [gate], f"{p}/sigmoid")], f"{p}/silu")
        act = g.op("Mul", [act, up], f"{p}/swiglu")
        x = g.op("Add", [x, g.matmul(act, w("mlp.down_proj.weight"), f"{p}.mlp.down_proj")], f"{p}/mlp_residual")

    # --- LM head on the scored positions only, NLL of their token given the ones before ------------
    # Scored: real tokens at t >= max(1, score_from[b]); the head reads the hidden state at t - 1.
    x = g.rms_norm(x, weights["model.norm.weight"], config.rms_eps, "model.norm")
    table = g.init("positions", np.arange(n_positions, dtype=np.int64))
    positions = g.op("Slice", [table, g.const([0]), seq_len, g.const([0])], "head/t")
    start = g.op(
        "Max", [g.op("Unsqueeze", [SCORE_FROM, g.const([1])], "head/from2d"), g.const(1)], "head/start"
    )  # [B|1,1]
    wanted = g.op(
        "And",
        [
            g.op("GreaterOrEqual", [positions, start], "head/after_start"),
            g.op("Cast", ["attention_mask"], "head/real", to=TensorProto.BOOL),
        ],
        "head/wanted",
    )  # [B,T]
    where = g.op("Transpose", [g.op("NonZero", [wanted], "head/nonzero")], "head/where", perm=[1, 0])  # [M,2]: (b, t)
    hidden = g.op("GatherND", [x, g.op("Sub", [where, g.const([0, 1])], "head/prev")], "head/hidden")  # [M,H]
    if config.tie_embeddings and (linear == "fp32" or not quantize_head):  # Gemm(transB) shares the embedding table
        logits = g.op("Gemm", [hidden, embed_name], "lm_head/Gemm", transB=1)
    else:
        head = embed if config.tie_embeddings else weights["lm_head.weight"]
        logits = g.matmul(hidden, head, "lm_head", symmetric=True)  # [M,V]
    targets = g.op(
        "Unsqueeze", [g.op("GatherND", ["input_ids", where], "head/targets"), g.const([1])], "head/targets2d"
    )
    target_logit = g.op("GatherElements", [logits, targets], "head/target_logit", axis=1)
    lse = g.op("ReduceLogSumExp", [logits], "head/logsumexp", axes=[1], keepdims=1)
    nll = g.op("Squeeze", [g.op("Sub", [lse, target_logit], "head/nll2d"), g.const([1])], "head/nll")  # [M]
    zeros = g.op(
        "ConstantOfShape",
        [g.op("Shape", ["input_ids"], "head/bt")],
        "head/zeros",
        value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
    )
    g.nodes.append(helper.make_node("ScatterND", [zeros, where, nll], [OUTPUT_NAME], name="output"))

    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
        for n in ("input_ids", "attention_mask")
    ]
    inputs.append(helper.make_tensor_value_info(SCORE_FROM, TensorProto.INT64, ["batch_or_1"]))
    g.init(SCORE_FROM, np.array([1], dtype=np.int64))  # an initializer that is also an input: optional, default 1
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", "sequence"])]
    graph = helper.make_graph(g.nodes, "llama_token_nll", inputs, outputs, g.inits)
    opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid(MS_DOMAIN, 1)] if linear == "q8" else [])
    model = helper.make_model(graph, opset_imports=opsets, producer_name="memstream")
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    if linear == "fp32":
        onnx.checker.check_model(model)  # the checker does not know com.microsoft ops
    return model
