"""`.ci/tools`, which `make book` and `make test` call to install missing system
tools, run with a PATH that holds only fakes: a fake apt-get that records its
arguments, and fake npm / chromium where a test says they are present."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BASH = shutil.which("bash")


def _fake(bin_dir: Path, name: str, body: str = "exit 0") -> None:
    path = bin_dir / name
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(0o755)


def _run(tmp_path, tools, *, present=(), apt=True, apt_fails=(), root=True):
    """Run `.ci/tools TOOLS` with only fakes on PATH; returns (process, apt calls)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "apt.log"
    bin_dir.mkdir(exist_ok=True)
    for name in present:
        _fake(bin_dir, name)
    if apt:
        # installing a package puts a fake binary of the same name on PATH
        fails = " ".join(apt_fails)
        _fake(bin_dir, "apt-get", f'echo "$*" >> {log}\n'
              'if [ "$1" = install ]; then pkg="${@: -1}"\n'
              f'  for f in {fails}; do [ "$f" = "$pkg" ] && exit 100; done\n'
              f'  printf "#!{BASH}\\nexit 0\\n" > {bin_dir}/$pkg; '
              f'chmod +x {bin_dir}/$pkg; fi\nexit 0')
    script = REPO / ".ci" / "tools"
    if not root:   # a copy user nobody can read (the checkout may be private)
        script = Path(shutil.copy(script, tmp_path / "tools"))
        script.chmod(0o755)
    command = [BASH, str(script), *tools]
    if not root:   # EUID is read-only in bash: run the script as user nobody
        command = [shutil.which("setpriv"), "--reuid=65534", "--regid=65534",
                   "--clear-groups", *command]
    done = subprocess.run(command, env={"PATH": str(bin_dir)}, capture_output=True,
                          text=True)
    calls = log.read_text().splitlines() if log.is_file() else []
    return done, calls


def test_nothing_missing_installs_nothing(tmp_path):
    done, calls = _run(tmp_path, ["npm", "chromium"], present=["npm", "chromium"])
    assert done.returncode == 0 and calls == [] and done.stdout == ""


def test_only_the_missing_tool_is_installed(tmp_path):
    """NodeSource's nodejs ships npm: Debian's npm must not be asked for (it
    conflicts), only chromium."""
    done, calls = _run(tmp_path, ["npm", "chromium"], present=["npm"])
    assert done.returncode == 0, done.stderr
    installs = [c for c in calls if c.startswith("install")]
    assert installs == ["install -y -qq --no-install-recommends chromium"]
    assert calls[0] == "update -qq"
    assert "installing chromium" in done.stdout and "browser test" in done.stdout
    assert "npm" not in done.stdout


def test_chromium_browser_counts_as_chromium(tmp_path):
    done, calls = _run(tmp_path, ["chromium"], present=["chromium-browser"])
    assert done.returncode == 0 and calls == []


def test_each_missing_tool_on_its_own(tmp_path):
    done, calls = _run(tmp_path, ["npm", "chromium"])
    assert done.returncode == 0, done.stderr
    assert [c.split()[-1] for c in calls if c.startswith("install")] == \
        ["npm", "chromium"]
    assert calls.count("update -qq") == 1


def test_the_book_asks_for_npm_only(tmp_path):
    done, calls = _run(tmp_path, ["npm"], present=["chromium"])
    assert [c.split()[-1] for c in calls if c.startswith("install")] == ["npm"]


@pytest.mark.parametrize("case, expect", [
    ({"apt": False}, "apt-get is not available"),
    ({"apt_fails": ["npm"]}, "'apt-get install npm' failed"),
])
def test_a_tool_that_cannot_be_installed_is_one_clear_error(tmp_path, case, expect):
    done, _ = _run(tmp_path, ["npm"], present=["chromium"], **case)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fuadnb: error: npm is missing")
    assert expect in lines[0] and "sudo apt-get install npm" in lines[0]
    assert "offline browser assets" in lines[0] or "MathJax" in lines[0]


def test_not_root_and_no_sudo_is_one_clear_error():
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the script as another user")
    folder = Path(tempfile.mkdtemp())      # a folder user nobody can enter
    try:
        folder.chmod(0o755)
        done, calls = _run(folder, ["chromium"], root=False)
    finally:
        shutil.rmtree(folder)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "needs root" in done.stderr and calls == []


def test_an_unknown_tool_is_refused(tmp_path):
    done, _ = _run(tmp_path, ["firefox"])
    assert done.returncode == 2 and "unknown tool 'firefox'" in done.stderr
