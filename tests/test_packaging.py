"""The package as users get it: one import namespace (``maskwatch``) from the top-level folders, and the layers.

A wheel is built from a clean copy of the repository's files (tracked and not ignored, as a fresh clone has
them) with ``pip wheel --no-deps``, as a packager would. It must hold ``maskwatch`` and its dist-info only,
every module of the source folders under its ``maskwatch.*`` name, and run from a fresh venv. The
import-linter contracts in pyproject.toml are checked on the wheel's files (import-linter reads a package from
one folder, and in a checkout the subpackages live in other folders than ``maskwatch/``); a module that breaks
them must fail the check.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import write_clip

ROOT = Path(__file__).resolve().parent.parent
# folder in the repository -> import name (pyproject.toml's [tool.setuptools.package-dir])
FOLDERS = {"maskwatch": "maskwatch", "engines": "maskwatch.engines", "zones": "maskwatch.zones",
           "pipeline": "maskwatch.pipeline", "scenes": "maskwatch.scenes"}
OLD_NAMES = {"pipeline", "engines", "zones", "scenes"}


def _repo_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    return [f for f in out.decode().split("\0") if f and (ROOT / f).is_file() and not (ROOT / f).is_symlink()]


def _repo_links() -> list[str]:
    """The links in maskwatch/ that make the top-level folders importable in a checkout (maskwatch/pipeline ...)."""
    return sorted(f"maskwatch/{p.name}" for p in (ROOT / "maskwatch").iterdir() if p.is_symlink())


def test_the_checkout_links_point_at_the_folders():
    links = {name.split("/")[1]: (ROOT / name).readlink() for name in _repo_links()}
    assert links == {"engines": Path("../engines"), "zones": Path("../zones"), "pipeline": Path("../pipeline"),
                     "scenes": Path("../scenes")}


@pytest.fixture(scope="module")
def clean_copy(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("clone") / "maskwatch"
    for f in _repo_files() + _repo_links():
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst / f, follow_symlinks=False)
    return dst


@pytest.fixture(scope="module")
def wheel(clean_copy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), "."],
                          cwd=clean_copy, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("maskwatch-*.whl")
    return whl


@pytest.fixture(scope="module")
def unpacked(wheel, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(dst)
    return dst


def test_wheel_holds_only_maskwatch(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    tops = {n.split("/", 1)[0] for n in names}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"maskwatch"} and len(dist_info) == 1, sorted(tops)
    assert "maskwatch = maskwatch.cli:main" in entry_points
    # every module of the source folders is in the wheel under its maskwatch.* name (a subpackage left out of
    # pyproject.toml's `packages` list would be missing here)
    want = set()
    for f in _repo_files():
        folder, _, rest = f.partition("/")
        if f.endswith(".py") and folder in FOLDERS and rest:
            want.add("/".join([*FOLDERS[folder].split("."), rest]))
    got = {n for n in names if n.endswith(".py")}
    assert want == got, f"missing from the wheel: {sorted(want - got)}; not in the sources: {sorted(got - want)}"
    # the console's pages, styles and scripts (package data)
    static = {f"maskwatch/web/static/{f.rsplit('/', 1)[1]}" for f in _repo_files() if f.startswith("maskwatch/web/static/")}
    assert static and static <= set(names), sorted(static - set(names))


def test_wheel_runs_from_a_fresh_venv(wheel, clean_copy, tmp_path):
    """Installed into a new venv, away from the checkout: imports, ``--help`` and ``check configs/demo.yaml``.
    The venv gets the wheel alone; its dependencies are read from the test venv's site-packages (a .pth line
    after its own), so nothing is downloaded and no other maskwatch can be picked up (an editable install's
    finder is loaded by a .pth in that folder, which a path line does not run)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   timeout=300, capture_output=True)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = dict(cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    code = ("import maskwatch, maskwatch.engines, maskwatch.zones, maskwatch.pipeline, maskwatch.scenes; "
            "import sys; print(maskwatch.__file__); print(maskwatch.pipeline.__file__); "
            "print(maskwatch.load_config.__module__, maskwatch.ZoneEngine.__module__, maskwatch.load_engine.__module__); "
            "print(any(m in sys.modules for m in ('pipeline', 'engines', 'zones', 'scenes')))")
    proc = subprocess.run([str(py), "-c", code], **run)
    assert proc.returncode == 0, proc.stderr
    init, pipeline_init, api, old = proc.stdout.split("\n")[:4]
    assert Path(init).is_relative_to(site) and Path(pipeline_init).is_relative_to(site), proc.stdout
    assert api == "maskwatch.pipeline.config maskwatch.zones.engine maskwatch.engines.base"
    assert old == "False"

    exe = venv / "bin" / "maskwatch"
    proc = subprocess.run([str(exe), "--help"], **run)
    assert proc.returncode == 0 and "usage: maskwatch" in proc.stdout, proc.stderr
    for command in ("run", "check", "predict", "synth", "eval", "bench", "engine"):
        assert command in proc.stdout

    # configs/demo.yaml of the clean copy, with the demo clip it expects (demo.sh generates it)
    (clean_copy / "var" / "demo" / "site").mkdir(parents=True, exist_ok=True)
    write_clip(clean_copy / "var" / "demo" / "site" / "video.mp4", frames=5)
    proc = subprocess.run([str(exe), "check", str(clean_copy / "configs" / "demo.yaml")], **run)
    assert proc.returncode == 0, proc.stderr
    assert "config ok" in proc.stdout and "camera site-demo" in proc.stdout, proc.stdout


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(exe), str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("where", ["checkout", "wheel"])
def test_import_contracts_are_kept(unpacked, where):
    """`lint-imports` in the repository (the links in maskwatch/ show it the whole package), and on the wheel."""
    proc = _lint_imports(ROOT if where == "checkout" else unpacked)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout and "Analyzed" in proc.stdout
    for contract in ("Layers point down", "Nothing imports the command line", "No import cycles", "Ultralytics",
                     "Ray is imported by the cluster package only"):
        assert contract in proc.stdout, proc.stdout


@pytest.mark.parametrize("module, source, broken", [
    ("engines/_upward.py", "from maskwatch.pipeline import stages\n", "maskwatch.engines._upward -> maskwatch.pipeline"),
    ("zones/_upward.py", "import maskwatch.scenes.clip\n", "maskwatch.zones._upward -> maskwatch.scenes.clip"),
    ("pipeline/_scenes.py", "from maskwatch.scenes import clip\n", "maskwatch.pipeline._scenes -> maskwatch.scenes"),
    ("pipeline/_cli.py", "from maskwatch.cli import main\n", "maskwatch.pipeline._cli -> maskwatch.cli"),
    ("evaluation/_cli.py", "import maskwatch.cli\n", "maskwatch.evaluation._cli -> maskwatch.cli"),
    ("scenes/_yolo.py", "import ultralytics\n", "maskwatch.scenes._yolo -> ultralytics"),
    ("pipeline/_ray.py", "import ray\n", "maskwatch.pipeline._ray -> ray"),
    ("pipeline/_cluster.py", "from maskwatch.cluster import driver\n", "maskwatch.pipeline._cluster -> maskwatch.cluster"),
])
def test_a_broken_contract_fails(unpacked, tmp_path, module, source, broken):
    tree = tmp_path / "tree"
    shutil.copytree(unpacked, tree)
    (tree / "maskwatch" / module).write_text(source)
    proc = _lint_imports(tree)
    assert proc.returncode != 0 and "BROKEN" in proc.stdout, proc.stdout[-3000:]
    assert broken in proc.stdout, proc.stdout[-3000:]


def _imported_top_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_code_imports_the_folder_names():
    """``import pipeline`` would load a second copy of a module beside ``maskwatch.pipeline`` (pytest puts the
    repository on sys.path), with its own state: every import, in the product, tests and scripts, uses
    ``maskwatch.*``."""
    offenders = []
    for f in _repo_files():
        if f.endswith(".py"):
            bad = _imported_top_names(ROOT / f) & OLD_NAMES
            if bad:
                offenders.append(f"{f}: {', '.join(sorted(bad))}")
    assert not offenders, offenders


def test_a_source_checkout_imports_without_install(tmp_path):
    """A script run with the repository on sys.path and maskwatch not installed (a training machine that cannot
    pip-install) imports through the links in maskwatch/: ``-S`` skips site-packages' .pth files, so no editable
    install's finder helps here."""
    code = ("import sys, maskwatch.scenes.dataset, maskwatch.evaluation.masks, maskwatch.pipeline.stages; "
            "print(maskwatch.scenes.dataset.__file__); print(maskwatch.pipeline.stages.__file__); "
            "print(any('editable' in type(f).__name__.lower() or 'editable' in repr(f).lower() for f in sys.meta_path))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]])}
    proc = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    scenes, stages, editable = proc.stdout.split("\n")[:3]
    assert Path(scenes).resolve() == ROOT / "scenes" / "dataset.py"
    assert Path(stages).resolve() == ROOT / "pipeline" / "stages.py"
    assert editable == "False"
