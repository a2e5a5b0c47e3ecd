"""A run config's plan: every jitted stage of its train step compiled for a topology, memory and FLOPs per device.

    plan = make_plan(config, "v5p:2x2x2", prompt_len=1024)     # a dict (JSON-able)
    print(format_plan(plan))

The command line is `python -m darling_jax.plan` (see its docstring).
"""

from __future__ import annotations

import json
import os
import pathlib
import time

GIB = 2**30


def checkpoint_config(path: str, what: str) -> tuple[dict, str]:
  """`(config.json dict, where it came from)` of the checkpoint at `path` (config key `what`)."""
  from darling_jax.models.gguf_checkpoint import read_gguf
  from darling_jax.planning.known_models import KNOWN_MODELS, known_model_config
  expanded = os.path.expanduser(path)
  if expanded.endswith(".gguf") and os.path.isfile(expanded):
    config, _ = read_gguf(expanded)
    return config.to_hf(), expanded
  if os.path.isfile(os.path.join(expanded, "config.json")):
    return json.loads(pathlib.Path(expanded, "config.json").read_text()), expanded
  name = pathlib.PurePath(expanded).name
  known = known_model_config(name)
  if known is None:
    raise ValueError(f"{what} {path!r}: no config.json or .gguf file there, and {name!r} is not a known model "
                     f"({sorted(KNOWN_MODELS)}); copy the checkpoint's config.json to that path to plan it")
  return known, f"{name} (known shape; not found here)"


def resolve_mesh_shape(config, num_devices: int) -> tuple[int, int, int]:
  data, fsdp, tensor = (int(config.mesh[k]) for k in ("data", "fsdp", "tensor"))
  if data == -1:
    if num_devices % (fsdp * tensor):
      raise ValueError(f"config.mesh fsdp={fsdp} × tensor={tensor} does not divide the topology's {num_devices} "
                       f"devices; set --config.mesh.fsdp / --config.mesh.tensor")
    data = num_devices // (fsdp * tensor)
  if data * fsdp * tensor != num_devices:
    raise ValueError(f"config.mesh (data={data}, fsdp={fsdp}, tensor={tensor}) needs {data * fsdp * tensor} devices, "
                     f"the topology has {num_devices}; set --config.mesh.*")
  return data, fsdp, tensor


