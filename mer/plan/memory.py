"""Memory per device of a training run, by part, for one process, DDP or FSDP (docs/plan.md).

The persistent state is exact arithmetic on the parameter count N (all fp32, as the trainer keeps it):
weights 4N, gradients 4N, AdamW's two moments 8N, the Reptile anchor 4N (only when Reptile is on, on
`reptile_anchor_device`). DDP replicates all of it; FSDP divides it by the world size and adds the
working copy of the blocks it gathers (two blocks: the one computing and the one prefetched) and of the
embedding and output head (gathered by the root module).

Activations are what autograd saves for the backward pass of one micro-batch (b = B / world /
grad_accum rows of T tokens), counted in floats per token for the Hugging Face Llama blocks with SDPA
attention, measured with `torch.autograd.graph.saved_tensors_hooks` on models of varied shape (one
dimension changed at a time; tests/test_plan.py checks the formula against a count on a built model):

    L * (8 d + 2 kv + 4 d_ff + 6) + 3 d + V + 5

(kv = n_kv_head * head_dim; the V term is the fp32 logits). The backward pass of the loss then holds
two more fp32 [b, T, V] tensors (the gradient of the log-softmax and of the logits) while the saved
activations are still alive, and the weight gradients fill up as the activations are freed; the
estimate adds both (an upper bound). With activation checkpointing only each block's input is kept
(d per token and block) and one block's activations are recomputed at a time. With bf16 autocast the
block activations are bf16 (2 bytes; the RMSNorm upcasts are ignored), the logits are bf16 and their
fp32 copy is kept for the loss, and autocast holds a bf16 copy of every weight it casts (2 bytes per
non-embedding and head parameter).

Evaluation runs without gradients on `eval.batch_size` windows: its peak is the persistent state (the
gradients are freed after every optimizer step) plus the logits and the log-softmax of one batch.
The activations counted are the larger of the two phases; every other part is added in full (the
gradients and the activations of a step are never all alive at once).

What a process holds is more than its live tensors. On the CPU, glibc's allocator keeps freed activation
memory in its heap once its mmap threshold has grown (after the first step), fragmentation adds to it, and
the first forward, backward and evaluation load kernels and scratch buffers. Measured on CPU runs
(tests/test_plan.py, docs/plan.md) the peak resident set grew by about 1.5 times the activations plus 35 MiB
more than the live tensors: `RUNTIME` holds that factor and constant, and `allocator` in the estimate is
the difference. On a GPU the caching allocator is taken to hold the activations as they are, and the
CUDA context and library workspaces to take about 0.5 GiB; that part is not measured by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from mer.model.llama import ModelConfig

FP32, BF16 = 4, 2
MODES = ("single", "ddp", "fsdp")
RUNTIME = {"cpu": (1.5, 35 * 2**20), "cuda": (1.0, 2**29)}
"""Device kind -> (resident bytes per live activation byte, constant bytes of the runtime): module docstring."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one process holds at its peak, by part (all ints)."""

    mode: str
    """single | ddp | fsdp."""
    world_size: int
    weights: int
    gradients: int
    adamw: int
    reptile_anchor: int
    """On `anchor_on_device` when True, in host memory otherwise."""
    activations: int
    """Peak of the training step (saved activations and the loss's backward temporaries) or of an
    evaluation batch, whichever is larger."""
    working_copies: int
    """FSDP's gathered blocks and autocast's bf16 weight copies (0 in fp32 without sharding)."""
    anchor_on_device: bool
    allocator: int = 0
    """What the process holds beyond its live tensors: allocator retention and the runtime (`RUNTIME`)."""
    evaluation_peak: bool = False
    """Whether `activations` is an evaluation batch's (eval.batch_size sets it), not the training step's."""

    @property
    def device_total(self) -> int:
        """Bytes on the training device (the GPU, or host memory for a CPU run)."""
        anchor = self.reptile_anchor if self.anchor_on_device else 0
        return (self.weights + self.gradients + self.adamw + anchor + self.activations + self.working_copies
                + self.allocator)

    @property
    def host_anchor(self) -> int:
        """Bytes of the Reptile anchor kept in host memory (reptile_anchor_device=cpu on a GPU run)."""
        return 0 if self.anchor_on_device else self.reptile_anchor


