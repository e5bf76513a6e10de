"""Straightforward PyTorch seq2seq models used as the baseline in tools/bench_train.py.

Written the way a tutorial would write them, without seqkit: a packed bidirectional LSTM
encoder and a Luong-general attention decoder. ``BareStepwise`` runs the decoder one step at a
time with input feeding (one ``nn.LSTM`` call per target position); ``BareFused`` runs the
decoder LSTM once over the whole target and attends for all steps in one batched call.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class BareEncoder(nn.Module):
    def __init__(self, vocab: int, emb: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab, emb, padding_idx=0)
        self.rnn = nn.LSTM(emb, hidden, layers, batch_first=True, bidirectional=True, dropout=dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, src, lengths):
        packed = pack_padded_sequence(self.drop(self.embed(src)), lengths, batch_first=True, enforce_sorted=False)
        out, (h, c) = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        # (2L, B, H) -> (L, B, 2H): concatenate directions per layer
        h = torch.cat([h[0::2], h[1::2]], dim=-1)
        c = torch.cat([c[0::2], c[1::2]], dim=-1)
        return out, (h, c)


class _BareDecoderBase(nn.Module):
    def __init__(self, vocab, emb, enc_size, hidden, layers, dropout, input_feeding):
        super().__init__()
        self.embed = nn.Embedding(vocab, emb, padding_idx=0)
        self.rnn = nn.LSTM(emb + (hidden if input_feeding else 0), hidden, layers, batch_first=True, dropout=dropout)
        self.bridge_h = nn.Linear(enc_size, hidden)
        self.bridge_c = nn.Linear(enc_size, hidden)
        self.attn_w = nn.Linear(enc_size, hidden, bias=False)
        self.combine = nn.Linear(enc_size + hidden, hidden, bias=False)
        self.proj = nn.Linear(hidden, emb, bias=False)
        self.out = nn.Linear(emb, vocab)
        self.out.weight = self.embed.weight  # tied
        self.drop = nn.Dropout(dropout)

    def init_state(self, enc_state):
        h, c = enc_state
        return torch.tanh(self.bridge_h(h)).contiguous(), torch.tanh(self.bridge_c(c)).contiguous()

    def attend(self, query, keys, memory, mask):
        # query (B, T, H), keys (B, S, H), memory (B, S, E), mask (B, S)
        scores = torch.bmm(query, keys.transpose(1, 2)).masked_fill(~mask.unsqueeze(1), -1e9)
        weights = F.softmax(scores, dim=-1)
        context = torch.bmm(weights, memory)
        return torch.tanh(self.combine(torch.cat([context, query], dim=-1)))

    def logits(self, attn_h):
        return self.out(self.proj(self.drop(attn_h)))


class BareStepwiseDecoder(_BareDecoderBase):
    def __init__(self, *args):
        super().__init__(*args, input_feeding=True)

    def forward(self, tgt_in, memory, mask, enc_state):
        state = self.init_state(enc_state)
        keys = self.attn_w(memory)
        B, T = tgt_in.shape
        feed = memory.new_zeros(B, self.rnn.hidden_size)
        emb = self.drop(self.embed(tgt_in))
        outputs = []
        for t in range(T):
            x = torch.cat([emb[:, t], feed], dim=-1).unsqueeze(1)
            h, state = self.rnn(x, state)
            feed = self.attend(h, keys, memory, mask).squeeze(1)
            outputs.append(feed)
        return self.logits(torch.stack(outputs, dim=1))


class BareFusedDecoder(_BareDecoderBase):
    def __init__(self, *args):
        super().__init__(*args, input_feeding=False)

    def forward(self, tgt_in, memory, mask, enc_state):
        state = self.init_state(enc_state)
        h, _ = self.rnn(self.drop(self.embed(tgt_in)), state)
        return self.logits(self.attend(h, self.attn_w(memory), memory, mask))


class BareSeq2Seq(nn.Module):
    def __init__(self, vocab: int, *, emb=256, enc_hidden=256, dec_hidden=512, layers=2, dropout=0.3, stepwise=True):
        super().__init__()
        self.encoder = BareEncoder(vocab, emb, enc_hidden, layers, dropout)
        cls = BareStepwiseDecoder if stepwise else BareFusedDecoder
        self.decoder = cls(vocab, emb, 2 * enc_hidden, dec_hidden, layers, dropout)

    def forward(self, src, src_lengths, tgt_in):
        memory, state = self.encoder(src, src_lengths)
        mask = src != 0
        return self.decoder(tgt_in, memory, mask, state)


def bare_train_step(model, optimizer, batch, smoothing=0.1):
    logits = model(batch["src"], batch["src_lengths"], batch["tgt_in"])
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch["tgt_out"].reshape(-1),
                           ignore_index=0, label_smoothing=smoothing, reduction="sum")
    (loss / batch["ntokens"]).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())
