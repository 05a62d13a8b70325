"""Torch-free ONNX builder for BERT-family sentence encoders (config.json + model.safetensors).

The graph is written node by node with ``onnx.helper`` from the safetensors weights: BERT encoder,
mean pooling over the attention mask and L2 normalisation, so one ``session.run`` returns the
sentence embedding that sentence-transformers would. Inputs are int64 ``input_ids`` and
``attention_mask`` (``token_type_ids`` only when asked for), with dynamic batch and sequence axes.

Two details matter for speed and for onnxruntime:

- Position ids are never materialised: the position table is *sliced* to the sequence length
  (``Range``→``Gather`` is mis-optimised by onnxruntime 1.32 at EXTENDED/ALL levels).
- With ``unpad=True`` (the default) the dense layers run on the real tokens only: the non-pad tokens
  are gathered into one ``[tokens, hidden]`` matrix, and scattered back to ``[batch, seq, hidden]``
  only for the attention scores. Batches of sentences of uneven length waste no work on padding.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
OUTPUT_NAME = "sentence_embedding"

# Safetensors tensors: float32 after loading, except int64 buffers (``position_ids``), kept as they are.
WeightArray = npt.NDArray[np.float32 | np.int64]


@dataclass(frozen=True)
class BertConfig:
    """The parts of a Hugging Face BERT ``config.json`` that the graph needs."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    @classmethod
    def from_json(cls, path: Path | str) -> BertConfig:
        raw = json.loads(Path(path).read_text())
        if raw.get("model_type", "bert") != "bert":
            raise ValueError(f"not a BERT config: model_type={raw.get('model_type')!r}")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        fields = cls.__dataclass_fields__
        return cls(**{k: raw[k] for k in fields if k in raw})

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def load_weights(path: Path | str) -> dict[str, WeightArray]:
    """Safetensors weights as float32 numpy arrays, with any ``bert.`` prefix removed."""
    from safetensors.numpy import load_file

    out: dict[str, WeightArray] = {}
    for key, value in load_file(str(path)).items():
        key = key.removeprefix("bert.")
        out[key] = value.astype(np.float32) if value.dtype != np.int64 else value
    return out


