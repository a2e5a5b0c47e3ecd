"""Where the GRPO update's time goes: per-op times of one `grpo_update` call, joined with its compiled HLO.

  python -m darling_jax.bench.update_profile [--shape tiny] [--repeats 3] [--top 25] [--json out.json]
      [--vocab_size 151936 --logprob_chunk_size 16 --noprofile]   # a real vocabulary: time and memory only

The update of `darling_jax.bench.rl_step`'s shape (`--shape`: its model and its rows × (prompt + response) tokens;
AdamW, token-mean loss, no KL, num_minibatches=1) runs on a synthetic rollout batch (`workloads.synthetic_batch`:
all-ones masks, so the compute is the real one), is compiled, warmed up, timed `--repeats` times, then run
`--profiled_calls` more times under `jax.profiler.trace`; each op's time is its fastest call's (on a shared machine
a preempted op would otherwise carry the preemption). XLA:CPU's trace has one event per executed HLO instruction
(thunk), on the thread that ran it; they are joined by name with the compiled module's text (`compiled.as_text()`),
which gives each instruction's opcode, fused computation, output shape, the FLOPs of any dot inside, and the source
location it came from (HLO metadata `stack_frame_id` → the JAX function chain). Reported, against a jitted f32
1024³ matmul measured in the same process (`sampling.matmul_roofline_gflops`):

- the update's median wall time, its model FLOPs (`workloads.update_flops`) and their rate;
- the summed per-op time against the untraced median (the thunk executor may run independent ops concurrently,
  so the sum can exceed it; ops inside a while loop are counted, the loop's own event is not). A YNNPACK dot
  (`ynn_fusion.*`, jax 0.10's default on x86) runs inside its event; an Eigen dot (`dot*`: in the update, the
  weight gradients and some attention matmuls, or every dot with `--xla_cpu_experimental_ynn_fusion_type=`) is
  launched asynchronously: its event is the launch, its work runs alongside (and slows) the ops after it. Its
  FLOPs are counted, its "GFLOP/s" are not a rate;
- the op time by kind: dot (matmul; with its GFLOP/s), data movement (copy / transpose / slice / concatenate
  / pad / dynamic-update-slice only), reduction, gather / scatter, elementwise;
- the op time by source region: LM head + log-softmax, loss, attention projections, attention core (scores,
  softmax, RoPE), MLP, RMSNorm, embedding, optimizer (optax: clipping, AdamW), other;
- the `--top` slowest ops;
- the minor page faults and system CPU time per timed call (XLA:CPU allocates a call's temporaries afresh).

Prints markdown tables, then one JSON line (also written to `--json`).
"""

from __future__ import annotations

if __name__ == "__main__":  # huge-page malloc for XLA's per-call temporaries (darling_jax.runtime), before imports
  from darling_jax import runtime
  runtime.reexec_with_huge_pages()

import collections
import dataclasses
import glob
import gzip
import json
import math
import os
import re
import resource
import tempfile
import time

import jax
import numpy as np
from absl import app, flags

from darling_jax import runtime
from darling_jax.bench.rl_step import RL_SHAPES
from darling_jax.bench.sampling import _REPEATS, matmul_roofline_gflops  # --repeats: timed calls (median reported)
from darling_jax.bench.workloads import UpdateBatch, compile_update, update_flops, xla_memory_mib
from darling_jax.grpo.update import UpdateConfig
from darling_jax.models import DecoderConfig
from darling_jax.sampling.sampler import prompt_bucket

_SHAPE = flags.DEFINE_string("shape", "tiny", "A darling_jax.bench.rl_step shape (tiny, smollm2, micro).")
_TOP = flags.DEFINE_integer("top", 25, "Slowest ops listed.")
_JSON = flags.DEFINE_string("json", None, "Also write the JSON summary to this file.")
_CHUNK = flags.DEFINE_integer("logprob_chunk_size", None, "UpdateConfig.logprob_chunk_size (None: whole head).")
_VOCAB = flags.DEFINE_integer("vocab_size", None, "Override the shape's vocabulary size (e.g. 151936, Qwen's).")
_PROFILE = flags.DEFINE_bool("profile", True, "Trace more calls and break them down (off: timing and memory only).")
_PROFILED_CALLS = flags.DEFINE_integer("profiled_calls", 3, "Traced calls; each op's fastest call is reported.")


