"""A faster GRU for CPU training: `nn.GRU`'s layers and weights, its work done in another order.

On the CPU, `nn.GRU` over a packed batch multiplies every time step's input by the input
weights on its own and leaves back-propagation through time to autograd: per step, per
layer and direction, two small matrix products forward, four backward, and an accumulation
of each weight gradient. `gru_layers` instead
- projects the whole padded sequence of both directions with one matrix product per layer;
- runs the reverse direction on each utterance reversed within its own length, so that
  padding always comes last and never reaches a valid frame, and both directions advance
  together, one batched product per step;
- back-propagates through time by hand (`_GRUScan`): one batched product per step, and the
  recurrent weights' gradient as one product over all steps at the end.
Same function, same parameters (a checkpoint does not know which ran): outputs and
gradients match `nn.GRU`'s to float rounding (tests/test_gru_scan.py).
`bench/train_throughput.py` times training steps with it and, with `--nn-gru`, with the packed
nn.GRU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _GRUScan(torch.autograd.Function):
    """The recurrence of one GRU layer, D directions at once, from pre-computed inputs.

    forward(gi (T, D, B, 3H) = W_ih x + b_ih, w_hh (D, 3H, H), b_hh (D, 3H)) -> h (T, D, B, H),
    gates in nn.GRU's order (r, z, n), zero initial state.
    """

    @staticmethod
    def forward(ctx, gi: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
        steps, dirs, batch, h3 = gi.shape
        hid = h3 // 3
        # pre[t] = (gi_r + b_hr, gi_z + b_hz, b_hn): one baddbmm per step then gives the r/z
        # pre-activations and W_hn h + b_hn together.
        pre = torch.empty_like(gi)
        torch.add(gi[..., : 2 * hid], b_hh[:, None, : 2 * hid], out=pre[..., : 2 * hid])
        pre[..., 2 * hid :] = b_hh[:, None, 2 * hid :]
        gates = torch.empty_like(gi)  # (T, D, B, 3H): r, z after the sigmoid; W_hn h + b_hn
        news = gi.new_empty(steps, dirs, batch, hid)  # n
        hs = gi.new_empty(steps + 1, dirs, batch, hid)  # hs[0] = 0, hs[t + 1] = output t
        hs[0].zero_()
        w_t = w_hh.transpose(1, 2)  # (D, H, 3H)
        for t in range(steps):
            g = torch.baddbmm(pre[t], hs[t], w_t, out=gates[t])  # (D, B, 3H)
            g[..., : 2 * hid].sigmoid_()
            r, z = g[..., :hid], g[..., hid : 2 * hid]
            n = torch.addcmul(gi[t, ..., 2 * hid :], r, g[..., 2 * hid :], out=news[t]).tanh_()
            torch.addcmul(n, z, hs[t] - n, out=hs[t + 1])  # (1 - z) n + z h
        ctx.save_for_backward(w_hh, hs, gates, news)
        return hs[1:]

    @staticmethod
    def backward(ctx, d_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w_hh, hs, gates, news = ctx.saved_tensors
        steps, dirs, batch, hid = d_out.shape
        r, z, gh_n = gates[..., :hid], gates[..., hid : 2 * hid], gates[..., 2 * hid :]
        # Everything that does not depend on the incoming gradient, for all steps at once.
        to_an = (1 - z) * (1 - news * news)  # d(pre-tanh of n) / dh'
        to_az = (hs[:-1] - news) * z * (1 - z)  # d(pre-sigmoid of z) / dh'
        to_ar = gh_n * r * (1 - r)  # d(pre-sigmoid of r) / d(pre-tanh of n)
        d_gh = torch.empty_like(gates)  # (T, D, B, 3H): gradient of W_hh h + b_hh
        d_an = torch.empty_like(news)  # gradient of the pre-tanh of n (= of gi_n)
        dh = torch.zeros_like(d_out[0])  # (D, B, H)
        for t in range(steps - 1, -1, -1):
            dh = dh + d_out[t]
            a_n = torch.mul(dh, to_an[t], out=d_an[t])
            torch.mul(a_n, to_ar[t], out=d_gh[t, ..., :hid])
            torch.mul(dh, to_az[t], out=d_gh[t, ..., hid : 2 * hid])
            torch.mul(a_n, r[t], out=d_gh[t, ..., 2 * hid :])
            dh = torch.baddbmm(dh * z[t], d_gh[t], w_hh)  # (D, B, H)
        d_gi = torch.cat((d_gh[..., : 2 * hid], d_an), dim=-1)
        flat_d = d_gh.permute(1, 3, 0, 2).reshape(dirs, 3 * hid, steps * batch)
        flat_h = hs[:-1].permute(1, 0, 2, 3).reshape(dirs, steps * batch, hid)
        return d_gi, torch.bmm(flat_d, flat_h), d_gh.sum(dim=(0, 2))


def usable(rnn: nn.Module, x: torch.Tensor) -> bool:
    """Whether `gru_layers` should run `rnn` on `x`: a batch-first GRU training in fp32 on the CPU.

    Elsewhere `nn.GRU` runs: cuDNN on a GPU, the packed sequence where no gradient is needed
    (evaluation, transcription), and in traced or exported graphs (ONNX).
    """
    return (
        isinstance(rnn, nn.GRU)
        and rnn.batch_first
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.compiler.is_compiling()
        and not torch.onnx.is_in_onnx_export()
    )


def reversal_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) frame indices that reverse each utterance within its length; padding stays put.

    >>> reversal_index(torch.tensor([3, 1]), 4)
    tensor([[2, 1, 0, 3],
            [0, 1, 2, 3]])
    """
    t = torch.arange(steps, device=lengths.device)
    back = lengths[:, None] - 1 - t[None, :]
    return torch.where(back >= 0, back, t[None, :])


