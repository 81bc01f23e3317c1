"""An evaluation record (`workdir.evaluate_workdir`) as a readable table."""
from __future__ import annotations


def plus_minus(mean, sd, fmt="{:.3f}", scale=1.0) -> str:
  """"mean ± sd" in `fmt` (× scale); "—" without a mean, the mean alone without an sd."""
  if mean is None:
    return "—"
  text = fmt.format(mean * scale)
  return text if sd is None else f"{text} ± {fmt.format(sd * scale)}"


def format_table(record: dict) -> str:
  """A readable summary of a record from `evaluate_workdir`."""
  p = record["protocol"]
  floor = f"{p['floor_split']} vs {p['real_split']}"
  if p["floor_split"] == p["real_split"]:
    floor += " (disjoint images)"
  lines = [f"{p['dataset']} {p['resolution']}x{p['resolution']}, step {record['step']}, "
           f"generator {p['generator']}, seeds {p['seeds']} (mean ± sd over seeds); real = "
           f"{p['real_split']} split, floor = {floor} at the same N"]
  head = (f"{'backbone':<11}{'N':>6}  {'FID':<17}{'floor':>8}  {'KID x1e3':<15}{'floor':>7}  "
          f"{'precision':<15}{'recall':<15}{'density':<15}{'coverage':<15}")
  lines += [head, "-" * len(head)]
  for name, b in record["backbones"].items():
    m, sd, fl = b["mean"], b["sd"], b["floor"]
    lines.append(
        f"{name:<11}{b['protocol']['n']:>6}  {plus_minus(m['fid'], sd['fid'], '{:.2f}'):<17}"
        f"{fl['fid']:>8.2f}  {plus_minus(m['kid'], sd['kid'], '{:.2f}', 1e3):<15}"
        f"{fl['kid'] * 1e3:>7.2f}  {plus_minus(m['precision'], sd['precision']):<15}"
        f"{plus_minus(m['recall'], sd['recall']):<15}"
        f"{plus_minus(m['density'], sd['density']):<15}"
        f"{plus_minus(m['coverage'], sd['coverage']):<15}")
    lines.append(f"{'  floor':<17}{'':<17}{'':>8}  {'':<15}{'':>7}  {fl['precision']:<15.3f}"
                 f"{fl['recall']:<15.3f}{fl['density']:<15.3f}{fl['coverage']:<15.3f}")
  for name, why in record.get("skipped", {}).items():
    lines.append(f"{name:<11}SKIPPED: {why}")
  c = record.get("class_metrics")
  if c:
    m, sd, r = c["mean"], c["sd"], c["real_predicted"]
    lines.append(f"classes (classifier, N={c['n']}, mean share over seeds; real "
                 f"{p['real_split']} images predicted: accuracy {r['accuracy']:.3f}):")
    lines.append("  " + ", ".join(f"{n} {100 * v:.1f}%" for n, v in zip(c["class_names"],
                                                                       m["share"])))
    classes_ge_1pct = plus_minus(m["classes_ge_1pct"], sd["classes_ge_1pct"], "{:.1f}")
    lines.append(f"  entropy {plus_minus(m['entropy'], sd['entropy'])} nats (max "
                 f"{c['entropy_max']:.3f}; real {r['entropy']:.3f}), KL(gen‖real labels) "
                 f"{plus_minus(m['kl_to_real'], sd['kl_to_real'], '{:.4f}')} (real "
                 f"{r['kl_to_real']:.4f}), classes ≥1%: {classes_ge_1pct}"
                 f"/{c['num_classes']}, mean confidence "
                 f"{plus_minus(m['mean_confidence'], sd['mean_confidence'])} (real "
                 f"{r['mean_confidence']:.3f})")
  if "path" in record:
    lines.append(f"written to {record['path']}")
  return "\n".join(lines)
