"""Process settings the command-line entry points apply themselves, so no user has to know them.

XLA:CPU allocates a jitted call's temporaries afresh on every call (hundreds of MiB for a BERT training step,
GiB for a policy update), and the kernel faults them in 4 KiB at a time. With glibc's
`GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc ≥ 2.35) malloc asks for transparent huge pages instead: on the
2-core machine the MiniLM pair-classifier training step went from 0.40 to 0.52 steps/s and the SmolLM2-shape
GRPO update from 52% to 65% of the matmul roofline (README, Benchmarks). glibc reads the variable once, when the
process starts, so an entry point that wants it re-executes itself with it set:

    if __name__ == "__main__":
      runtime.reexec_with_huge_pages()      # first thing: before the heavy imports; a no-op once set

Nothing changes where it cannot help (no transparent huge pages, another libc, already set) or when
`DARLING_HUGE_PAGES=0` asks for the process as started.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping

TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT = "DARLING_HUGE_PAGES"
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def huge_pages_malloc_active(environ: Mapping[str, str] = os.environ) -> bool:
  """Whether `GLIBC_TUNABLES` already sets the hugetlb tunable (to any value)."""
  return any(item.split("=")[0] == TUNABLE for item in environ.get("GLIBC_TUNABLES", "").split(":"))


def transparent_huge_pages_usable(setting_file: str = THP_SETTING) -> bool:
  """Whether the kernel gives transparent huge pages to a process that asks (`always` or `madvise` mode)."""
  try:
    with open(setting_file) as f:
      setting = f.read()
  except OSError:
    return False
  return "[always]" in setting or "[madvise]" in setting


def glibc_has_hugetlb_tunable() -> bool:
  """glibc ≥ 2.35 (where `glibc.malloc.hugetlb` exists)."""
  library, version = platform.libc_ver()
  if library != "glibc" or not version:
    return False
  major, minor = (int(part) for part in version.split(".")[:2])
  return (major, minor) >= (2, 35)


def huge_pages_environment(environ: Mapping[str, str] = os.environ, *, thp_usable: bool | None = None,
                           glibc_ok: bool | None = None) -> dict[str, str] | None:
  """The environment to re-execute with (`GLIBC_TUNABLES` extended by `glibc.malloc.hugetlb=1`), or None when
  nothing should change (already set, opted out, or the tunable cannot help here)."""
  if environ.get(OPT_OUT) == "0" or huge_pages_malloc_active(environ):
    return None
  if not (transparent_huge_pages_usable() if thp_usable is None else thp_usable):
    return None
  if not (glibc_has_hugetlb_tunable() if glibc_ok is None else glibc_ok):
    return None
  env = dict(environ)
  env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES", ""), f"{TUNABLE}=1"]))
  return env


def reexec_with_huge_pages() -> None:
  """Replaces this process by the same command line (`sys.orig_argv`: interpreter options and `-m module`
  included) with huge-page malloc, when `huge_pages_environment` says so; otherwise returns."""
  env = huge_pages_environment()
  if env is None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, list(sys.orig_argv), env)