MOVEMENT_OPCODES = {"parameter", "copy", "transpose", "bitcast", "reshape", "broadcast", "slice", "concatenate", "pad",
                    "dynamic-slice", "dynamic-update-slice", "constant", "tuple", "get-tuple-element", "iota"}
CONTAINER_OPCODES = {"while", "call", "conditional"}  # their trace events contain their body's ops


@dataclasses.dataclass
class Instruction:
  """One HLO instruction of the compiled module's text."""

  name: str
  opcode: str
  shape: str
  operands: list[str]
  calls: str | None
  frame: int | None
  contracting: list[int]
  line: str


_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+) = (.+?) ([a-z][a-z0-9\-]*)\((.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%([\w.\-]+) .*\{\s*$")


def _dims(shape: str) -> list[int]:
  """`f32[64,96,1024]{2,1,0}` -> [64, 96, 1024] (the first array of a tuple shape; [] for a scalar)."""
  match = re.search(r"\[([\d,]*)\]", shape)
  return [int(d) for d in match.group(1).split(",") if d] if match else []


def parse_hlo(text: str) -> tuple[dict[str, Instruction], dict[str, list[Instruction]], dict[int, list[str]]]:
  """`(instructions by name, computations' instructions by name, stack frame id -> function chain innermost first
  as "file path:function")` of a compiled module's text."""
  instructions, computations = {}, collections.defaultdict(list)
  current = None
  files, functions, locations, frames = {}, {}, {}, {}
  section = None
  for line in text.splitlines():
    if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
      section = line
      continue
    if section and re.match(r"^\d+ ", line):
      index, rest = line.split(" ", 1)
      index = int(index)
      if section == "FileNames":
        files[index] = rest.strip('"')
      elif section == "FunctionNames":
        functions[index] = rest.strip('"')
      elif section == "FileLocations":
        fields = dict(re.findall(r"(\w+)=(\d+)", rest))
        locations[index] = (int(fields["file_name_id"]), int(fields["function_name_id"]))
      else:
        fields = dict(re.findall(r"(\w+)=(\d+)", rest))
        # The text prints a frame's parent as its id + 1 (1: no parent): checked against the call chains of
        # jax 0.10's HLO metadata, e.g. `RMSNorm.__call__` → `DecoderLayer.__call__` → `DecoderLM._run_layers`.
        frames[index] = (int(fields["file_location_id"]), int(fields.get("parent_frame_id", 1)) - 1)
      continue
    if not line.strip():
      section = None if section == "StackFrames" else section
      continue
    computation = _COMPUTATION.match(line)
    if computation and "=" not in line.split("(")[0]:
      current, section = computation.group(1), None
      continue
    match = _INSTRUCTION.match(line)
    if match and current is not None:
      name, shape, opcode, rest = match.groups()
      operands = re.findall(r"%([\w.\-]+)", rest.split("),")[0])
      calls = re.search(r"calls=%([\w.\-]+)", rest)
      frame = re.search(r"stack_frame_id=(\d+)", rest)
      contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest)
      instruction = Instruction(name, opcode, shape, operands, calls.group(1) if calls else None,
                                int(frame.group(1)) if frame else None,
                                [int(d) for d in contracting.group(1).split(",") if d] if contracting else [],
                                line)
      instructions[name] = instruction
      computations[current].append(instruction)
  chains = {}
  for frame_id in frames:
    chain, seen, node = [], set(), frame_id
    while node in frames and node not in seen:
      seen.add(node)
      location, parent = frames[node]
      file_id, function_id = locations.get(location, (0, 0))
      chain.append(f"{files.get(file_id, '?')}:{functions.get(function_id, '?')}")
      node = parent
    chains[frame_id] = chain
  return instructions, dict(computations), chains


def _called(instruction: Instruction, computations) -> list[Instruction]:
  """Every instruction of the computations `instruction` calls (recursively)."""
  out, stack = [], [instruction.calls] if instruction.calls else []
  while stack:
    for inner in computations.get(stack.pop(), []):
      out.append(inner)
      if inner.calls:
        stack.append(inner.calls)
  return out


def dot_flops(instruction: Instruction, computations, instructions) -> float:
  """FLOPs of the dots in `instruction` (itself or fused): 2 × output elements × contracted size."""
  flops = 0.0
  scope = {i.name: i for i in _called(instruction, computations)} or instructions
  for inner in [instruction, *_called(instruction, computations)]:
    if inner.opcode != "dot" or not inner.operands:
      continue
    lhs = scope.get(inner.operands[0]) or instructions.get(inner.operands[0])
    lhs_dims = _dims(lhs.shape) if lhs else []
    contracted = math.prod(lhs_dims[d] for d in inner.contracting) if lhs_dims else 0
    flops += 2.0 * math.prod(_dims(inner.shape)) * contracted
  return flops


def op_kind(instruction: Instruction, computations) -> str:
  inner = {i.opcode for i in _called(instruction, computations)} | {instruction.opcode}
  inner.discard("fusion")
  if "dot" in inner or "convolution" in inner:
    return "dot"
  if "gather" in inner or "scatter" in inner:
    return "gather / scatter"
  if "reduce" in inner or "reduce-window" in inner:
    return "reduction"
  if inner <= MOVEMENT_OPCODES:
    return "data movement"
  return "elementwise"


REGIONS = (  # (region, predicate on the function chain innermost first), first match wins
    ("optimizer (optax)", lambda chain: any("/optax/" in part for part in chain)),
    ("LM head + log-softmax", lambda chain: any(f in part for part in chain
                                                for f in ("response_logprobs.<locals>.head", "DecoderLM.logits"))),
    ("loss", lambda chain: any(f in part for part in chain for f in ("policy_loss", "_aggregate"))),
    ("attention projections", lambda chain: any("Attention.__call__" in p for p in chain)
     and any("Linear.__call__" in p for p in chain)),
    ("attention core (scores, softmax, RoPE)", lambda chain: any(f in part for part in chain
                                                                 for f in ("Attention.__call__", "rope", "rotate"))),
    ("MLP", lambda chain: any("MLP.__call__" in p for p in chain)),
    ("RMSNorm", lambda chain: any("RMSNorm" in p for p in chain)),
    ("embedding", lambda chain: any("hidden_states" in p for p in chain)),
)


def op_region(instruction: Instruction, computations, chains) -> str:
  frame = instruction.frame
  if frame is None:  # a fusion without metadata: its root's
    inner = _called(instruction, computations)
    frame = next((i.frame for i in reversed(inner) if i.frame is not None), None)
  chain = chains.get(frame, [])
  for region, matches in REGIONS:
    if matches(chain):
      return region
  return "other"


def trace_op_times(trace_dir: str, names: set[str], num_calls: int) -> tuple[dict[str, float], dict[str, int]]:
  """Per traced HLO instruction in `names`: its time (ms) in the fastest of the `num_calls` traced calls, and how
  often it runs per call.

  An op's events are split into `num_calls` consecutive groups (one per call, in time order) and summed per group;
  the smallest sum is kept. On a shared machine a preempted op then costs what it costs undisturbed.
  """
  paths = glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "perfetto_trace.json.gz"))
  if not paths:
    raise FileNotFoundError(f"no perfetto_trace.json.gz under {trace_dir}")
  with gzip.open(max(paths, key=os.path.getmtime)) as f:
    events = sorted((e for e in json.load(f)["traceEvents"] if e.get("ph") == "X" and e["name"] in names),
                    key=lambda e: e["ts"])
  durations = collections.defaultdict(list)
  for event in events:
    durations[event["name"]].append(event.get("dur", 0.0) / 1e3)
  op_ms, op_calls = {}, {}
  for name, values in durations.items():
    if len(values) % num_calls:
      raise ValueError(f"op {name} ran {len(values)} times in {num_calls} calls")
    per_call = np.asarray(values).reshape(num_calls, -1)
    op_ms[name], op_calls[name] = float(per_call.sum(axis=1).min()), per_call.shape[1]
  return op_ms, op_calls


