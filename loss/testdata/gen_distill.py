#!/usr/bin/python3
"""Generate distill_torch.json: golden cases of the distillation loss.

Run with Debian's python3-torch (apt-get install python3-torch python3-numpy):

    /usr/bin/python3 loss/testdata/gen_distill.py > loss/testdata/distill_torch.json

Every case holds student logits, teacher logits and hard next tokens (float32
values, row-major [rows x vocab]), the settings, and what PyTorch autograd
computes from them in float64: the loss summed over rows, its per-row values,
the parts (divergence, cross-entropy and the teacher mass kept by top-k,
summed over rows) and d loss / d student logits. The definition, per target
position (the one of the shared distill_micro golden files):

  logQ = log_softmax(s / T)              T  = temperature
  P    = softmax(t / T_t)                T_t = teacher_temperature (no gradient)
  top-k (0 < k < V) keeps the teacher's k largest probabilities K, S = sum_K P:
    renormalize: P'_i = P_i / S on K, 0 elsewhere
    uniform:     P'_i = P_i on K, (1 - S) / (V - k) elsewhere
    rest:        over K plus one bucket, P_rest = 1 - S, Q_rest = 1 - sum_K Q
  label smoothing eps: P'' = (1 - eps) P' + eps / V (the rest bucket:
    (1 - eps) P_rest + eps (V - k) / V)
  D = forward: sum P (log P - log Q); reverse: sum Q (log Q - log P);
      jsd(beta): beta KL(P||M) + (1 - beta) KL(Q||M), M = beta P + (1 - beta) Q;
      beta = 0 is forward KL, beta = 1 reverse KL (TRL's convention)
  D *= T^2 when scale_t2
  loss = (1 - hard_weight) D + hard_weight CE(hard, softmax(s))   (T = 1)
  a row whose hard token is -100 counts nothing.
"""

import json
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
IGNORE = -100


def rows_of(rng, rows, V, scale, huge_row=None, huge=0.0):
    x = (rng.standard_normal((rows, V)) * scale).astype(np.float32)
    if huge_row is not None:
        x[huge_row, rng.integers(V)] = np.float32(huge)
    return x


def divergence(s, t, c):
    """Per-row divergence (times T^2), kept mass; s requires grad."""
    T, Tt, k, tail = c["temperature"], c["teacher_temperature"], c["top_k"], c["tail"]
    eps, beta, direction = c["label_smoothing"], c["beta"], c["direction"]
    V = s.shape[1]
    logQ = F.log_softmax(s / T, dim=-1)
    Q = logQ.exp()
    logP = F.log_softmax(t / Tt, dim=-1)
    P = logP.exp()
    kept = torch.ones(s.shape[0])
    if direction == "jsd" and beta == 0:
        direction = "forward"
    if direction == "jsd" and beta == 1:
        direction = "reverse"
    if 0 < k < V:
        _, top = torch.topk(t, k, dim=-1)
        mask = torch.zeros_like(P, dtype=torch.bool).scatter_(1, top, True)
        S = (P * mask).sum(-1, keepdim=True)
        R = (P * ~mask).sum(-1, keepdim=True)  # = 1 - S, without cancellation
        kept = S.squeeze(-1)
        if tail == "rest":
            assert direction == "forward"
            PK = torch.where(mask, P, torch.zeros_like(P))
            Pr = R.squeeze(-1)
            if eps:
                PK = torch.where(mask, (1 - eps) * PK + eps / V, PK)
                Pr = (1 - eps) * Pr + eps * (V - k) / V
            logQr = torch.logsumexp(torch.where(mask, torch.full_like(logQ, -math.inf), logQ), dim=-1)
            terms = torch.where(mask & (PK > 0), PK * (torch.log(PK) - logQ), torch.zeros_like(PK))
            D = terms.sum(-1) + torch.where(Pr > 0, Pr * (torch.log(Pr) - logQr), torch.zeros_like(Pr))
            if c["scale_t2"]:
                D = D * T * T
            return D, kept
        if tail == "renormalize":
            P = torch.where(mask, P / S, torch.zeros_like(P))
            logP = torch.where(mask, logP - torch.log(S), torch.full_like(logP, -math.inf))
        elif tail == "uniform":
            u = R / (V - k)
            P = torch.where(mask, P, u.expand_as(P))
            logP = torch.where(mask, logP, torch.log(u).expand_as(P))
        else:
            raise ValueError(tail)
    if eps:
        P = (1 - eps) * P + eps / V
        logP = torch.logaddexp(math.log1p(-eps) + logP, torch.full_like(logP, math.log(eps / V)))
    if direction == "forward":
        D = torch.where(P > 0, P * (logP - logQ), torch.zeros_like(P)).sum(-1)
    elif direction == "reverse":
        D = (Q * (logQ - logP)).sum(-1)
    else:
        logM = torch.logaddexp(math.log(beta) + logP, math.log1p(-beta) + logQ)
        kp = torch.where(P > 0, P * (logP - logM), torch.zeros_like(P)).sum(-1)
        kq = (Q * (logQ - logM)).sum(-1)
        D = beta * kp + (1 - beta) * kq
    if c["scale_t2"]:
        D = D * T * T
    return D, kept