def _reverse(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, T, C) with each utterance reversed within its length (`reversal_index`)."""
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))


def gru_layers(rnn: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """What `rnn` gives for a packed `x`: (B, T, input) -> (B, T, H * directions), zero padding.

    `lengths` (B,) are the valid frames of each utterance; initial states are zero. Dropout
    between layers as nn.GRU applies it (in training mode, not after the last layer).
    """
    batch, steps, _ = x.shape
    dirs = 2 if rnn.bidirectional else 1
    hid = rnn.hidden_size
    lengths = lengths.to(x.device)
    index = reversal_index(lengths, steps)
    valid = torch.arange(steps, device=x.device)[None, :] < lengths[:, None]  # (B, T)
    suffixes = ["", "_reverse"][:dirs]
    for layer in range(rnn.num_layers):
        names = [f"l{layer}{s}" for s in suffixes]
        w_ih = torch.cat([getattr(rnn, f"weight_ih_{n}") for n in names])  # (D * 3H, in)
        b_ih = torch.cat([getattr(rnn, f"bias_ih_{n}") for n in names])
        w_hh = torch.stack([getattr(rnn, f"weight_hh_{n}") for n in names])  # (D, 3H, H)
        b_hh = torch.stack([getattr(rnn, f"bias_hh_{n}") for n in names])  # (D, 3H)
        gi = F.linear(x, w_ih, b_ih).view(batch, steps, dirs, 3 * hid)
        per_dir = [gi[:, :, 0]]  # (B, T, 3H) each
        if dirs == 2:
            per_dir.append(_reverse(gi[:, :, 1], index))
        gi = torch.stack(per_dir, dim=0).permute(2, 0, 1, 3).contiguous()  # (T, D, B, 3H)
        h = _GRUScan.apply(gi, w_hh, b_hh).permute(1, 2, 0, 3)  # (D, B, T, H)
        outs = [h[0]] if dirs == 1 else [h[0], _reverse(h[1], index)]
        x = torch.cat(outs, dim=-1)  # (B, T, D * H); padding frames hold values never used
        if layer < rnn.num_layers - 1 and rnn.dropout > 0:
            x = F.dropout(x, rnn.dropout, rnn.training)
    return x * valid[:, :, None]  # zero padding, as pad_packed_sequence gives