def activation_floats_per_token(model: ModelConfig, vocab_size: int) -> int:
    """Floats autograd saves per token of a training micro-batch (the module docstring's formula)."""
    d, kv = model.d_model, model.kv_heads * model.head_dim
    return model.n_layer * (8 * d + 2 * kv + 4 * model.d_ff + 6) + 3 * d + vocab_size + 5


def _layer_floats_per_token(model: ModelConfig) -> int:
    d, kv = model.d_model, model.kv_heads * model.head_dim
    return 8 * d + 2 * kv + 4 * model.d_ff + 6


def training_activation_bytes(model: ModelConfig, vocab_size: int, micro_rows: int, precision: str,
                              activation_checkpointing: bool) -> int:
    """Peak activation bytes of one training micro-batch: saved tensors plus the loss's backward temporaries."""
    tokens = micro_rows * model.seq_len
    act = BF16 if precision == "bf16" else FP32
    layer = _layer_floats_per_token(model)
    if activation_checkpointing:  # block inputs kept, one block recomputed at a time
        blocks = (model.n_layer * model.d_model + layer) * act
    else:
        blocks = model.n_layer * layer * act
    head = (3 * model.d_model + 5) * act
    logits = vocab_size * FP32 + (vocab_size * BF16 if precision == "bf16" else 0)  # bf16 logits + fp32 copy
    backward_of_loss = 2 * vocab_size * FP32  # gradients of the log-softmax and of the logits
    return tokens * (blocks + head + logits + backward_of_loss)


def evaluation_bytes(model: ModelConfig, vocab_size: int, eval_rows: int, context: int, precision: str) -> int:
    """Peak bytes of one evaluation batch (no gradients): its logits, their fp32 copy and the log-softmax."""
    tokens = eval_rows * context
    logits = vocab_size * (BF16 + FP32 if precision == "bf16" else FP32)
    return tokens * (logits + vocab_size * FP32 + 4 * model.d_model * FP32)


def estimate_memory(model: ModelConfig, vocab_size: int, n_params: int, n_params_nonembedding: int, *,
                    batch_size: int, grad_accum: int, eval_batch_size: int, eval_context: int, precision: str,
                    activation_checkpointing: bool, reptile_active: bool, anchor_on_device: bool,
                    mode: str = "single", world_size: int = 1, device_kind: str = "cpu") -> MemoryEstimate:
    """Peak bytes per process of training `model` (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: choose one of {MODES}")
    if mode == "single":
        world_size = 1
    if world_size < 1:
        raise ValueError(f"world_size={world_size} must be >= 1")
    shard = world_size if mode == "fsdp" else 1
    n = n_params
    weights, gradients, adamw = FP32 * n // shard, FP32 * n // shard, 2 * FP32 * n // shard
    anchor = FP32 * n // shard if reptile_active else 0
    micro_rows = max(1, batch_size // world_size // grad_accum)
    working = 0
    head_and_embedding = n - n_params_nonembedding
    if mode == "fsdp" and world_size > 1:
        block = n_params_nonembedding // model.n_layer
        gathered_bytes = BF16 if precision == "bf16" else FP32
        working += (2 * block + head_and_embedding) * gathered_bytes
    elif precision == "bf16":  # autocast's bf16 copies of the matmul weights (not of the embedding table)
        working += (n_params_nonembedding + head_and_embedding // 2) * BF16
    train = training_activation_bytes(model, vocab_size, micro_rows, precision, activation_checkpointing)
    evaluation = evaluation_bytes(model, vocab_size, eval_batch_size, eval_context, precision)
    activations = max(train, evaluation)  # the two phases never overlap
    factor, constant = RUNTIME[device_kind]
    allocator = int((factor - 1) * activations) + constant
    return MemoryEstimate(mode=mode, world_size=world_size, weights=weights, gradients=gradients, adamw=adamw,
                          reptile_anchor=anchor, activations=activations, working_copies=working,
                          anchor_on_device=anchor_on_device, allocator=allocator, evaluation_peak=evaluation > train)
