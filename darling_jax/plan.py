"""Will this run fit? Compiles a config's real step for a device topology and prints memory and FLOPs per device.

  pip install -e '.[tpu-plan]'    # jax[tpu] at the installed jax version: libtpu, to compile for TPU on any host
  python -m darling_jax.plan --config configs/paper_math_qwen3_4b.py --topology v5p:2x2x2
  python -m darling_jax.plan --config configs/paper_wildchat_llama8b.py --topology v6e:2x4 --config.mesh.fsdp=8
  python -m darling_jax.plan --config configs/smollm2_math.py --topology cpu:8      # no libtpu needed

For the config's policy, optimizer, rollout batch (`rl.prompts_per_step` × `rl.group_size` rows of a
`--prompt_len`-token prompt bucket and `rl.max_new_tokens` response tokens) and, where configured, reward model,
reference policy and cross-encoder pair classifier, every jitted stage of a train step is lowered over abstract
arrays on the config's mesh (`config.mesh`, `data = -1` taking the topology's remaining devices) and compiled
for the topology's devices (`darling_jax.planning`): TPU topologies are libtpu's abstract chips, so nothing needs
a TPU attached (as MaxText's `train_compile.py`). It prints, per device: the resident weights and optimizer state,
the KV cache, each stage's XLA memory (arguments, outputs, temporaries, peak) and the run's peak (resident arrays
plus the largest stage's transient memory) against the chip's HBM; and the step's model FLOPs. Checkpoint shapes
come from the checkpoint's `config.json` (or `.gguf` header) when the path exists here, else from
`darling_jax.planning.known_models` by the path's last component (the paper's models).

`--json_out FILE` appends the plan as one JSON line.
"""

from __future__ import annotations

import json

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config (configs/*.py).", lock_config=True)
_TOPOLOGY = flags.DEFINE_string("topology", None, "TPU topology (v5p:2x2x1, v5e:4x4, v6e:2x4, ...) or cpu:N.")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 1024, "Longest prompt in tokens (bucketed to a power of two as the "
                                   "sampler does); the paper caps prompts at 1,024 (math) and 512 (WildChat).")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Append the plan as a JSON line to this file.")
_HBM_GIB = flags.DEFINE_float("hbm_gib", None, "Memory per device in GiB (default: the chip's, unknown for CPU).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if _CONFIG.value is None or not _TOPOLOGY.value:
    raise app.UsageError("--config and --topology are required, e.g. --config configs/paper_math_qwen3_4b.py "
                         "--topology v5p:2x2x1")
  from darling_jax.planning.run_plan import format_plan, make_plan
  from darling_jax.planning.topology import quiet_libtpu_environment, requested_cpu_devices
  quiet_libtpu_environment(_TOPOLOGY.value)
  import jax
  cpus = requested_cpu_devices(_TOPOLOGY.value)
  if cpus is not None:
    jax.config.update("jax_num_cpu_devices", cpus)
  plan = make_plan(_CONFIG.value, _TOPOLOGY.value, prompt_len=_PROMPT_LEN.value, hbm_gib=_HBM_GIB.value)
  print(format_plan(plan), flush=True)
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, "a") as f:
      f.write(json.dumps(plan) + "\n")


if __name__ == "__main__":
  app.run(main)
