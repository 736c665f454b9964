"""Forward passes over a fixed input set that skip everything computed before one module.

The MRC search (:mod:`lit_robust.methods.rift.criticality`) perturbs the weight of a single
module while the model stays in eval mode and the inputs stay fixed. Every submodule that has
finished running before that module starts therefore produces the same output in every pass:
those outputs are computed once, stored, and returned from then on without running the
submodules. Only the part of the network from the perturbed module on is recomputed.

Which submodules can be skipped is found on a small probe batch, for any architecture:

1. a traced forward records when every submodule starts and finishes and what it returns;
2. the candidates are the submodules called exactly once that finish before the target
   starts and return one tensor with the batch as first dimension; the outermost ones are
   replaced;
3. a backward pass from the logits finds which replaced outputs the rest of the network
   actually reads ("live"); the others are replaced by zeros and never stored;
4. the probe's logits with the replacements must equal the original logits, otherwise the
   target is evaluated with plain forward passes.

The stored outputs for the next module are computed through the previous module's runner, so
over a whole search (modules in execution order) the prefixes cost about one forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import count
from typing import Any

import torch
from torch import Tensor, nn

#: Largest amount of stored activations (bytes) for one target module; beyond it the plain
#: forward pass is used for that module.
REUSE_MEMORY_LIMIT_BYTES = 4 * 2**30


class ForwardRunner:
    """``runner(indices)`` returns ``model(inputs[indices])``: the plain forward pass.

    Args:
        model: the classifier.
        inputs: the fixed input set, on the model's device.
    """

    def __init__(self, model: nn.Module, inputs: Tensor) -> None:
        self.model = model
        self.inputs = inputs

    @property
    def reuses_prefix(self) -> bool:
        """Whether stored outputs replace part of the forward pass."""
        return False

    @contextmanager
    def active(self) -> Iterator[ForwardRunner]:
        """Context in which :meth:`__call__` may be used (nothing to set up here)."""
        yield self

    def __call__(self, indices: Tensor) -> Tensor:
        return self.model(self.inputs.index_select(0, indices))


class PrefixReuseRunner(ForwardRunner):
    """A :class:`ForwardRunner` whose skipped submodules return stored outputs.

    Build it with :func:`build_runner`. Calls are only valid inside :meth:`active`, which
    swaps the skipped submodules' ``forward`` for the stored outputs and restores it after.

    Args:
        model: the classifier.
        inputs: the fixed input set.
        live: ``{submodule: outputs for every input}`` read by the rest of the network.
        dead: ``{submodule: (per-example shape, dtype)}`` skipped and replaced by zeros.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: Tensor,
        live: dict[nn.Module, Tensor],
        dead: dict[nn.Module, tuple[torch.Size, torch.dtype]],
    ) -> None:
        super().__init__(model, inputs)
        self.live = live
        self.dead = dead
        self._indices: Tensor | None = None

    @property
    def reuses_prefix(self) -> bool:
        return True

    @contextmanager
    def active(self) -> Iterator[PrefixReuseRunner]:
        replacements: dict[nn.Module, Callable[..., Tensor]] = {}
        for module, store in self.live.items():
            replacements[module] = self._stored_output(store)
        for module, (shape, dtype) in self.dead.items():
            replacements[module] = self._zeros(shape, dtype)
        with _replaced_forwards(replacements):
            yield self

    def __call__(self, indices: Tensor) -> Tensor:
        self._indices = indices
        try:
            return super().__call__(indices)
        finally:
            self._indices = None

    def _current(self) -> Tensor:
        if self._indices is None:
            raise RuntimeError("a PrefixReuseRunner is only callable inside `with runner.active()`")
        return self._indices

    def _stored_output(self, store: Tensor) -> Callable[..., Tensor]:
        def forward(*args: Any, **kwargs: Any) -> Tensor:
            return store.index_select(0, self._current().to(store.device))

        return forward

    def _zeros(self, shape: torch.Size, dtype: torch.dtype) -> Callable[..., Tensor]:
        def forward(*args: Any, **kwargs: Any) -> Tensor:
            indices = self._current()
            return torch.zeros((len(indices), *shape), dtype=dtype, device=self.inputs.device)

        return forward


