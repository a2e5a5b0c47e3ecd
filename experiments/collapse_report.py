"""The report of experiments/diversity_collapse.py: per-variant tables, paired differences with standard errors,
the issue's claims (a)-(d), pass@k and training plots (experiments/collapse_plots.py), and n-gram rollout
examples.

    write_report(runs_dir, out_dir, seeds=[0, 1, 2, 3, 4], variants=["grpo", "darling", ...], command="...")

`runs_dir/seed{S}/{variant}` holds each finished run (`summary.json`, `metrics.jsonl`, `rollouts.jsonl`). Every
difference is paired by seed (the variants of a seed share the warm start): its mean over seeds ± the standard
error of that mean (sample std / sqrt(seeds)); a difference "counts" when it exceeds two standard errors.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from darling_jax.diversity import ngram_diversity
from darling_jax.reporting import read_metrics

WARM = "warm start"
LABELS = {"grpo": "GRPO (std-normalised)", "darling": "DARLING, learned classifier",
          "darling_oracle": "DARLING, oracle partition", "additive": "additive (z(q) + z(div))",
          "ngram": "quality × char-4-gram", WARM: "warm start"}
SMOOTH = 25  # moving-average window (RL steps) of the training curves
NGRAM_N, NGRAM_UNIT = 4, "char"  # configs/countdown_ngram.py's diversity (rl.ngram_n, rl.ngram_unit)


# ------------------------------------------------------------------ loading
def load_runs(runs_dir: pathlib.Path, seeds: Sequence[int], variants: Sequence[str]) -> dict[str, Any]:
  """{"eval": {policy: [per-seed eval dict]}, "train": {variant: [per-seed metrics rows]}, "wall": seconds,
  "rollouts": {variant: [per-seed list of rollout rows]}}; the warm start's eval is the first variant's."""
  evals = {WARM: [], **{v: [] for v in variants}}
  train, rollouts, wall = {v: [] for v in variants}, {v: [] for v in variants}, 0.0
  for seed in seeds:
    for variant in variants:
      workdir = runs_dir / f"seed{seed}" / variant
      summary_file = workdir / "summary.json"
      if not summary_file.exists():
        raise FileNotFoundError(f"{summary_file}: run seed {seed} / {variant} has not finished")
      summary = json.loads(summary_file.read_text())
      if variant == variants[0]:
        evals[WARM].append(summary["eval_base_policy"])
      evals[variant].append(summary["eval_final_policy"])
      train[variant].append(read_metrics(workdir / "metrics.jsonl"))
      rollout_file = workdir / "rollouts.jsonl"
      rollouts[variant].append(read_metrics(rollout_file) if rollout_file.exists() else [])
      wall += summary["wall_seconds"]
  return {"eval": evals, "train": train, "rollouts": rollouts, "wall": wall}


def num_samples(evals: dict[str, list[dict]]) -> int:
  """The evaluation's samples per problem (the largest k of pass@k)."""
  first = next(iter(evals.values()))[0]
  return max(int(key.split("@")[1]) for key in first if key.startswith("pass@"))


def metric_values(evals: list[dict], metric: str) -> np.ndarray:
  """f64[seeds]: `metric` per seed; `per_solved@n` is distinct_correct@n / pass@n (strategies per solved
  problem: with k = n, pass@n is the share of problems with a correct sample)."""
  if metric.startswith("per_solved@"):
    n = metric.split("@")[1]
    return np.array([e[f"distinct_correct@{n}"] / e[f"pass@{n}"] for e in evals], np.float64)
  return np.array([e.get(metric, np.nan) for e in evals], np.float64)


# ------------------------------------------------------------------ statistics
def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
  """Mean of a − b over seeds, its standard error (std(ddof=1) / sqrt(seeds); nan for one seed), whether it
  exceeds two standard errors, and on how many seeds a > b."""
  diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  mean, se = mean_se(diff)
  return {"mean": mean, "se": se, "counts": bool(np.isfinite(se) and abs(mean) > 2 * se),
          "wins": int((diff > 0).sum()), "seeds": len(diff)}


