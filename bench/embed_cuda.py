"""Embedding throughput on a GPU: the ONNX embedder on onnxruntime's CUDAExecutionProvider vs its CPU provider,
with sentence-transformers on the GPU (torch) as the anchor.

Meant for a machine with an NVIDIA GPU and ``onnxruntime-gpu`` (the project environment carries the CPU build).
Sentences come from a JSON list (``--sentences``; made elsewhere with ``bench.corpus.wiki_sentences``) so the
machine needs neither gensim nor network. Each engine embeds all sentences at each batch size, one call per
batch; sentences/s is the median of ``--repeats`` passes after a warm-up. Agreement is the cosine per sentence
between the CUDA and CPU embeddings (rows are unit length), per batch size.

    python -m bench.embed_cuda --sentences sentences.json --out result.json

The ONNX engines run in this process without torch imported (so onnxruntime's CUDA/cuDNN preload is its own);
the anchor runs in a child process (``--phase anchor``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

Encode = Callable[[list[str]], np.ndarray]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _throughput(
    encode: Encode, sentences: list[str], batch: int, repeats: int, sync: Callable[[], None] = lambda: None
) -> tuple[float, list[float], np.ndarray]:
    encode(sentences[: max(batch, 8)])  # warm-up (CUDA: kernels, cuBLAS handles)
    if batch == 1:
        for s in sentences[:32]:
            encode([s])
    sync()
    rates: list[float] = []
    vectors = np.empty(0)
    for _ in range(repeats):
        parts = []
        started = time.perf_counter()
        for i in range(0, len(sentences), batch):
            parts.append(encode(sentences[i : i + batch]))
        sync()
        rates.append(len(sentences) / (time.perf_counter() - started))
        vectors = np.concatenate(parts).astype(np.float32)
    return statistics.median(rates), rates, vectors


def _ensure_nvidia_libs_visible() -> list[str]:
    """onnxruntime.preload_dlls() looks for ``nvidia/...`` next to the onnxruntime package; when onnxruntime-gpu
    was installed with ``--target`` elsewhere, link the nvidia namespace of the environment (torch's CUDA wheels) there."""
    import importlib.util

    spec = importlib.util.find_spec("onnxruntime")
    notes: list[str] = []
    if spec is None or spec.origin is None:
        return notes
    site = Path(spec.origin).parent.parent
    link = site / "nvidia"
    if link.exists():
        return notes
    try:
        import nvidia  # namespace package of the nvidia-* wheels

        for root in map(Path, nvidia.__path__):
            if root != link and (root / "cudnn").exists():
                link.symlink_to(root)
                notes.append(f"linked {link} -> {root}")
                break
    except Exception as exc:
        notes.append(f"could not link nvidia libs: {exc}")
    return notes


def onnx_phase(sentences: list[str], batch_sizes: Sequence[int], repeats: int, vec_dir: Path) -> dict:
    notes = _ensure_nvidia_libs_visible()
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    from memstream.models.assets import sha256_file
    from memstream.models.embedder import Embedder, EmbedderConfig, model_path

    threads = _cpus()
    engines = {}
    started = time.perf_counter()
    engines["onnx_cuda"] = Embedder(EmbedderConfig(variant="fp32", provider="cuda", batch_size=max(batch_sizes)))
    load_cuda_s = time.perf_counter() - started
    engines["onnx_cpu"] = Embedder(
        EmbedderConfig(variant="fp32", provider="cpu", threads=threads, batch_size=max(batch_sizes))
    )
    providers = {name: e._session.get_providers() for name, e in engines.items()}
    per_s: dict[str, dict[str, float]] = {name: {} for name in engines}
    passes: dict[str, dict[str, list[float]]] = {name: {} for name in engines}
    vectors: dict[str, dict[int, np.ndarray]] = {name: {} for name in engines}
    for name, emb in engines.items():
        for batch in batch_sizes:
            rate, rates, vecs = _throughput(emb.embed, sentences, batch, repeats)
            per_s[name][str(batch)] = round(rate, 1)
            passes[name][str(batch)] = [round(r, 1) for r in rates]
            vectors[name][batch] = vecs
            print(f"bench: {name} batch {batch}: {rate:.1f}/s", file=sys.stderr, flush=True)
    cos = {}
    for batch in batch_sizes:
        c = np.sum(vectors["onnx_cuda"][batch] * vectors["onnx_cpu"][batch], axis=1)
        cos[str(batch)] = {"min": round(float(c.min()), 7), "mean": round(float(c.mean()), 7)}
    all_c = np.concatenate([np.sum(vectors["onnx_cuda"][b] * vectors["onnx_cpu"][b], axis=1) for b in batch_sizes])
    vec_dir.mkdir(parents=True, exist_ok=True)
    np.save(vec_dir / "onnx_cuda_b32.npy", vectors["onnx_cuda"][32 if 32 in batch_sizes else batch_sizes[0]])
    np.save(vec_dir / "onnx_cpu_b32.npy", vectors["onnx_cpu"][32 if 32 in batch_sizes else batch_sizes[0]])
    graph = model_path("fp32")
    return {
        "providers": providers,
        "cuda_provider_active": providers["onnx_cuda"][0] == "CUDAExecutionProvider",
        "cuda_session_load_s": round(load_cuda_s, 2),
        "per_s": per_s,
        "passes": passes,
        "cos_cuda_vs_cpu": {
            "min": round(float(all_c.min()), 7),
            "mean": round(float(all_c.mean()), 7),
            "per_batch": cos,
        },
        "onnxruntime": ort.__version__,
        "onnxruntime_file": ort.__file__,
        "available_providers": ort.get_available_providers(),
        "cpu_threads": threads,
        "graph_sha256": sha256_file(graph),
        "notes": notes,
    }


def anchor_phase(sentences: list[str], batch_sizes: Sequence[int], repeats: int, vec_dir: Path) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    from memstream.models.assets import MINILM, asset_path

    model_dir = asset_path(MINILM, "config.json").parent
    device = os.environ.get("EMBED_CUDA_ANCHOR_DEVICE", "cuda")
    model = SentenceTransformer(str(model_dir), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(
            texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    per_s, passes, vecs32 = {}, {}, None
    for batch in batch_sizes:
        rate, rates, vecs = _throughput(encode, sentences, batch, repeats, sync)
        per_s[str(batch)] = round(rate, 1)
        passes[str(batch)] = [round(r, 1) for r in rates]
        if batch == 32 or vecs32 is None:
            vecs32 = vecs
        print(f"bench: anchor batch {batch}: {rate:.1f}/s", file=sys.stderr, flush=True)
    out = {
        "per_s": per_s,
        "passes": passes,
        "about": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}, "
        f"{torch.cuda.get_device_name(0) if device == 'cuda' else device}",
    }
    cuda_file = vec_dir / "onnx_cuda_b32.npy"
    if cuda_file.exists() and vecs32 is not None:
        c = np.sum(np.load(cuda_file) * vecs32, axis=1)
        out["cos_onnx_cuda_vs_anchor_b32"] = {"min": round(float(c.min()), 7), "mean": round(float(c.mean()), 7)}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", required=True, help="JSON list of sentences")
    parser.add_argument("--out", required=True, help="where the JSON report is written")
    parser.add_argument("--batch-sizes", default="1,32,128")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--phase", choices=("all", "onnx", "anchor"), default="all")
    parser.add_argument("--no-anchor", action="store_true")
    parser.add_argument("--vec-dir", default="/tmp/embed_cuda_vecs")
    args = parser.parse_args(argv)
    sentences = json.loads(Path(args.sentences).read_text())
    batch_sizes = sorted({int(b) for b in args.batch_sizes.split(",")})
    vec_dir = Path(args.vec_dir)
    out = Path(args.out)

    if args.phase == "anchor":
        out.write_text(json.dumps(anchor_phase(sentences, batch_sizes, args.repeats, vec_dir), indent=2))
        return 0
    started = time.perf_counter()
    onnx = onnx_phase(sentences, batch_sizes, args.repeats, vec_dir)
    report: dict = {
        "sentences": len(sentences),
        "mean_chars": round(sum(map(len, sentences)) / len(sentences), 1),
        "batch_sizes": batch_sizes,
        "repeats": args.repeats,
        "onnx": onnx,
    }
    anchor = None
    if args.phase == "all" and not args.no_anchor:
        anchor_out = out.with_name(out.stem + ".anchor.json")
        cmd = [
            sys.executable,
            "-m",
            "bench.embed_cuda",
            "--phase",
            "anchor",
            "--sentences",
            args.sentences,
            "--out",
            str(anchor_out),
            "--batch-sizes",
            args.batch_sizes,
            "--repeats",
            str(args.repeats),
            "--vec-dir",
            str(vec_dir),
        ]
        result = subprocess.run(cmd)
        if result.returncode == 0 and anchor_out.exists():
            anchor = json.loads(anchor_out.read_text())
            report["anchor"] = anchor
        else:
            report["anchor_error"] = f"anchor phase exited {result.returncode}"
    summary = {}
    for batch in map(str, batch_sizes):
        row = {"onnx_cuda_per_s": onnx["per_s"]["onnx_cuda"][batch], "onnx_cpu_per_s": onnx["per_s"]["onnx_cpu"][batch]}
        row["cuda_vs_cpu"] = round(row["onnx_cuda_per_s"] / row["onnx_cpu_per_s"], 2)
        if anchor:
            row["anchor_cuda_per_s"] = anchor["per_s"][batch]
            row["onnx_cuda_vs_anchor"] = round(row["onnx_cuda_per_s"] / anchor["per_s"][batch], 2)
            row["onnx_cpu_vs_anchor"] = round(row["onnx_cpu_per_s"] / anchor["per_s"][batch], 2)
        summary[batch] = row
    report["per_batch"] = summary
    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except Exception:
        gpu = None
    report["machine"] = {
        "gpu": gpu,
        "cpus": _cpus(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    report["wall_s"] = round(time.perf_counter() - started, 1)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
