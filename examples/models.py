"""The PyTorch modules behind the bundled examples (fixed seeds, no downloads)."""

from __future__ import annotations

import torch


class Entropy(torch.nn.Module):
    """torch.special.entr: the TorchScript exporter cannot express it (case 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.entr(x)


class RowMean(torch.nn.Module):
    """A mean over dim 1, exported with a dynamic batch axis (case 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mean(x, dim=1)


class SignBranch(torch.nn.Module):
    """Data-dependent control flow written with torch.cond: exports as an If (case 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.mean() > 0, lambda x: x * 2, lambda x: x + 1, (x,))


class SignBranchPython(torch.nn.Module):
    """The same computation as a Python `if`: the TorchScript tracer bakes in one branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:
            return x * 2
        return x + 1


class Sinc(torch.nn.Module):
    """torch.sinc: another op the TorchScript exporter lacks; fixed by the user rule in user_rules/."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sinc(x) * 3.0