class _StopForward(Exception):
    """Raised by a pre-hook to end a forward pass once the stored part has run."""


@contextmanager
def _replaced_forwards(replacements: dict[nn.Module, Callable[..., Tensor]]) -> Iterator[None]:
    previous = {m: vars(m).get("forward") for m in replacements}
    for module, forward in replacements.items():
        module.forward = forward
    try:
        yield
    finally:
        for module, old in previous.items():
            if old is None:
                del module.forward
            else:
                module.forward = old


def _trace(
    model: nn.Module, x: Tensor
) -> tuple[dict[nn.Module, list[int]], dict[nn.Module, list[int]], dict[nn.Module, Any], Tensor]:
    """Start/finish event numbers, the last output of every submodule, and the logits."""
    starts: dict[nn.Module, list[int]] = {}
    ends: dict[nn.Module, list[int]] = {}
    outputs: dict[nn.Module, Any] = {}
    events = count()

    def on_start(module: nn.Module, _args: Any) -> None:
        starts.setdefault(module, []).append(next(events))

    def on_end(module: nn.Module, _args: Any, output: Any) -> None:
        ends.setdefault(module, []).append(next(events))
        outputs[module] = output.detach().clone() if isinstance(output, Tensor) else output

    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(on_start))
            handles.append(module.register_forward_hook(on_end))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return starts, ends, outputs, logits


def _outermost_skippable(
    model: nn.Module, target: nn.Module, probe: Tensor
) -> tuple[dict[nn.Module, Tensor], Tensor] | None:
    """The outermost submodules that finish before ``target`` starts, with their probe outputs."""
    starts, ends, outputs, logits = _trace(model, probe)
    if target not in starts:
        return None
    target_start = starts[target][0]
    eligible: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        out = outputs.get(module)
        if (
            name
            and len(starts.get(module, [])) == 1
            and len(ends.get(module, [])) == 1
            and ends[module][0] < target_start
            and isinstance(out, Tensor)
            and out.dim() > 0
            and out.shape[0] == probe.shape[0]
        ):
            eligible[name] = module
    parts = {name: name.split(".") for name in eligible}
    outermost = {
        module: outputs[module]
        for name, module in eligible.items()
        if not any(".".join(parts[name][:i]) in eligible for i in range(1, len(parts[name])))
    }
    return outermost, logits


def _live_modules(model: nn.Module, probe: Tensor, skipped: dict[nn.Module, Tensor]) -> set:
    """The skipped submodules whose outputs the logits depend on (found by autograd)."""
    leaves = {m: out.detach().clone().requires_grad_(out.is_floating_point())
              for m, out in skipped.items()}

    def constant(value: Tensor) -> Callable[..., Tensor]:
        return lambda *args, **kwargs: value.clone()  # a copy, so in-place ops may follow

    with _replaced_forwards({m: constant(v) for m, v in leaves.items()}), torch.enable_grad():
        logits = model(probe)
    live = {m for m, leaf in leaves.items() if not leaf.requires_grad}
    differentiable = [(m, leaf) for m, leaf in leaves.items() if leaf.requires_grad]
    if differentiable and logits.requires_grad:
        grads = torch.autograd.grad(
            logits.float().sum(), [leaf for _, leaf in differentiable], allow_unused=True
        )
        live |= {m for (m, _), g in zip(differentiable, grads, strict=True) if g is not None}
    return live


