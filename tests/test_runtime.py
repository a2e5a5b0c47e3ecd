"""Huge-page malloc at start-up: when the entry points re-execute themselves, and that the re-executed process
keeps its command line."""

import os
import subprocess
import sys

from darling_jax import runtime


def test_environment_adds_the_tunable_only_where_it_can_help():
  add = lambda environ, **kw: runtime.huge_pages_environment(environ, **{"thp_usable": True, "glibc_ok": True, **kw})
  assert add({"PATH": "/bin"})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
  assert add({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})["GLIBC_TUNABLES"] == (
      "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1")
  assert add({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) is None  # the user's own choice stands
  assert add({"DARLING_HUGE_PAGES": "0"}) is None
  assert add({}, thp_usable=False) is None and add({}, glibc_ok=False) is None


def test_thp_setting_is_read_from_the_kernel_file(tmp_path):
  for text, usable in (("always [madvise] never\n", True), ("[always] madvise never\n", True),
                       ("always madvise [never]\n", False)):
    (tmp_path / "enabled").write_text(text)
    assert runtime.transparent_huge_pages_usable(str(tmp_path / "enabled")) is usable
  assert not runtime.transparent_huge_pages_usable(str(tmp_path / "missing"))


def test_reexec_keeps_the_command_line_and_runs_once(tmp_path):
  script = tmp_path / "entry.py"
  script.write_text(
      "import os, sys\n"
      "from darling_jax import runtime\n"
      "print('start', os.environ.get('GLIBC_TUNABLES', ''), sys.argv[1:], flush=True)\n"
      "runtime.reexec_with_huge_pages()\n"
      "print('ran', runtime.huge_pages_malloc_active())\n")
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "DARLING_HUGE_PAGES")}
  out = subprocess.run([sys.executable, "-X", "utf8", str(script), "--flag=1"], env=env, capture_output=True,
                       text=True, check=True).stdout.splitlines()
  if runtime.huge_pages_environment(env) is None:  # no THP / old glibc here: nothing to do
    assert out == ["start  ['--flag=1']", "ran False"]
  else:
    assert out == ["start  ['--flag=1']", "start glibc.malloc.hugetlb=1 ['--flag=1']", "ran True"]
  out = subprocess.run([sys.executable, str(script)], env={**env, "DARLING_HUGE_PAGES": "0"}, capture_output=True,
                       text=True, check=True).stdout.splitlines()
  assert out == ["start  []", "ran False"]
