"""One whole RL step: darling_jax's `TrainStep` vs TRL's `GRPOTrainer` on the identical workload.

  pip install -e '.[bench]'   # trl==1.16.0 + torch==2.13.0 CPU: the reference (never a runtime dependency)
  python -m darling_jax.bench.rl_step [--shapes tiny,smollm2] [--steps 6] [--warmup_steps 2]
      [--frameworks darling_jax,trl] [--trl_activation_checkpointing]

The workload of each shape: a random-weight, fp32, tied-embedding Llama decoder; B prompts of P random words, G
sampled responses each of up to N new tokens (temperature 1, top-p 1, no top-k; the EOS is an ordinary vocabulary
entry, drawn with probability ~1/V per token); a cheap host reward (`even_word_share`, the same function for both);
group advantages `(r − mean) / (std + eps)` (GRPO, TRL's `scale_rewards="group"`); one on-policy update: token-mean
PPO-clip loss over the B·G rows, no KL and no reference model, global-norm clip 1.0, AdamW, one optimizer step.

  tiny:    V 1000, E 256, I 1024, L 4, H 4 / KV 2, head_dim 64 (4.2M parameters); 8 prompts × G 8, P 32, N 64
  smollm2: SmolLM2-135M's shape (V 49152, E 576, I 1536, L 30, H 9 / KV 3);        2 prompts × G 8, P 32, N 32

darling_jax: the trainer's own step, `darling_jax.train_step.TrainStep`, with a plug-in task (`RandomWordsTask`)
and the sharded, donating `grpo.make_update_fn` on a one-device mesh, built as `darling_jax.train` builds them
(`quality_only` rewards, `normalize_std=True`; the `oracle` diversity source, whose output that mode ignores, with
every response its own class). The split is the step's own `time/*` metrics: generate = `time/sample`,
reward + advantages = quality + diversity + reward (text decoding, the reward function, advantages and the
rollout batch), update = `time/update`. The update's model GFLOP/s (`workloads.update_flops`) are reported
against a jitted f32 1024³ matmul measured in the same process (`sampling.matmul_roofline_gflops`).

TRL: `GRPOTrainer` as a new user configures it from the public API (`GRPOConfig(per_device_train_batch_size=B·G,
num_generations=G, max_completion_length=N, beta=0, loss_type="dapo"` (its default: token-mean over the batch),
`num_iterations=1, use_cpu=True, bf16=False`, no logging or saving), a `LlamaForCausalLM` of the same shape and a
locally built `PreTrainedTokenizerFast` (no downloads). Activation (gradient) checkpointing is off, although TRL's
default is on: darling_jax's update does not rematerialise either, so both do the same arithmetic
(`--trl_activation_checkpointing` measures TRL's default). A `TrainerCallback` times each optimizer step
(`on_step_begin` → `on_step_end`); wrapping the trainer's `_generate` and `_generate_and_score_completions` splits it
into generate / reward + advantages / the rest (loss forward, backward, clipping and AdamW).

Each framework runs `--steps` steps in a fresh process (spawned: neither inherits the other's threads or malloc
state; darling_jax first, then TRL); the first `--warmup_steps` (compilation, torch's warm-up) are not timed, and
the table reports the median of the rest (steps 3–6 by default). The command re-executes itself with huge-page
malloc (`darling_jax.runtime`; the TRL process inherits it too); `DARLING_HUGE_PAGES=0` measures without it.
Prints a markdown table, then one JSON line per shape.
"""

from __future__ import annotations

if __name__ == "__main__":  # huge-page malloc for XLA's per-call temporaries (darling_jax.runtime), before imports
  from darling_jax import runtime
  runtime.reexec_with_huge_pages()

import concurrent.futures
import dataclasses
import importlib.util
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app, flags

from darling_jax import runtime
from darling_jax.bench.sampling import _SHAPES, SHAPES, matmul_roofline_gflops  # --shapes (tiny, smollm2)
from darling_jax.bench.workloads import check_choices, update_flops
from darling_jax.tasks.base import Task