def profile_update(shape_name: str, repeats: int, top: int, logprob_chunk_size: int | None = None,
                   vocab_size: int | None = None, profile: bool = True, profiled_calls: int = 3) -> dict:
  """The update's timing, XLA memory and (with `profile`) per-op breakdown at `shape_name` (see the module doc)."""
  shape = RL_SHAPES[shape_name]
  hf_config = dict(shape.hf_config, model_type="llama", **({"vocab_size": vocab_size} if vocab_size else {}))
  config = DecoderConfig.from_hf(hf_config)
  batch_shape = UpdateBatch(rows=shape.rows, prompt_len=prompt_bucket(shape.prompt_len), response_len=shape.new_tokens)
  update_config = UpdateConfig(num_minibatches=1, logprob_chunk_size=logprob_chunk_size)
  roofline = matmul_roofline_gflops(3)
  compiled, state, batch, _ = compile_update(config, batch_shape, update_config)
  memory = {k: v for k, v in xla_memory_mib(compiled).items() if k in ("mem_temp_mib", "mem_peak_mib")}
  state, metrics = jax.block_until_ready(compiled(state, batch))
  times = []
  cpu = resource.getrusage(resource.RUSAGE_SELF)
  for _ in range(repeats):
    started = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(state, batch))
    times.append(time.perf_counter() - started)
  after = resource.getrusage(resource.RUSAGE_SELF)
  faults_per_call = (after.ru_minflt - cpu.ru_minflt) / repeats
  system_s_per_call = (after.ru_stime - cpu.ru_stime) / repeats
  flops, _ = update_flops(config, batch_shape.rows, batch_shape.prompt_len, batch_shape.response_len)
  median = float(np.median(times))
  result = dict(shape=shape_name, rows=batch_shape.rows, prompt_len=batch_shape.prompt_len,
                response_len=batch_shape.response_len, vocab=config.vocab_size,
                params_m=round(config.num_params / 1e6, 2), logprob_chunk_size=logprob_chunk_size,
                update_s_median=round(median, 4), update_s_all=[round(t, 4) for t in times],
                response_tok_s=round(batch_shape.rows * batch_shape.response_len / median, 1),
                total_tok_s=round(batch_shape.rows * (batch_shape.prompt_len + batch_shape.response_len) / median, 1),
                model_flops=flops, model_gflop=round(flops / 1e9, 2), gflops=round(flops / median / 1e9, 1),
                roofline_gflops=round(roofline, 1), roofline_pct=round(100 * flops / median / 1e9 / roofline, 1),
                loss=round(float(metrics["loss"]), 5), page_faults_per_call=round(faults_per_call),
                system_s_per_call=round(system_s_per_call, 3), **memory,
                glibc_tunables=os.environ.get("GLIBC_TUNABLES", ""), xla_flags=os.environ.get("XLA_FLAGS", ""))
  if not profile:
    return result
  with tempfile.TemporaryDirectory() as trace_dir:
    traced_s = []
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(profiled_calls):
        started = time.perf_counter()
        state, metrics = jax.block_until_ready(compiled(state, batch))
        traced_s.append(time.perf_counter() - started)
    instructions, computations, chains = parse_hlo(compiled.as_text())
    counted = {name for name, i in instructions.items() if i.opcode not in CONTAINER_OPCODES}
    op_ms, op_calls = trace_op_times(trace_dir, counted, profiled_calls)

  total_ms = sum(op_ms.values())
  kinds, regions = collections.Counter(), collections.Counter()
  kind_flops, region_flops = collections.Counter(), collections.Counter()
  ops = []
  for name, ms in op_ms.items():
    instruction = instructions[name]
    kind = op_kind(instruction, computations)
    region = op_region(instruction, computations, chains)
    op_flops = dot_flops(instruction, computations, instructions) * op_calls[name] if kind == "dot" else 0.0
    kinds[kind] += ms
    regions[region] += ms
    kind_flops[kind] += op_flops
    region_flops[region] += op_flops
    ops.append(dict(name=name, ms=round(ms, 3), calls=op_calls[name], kind=kind, region=region,
                    shape=instruction.shape.split("{")[0],
                    gflops=round(op_flops / ms / 1e6, 1) if op_flops and ms else None))
  ops.sort(key=lambda op: -op["ms"])

  def breakdown(times_ms, flop_counts):
    return [dict(name=key, ms=round(ms, 2), share=round(100 * ms / total_ms, 1),
                 gflops=round(flop_counts[key] / ms / 1e6, 1) if flop_counts[key] else None)
            for key, ms in times_ms.most_common()]

  return dict(result, traced_calls_s=[round(t, 4) for t in traced_s], op_ms_total=round(total_ms, 1),
              op_ms_over_wall=round(total_ms / 1e3 / median, 2),
              traced_dot_flops=sum(kind_flops.values()), traced_dot_gflop=round(sum(kind_flops.values()) / 1e9, 2),
              by_kind=breakdown(kinds, kind_flops), by_region=breakdown(regions, region_flops), top_ops=ops[:top])