def mean_se(values: np.ndarray) -> tuple[float, float]:
  """Mean over seeds and its standard error (std(ddof=1) / sqrt(seeds); nan for one seed)."""
  values = np.asarray(values, np.float64)
  se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
  return float(values.mean()), float(se)


def scale(metric: str) -> float:
  """Percent for pass@k and classifier metrics, 1 for counts."""
  return 100.0 if metric.startswith(("pass@", "classifier/")) else 1.0


def verdict(ok: bool, seeds: int) -> str:
  """'reproduced' / 'not reproduced'; with one seed there is no standard error, so nothing is tested."""
  if seeds < 2:
    return "not tested (one seed, no standard error)"
  return "reproduced" if ok else "not reproduced"


def fmt_diff(d: dict[str, float], metric: str) -> str:
  s = scale(metric)
  text = f"{s * d['mean']:+.2f} ± {s * d['se']:.2f} ({d['wins']}/{d['seeds']})"
  return f"**{text}**" if d["counts"] else text


# ------------------------------------------------------------------ claim (d): what each reward pays in rollouts
def _rewrites(responses: list[dict]) -> list[tuple[int, int]]:
  """(i, j) for each correct response i and the first other correct response j of its strategy (oracle class)
  spelled differently: i is a surface rewrite of j."""
  pairs = []
  for i, a in enumerate(responses):
    if a["quality"] <= 0:
      continue
    j = next((j for j, b in enumerate(responses) if j != i and b["quality"] > 0
              and b["oracle_class"] == a["oracle_class"] and b["text"] != a["text"]), None)
    if j is not None:
      pairs.append((i, j))
  return pairs


def respelled_and_copied(responses: list[dict], i: int, j: int, n: int = NGRAM_N,
                         unit: str = NGRAM_UNIT) -> tuple[float, float]:
  """Response i's n-gram diversity in its group as it is, and with its text replaced by j's (a response of the
  same strategy): the difference is what the n-gram reward pays i for the respelling. The semantic partition
  pays nothing for it (i stays in its class either way)."""
  texts = [r["text"] for r in responses]
  copied = list(texts)
  copied[i] = texts[j]
  as_is, as_copy = ngram_diversity([texts, copied], n=n, unit=unit)[:, i]
  return float(as_is), float(as_copy)


def respelling_surplus(responses: list[dict], i: int, j: int) -> float:
  as_is, as_copy = respelled_and_copied(responses, i, j)
  return as_is - as_copy


