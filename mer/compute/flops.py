"""FLOP accounting: one function derives the costs, one counter keeps the running totals by kind."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple


class FlopRates(NamedTuple):
    """Costs from `estimate_flops` (all exact integers)."""

    train_per_token: int
    """FLOPs to train on one token (forward + backward), new or replayed."""
    eval_per_token: int
    """FLOPs to evaluate one token (forward only)."""
    reptile_per_step: int
    """FLOPs of one Reptile interpolation over all trainable parameters."""


def estimate_flops(
    n_params: int, n_params_nonembedding: int, n_layer: int, seq_len: int, d_model: int, vocab_size: int
) -> FlopRates:
    """FLOPs per trained token, per evaluated token and per Reptile step of a Llama-style model.

    Derivation (Kaplan et al. 2020, sec. 2.1; nanochat's `GPT.estimate_flops`). A multiply-add is
    2 FLOPs, so a matmul of a token's d_in activations by a d_in x d_out weight costs 2*d_in*d_out
    in the forward pass. The backward pass computes the gradient with respect to the activations
    and with respect to the weights, one matmul each of the same size: 4*d_in*d_out. Forward +
    backward = 6 FLOPs per weight per token. Hence, per token:

    * weight matmuls of the transformer blocks: 6 * N_nonemb, where N_nonemb counts every
      parameter except the input embedding and the output projection (`mer.model.llama.count_parameters`).
      The norm gains are in N_nonemb but cost O(d) not O(d^2); the overcount is negligible.
    * attention scores and their weighted sum (no weights): a token's query against seq_len keys
      is 2*seq_len*d_model FLOPs for QK^T and as much for AV, 4*seq_len*d_model per layer; with the
      causal mask a token attends on average to half the context, so 2*seq_len*d_model forward,
      times 3 for forward + backward: 6 * n_layer * seq_len * d_model (Kaplan's convention; nanochat
      counts the full square, twice this).
    * the output projection d_model -> vocab: 6 * d_model * vocab. The input embedding is a table
      lookup and costs nothing.

    So training costs `C_train = 6*N_nonemb + 6*n_layer*seq_len*d_model + 6*d_model*vocab` per
    token. A replayed token goes through the same forward and backward pass as a new one and costs
    the same. Evaluation is the forward pass only, a third: `C_eval = C_train / 3` (exact, every
    term has a factor 6). RMSNorm, SiLU, RoPE, softmax and the loss are O(d) per token and ignored.

    A Reptile step `theta <- theta_anchor + eps*(theta - theta_anchor)`, then `theta_anchor <- theta`,
    costs a subtraction, a scaling and an addition per trainable parameter: `3 * N` with N the
    total parameter count (the copy into the anchor moves memory but does no arithmetic).
    """
    for name, value in (("n_params", n_params), ("n_params_nonembedding", n_params_nonembedding),
                        ("n_layer", n_layer), ("seq_len", seq_len), ("d_model", d_model),
                        ("vocab_size", vocab_size)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"estimate_flops: {name}={value!r} must be a positive integer")
    train = 6 * n_params_nonembedding + 6 * n_layer * seq_len * d_model + 6 * d_model * vocab_size
    return FlopRates(train_per_token=train, eval_per_token=train // 3, reptile_per_step=3 * n_params)


@dataclass
class FlopCounter:
    """Running totals of tokens and FLOPs by kind; goes into checkpoints and every metrics record.

    Totals are Python integers (exact at any scale); `as_dict` reports FLOPs as floats.
    """

    rates: FlopRates
    """Per-token and per-step costs from `estimate_flops`."""
    tokens_new: int = 0
    """Tokens of new data trained on."""
    tokens_replay: int = 0
    """Tokens of replayed data trained on."""
    tokens_eval: int = 0
    """Tokens evaluated."""
    reptile_steps: int = 0
    """Reptile interpolations done."""
    flops_new: int = 0
    """FLOPs spent training on new data."""
    flops_replay: int = 0
    """FLOPs spent training on replayed data."""
    flops_eval: int = 0
    """FLOPs spent on evaluation."""
    flops_reptile: int = 0
    """FLOPs spent on Reptile steps."""

    def __post_init__(self) -> None:
        if not isinstance(self.rates, FlopRates):
            self.rates = FlopRates(*self.rates)

    @property
    def flops_train(self) -> int:
        """The x-axis of compute plots: new + replay + Reptile (evaluation excluded)."""
        return self.flops_new + self.flops_replay + self.flops_reptile

    def add_train_step(self, n_new_tokens: int, n_replay_tokens: int = 0) -> None:
        """Count one optimizer step that trained on `n_new_tokens` new and `n_replay_tokens` replayed tokens."""
        if n_new_tokens < 0 or n_replay_tokens < 0:
            raise ValueError(f"token counts must be >= 0, got new={n_new_tokens}, replay={n_replay_tokens}")
        self.tokens_new += int(n_new_tokens)
        self.tokens_replay += int(n_replay_tokens)
        self.flops_new += int(n_new_tokens) * self.rates.train_per_token
        self.flops_replay += int(n_replay_tokens) * self.rates.train_per_token

    def add_eval(self, n_tokens: int, backward: bool = False) -> None:
        """Count an evaluation over `n_tokens` tokens; with `backward` (the gradients of eval.grad_alignment) each
        token also went through a backward pass and costs a trained token's FLOPs."""
        if n_tokens < 0:
            raise ValueError(f"n_tokens={n_tokens} must be >= 0")
        self.tokens_eval += int(n_tokens)
        rate = self.rates.train_per_token if backward else self.rates.eval_per_token
        self.flops_eval += int(n_tokens) * rate

    def add_reptile_step(self) -> None:
        """Count one Reptile interpolation."""
        self.reptile_steps += 1
        self.flops_reptile += self.rates.reptile_per_step

    def as_dict(self) -> dict[str, float | int]:
        """The totals as the fields of a metrics record (FLOPs as floats, tokens as ints)."""
        return {
            "tokens_new": self.tokens_new,
            "tokens_replay": self.tokens_replay,
            "tokens_eval": self.tokens_eval,
            "reptile_steps": self.reptile_steps,
            "flops_new": float(self.flops_new),
            "flops_replay": float(self.flops_replay),
            "flops_eval": float(self.flops_eval),
            "flops_reptile": float(self.flops_reptile),
            "flops_train": float(self.flops_train),
        }

    def state_dict(self) -> dict[str, int]:
        state = asdict(self)
        del state["rates"]  # a property of the model, rebuilt by the caller
        return state

    def load_state_dict(self, state: dict[str, int]) -> None:
        for key in ("tokens_new", "tokens_replay", "tokens_eval", "reptile_steps",
                    "flops_new", "flops_replay", "flops_eval", "flops_reptile"):
            setattr(self, key, int(state[key]))
