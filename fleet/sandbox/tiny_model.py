"""Writes a small llama-architecture GGUF with random weights: real llama.cpp loads and runs it in
well under a second. Its text is gibberish; its paths, streaming and metrics are real."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

BYTE_TOKENS = 256  # a byte-level vocabulary: every byte is a token, so any prompt tokenizes


def write_tiny_llama(
    path: Path, *, width: int = 64, layers: int = 2, heads: int = 4, context: int = 4096
) -> Path:
    rng = np.random.default_rng(0)
    vocab = 3 + BYTE_TOKENS
    feed_forward = width * 2
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-test")
    writer.add_context_length(context)
    writer.add_embedding_length(width)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(feed_forward)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(width // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(BYTE_TOKENS)]
    kinds = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * vocab)
    writer.add_token_types(kinds + [gguf.TokenType.BYTE] * BYTE_TOKENS)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    def ones(name: str) -> None:
        writer.add_tensor(name, np.ones(width, np.float32))

    tensor("token_embd.weight", vocab, width)
    ones("output_norm.weight")
    tensor("output.weight", vocab, width)
    for layer in range(layers):
        ones(f"blk.{layer}.attn_norm.weight")
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(f"blk.{layer}.{name}.weight", width, width)
        ones(f"blk.{layer}.ffn_norm.weight")
        tensor(f"blk.{layer}.ffn_gate.weight", feed_forward, width)
        tensor(f"blk.{layer}.ffn_up.weight", feed_forward, width)
        tensor(f"blk.{layer}.ffn_down.weight", width, feed_forward)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