def make_plan(config, topology: str, *, prompt_len: int, hbm_gib: float | None = None) -> dict:
  """The plan of `config` on `topology` as a dict (see the module docstring); raises naming a bad config key."""
  from darling_jax import sharding
  from darling_jax.config_sections import dataclass_from_section
  from darling_jax.grpo import UpdateConfig
  from darling_jax.models import DecoderConfig
  from darling_jax.planning import executables as ex
  from darling_jax.planning.topology import hbm_bytes, topology_devices
  from darling_jax.run_settings import LOOP_KEYS
  from darling_jax.sampling.sampler import prompt_bucket
  from darling_jax.stages import DTYPES
  from darling_jax.train_step import StepConfig

  devices = topology_devices(topology)
  mesh_shape = resolve_mesh_shape(config, len(devices))
  mesh = sharding.make_mesh(*mesh_shape, devices=devices)
  step = dataclass_from_section(config.rl, StepConfig, "rl", ignore=LOOP_KEYS)
  update = dataclass_from_section(config.grpo, UpdateConfig, "grpo", temperature=step.temperature)
  prompts, group = int(config.rl.prompts_per_step), step.group_size
  rows, width, new_tokens = prompts * group, prompt_bucket(prompt_len), step.max_new_tokens

  policy_path = config.policy.get("checkpoint", "")
  if not policy_path:
    raise ValueError("policy.checkpoint is empty: the plan needs the policy's shape (an HF directory, a .gguf file "
                     "or a known model name)")
  hf, policy_source = checkpoint_config(policy_path, "policy.checkpoint")
  dtype = config.policy.get("dtype", "float32")
  for key, value in (("dtype", dtype), ("param_dtype", config.policy.get("param_dtype", "") or dtype)):
    if value not in DTYPES:
      raise ValueError(f"policy.{key} must be one of {sorted(DTYPES)}, got {value!r}")
  remat = bool(config.policy.get("remat", False))
  model_config = DecoderConfig.from_hf(hf, dtype=dtype, param_dtype=config.policy.get("param_dtype", "") or dtype,
                                       remat=remat)

  stages, timings = [], {}
  started = time.perf_counter()
  policy = ex.policy_arrays(model_config, update, mesh)
  per_call = step.prompts_per_sample_call or prompts
  if prompts % per_call:
    raise ValueError(f"rl.prompts_per_sample_call={per_call} does not divide rl.prompts_per_step={prompts}")
  prefill_plan, decode_plan, kv_bytes = ex.plan_sample(policy, mesh, prompts=per_call, prompt_width=width,
                                                       group_size=group, max_new_tokens=new_tokens,
                                                       temperature=step.temperature, top_p=step.top_p,
                                                       calls_per_step=prompts // per_call)
  stages += [prefill_plan, decode_plan]
  timings["sample"] = time.perf_counter() - started
  with_reference = update.kl_coef > 0
  batch = ex.rollout_structs(mesh, rows, width, new_tokens, with_ref_logp=with_reference)
  resident = {"policy weights": policy.params_bytes, "optimizer state": policy.optimizer_bytes}
  if with_reference:
    started = time.perf_counter()
    stages.append(ex.plan_reference(policy, mesh, batch, temperature=step.temperature,
                                    chunk_size=update.logprob_chunk_size, microbatch_size=update.microbatch_size))
    resident["reference weights"] = policy.params_bytes
    timings["reference"] = time.perf_counter() - started
  started = time.perf_counter()
  stages.append(ex.plan_update(policy, update, mesh, batch))
  timings["update"] = time.perf_counter() - started

  sources = {"policy": policy_source}
  reward_model = config.get("quality", {}).get("reward_model", "")
  if reward_model:
    started = time.perf_counter()
    rm_hf, sources["reward model"] = checkpoint_config(reward_model, "quality.reward_model")
    rm_plan, rm_bytes = ex.plan_reward_model(rm_hf, mesh, rows=rows,
                                             batch_size=int(config.quality.get("reward_model_batch_size", 8)),
                                             max_length=int(config.quality.get("reward_model_max_length", 1024)))
    stages.append(rm_plan)
    resident["reward model weights"] = rm_bytes
    timings["reward model"] = time.perf_counter() - started
  classifier = config.get("classifier", {})
  notes = []
  if step.diversity_source == "classifier" and classifier.get("kind", "bi_encoder") == "cross_encoder":
    if classifier.get("path"):
      started = time.perf_counter()
      cls_hf, sources["pair classifier"] = checkpoint_config(classifier.path, "classifier.path")
      pairs = prompts * group * (group - 1) // 2 * (2 if classifier.get("both_orders", True) else 1)
      cls_dtype = classifier.get("dtype", "float32")
      if cls_dtype not in DTYPES:
        raise ValueError(f"classifier.dtype must be one of {sorted(DTYPES)}, got {cls_dtype!r}")
      cls_plan, cls_bytes = ex.plan_cross_encoder(cls_hf, devices[0], pairs=pairs, dtype=DTYPES[cls_dtype],
                                                  rows_per_call=int(classifier.get("rows_per_call", 256)),
                                                  max_length=int(classifier.get("max_length") or 256))
      stages.append(cls_plan)
      resident["pair classifier weights (device 0)"] = cls_bytes
      timings["pair classifier"] = time.perf_counter() - started
    else:
      notes.append("pair classifier: trained in the run (no classifier.path), not planned")
  elif step.diversity_source == "classifier":
    notes.append("pair classifier: a bi-encoder (one small encoder forward per response), not planned")

  resident_total = sum(resident.values())
  peak_stage = max(stages, key=lambda s: s.transient)
  peak = resident_total + peak_stage.transient
  capacity = int(hbm_gib * GIB) if hbm_gib else hbm_bytes(devices[0])
  flops = ex.model_flops_per_step(model_config, prompts=prompts, group_size=group, prompt_width=width,
                                  response_width=new_tokens, remat=remat, with_reference=with_reference)
  return {
      "config": config.get("name", ""), "topology": topology, "devices": len(devices),
      "device_kind": devices[0].device_kind, "mesh": dict(zip(sharding.MESH_AXES, mesh_shape)),
      "sources": sources, "policy_params": model_config.num_params, "rows": rows, "prompt_width": width,
      "response_width": new_tokens, "resident_bytes": resident, "kv_cache_bytes": kv_bytes,
      "stages": [dict(name=s.name, calls_per_step=s.calls_per_step, arguments=s.arguments, outputs=s.outputs,
                      aliased=s.aliased, temporaries=s.temporaries, peak=s.peak, transient=s.transient,
                      xla_flops=s.xla_flops, notes=s.notes, error=s.error) for s in stages],
      "update_temporaries": next(s.temporaries for s in stages if s.name == "update"),
      "peak_bytes": peak, "peak_stage": peak_stage.name, "hbm_bytes": capacity,
      "fits": False if any(s.error for s in stages) else None if capacity is None else peak <= capacity,
      "model_flops_per_step": flops,
      "compile_seconds": {k: round(v, 1) for k, v in timings.items()}, "notes": notes,
  }


def _gib(value: float) -> str:
  return f"{value / GIB:.2f}"


TABLE_HEADER = ("| config | topology | chips × HBM | mesh (data, fsdp, tensor) | resident: weights, AdamW, RM, "
                "classifier | KV cache | update activations | peak (stage) | fits | model PFLOP / step |\n"
                "|---|---|---|---|---|---|---|---|---|---|")


def table_row(plan: dict) -> str:
  """One markdown row of `TABLE_HEADER` (GiB per device)."""
  capacity = plan["hbm_bytes"]
  resident = sum(plan["resident_bytes"].values())
  fits = "?" if capacity is None else ("**yes**" if plan["fits"] else "no")
  return (f"| {plan['config']} | {plan['topology']} | {plan['devices']} × "
          f"{'?' if capacity is None else _gib(capacity)} | {', '.join(map(str, plan['mesh'].values()))} | "
          f"{_gib(resident)} | {_gib(plan['kv_cache_bytes'])} | {_gib(plan['update_temporaries'])} | "
          f"{'≥ ' if any(s.get('error') for s in plan['stages']) else ''}{_gib(plan['peak_bytes'])} "
          f"({plan['peak_stage']}) | {fits} | "
          f"{sum(plan['model_flops_per_step'].values()) / 1e15:,.0f} |")


def format_plan(plan: dict) -> str:
  mesh = ", ".join(f"{k}={v}" for k, v in plan["mesh"].items())
  lines = [f"plan of {plan['config']} on {plan['topology']}: {plan['devices']} × {plan['device_kind']}, mesh {mesh}",
           *(f"  {what}: {source}" for what, source in plan["sources"].items()),
           f"  policy {plan['policy_params'] / 1e9:.2f}B parameters; rollout {plan['rows']} rows × "
           f"({plan['prompt_width']} prompt + {plan['response_width']} response) tokens", "",
           "per device, GiB:"]
  lines += [f"  {what:<36} {_gib(b):>9}" for what, b in plan["resident_bytes"].items()]
  lines.append(f"  {'KV cache (prompts + samples)':<36} {_gib(plan['kv_cache_bytes']):>9}")
  lines.append(f"  {'update activations (XLA temporaries)':<36} {_gib(plan['update_temporaries']):>9}")
  lines += ["", "| stage | calls / step | arguments | outputs | temporaries | XLA peak | beyond resident | notes |",
            "|---|---|---|---|---|---|---|---|"]
  for s in plan["stages"]:
    if s.get("error"):  # XLA refused to compile it for lack of memory: its temporaries alone, as XLA counted them
      lines.append(f"| {s['name']} | {s['calls_per_step']} | – | – | ≥ {_gib(s['temporaries'])} | – | "
                   f"≥ {_gib(s['transient'])} | refused by XLA: {s['error'][:90]} |")
      continue
    lines.append(f"| {s['name']} | {s['calls_per_step']} | {_gib(s['arguments'])} | {_gib(s['outputs'])} | "
                 f"{_gib(s['temporaries'])} | {_gib(s['peak'])} | {_gib(s['transient'])} | {s['notes']} |")
  flops = plan["model_flops_per_step"]
  lines += ["", "model FLOPs per step (all devices): " + ", ".join(f"{k} {v / 1e12:,.1f} TFLOP" for k, v in
                                                                   flops.items() if v) +
            f"; total {sum(flops.values()) / 1e12:,.1f} TFLOP"]
  capacity = plan["hbm_bytes"]
  verdict = ("unknown (no HBM size for this device; --hbm_gib)" if capacity is None else
             f"{'FITS' if plan['fits'] else 'DOES NOT FIT'} in {_gib(capacity)} GiB")
  refused = [s["name"] for s in plan["stages"] if s.get("error")]
  bound = "at least " if refused else ""
  lines.append(f"peak per device: {bound}{_gib(plan['peak_bytes'])} GiB (resident + {plan['peak_stage']}): {verdict}")
  if refused:
    lines.append(f"XLA refused to compile for lack of device memory: {', '.join(refused)}")
  lines += [f"note: {n}" for n in plan["notes"]]
  lines.append("compile seconds: " + ", ".join(f"{k} {v}" for k, v in plan["compile_seconds"].items()))
  lines += ["", TABLE_HEADER, table_row(plan)]
  return "\n".join(lines)