def rewrite_statistics(rows: list[dict]) -> dict[str, float]:
  """Over logged rollout groups (`rollouts.jsonl` rows): surface rewrites (a correct response and a
  differently spelled correct response of the same strategy) and what the 4-gram diversity pays for them.

  Returns `rewrites` (count), `surplus` (mean `respelling_surplus` over the rewrites: the 4-gram reward's pay
  for the respelling itself, the same whichever source the run trained with) and `spellings_first` /
  `spellings_last` (distinct correct texts per distinct correct strategy, mean over groups with a correct
  response, in the first and the last quarter of the logged steps)."""
  surplus, spellings = [], {"first": [], "last": []}
  steps = sorted({row["step"] for row in rows})
  quarter = max(1, len(steps) // 4)
  parts = {"first": set(steps[:quarter]), "last": set(steps[-quarter:])}
  for row in rows:
    responses = row["responses"]
    surplus += [respelling_surplus(responses, i, j) for i, j in _rewrites(responses)]
    correct = [r for r in responses if r["quality"] > 0]
    if correct:
      ratio = len({r["text"] for r in correct}) / len({r["oracle_class"] for r in correct})
      for part, chosen in parts.items():
        if row["step"] in chosen:
          spellings[part].append(ratio)
  nan_mean = lambda x: float(np.mean(x)) if x else float("nan")
  return {"rewrites": len(surplus), "surplus": nan_mean(surplus), "spellings_first": nan_mean(spellings["first"]),
          "spellings_last": nan_mean(spellings["last"])}


def rewrite_examples(rows: list[dict], count: int = 3) -> list[dict]:
  """Up to `count` groups, latest steps first, each with one surface rewrite that the n-gram diversity pays more
  than it would pay a copy (`respelled_and_copied`): prompt, step, the two texts, the diversity the run paid
  each, the rewrite's n-gram diversity as a copy, and the size of their strategy's class."""
  examples = []
  for row in sorted(rows, key=lambda r: -r["step"]):
    responses = row["responses"]
    for i, j in _rewrites(responses):
      as_is, as_copy = respelled_and_copied(responses, i, j)
      if as_is > as_copy:
        size = sum(r["oracle_class"] == responses[i]["oracle_class"] for r in responses)
        examples.append({"step": row["step"], "prompt": row["prompt"],
                         "texts": [responses[i]["text"], responses[j]["text"]],
                         "paid": [responses[i]["diversity"], responses[j]["diversity"]],
                         "as_copy": as_copy, "strategy_size": size})
        break
    if len(examples) == count:
      break
  return examples


def strategies_at_matched_pass_rate(rows: list[dict], baseline_rows: list[dict], window: int = 50
                                    ) -> tuple[float, float, float]:
  """(pass rate, strategies per group) of a run over its last `window` steps, and the baseline's strategies per
  group at the first step where its `window`-step moving-average pass rate reaches that pass rate (nan if it
  never does): the two runs compared at equal quality on the training prompts."""
  def smooth(values):
    return np.convolve(np.asarray(values, np.float64), np.ones(window) / window, mode="valid")
  pass_rate = float(np.mean([row["pass_rate"] for row in rows[-window:]]))
  strategies = float(np.mean([row["distinct_correct"] for row in rows[-window:]]))
  base_pass = smooth([row["pass_rate"] for row in baseline_rows])
  base_strategies = smooth([row["distinct_correct"] for row in baseline_rows])
  reached = np.flatnonzero(base_pass >= pass_rate)
  return pass_rate, strategies, float(base_strategies[reached[0]]) if reached.size else float("nan")


# ------------------------------------------------------------------ the report
def claims(evals: dict[str, list[dict]], n: int) -> list[str]:
  """The issue's claims (a)-(c), each with the paired differences it rests on and a verdict."""
  def d(a, b, metric):
    return paired_difference(metric_values(evals[a], metric), metric_values(evals[b], metric))

  lines = []
  have = lambda *names: all(name in evals for name in names)
  if have("grpo"):
    up, down = d("grpo", WARM, "pass@1"), d("grpo", WARM, f"distinct_correct@{n}")
    ok = up["counts"] and up["mean"] > 0 and down["counts"] and down["mean"] < 0
    lines.append(f"- **(a) GRPO collapses: {verdict(ok, up['seeds'])}.** GRPO − warm start: pass@1 "
                 f"{fmt_diff(up, 'pass@1')} points; distinct correct strategies in {n} samples "
                 f"{fmt_diff(down, 'distinct_correct')}.")
  for variant in ("darling", "darling_oracle"):
    if not have("grpo", variant):
      continue
    keeps = d(variant, "grpo", f"distinct_correct@{n}")
    wide = d(variant, "grpo", f"pass@{n}")
    mid = d(variant, "grpo", f"pass@{n // 4}")
    one = d(variant, "grpo", "pass@1")
    lost = one["counts"] and one["mean"] < 0
    ok = keeps["counts"] and keeps["mean"] > 0 and wide["counts"] and wide["mean"] > 0 and not lost
    lines.append(f"- **(b) {LABELS[variant]} vs GRPO: {verdict(ok, one['seeds'])}.** "
                 f"distinct correct in {n}: {fmt_diff(keeps, 'distinct_correct')}; pass@{n}: "
                 f"{fmt_diff(wide, 'pass@')}; pass@{n // 4}: {fmt_diff(mid, 'pass@')}; pass@1: "
                 f"{fmt_diff(one, 'pass@')} ({'a significant loss' if lost else 'no significant loss'}).")
  if have("darling", "additive"):
    diffs = {m: d("darling", "additive", m) for m in ("pass@1", f"pass@{n}", f"distinct_correct@{n}")}
    worse = [m for m, x in diffs.items() if x["counts"] and x["mean"] < 0]
    better = [m for m, x in diffs.items() if x["counts"] and x["mean"] > 0]
    seeds = next(iter(diffs.values()))["seeds"]
    if seeds < 2:
      outcome = verdict(False, seeds)
    elif worse and better:
      outcome = (f"not reproduced, a trade-off: multiplicative is better on {', '.join(better)} and worse on "
                 f"{', '.join(worse)}")
    elif worse:
      outcome = "not reproduced: multiplicative is worse on " + ", ".join(worse)
    elif better:
      outcome = "reproduced: multiplicative is better on " + ", ".join(better)
    else:
      outcome = "no difference beyond two standard errors (≥ holds only as 'not worse')"
    cells = "; ".join(f"{m}: {fmt_diff(x, m)}" for m, x in diffs.items())
    lines.append(f"- **(c) multiplicative ≥ additive: {outcome}.** DARLING − additive: {cells}.")
  return lines


def write_report(runs_dir: pathlib.Path, out_dir: pathlib.Path, seeds: Sequence[int], variants: Sequence[str], *,
                 command: str) -> pathlib.Path:
  """Writes results.md, results.json, pass_at_k.png and training.png into `out_dir`; returns results.md."""
  runs = load_runs(pathlib.Path(runs_dir), seeds, variants)
  evals, n = runs["eval"], num_samples(runs["eval"])
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  from collapse_plots import plot_pass_at_k, plot_training  # experiments/collapse_plots.py (imports this module)
  plot_pass_at_k(evals, n, out_dir / "pass_at_k.png")
  plot_training(runs["train"], out_dir / "training.png")

  metrics = ["pass@1", "pass@8", f"pass@{n}", "distinct_correct@8", f"distinct_correct@{n}", f"per_solved@{n}",
             "classifier/accuracy"]
  header = ["pass@1", "pass@8", f"pass@{n}", "dc@8", f"dc@{n}", "dc per solved", "classifier acc."]
  lines = [f"# DARLING vs GRPO where GRPO collapses diversity ({len(seeds)} seed(s): {', '.join(map(str, seeds))})",
           "", f"Produced by `{command}` (runs in `{runs_dir}`; {runs['wall'] / 60:.0f} min of run time summed over the runs).", "",
           f"Test split: 100 problems × {n} samples at T = 1. pass@k is the unbiased estimator; dc@k is the mean "
           "number of distinct correct strategies (the oracle's expression classes) among the first k samples; "
           f"'dc per solved' is dc@{n} / pass@{n}. Mean ± standard error over seeds (pass@k and accuracy in %).",
           "", "| policy | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
  for name, per_seed in evals.items():
    cells = []
    for metric in metrics:
      mean, se = mean_se(metric_values(per_seed, metric))
      cells.append("–" if np.isnan(mean) else f"{scale(metric) * mean:.2f} ± {scale(metric) * se:.2f}")
    lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")

  comparisons = [(v, "grpo") for v in variants if v != "grpo"] + [("grpo", WARM)]
  comparisons += [(a, b) for a, b in (("darling", "additive"), ("darling_oracle", "darling")) if a in evals and b in evals]
  diff_metrics = [f"pass@{k}" for k in sorted({1, 8, n // 4, n})] + [f"distinct_correct@{n}"]
  lines += ["", "Paired by seed: mean difference ± its standard error (seeds on which the first is higher). **Bold**: "
            "beyond two standard errors.", "",
            "| difference | " + " | ".join(m.replace("distinct_correct", "dc") for m in diff_metrics) + " |",
            "|---" * (len(diff_metrics) + 1) + "|"]
  for a, b in comparisons:
    cells = [fmt_diff(paired_difference(metric_values(evals[a], m), metric_values(evals[b], m)), m)
             for m in diff_metrics]
    lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")

  lines += ["", "## Claims", "", *claims(evals, n)]
  if "grpo" in variants:
    lines += ["", "At equal quality: each variant's pass rate and distinct correct strategies per group of 8 on the "
              "training prompts over its last 50 RL steps, against GRPO's strategies at the first point where GRPO's "
              "50-step moving-average pass rate reached that pass rate (same seed; nan where it never did).", "",
              "| run | pass rate, last 50 steps | its strategies per group | GRPO's at that pass rate | difference |",
              "|---|---|---|---|---|"]
    for variant in variants:
      if variant == "grpo":
        continue
      matched = np.array([strategies_at_matched_pass_rate(rows, base) for rows, base in
                          zip(runs["train"][variant], runs["train"]["grpo"])])
      d = paired_difference(matched[:, 1], matched[:, 2])
      cells = ["{:.3f} ± {:.3f}".format(*mean_se(matched[:, i])) for i in range(3)]
      lines.append(f"| {LABELS.get(variant, variant)} | " + " | ".join(cells) + f" | {fmt_diff(d, 'count')} |")

  lines += ["", "## (d) What the n-gram reward pays for, in the training rollouts", "",
            "Over the logged rollouts (every 10th step, 8 groups of 8): a *surface rewrite* is a correct response "
            "with a differently spelled correct response of the same strategy (oracle class) in its group. "
            "'4-gram pay for the respelling' is the char-4-gram diversity of the rewrite minus what it would get "
            "spelled exactly like that other response (the semantic partition pays 0 for a respelling: the class "
            "is the same). 'spellings per strategy' is the number of distinct correct texts per distinct correct "
            "strategy in a group, in the first and the last quarter of RL. Mean ± s.e. over seeds.", "",
            "| run | rewrites logged | 4-gram pay for the respelling | spellings per strategy, first quarter | "
            "last quarter |", "|---|---|---|---|---|"]
  rewrite_stats = {}
  for variant in variants:
    stats = [rewrite_statistics(rows) for rows in runs["rollouts"][variant]]
    rewrite_stats[variant] = stats
    cell = lambda key: "{:.3f} ± {:.3f}".format(*mean_se(np.array([s[key] for s in stats])))
    lines.append(f"| {LABELS.get(variant, variant)} | {sum(s['rewrites'] for s in stats)} | {cell('surplus')} | "
                 f"{cell('spellings_first')} | {cell('spellings_last')} |")
  if "ngram" in variants:
    paid = paired_difference(np.array([s["surplus"] for s in rewrite_stats["ngram"]]),
                             np.zeros(len(rewrite_stats["ngram"])))
    others = [v for v in ("darling", "darling_oracle") if v in variants]
    grown = {v: paired_difference(np.array([s["spellings_last"] for s in rewrite_stats["ngram"]]),
                                  np.array([s["spellings_last"] for s in rewrite_stats[v]])) for v in others}
    # Any respelling changes some 4-grams, so the pay is nearly always > 0; the claim also needs the behaviour it
    # rewards: more spellings per correct strategy than the semantic runs end with.
    ok = paid["counts"] and paid["mean"] > 0 and all(d["counts"] and d["mean"] > 0 for d in grown.values())
    behaviour = "; ".join(f"n-gram − {v} {d['mean']:+.3f} ± {d['se']:.3f} ({d['wins']}/{d['seeds']})"
                          for v, d in grown.items())
    lines += ["", f"- **(d) the n-gram reward pays for surface rewrites that the semantic partition does not: "
              f"{verdict(ok, paid['seeds'])}.** In the n-gram runs a respelling was paid "
              f"{paid['mean']:+.3f} ± {paid['se']:.3f} diversity ({paid['wins']}/{paid['seeds']} seeds above 0). "
              f"Spellings per correct strategy in the last quarter of RL: {behaviour}.", "",
              "Examples from the n-gram runs' rollouts (a rewrite and the response of the same strategy it "
              "respells):", ""]
    for seed, rows in zip(seeds, runs["rollouts"]["ngram"]):
      for example in rewrite_examples(rows, count=1):
        lines.append(f"- seed {seed}, step {example['step']}, `{example['prompt']}`: `{example['texts'][0]}` "
                     f"respells `{example['texts'][1]}` (one strategy, a class of {example['strategy_size']}): "
                     f"4-gram diversity {example['paid'][0]:.2f} and {example['paid'][1]:.2f}; spelled as a copy "
                     f"the first would get {example['as_copy']:.2f}.")
  lines += ["", "![pass@k](pass_at_k.png)", "", "![training](training.png)", ""]
  report = out_dir / "results.md"
  report.write_text("\n".join(lines))
  (out_dir / "results.json").write_text(json.dumps({"seeds": list(seeds), "eval": evals,
                                                     "rewrites": rewrite_stats}, indent=1))
  return report