class _Graph:
    """Small helper that names nodes and keeps initializers together."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._consts: dict[tuple[str, tuple[int, ...], bytes], str] = {}

    def init(self, name: str, array: npt.NDArray[np.generic]) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, values: npt.ArrayLike, dtype: npt.DTypeLike = np.int64) -> str:
        array = np.asarray(values, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            self._consts[key] = self.init(f"const_{len(self._consts)}", array)
        return self._consts[key]

    @overload
    def op(self, op_type: str, inputs: list[str], name: str, outputs: Literal[1] = 1, **attrs: Any) -> str: ...

    @overload
    def op(self, op_type: str, inputs: list[str], name: str, outputs: int, **attrs: Any) -> list[str]: ...

    def op(self, op_type: str, inputs: list[str], name: str, outputs: int = 1, **attrs: Any) -> str | list[str]:
        """Append one node; its output name (``name``), or ``name:0``… when ``outputs`` > 1."""
        outs = [name] if outputs == 1 else [f"{name}:{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs[0] if outputs == 1 else outs

    def linear(self, x: str, weight: npt.NDArray[np.generic], bias: npt.NDArray[np.generic], name: str) -> str:
        """``x @ weight.T + bias`` (torch Linear layout), as MatMul + Add so quantisers see a MatMul."""
        w = self.init(f"{name}.weight", weight.T.copy())
        b = self.init(f"{name}.bias", bias)
        return self.op("Add", [self.op("MatMul", [x, w], f"{name}/MatMul"), b], f"{name}/Add")

    def layer_norm(
        self, x: str, weight: npt.NDArray[np.generic], bias: npt.NDArray[np.generic], eps: float, name: str
    ) -> str:
        w = self.init(f"{name}.weight", weight)
        b = self.init(f"{name}.bias", bias)
        return self.op("LayerNormalization", [x, w, b], name, axis=-1, epsilon=eps)

    def gelu(self, x: str, name: str) -> str:
        """Exact (erf) GELU, written so onnxruntime fuses it into one Gelu kernel."""
        scaled = self.op("Div", [x, self.const(math.sqrt(2.0), np.float32)], f"{name}/div")
        erf = self.op("Erf", [scaled], f"{name}/erf")
        one_plus = self.op("Add", [erf, self.const(1.0, np.float32)], f"{name}/add")
        prod = self.op("Mul", [x, one_plus], f"{name}/mul")
        return self.op("Mul", [prod, self.const(0.5, np.float32)], f"{name}/half")


def build_bert_encoder(
    config: BertConfig,
    weights: Mapping[str, WeightArray],
    *,
    pooling: str = "mean",
    normalize: bool = True,
    token_type_ids: bool = False,
    unpad: bool = True,
    fuse_qkv: bool = True,
    metadata: Mapping[str, str] | None = None,
) -> onnx.ModelProto:
    """Build the sentence-embedding graph.

    ``pooling`` is ``"mean"`` (masked mean of the last hidden states) or ``"cls"``. Without
    ``token_type_ids`` every token gets type 0, as for single-sentence inputs. ``unpad`` runs the dense
    layers on real tokens only; ``fuse_qkv`` computes query, key and value with one MatMul.
    """
    if pooling not in ("mean", "cls"):
        raise ValueError(f"unknown pooling {pooling!r}")
    if config.hidden_act not in ("gelu", "gelu_python"):
        raise ValueError(f"unsupported activation {config.hidden_act!r}")
    H, nh, hd = config.hidden_size, config.num_attention_heads, config.head_dim
    g = _Graph()
    f32 = np.float32

    # --- embeddings -------------------------------------------------------------------------------
    word = g.init("embeddings.word_embeddings.weight", weights["embeddings.word_embeddings.weight"])
    pos_table = weights["embeddings.position_embeddings.weight"]
    type_table = weights["embeddings.token_type_embeddings.weight"]
    seq_len = g.op("Slice", [g.op("Shape", ["input_ids"], "seq/shape"), g.const([1]), g.const([2])], "seq/len")
    if token_type_ids:
        pos = g.op("Slice", [g.init("embeddings.position", pos_table), g.const([0]), seq_len, g.const([0])], "emb/pos")
        types = g.op("Gather", [g.init("embeddings.token_type", type_table), "token_type_ids"], "emb/type")
        x = g.op(
            "Add", [g.op("Add", [g.op("Gather", [word, "input_ids"], "emb/word"), types], "emb/wt"), pos], "emb/sum"
        )
    else:
        # Type 0 for every token: fold its row into the position table (one Add fewer).
        table = g.init("embeddings.position_plus_type0", pos_table + type_table[0][None, :])
        pos = g.op("Slice", [table, g.const([0]), seq_len, g.const([0])], "emb/pos")
        x = g.op("Add", [g.op("Gather", [word, "input_ids"], "emb/word"), pos], "emb/sum")
    x = g.layer_norm(
        x,
        weights["embeddings.LayerNorm.weight"],
        weights["embeddings.LayerNorm.bias"],
        config.layer_norm_eps,
        "embeddings.LayerNorm",
    )

    # --- masks ------------------------------------------------------------------------------------
    mask_f = g.op("Cast", ["attention_mask"], "mask/float", to=TensorProto.FLOAT)
    inverted = g.op("Sub", [g.const(1.0, f32), mask_f], "mask/inverted")
    neg = g.op("Mul", [inverted, g.const(np.finfo(np.float32).min, f32)], "mask/neg")
    score_bias = g.op("Unsqueeze", [neg, g.const([1, 2])], "mask/bias")  # [B,1,1,S]

    bsh = g.op("Shape", ["input_ids"], "shape/bs")  # [B, S]
    if unpad:
        # Real tokens only: `keep` are the flat positions of non-pad tokens; `back` maps every padded
        # position to a packed row (pads borrow row 0; their values are masked out or discarded).
        flat_mask = g.op("Reshape", ["attention_mask", g.const([-1])], "unpad/flat_mask")
        keep = g.op("Squeeze", [g.op("NonZero", [flat_mask], "unpad/nonzero"), g.const([0])], "unpad/keep")
        rank = g.op("Sub", [g.op("CumSum", [flat_mask, g.const(0)], "unpad/cumsum"), g.const(1)], "unpad/rank")
        back = g.op("Max", [rank, g.const(0)], "unpad/back")
        back = g.op("Reshape", [back, bsh], "unpad/back2d")  # [B, S] -> packed row
        x = g.op("Gather", [g.op("Reshape", [x, g.const([-1, H])], "unpad/flat_x"), keep], "unpad/pack", axis=0)

    def to_heads(t: str, name: str, perm: list[int]) -> str:
        t = g.op("Reshape", [t, g.const([0, 0, nh, hd])], f"{name}/split")
        return g.op("Transpose", [t], f"{name}/heads", perm=perm)

    scale = 1.0 / math.sqrt(hd)
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}"
        w: Callable[[str], WeightArray] = lambda key: weights[f"{p}.{key}"]  # noqa: E731
        if fuse_qkv:  # one [H, 3H] MatMul instead of three: fewer calls, one activation quantisation
            qkv_w = np.concatenate([w(f"attention.self.{n}.weight") for n in ("query", "key", "value")])
            qkv_b = np.concatenate([w(f"attention.self.{n}.bias") for n in ("query", "key", "value")])
            qkv = g.linear(x, qkv_w, qkv_b, f"{p}.attention.self.qkv")
            if unpad:
                qkv = g.op("Gather", [qkv, back], f"{p}/qkv_unpack", axis=0)
            q, k, v = g.op("Split", [qkv, g.const([H, H, H])], f"{p}/qkv_split", outputs=3, axis=-1)
        else:
            q = g.linear(
                x, w("attention.self.query.weight"), w("attention.self.query.bias"), f"{p}.attention.self.query"
            )
            k = g.linear(x, w("attention.self.key.weight"), w("attention.self.key.bias"), f"{p}.attention.self.key")
            v = g.linear(
                x, w("attention.self.value.weight"), w("attention.self.value.bias"), f"{p}.attention.self.value"
            )
            if unpad:
                q, k, v = (
                    g.op("Gather", [t, back], f"{p}/{n}_unpack", axis=0) for t, n in ((q, "q"), (k, "k"), (v, "v"))
                )
        qh = to_heads(q, f"{p}/q", [0, 2, 1, 3])  # [B,nh,S,hd]
        kh = to_heads(k, f"{p}/k", [0, 2, 3, 1])  # [B,nh,hd,S]
        vh = to_heads(v, f"{p}/v", [0, 2, 1, 3])
        scores = g.op("MatMul", [qh, kh], f"{p}/scores")
        scores = g.op("Mul", [scores, g.const(scale, f32)], f"{p}/scaled")
        scores = g.op("Add", [scores, score_bias], f"{p}/masked")
        probs = g.op("Softmax", [scores], f"{p}/softmax", axis=-1)
        ctx = g.op("MatMul", [probs, vh], f"{p}/context")
        ctx = g.op("Transpose", [ctx], f"{p}/context_t", perm=[0, 2, 1, 3])
        if unpad:
            ctx = g.op("Reshape", [ctx, g.const([-1, H])], f"{p}/context_flat")
            ctx = g.op("Gather", [ctx, keep], f"{p}/context_pack", axis=0)
        else:
            ctx = g.op("Reshape", [ctx, g.const([0, 0, H])], f"{p}/context_merge")
        attn = g.linear(
            ctx, w("attention.output.dense.weight"), w("attention.output.dense.bias"), f"{p}.attention.output.dense"
        )
        x = g.layer_norm(
            g.op("Add", [attn, x], f"{p}/attn_residual"),
            w("attention.output.LayerNorm.weight"),
            w("attention.output.LayerNorm.bias"),
            config.layer_norm_eps,
            f"{p}.attention.output.LayerNorm",
        )
        h = g.linear(x, w("intermediate.dense.weight"), w("intermediate.dense.bias"), f"{p}.intermediate.dense")
        h = g.gelu(h, f"{p}/gelu")
        h = g.linear(h, w("output.dense.weight"), w("output.dense.bias"), f"{p}.output.dense")
        x = g.layer_norm(
            g.op("Add", [h, x], f"{p}/ffn_residual"),
            w("output.LayerNorm.weight"),
            w("output.LayerNorm.bias"),
            config.layer_norm_eps,
            f"{p}.output.LayerNorm",
        )

    # --- pooling ----------------------------------------------------------------------------------
    if unpad:
        x = g.op("Gather", [x, back], "pool/unpack", axis=0)  # [B,S,H]; pads masked out below
    if pooling == "mean":
        m = g.op("Unsqueeze", [mask_f, g.const([2])], "pool/mask3d")
        summed = g.op("ReduceSum", [g.op("Mul", [x, m], "pool/masked"), g.const([1])], "pool/sum", keepdims=0)
        count = g.op("ReduceSum", [mask_f, g.const([1])], "pool/count", keepdims=1)
        pooled = g.op("Div", [summed, g.op("Max", [count, g.const(1e-9, f32)], "pool/clamp")], "pool/mean")
    else:
        cls = g.op("Slice", [x, g.const([0]), g.const([1]), g.const([1])], "pool/cls")
        pooled = g.op("Squeeze", [cls, g.const([1])], "pool/cls2d")
    if normalize:
        norm = g.op("ReduceL2", [pooled], "norm/l2", axes=[1], keepdims=1)
        pooled = g.op("Div", [pooled, g.op("Max", [norm, g.const(1e-12, f32)], "norm/clamp")], "norm/div")
    g.nodes.append(helper.make_node("Identity", [pooled], [OUTPUT_NAME], name="output"))

    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
        for n in ("input_ids", "attention_mask")
    ]
    if token_type_ids:
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "sequence"]))
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", H])]
    graph = helper.make_graph(g.nodes, "bert_sentence_encoder", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="memstream")
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.checker.check_model(model)
    return model


def build_from_dir(model_dir: Path | str, **kwargs: Any) -> onnx.ModelProto:
    """Build from a sentence-transformers folder holding ``config.json`` and ``model.safetensors``."""
    model_dir = Path(model_dir)
    config = BertConfig.from_json(model_dir / "config.json")
    return build_bert_encoder(config, load_weights(model_dir / "model.safetensors"), **kwargs)