_STEPS = flags.DEFINE_integer("steps", 6, "RL steps run per framework and shape (the first --warmup_steps untimed).")
_WARMUP = flags.DEFINE_integer("warmup_steps", 2, "Untimed first steps (compilation, warm-up).")
_TRL_CHECKPOINTING = flags.DEFINE_bool("trl_activation_checkpointing", False,
                                        "TRL's default activation checkpointing (off: the same arithmetic as ours).")
_FRAMEWORKS = flags.DEFINE_list("frameworks", ["darling_jax", "trl"],
                                "Which to run: darling_jax and/or trl (trl is skipped when not installed).")

FRAMEWORKS = ("darling_jax", "trl")
PAD, EOS = "<pad>", "<eos>"  # ids 0 and V - 1; the words w1 … w{V-2} in between


@dataclasses.dataclass(frozen=True)
class RLShape:
  """A model shape and its RL workload: `prompts` × `group` rows, `prompt_len` prompt words, up to `new_tokens`."""

  name: str
  hf_config: dict
  prompts: int
  group: int
  prompt_len: int
  new_tokens: int

  @property
  def rows(self) -> int:
    return self.prompts * self.group


RL_SHAPES = {
    "tiny": RLShape("4.2M (V 1000, E 256, I 1024, L 4, H 4/2)",
                    dict(vocab_size=1000, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=64, tie_word_embeddings=True),
                    prompts=8, group=8, prompt_len=32, new_tokens=64),
    "smollm2": RLShape("SmolLM2-135M shape", SHAPES["smollm2"].hf_config,
                       prompts=2, group=8, prompt_len=32, new_tokens=32),
    # For the test: a step in well under a second.
    "micro": RLShape("micro (V 64, E 32, L 1)",
                     dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=16, tie_word_embeddings=True),
                     prompts=2, group=2, prompt_len=4, new_tokens=4),
}


# ------------------------------------------------------------------------------------------- shared workload


def word_tokenizer(vocab_size: int):
  """A `transformers.PreTrainedTokenizerFast` over `vocab_size` whitespace-separated words, built locally:
  id 0 `<pad>`, ids 1 … V−2 the words `w1` … `w{V-2}`, id V−1 `<eos>`; no BOS, no special tokens added."""
  from tokenizers import Tokenizer, models, pre_tokenizers
  from transformers import PreTrainedTokenizerFast

  vocab = {PAD: 0, **{f"w{i}": i for i in range(1, vocab_size - 1)}, EOS: vocab_size - 1}
  tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=PAD))
  tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS)