def run_case(c, s32, t32, hard):
    s = torch.tensor(s32.astype(np.float64), requires_grad=True)
    t = torch.tensor(t32.astype(np.float64))
    h = torch.tensor(hard, dtype=torch.long)
    live = h != IGNORE
    D, kept = divergence(s, t, c)
    ce = F.cross_entropy(s, torch.where(live, h, torch.zeros_like(h)), reduction="none")
    w = c["hard_weight"]
    zero = torch.zeros_like(D)
    D = torch.where(live, D, zero)
    ce = torch.where(live, ce, zero)
    kept = torch.where(live, kept, zero)
    row = (1 - w) * D + w * ce
    loss = row.sum()
    loss.backward()
    return {
        "expected_loss": loss.item(),
        "expected_row_loss": row.tolist(),
        "expected_div": D.sum().item(),
        "expected_ce": ce.sum().item(),
        "expected_kept": kept.sum().item(),
        "expected_grad": s.grad.flatten().tolist(),
    }


def main():
    rng = np.random.default_rng(20240517)
    base = dict(temperature=1.0, teacher_temperature=1.0, scale_t2=False, hard_weight=0.0,
                direction="forward", beta=0.5, top_k=0, tail="uniform", label_smoothing=0.0)
    specs = [
        ("fwd-T1", 4, 37, {}),
        ("fwd-T2-t2", 4, 37, dict(temperature=2.0, teacher_temperature=2.0, scale_t2=True)),
        ("fwd-T2-t2-hard03", 4, 37, dict(temperature=2.0, teacher_temperature=2.0, scale_t2=True, hard_weight=0.3)),
        ("fwd-T1-hard03", 3, 64, dict(hard_weight=0.3)),
        ("fwd-teacherT07", 4, 37, dict(teacher_temperature=0.7)),
        ("fwd-T2-teacherT15", 3, 101, dict(temperature=2.0, teacher_temperature=1.5, scale_t2=True)),
        ("rev-T1", 4, 37, dict(direction="reverse")),
        ("rev-T15", 4, 37, dict(direction="reverse", temperature=1.5, teacher_temperature=1.5)),
        ("rev-T15-t2-hard02", 3, 101, dict(direction="reverse", temperature=1.5, teacher_temperature=1.5, scale_t2=True, hard_weight=0.2)),
        ("jsd-b05", 4, 37, dict(direction="jsd", beta=0.5)),
        ("jsd-b01", 4, 37, dict(direction="jsd", beta=0.1)),
        ("jsd-b0", 3, 37, dict(direction="jsd", beta=0.0)),
        ("jsd-b1", 3, 37, dict(direction="jsd", beta=1.0)),
        ("jsd-b03-T2-teacherT3-hard05", 3, 257, dict(direction="jsd", beta=0.3, temperature=2.0, teacher_temperature=3.0, hard_weight=0.5)),
        ("fwd-top8-renorm", 4, 101, dict(top_k=8, tail="renormalize")),
        ("fwd-top8-uniform", 4, 101, dict(top_k=8, tail="uniform")),
        ("fwd-top8-rest", 4, 101, dict(top_k=8, tail="rest")),
        ("fwd-top8-rest-T2-ls005", 3, 64, dict(top_k=8, tail="rest", temperature=2.0, teacher_temperature=2.0, scale_t2=True, label_smoothing=0.05)),
        ("fwd-top5-uniform-hard04", 3, 257, dict(top_k=5, tail="uniform", hard_weight=0.4)),
        ("rev-top8-uniform", 4, 101, dict(direction="reverse", top_k=8, tail="uniform")),
        ("rev-top8-renorm-ls01", 3, 101, dict(direction="reverse", top_k=8, tail="renormalize", label_smoothing=0.1)),
        ("jsd-b05-top8-renorm", 4, 101, dict(direction="jsd", top_k=8, tail="renormalize")),
        ("jsd-b02-top8-uniform", 3, 101, dict(direction="jsd", beta=0.2, top_k=8, tail="uniform")),
        ("jsd-b0-top8-rest", 3, 64, dict(direction="jsd", beta=0.0, top_k=8, tail="rest")),
        ("fwd-ls01-teacherT2", 3, 37, dict(label_smoothing=0.1, teacher_temperature=2.0)),
        ("rev-ls01", 3, 37, dict(direction="reverse", label_smoothing=0.1)),
        ("jsd-b07-ls005", 3, 37, dict(direction="jsd", beta=0.7, label_smoothing=0.05)),
        ("fwd-topV-is-dense", 2, 17, dict(top_k=17, tail="rest")),
        ("fwd-ignored-row-hard03", 4, 37, dict(hard_weight=0.3)),
        ("fwd-huge-logit", 3, 37, dict()),
        ("rev-huge-logit", 3, 37, dict(direction="reverse")),
        ("jsd-huge-logit", 3, 37, dict(direction="jsd", beta=0.5)),
        ("fwd-top8-uniform-huge-logit", 3, 101, dict(top_k=8, tail="uniform")),
        ("fwd-top8-rest-huge-logit", 3, 101, dict(top_k=8, tail="rest")),
    ]
    cases = []
    for name, rows, V, over in specs:
        c = dict(base)
        c.update(over)
        c["name"], c["rows"], c["vocab"] = name, rows, V
        huge = "huge" in name
        s32 = rows_of(rng, rows, V, 2.0, huge_row=1 if huge else None, huge=300.0)
        t32 = rows_of(rng, rows, V, 2.5, huge_row=1 if huge else None, huge=1000.0)
        hard = rng.integers(V, size=rows).astype(np.int64)
        if "ignored" in name:
            hard[2] = IGNORE
        c["student_logits"] = s32.flatten().tolist()
        c["teacher_logits"] = t32.flatten().tolist()
        c["hard"] = hard.tolist()
        c.update(run_case(c, s32, t32, hard))
        cases.append(c)
    doc = {
        "note": __doc__.strip(),
        "torch": torch.__version__,
        "cases": cases,
    }
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