def _print_tables(r: dict) -> None:
  print(f"update ({r['shape']}: {r['rows']} rows × ({r['prompt_len']} + {r['response_len']}) tokens, V {r['vocab']}, "
        f"{r['params_m']}M params, LM-head chunk {r['logprob_chunk_size']}): median {r['update_s_median']:.3f} s of "
        f"{r['update_s_all']} ({r['response_tok_s']:.0f} response tok/s, {r['total_tok_s']:.0f} tok/s); model "
        f"{r['model_gflop']} GFLOP → {r['gflops']} GFLOP/s = {r['roofline_pct']}% of the same-run matmul roofline "
        f"({r['roofline_gflops']} GFLOP/s); XLA peak {r.get('mem_peak_mib')} MiB (temporaries "
        f"{r.get('mem_temp_mib')}); {r['page_faults_per_call']} page faults and {r['system_s_per_call']} s system time "
        "per call")
  if "by_kind" not in r:
    return
  print(f"traced calls: {r['traced_calls_s']} s wall; summed op time (each op's fastest call) {r['op_ms_total']} ms "
        f"= {r['op_ms_over_wall']} × the untraced median; traced dot FLOPs {r['traced_dot_gflop']} GFLOP")
  for title, rows in (("kind", r["by_kind"]), ("source region", r["by_region"])):
    print(f"\n| {title} | op ms | % of op time | dot GFLOP/s |\n|---|---|---|---|")
    for row in rows:
      print(f"| {row['name']} | {row['ms']:.1f} | {row['share']:.1f}% | {row['gflops'] or ''} |")
  print("\n| op | ms | calls | kind | region | shape | GFLOP/s |\n|---|---|---|---|---|---|---|")
  for op in r["top_ops"]:
    print(f"| {op['name']} | {op['ms']:.2f} | {op['calls']} | {op['kind']} | {op['region']} | {op['shape']} | "
          f"{op['gflops'] or ''} |")


def main(argv):
  del argv
  if _SHAPE.value not in RL_SHAPES:
    raise app.UsageError(f"--shape: unknown {_SHAPE.value!r}; known: {sorted(RL_SHAPES)}")
  print(f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r} (huge-page malloc "
        f"{'on' if runtime.huge_pages_malloc_active() else 'off'}); XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
        flush=True)
  result = profile_update(_SHAPE.value, _REPEATS.value, _TOP.value, _CHUNK.value, _VOCAB.value, _PROFILE.value,
                          _PROFILED_CALLS.value)
  _print_tables(result)
  print(json.dumps(result))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(result, f)


if __name__ == "__main__":
  app.run(main)