def _store_outputs(
    target: nn.Module, modules: list[nn.Module], through: ForwardRunner, batch_size: int
) -> dict[nn.Module, Tensor] | None:
    """Outputs of ``modules`` for every input, running each batch only up to ``target``.

    The batches run through ``through``: the plain model, or the runner of the previously
    searched module, which already skips everything before that module. Returns ``None`` when
    a module did not run for every batch (it was inside a part that ``through`` skips).
    """
    chunks: dict[nn.Module, list[Tensor]] = {m: [] for m in modules}

    def stop(_module: nn.Module, _args: Any) -> None:
        raise _StopForward

    def keeper(module: nn.Module) -> Callable[..., None]:
        def keep(_module: nn.Module, _args: Any, output: Tensor) -> None:
            chunks[module].append(output.detach().clone())

        return keep

    handles = [target.register_forward_pre_hook(stop)]
    handles += [m.register_forward_hook(keeper(m)) for m in modules]
    count = len(through.inputs)
    batches = range(0, count, batch_size)
    try:
        with through.active(), torch.no_grad():
            for start in batches:
                indices = torch.arange(start, min(start + batch_size, count),
                                       device=through.inputs.device)
                try:
                    through(indices)
                except _StopForward:
                    pass
    finally:
        for handle in handles:
            handle.remove()
    if any(len(parts) != len(batches) for parts in chunks.values()):
        return None
    return {m: torch.cat(parts) for m, parts in chunks.items()}


def _agree(stores: dict[nn.Module, Tensor] | None, probe_outputs: dict[nn.Module, Tensor]) -> bool:
    """Whether the stored outputs of the first inputs equal those of the plain probe pass."""
    if stores is None:
        return False
    for module, store in stores.items():
        expected = probe_outputs[module]
        scale = float(expected.abs().max()) + 1.0 if expected.is_floating_point() else 1.0
        if not torch.allclose(store[: len(expected)].to(expected.dtype), expected, rtol=1e-4,
                              atol=1e-5 * scale):
            return False
    return True


def build_runner(
    model: nn.Module,
    target: nn.Module,
    inputs: Tensor,
    batch_size: int,
    reuse_prefix: bool = True,
    memory_limit: int = REUSE_MEMORY_LIMIT_BYTES,
    previous: ForwardRunner | None = None,
) -> ForwardRunner:
    """A runner for ``model`` over ``inputs`` that recomputes only from ``target`` on.

    The model must be in eval mode and stay so, and nothing before ``target`` may change
    while the runner is used (the MRC search perturbs ``target``'s weight only).

    Args:
        model: the classifier.
        target: the submodule whose parameters will change.
        inputs: the fixed input set, on the model's device (the first two are the probe).
        batch_size: batch size used to compute the stored outputs.
        reuse_prefix: ``False`` always returns the plain :class:`ForwardRunner`.
        memory_limit: the most bytes of stored outputs; above it the plain runner is used.
        previous: the runner of the module searched before, over the same model and inputs,
            with that module's weight restored. The stored outputs are then computed through
            it, so that only the part between the two modules runs (checked against the
            plain probe pass, and recomputed plainly if they differ).

    Returns:
        A :class:`PrefixReuseRunner` when part of the network can be skipped and the probe
        check passes, otherwise a :class:`ForwardRunner`.
    """
    plain = ForwardRunner(model, inputs)
    probe = inputs[:2]
    if not reuse_prefix or len(probe) < 2:
        return plain
    found = _outermost_skippable(model, target, probe)
    if found is None or not found[0]:
        return plain
    skipped, reference_logits = found
    try:
        live = _live_modules(model, probe, skipped)
    except RuntimeError:
        return plain
    per_example = sum(skipped[m][0].numel() * skipped[m].element_size() for m in live)
    if per_example * len(inputs) > memory_limit:
        return plain
    dead = {m: (out.shape[1:], out.dtype) for m, out in skipped.items() if m not in live}
    probe_runner = PrefixReuseRunner(model, probe, {m: skipped[m] for m in live}, dead)
    try:
        with probe_runner.active(), torch.no_grad():
            logits = probe_runner(torch.arange(len(probe), device=probe.device))
    except RuntimeError:
        return plain
    scale = float(reference_logits.abs().max()) + 1.0
    if not torch.allclose(logits, reference_logits, rtol=1e-4, atol=1e-5 * scale):
        return plain
    stores = None
    if previous is not None and previous.inputs is inputs:
        stores = _store_outputs(target, list(live), previous, batch_size)
    if not _agree(stores, {m: skipped[m] for m in live}):
        stores = _store_outputs(target, list(live), plain, batch_size)
    if stores is None:
        return plain
    return PrefixReuseRunner(model, inputs, stores, dead)
