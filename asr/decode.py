"""CTC decoding: batched greedy search (best path, then collapse repeats and drop blanks)."""

from __future__ import annotations

import torch


def ctc_greedy_decode(
    log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0
) -> list[list[int]]:
    """(B, T, V) log-probs and (B,) lengths -> B lists of token ids.

    >>> lp = torch.log(torch.tensor([[[.1, .9, 0], [.1, .9, 0], [.9, .1, 0], [.1, .9, 0]]]))
    >>> ctc_greedy_decode(lp, torch.tensor([4]))
    [[1, 1]]
    """
    best = log_probs.argmax(dim=-1)  # (B, T)
    t = best.shape[1]
    valid = torch.arange(t, device=best.device)[None, :] < lengths.to(best.device)[:, None]
    changed = torch.ones_like(valid)
    changed[:, 1:] = best[:, 1:] != best[:, :-1]
    keep = (valid & changed & (best != blank)).cpu()
    best = best.cpu()
    return [best[b][keep[b]].tolist() for b in range(best.shape[0])]