def prompt_texts(shape: RLShape, steps: int, seed: int = 0) -> list[str]:
  """`steps · prompts` distinct prompts of `prompt_len` random words each (step s uses `[s·B, (s+1)·B)`)."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, shape.hf_config["vocab_size"] - 1, (steps * shape.prompts, shape.prompt_len))
  return [" ".join(f"w{i}" for i in row) for row in ids]


def even_word_share(prompts, completions, **kwargs) -> list[float]:
  """The reward of both frameworks (a TRL-style reward function): the share of a completion's words that are
  even-numbered (`w2`, `w4`, …); 0 for an empty completion. `completions`: decoded texts, one per row."""
  del prompts, kwargs
  shares = []
  for text in completions:
    words = text.split()
    shares.append(sum(int(word[1:]) % 2 == 0 for word in words) / len(words) if words else 0.0)
  return shares


class RandomWordsTask(Task):
  """A plug-in task for `TrainStep`: prompts are a loader batch's `prompt` texts (tokenized without special
  tokens), quality is `even_word_share`, and every response is its own ground-truth class (all diversities 1)."""

  name = "bench_random_words"
  needs_chat_template = False

  def prompt_ids(self, batch, tokenizer):
    return tokenizer(list(batch["prompt"]), add_special_tokens=False)["input_ids"]

  def quality_functions(self):
    return [(even_word_share, 1.0)]

  def oracle_classes(self, completions, batch):
    return np.tile(np.arange(len(completions[0]), dtype=np.int32), (len(completions), 1))


def _medians(times: Sequence[dict[str, float]], warmup: int) -> dict[str, float]:
  """The median over the timed steps (after `warmup`) of each key of the per-step split dicts."""
  timed = times[warmup:]
  if not timed:
    raise ValueError(f"no timed steps: --steps must exceed --warmup_steps={warmup}")
  return {key: float(np.median([t[key] for t in timed])) for key in timed[0]}


# ------------------------------------------------------------------------------------------------ darling_jax


def run_darling(shape: RLShape, steps: int, warmup: int) -> dict[str, Any]:
  """`steps` `TrainStep` calls of darling_jax on `shape`'s workload, in this process (see the module doc).

  Returns a dict: `step_s`, `generate_s`, `reward_s`, `update_s` (medians over the steps after `warmup`),
  `steps` (every step's split), `first_step_s` (compilation included), `response_len` (mean sampled tokens per row),
  `loss`, the update's model GFLOP/s and the same-process matmul roofline.
  """
  import jax
  from flax import nnx

  from darling_jax import sharding
  from darling_jax.diversity.sources import DiversityContext
  from darling_jax.grpo import (UpdateConfig, init_train_state, make_optimizer, make_update_fn,
                                rollout_batch_shardings, train_state_shardings)
  from darling_jax.models import DecoderConfig, init_model
  from darling_jax.quality import Quality
  from darling_jax.sampling.sampler import prompt_bucket
  from darling_jax.train_step import StepConfig, TrainStep

  vocab = shape.hf_config["vocab_size"]
  config = DecoderConfig.from_hf(dict(shape.hf_config, model_type="llama", eos_token_id=vocab - 1, pad_token_id=0))
  tokenizer = word_tokenizer(vocab)
  task = RandomWordsTask()
  step_config = StepConfig(group_size=shape.group, max_new_tokens=shape.new_tokens, temperature=1.0, top_p=1.0,
                           diversity_source="oracle", reward_mode="quality_only", normalize_std=True)
  update_config = UpdateConfig(learning_rate=1e-6, num_minibatches=1, agg="token-mean", kl_coef=0.0)

  mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
  model = init_model(config, seed=0)
  optimizer = make_optimizer(update_config)
  graphdef = nnx.graphdef(model)
  state = init_train_state(model, optimizer, jax.random.key(0))
  state_sharding = train_state_shardings(state, optimizer, mesh)
  state = jax.device_put(state, state_sharding)
  del model  # its buffers are the state's, donated by the first update
  update = make_update_fn(graphdef, state_sharding, rollout_batch_shardings(mesh), update_config)
  step_fn = TrainStep(graphdef, update, task, Quality(task.quality_functions()),
                      DiversityContext(floor=step_config.diversity_floor, oracle_classes=task.oracle_classes),
                      tokenizer, step_config, eos_ids=[vocab - 1], mesh=mesh)

  prompts = prompt_texts(shape, steps)
  roofline = matmul_roofline_gflops(3)
  splits, lengths = [], []
  for step in range(steps):
    batch = {"prompt": prompts[step * shape.prompts:(step + 1) * shape.prompts]}
    started = time.perf_counter()
    state, metrics, _ = step_fn(state, batch, step)
    wall = time.perf_counter() - started
    splits.append(dict(step_s=wall, generate_s=metrics["time/sample"],
                       reward_s=metrics["time/quality"] + metrics["time/diversity"] + metrics["time/reward"],
                       update_s=metrics["time/update"]))
    lengths.append(metrics["response_length"])
  medians = _medians(splits, warmup)
  flops, _ = update_flops(config, shape.rows, prompt_bucket(shape.prompt_len), shape.new_tokens)
  return dict(framework="darling_jax", **medians, steps=splits, first_step_s=splits[0]["step_s"],
              response_len=float(np.mean(lengths[warmup:])), loss=metrics["update/loss"],
              params=config.num_params, update_model_gflop=flops / 1e9,
              update_gflops=flops / medians["update_s"] / 1e9, roofline_gflops=roofline)


# ------------------------------------------------------------------------------------------------------- TRL


def trl_available() -> bool:
  return importlib.util.find_spec("trl") is not None


def run_trl(shape: RLShape, steps: int, warmup: int, activation_checkpointing: bool = False) -> dict[str, Any]:
  """`steps` optimizer steps of TRL's `GRPOTrainer` on `shape`'s workload, in this process (see the module doc).

  Returns the same timing keys as `run_darling` (generate = `_generate`, reward = the rest of
  `_generate_and_score_completions`, update = the rest of the optimizer step).
  """
  for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(variable, "1")  # nothing here may reach a hub
  import datasets
  import torch
  import transformers
  from trl import GRPOConfig, GRPOTrainer

  vocab = shape.hf_config["vocab_size"]
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
      **shape.hf_config, bos_token_id=None, eos_token_id=vocab - 1, pad_token_id=0))
  tokenizer = word_tokenizer(vocab)
  dataset = datasets.Dataset.from_dict({"prompt": prompt_texts(shape, steps)})

  class StepTimer(transformers.TrainerCallback):
    """Times each optimizer step; the wrapped trainer methods add their time to the current step's split."""

    def __init__(self):
      self.splits: list[dict[str, float]] = []
      self.lengths: list[float] = []
      self.current = dict(generate_s=0.0, score_s=0.0)
      self.started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
      self.current = dict(generate_s=0.0, score_s=0.0)
      self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
      step_s = time.perf_counter() - self.started
      self.splits.append(dict(step_s=step_s, generate_s=self.current["generate_s"],
                              reward_s=self.current["score_s"] - self.current["generate_s"],
                              update_s=step_s - self.current["score_s"]))

    def timed(self, key, method, on_result=None):
      def wrapper(*args, **kwargs):
        started = time.perf_counter()
        result = method(*args, **kwargs)
        self.current[key] += time.perf_counter() - started
        if on_result is not None:
          on_result(result)
        return result
      return wrapper

  timer = StepTimer()
  with tempfile.TemporaryDirectory() as output_dir:
    args = GRPOConfig(
        output_dir=output_dir, per_device_train_batch_size=shape.rows, num_generations=shape.group,
        max_completion_length=shape.new_tokens, max_steps=steps, learning_rate=1e-6, beta=0.0, loss_type="dapo",
        num_iterations=1, temperature=1.0, top_p=1.0, top_k=0, use_cpu=True, bf16=False,
        activation_checkpointing=activation_checkpointing, logging_strategy="no", save_strategy="no", report_to=[],
        disable_tqdm=True, seed=0, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=model, reward_funcs=even_word_share, args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[timer])
    trainer.remove_callback(transformers.PrinterCallback)  # its end-of-training summary line, not timed
    record_length = lambda out: timer.lengths.append(float(out["completion_mask"].sum(1).float().mean()))  # noqa: E731
    trainer._generate = timer.timed("generate_s", trainer._generate)
    trainer._generate_and_score_completions = timer.timed("score_s", trainer._generate_and_score_completions,
                                                          record_length)
    trainer.train()
    checkpointing = bool(trainer.model.is_activation_checkpointing)
  if len(timer.splits) != steps:
    raise RuntimeError(f"TRL ran {len(timer.splits)} optimizer steps, expected {steps}")
  medians = _medians(timer.splits, warmup)
  return dict(framework="trl", **medians, steps=timer.splits, first_step_s=timer.splits[0]["step_s"],
              response_len=float(np.mean(timer.lengths[warmup:])),
              params=sum(p.numel() for p in model.parameters()),
              versions=dict(trl=__import__("trl").__version__, torch=torch.__version__,
                            transformers=transformers.__version__, torch_threads=torch.get_num_threads()),
              activation_checkpointing=checkpointing)


RUNNERS = {"darling_jax": run_darling, "trl": run_trl}


def run_in_fresh_process(framework: str, shape: RLShape, steps: int, warmup: int, **kwargs) -> dict[str, Any]:
  """`run_darling` / `run_trl` in a new interpreter (spawned: no inherited threads, JAX or torch state, malloc
  arenas)."""
  # An executor, not a Pool: its worker exits on its own at shutdown (a Pool's is terminated by SIGTERM).
  with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as executor:
    return executor.submit(RUNNERS[framework], shape, steps, warmup, **kwargs).result()


# ------------------------------------------------------------------------------------------------------ report


def _split(r: dict | None) -> str:
  if r is None:
    return "n/a"
  return f"{r['generate_s']:.2f} / {r['reward_s']:.2f} / {r['update_s']:.2f}"


def table_row(shape: RLShape, ours: dict | None, trl: dict | None) -> str:
  """One markdown row of `TABLE_HEADER` (either framework's result may be missing)."""
  def step(r):
    if r is None:
      return "n/a"
    return f"{r['step_s']:.2f} s" + (" (activation checkpointing)" if r.get("activation_checkpointing") else "")

  ratio = "n/a" if ours is None or trl is None else f"{trl['step_s'] / ours['step_s']:.2f}×"
  update = ("n/a" if ours is None else
            f"{ours['update_gflops']:.1f} ({100 * ours['update_gflops'] / ours['roofline_gflops']:.0f}% of "
            f"{ours['roofline_gflops']:.0f})")
  return (f"| {shape.name}, {shape.prompts} prompts × {shape.group} × {shape.new_tokens} new | {step(ours)} | "
          f"{step(trl)} | {ratio} | {_split(ours)} | {_split(trl)} | {update} |")


TABLE_HEADER = ("| shape | darling_jax step | TRL step | ratio (TRL / ours) | ours generate / reward+adv / update s | "
                "TRL generate / reward+adv / loss fwd+bwd+optimizer s | our update GFLOP/s (% of matmul roofline) |\n"
                "|---|---|---|---|---|---|---|")


def main(argv):
  del argv
  check_choices("shapes", _SHAPES.value, RL_SHAPES)
  check_choices("frameworks", _FRAMEWORKS.value, FRAMEWORKS)
  if _STEPS.value <= _WARMUP.value:
    raise app.UsageError(f"--steps={_STEPS.value} must exceed --warmup_steps={_WARMUP.value}")
  frameworks = list(_FRAMEWORKS.value)
  if "trl" in frameworks and not trl_available():
    print("trl is not installed (pip install -e '.[bench]'): darling_jax only")
    frameworks.remove("trl")
  print(f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r} (huge-page malloc "
        f"{'on' if runtime.huge_pages_malloc_active() else 'off'}; DARLING_HUGE_PAGES=0 runs without it); "
        f"{_STEPS.value} steps per run, median of steps {_WARMUP.value + 1}–{_STEPS.value}", flush=True)
  rows = []
  for name in _SHAPES.value:
    shape = RL_SHAPES[name]
    options = {"trl": dict(activation_checkpointing=_TRL_CHECKPOINTING.value)}
    results = {framework: run_in_fresh_process(framework, shape, _STEPS.value, _WARMUP.value,
                                               **options.get(framework, {}))
               for framework in frameworks}
    rows.append((shape, results.get("darling_jax"), results.get("trl")))
    print(json.dumps(dict(shape=name, rows=shape.rows, prompt_len=shape.prompt_len, new_tokens=shape.new_tokens,
                          **results)), flush=True)
  print("\n" + TABLE_HEADER)
  for shape, ours, trl in rows:
    print(table_row(shape, ours, trl))


if __name__ == "__main__":
  app.run(main)
