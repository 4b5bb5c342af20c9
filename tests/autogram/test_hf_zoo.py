"""Engine Gramian == jacrev Gramian over Hugging Face transformers models, in the three loss shapes.

The models are built from tiny random configs (nothing is downloaded) and called as a new
user calls them; each also once with explicit position ids of shape (B, T). The checks are
those of ``test_zoo.py``: the Gramian against ``reference_gramian``, the per-module stack
summing to it, and ``engine.backward(w)`` against ``losses.backward(w)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest
import torch
from torch import Tensor, nn

import gramweight as gw
from gramweight.testing import reference_gramian

from ._zoo import SHAPES, batch_dim_of, losses_of

tf = pytest.importorskip("transformers")

B, T, V = 3, 5, 40
ATTENTIONS = ("eager", "sdpa")

# Some models compute parts of a float64 forward in float32 (the softmax of their eager
# attention, RMSNorm), so a backward that weights the losses before those casts
# (``losses.backward(w)``) and the engine, which weights per-loss gradients after them, round
# differently; the Gramians agree to 1e-9 since the reference rounds each loss as the engine.
FLOAT32_SOFTMAX = "eager attention's softmax runs in float32 (dtype=torch.float32)"
FLOAT32_RMSNORM = "RMSNorm normalises in float32 (hidden_states.to(torch.float32))"

# GPT-2 and BERT look their positions up with ids of shape (1, T), broadcast over the batch
# (an add): with batch_dim=0 the engine expands that output to the batch (it was refused
# before, "an output of Embedding 'transformer.wpe' with 1 rows for 3 losses").


class HF(NamedTuple):
    # attn_implementation -> (model, forward); forward(model) is a (B, d) tensor
    build: Callable[[str], tuple[nn.Module, Callable[[nn.Module], Tensor]]]
    broadcast_positions: str | None = None  # the Embedding whose (1, T, D) output is broadcast
    float32_inside: Callable[[str], str | None] = lambda attn: None  # why, for this attention


def _positions() -> Tensor:
    return torch.arange(T).expand(B, T).contiguous()


def _mask() -> Tensor:
    mask = torch.ones(B, T, dtype=torch.long)
    # padding at the end of one sample: a padded start would leave the first queries of a
    # causal model no key, and eager attention NaN rows (its float64 mask minimum is -inf once
    # cast to float32)
    mask[0, -2:] = 0
    return mask


def _gpt2(attn: str):
    config = tf.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=V, n_positions=16,
                           bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0,
                           attn_pdrop=0.0, attn_implementation=attn)
    return tf.GPT2LMHeadModel(config)  # lm_head tied to the token embedding


def _bert_config(attn: str):
    return tf.BertConfig(vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=16, num_labels=2,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                         attn_implementation=attn)


def _decoder_config(cls, attn: str, **kwargs):
    return cls(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
               num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16,
               attn_implementation=attn, **kwargs)


def _vit_config(attn: str):
    return tf.ViTConfig(image_size=8, patch_size=4, num_channels=2, hidden_size=16,
                        num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                        num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        attn_implementation=attn)


def gpt2(attn):
    ids = torch.randint(0, V, (B, T))
    return _gpt2(attn), lambda model: model(ids).logits.flatten(1)


def gpt2_positions(attn):
    ids, mask, positions = torch.randint(0, V, (B, T)), _mask(), _positions()
    return _gpt2(attn), lambda model: model(ids, attention_mask=mask,
                                            position_ids=positions).logits.flatten(1)


def bert(attn):
    ids, mask = torch.randint(0, V, (B, T)), _mask()
    return (tf.BertModel(_bert_config(attn)),
            lambda model: model(ids, attention_mask=mask).last_hidden_state.flatten(1))


def bert_positions(attn):
    ids, mask, positions = torch.randint(0, V, (B, T)), _mask(), _positions()
    return (tf.BertModel(_bert_config(attn)),
            lambda model: model(ids, attention_mask=mask,
                                position_ids=positions).last_hidden_state.flatten(1))


def bert_classifier(attn):
    ids, mask = torch.randint(0, V, (B, T)), _mask()
    return (tf.BertForSequenceClassification(_bert_config(attn)),
            lambda model: model(ids, attention_mask=mask).logits)


def llama(attn):
    ids = torch.randint(0, V, (B, T))
    return (tf.LlamaForCausalLM(_decoder_config(tf.LlamaConfig, attn)),
            lambda model: model(ids).logits.flatten(1))


def llama_positions(attn):
    ids, positions = torch.randint(0, V, (B, T)), _positions()
    return (tf.LlamaForCausalLM(_decoder_config(tf.LlamaConfig, attn)),
            lambda model: model(ids, position_ids=positions).logits.flatten(1))


def qwen2(attn):
    ids = torch.randint(0, V, (B, T))
    config = _decoder_config(tf.Qwen2Config, attn, tie_word_embeddings=True)
    return tf.Qwen2ForCausalLM(config), lambda model: model(ids).logits.flatten(1)


def qwen2_positions(attn):
    ids, mask, positions = torch.randint(0, V, (B, T)), _mask(), _positions()
    config = _decoder_config(tf.Qwen2Config, attn, tie_word_embeddings=True)
    return tf.Qwen2ForCausalLM(config), lambda model: model(
        ids, attention_mask=mask, position_ids=positions).logits.flatten(1)


def vit(attn):
    x = torch.randn(B, 2, 8, 8)
    return tf.ViTModel(_vit_config(attn)), lambda model: model(x).last_hidden_state.flatten(1)


def vit_classifier(attn):
    x = torch.randn(B, 2, 8, 8)
    return tf.ViTForImageClassification(_vit_config(attn)), lambda model: model(x).logits


def _softmax_if_eager(attn):
    return FLOAT32_SOFTMAX if attn == "eager" else None


def _rmsnorm(attn):
    return FLOAT32_RMSNORM + (f"; {FLOAT32_SOFTMAX}" if attn == "eager" else "")


HF_ZOO: dict[str, HF] = {
    "gpt2": HF(gpt2, broadcast_positions="transformer.wpe"),
    "gpt2_positions": HF(gpt2_positions),
    "bert": HF(bert, broadcast_positions="embeddings.position_embeddings"),
    "bert_positions": HF(bert_positions),
    "bert_classifier": HF(bert_classifier,
                          broadcast_positions="bert.embeddings.position_embeddings"),
    "llama": HF(llama, float32_inside=_rmsnorm),  # rotary positions: no parameter looked up
    "llama_positions": HF(llama_positions, float32_inside=_rmsnorm),
    "qwen2": HF(qwen2, float32_inside=_rmsnorm),
    "qwen2_positions": HF(qwen2_positions, float32_inside=_rmsnorm),
    "vit": HF(vit, float32_inside=_softmax_if_eager),
    "vit_classifier": HF(vit_classifier, float32_inside=_softmax_if_eager),
}


def _case(name, attn, shape):
    return pytest.param(name, attn, shape, id=f"{name}-{attn}-{shape}")


CASES = [_case(name, attn, shape) for name in HF_ZOO for attn in ATTENTIONS for shape in SHAPES]


@pytest.fixture(autouse=True)
def _one_thread():
    # tensors of a few hundred elements: intra-op threads only add synchronisation, which on a
    # shared machine made this file five times slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _setup(name, attn):
    torch.manual_seed(0)
    with torch.no_grad():
        model, forward = HF_ZOO[name].build(attn)
    assert model.config._attn_implementation == attn
    return model.to(torch.float64).eval(), forward


def _losses(model, forward, shape):
    return losses_of(forward(model), shape)


# vmap has no batching rule for CPU SDPA's backward and falls back to a loop (reference and
# engine alike): slower, not wrong
@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")
@pytest.mark.parametrize(("name", "attn", "shape"), CASES)
def test_gramian_blocks_and_backward(name, attn, shape):
    model, forward = _setup(name, attn)
    expected = reference_gramian(model, lambda: _losses(model, forward, shape))
    atol = 1e-12 * expected.abs().max()

    with gw.autogram.Engine(model, batch_dim=batch_dim_of(shape)) as engine:
        G = engine.gramian(_losses(model, forward, shape))
        torch.testing.assert_close(G, expected, rtol=1e-9, atol=atol)

        Gs = engine.gramian(_losses(model, forward, shape), per="module")
        assert Gs.shape == (len(engine.blocks), *G.shape)
        torch.testing.assert_close(Gs.sum(0), expected, rtol=1e-9, atol=atol)

        w = torch.rand(G.shape[0], dtype=G.dtype) - 0.3
        model.zero_grad(set_to_none=True)
        engine.gramian(_losses(model, forward, shape))
        engine.backward(w)
        got = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}

    model.zero_grad(set_to_none=True)
    losses = _losses(model, forward, shape)
    losses.backward(w.reshape(losses.shape))
    float32_inside = HF_ZOO[name].float32_inside(attn)
    scale = max(p.grad.abs().max() for p in model.parameters() if p.grad is not None)
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:  # e.g. the pooler of BertModel / ViTModel under last_hidden_state
            assert got[n] is None or torch.all(got[n] == 0), n
        elif float32_inside:
            torch.testing.assert_close(got[n], p.grad, rtol=1e-5, atol=1e-7 * scale,
                                       msg=f"{n}: {float32_inside}")
        else:
            torch.testing.assert_close(got[n], p.grad, rtol=1e-9, atol=1e-12, msg=n)


@pytest.mark.parametrize("shape", ["instance", "multitask"])
@pytest.mark.parametrize("reentrant", [False, True])
@pytest.mark.parametrize("name", ["gpt2_positions", "llama", "vit"])
def test_gradient_checkpointing(name, reentrant, shape):
    # the forward of each layer runs again during the backward; the reference is taken
    # without checkpointing (torch.func does not go through it), on the same weights
    model, forward = _setup(name, "eager")
    model.train()  # transformers checkpoints in training mode only (dropout is 0)
    expected = reference_gramian(model, lambda: _losses(model, forward, shape))
    # activation_checkpointing_enable from transformers 5, gradient_checkpointing_enable before
    enable = (getattr(model, "activation_checkpointing_enable", None)
              or model.gradient_checkpointing_enable)
    enable({"use_reentrant": reentrant})
    with gw.autogram.Engine(model, batch_dim=batch_dim_of(shape)) as engine:
        if reentrant:
            # torch refuses torch.autograd.grad through reentrant checkpointing; the engine
            # says where and what to do in a note
            with pytest.raises(RuntimeError, match="use_reentrant") as info:
                engine.gramian(_losses(model, forward, shape))
            assert any("use_reentrant=False, which is exact" in n
                       for n in getattr(info.value, "__notes__", []))
            return
        G = engine.gramian(_losses(model, forward, shape))
    torch.testing.assert_close(G, expected, rtol=1e-9, atol=1e-12 * expected.abs().max())
