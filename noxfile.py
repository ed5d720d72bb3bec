"""Sessions for the whole monorepo.

nox -s tests                 every package's tests, in one shared environment
nox -s tests -- qformer      one package's tests (folder name under packages/)
nox -s parity                regenerate the golden fixtures with HF transformers + torch, test against them
nox -s standalone            the encoder-common, eva-vit and qformer wheels, each installed in a clean venv with
                             only its declared dependencies, and tested there
nox -s lint                  ruff
nox -s build                 a wheel for every package, into dist/
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).parent
# Dependency order: what the reusable encoders share, the encoders, then what stands on them.
PACKAGES = [
    "encoder-common",
    "eva-vit",
    "qformer",
    "blip2-data",
    "blip2-core",
    "instructblip",
    "blip2-train",
    "blip2-eval",
    "blip2-shapes",
]
STANDALONE = ["encoder-common", "eva-vit", "qformer"]
# The one package of ours that the STANDALONE ones depend on; not on PyPI, so standalone builds its wheel too.
ENCODER_COMMON = "encoder-common"
PARITY_PACKAGES = ["eva-vit", "qformer", "blip2-core", "instructblip"]
# Tests against the golden fixtures: the reference's outputs, and the checkpoint layouts' real key sets
PARITY_TESTS = ["test_parity.py", "test_layouts.py"]
# The reference implementation, test-only: the CPU torch wheel on this machine and transformers 4.x
# (5.x needs huggingface-hub >= 1.0, which paddlenlp 3.0.0b4 cannot import with), pinned to the version that
# made the committed fixtures (their config.json / meta.json record it; the drift check compares them).
REFERENCE = ["torch==2.13.0", "transformers==4.57.6"]

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


def package_dirs(names: list[str]) -> list[Path]:
    unknown = [n for n in names if not (ROOT / "packages" / n / "pyproject.toml").exists()]
    if unknown:
        raise SystemExit(f"unknown packages {unknown}; choose from {PACKAGES}")
    return [ROOT / "packages" / n for n in names]


def existing_packages() -> list[Path]:
    return [ROOT / "packages" / n for n in PACKAGES if (ROOT / "packages" / n / "pyproject.toml").exists()]


def has_tests(package: Path) -> bool:
    return any((package / "tests").glob("test_*.py"))


def install_editable(session: nox.Session, packages: list[Path]) -> None:
    session.install(*[arg for p in packages for arg in ("-e", f"{p}[cpu,test]")])


def run_pytest(session: nox.Session, packages: list[Path], *args: str, env: dict | None = None) -> None:
    # One pytest per package: each has its own conftest and fixtures.
    for package in packages:
        if has_tests(package):
            session.run("pytest", "-q", "-p", "no:cacheprovider", str(package / "tests"), *args, env=env)
        else:
            session.log(f"{package.name}: no tests yet")


@nox.session
def tests(session: nox.Session) -> None:
    """Every package's tests (or those named after --) in one environment."""
    packages = package_dirs(session.posargs) if session.posargs else existing_packages()
    install_editable(session, existing_packages())
    run_pytest(session, packages)


@nox.session
def parity(session: nox.Session) -> None:
    """Regenerate the golden fixtures live with HF transformers, check our packages against them, then check that
    they still match the committed copies (fails on drift beyond the tests' tolerance).

    The reference runs in a venv of its own (torch + transformers 4.x, no paddle): paddlenlp's pins and
    transformers' can disagree (tokenizers), and the two sides only exchange files.
    """
    install_editable(session, existing_packages())
    python = reference_python(session)
    tmp = Path(session.create_tmp())
    fixtures = tmp / "fixtures"
    shutil.rmtree(fixtures, ignore_errors=True)
    session.run(python, str(ROOT / "tools/parity/make_fixtures.py"), "--out", str(fixtures), external=True)
    env = {"BLIP2_PARITY_FIXTURES": str(fixtures)}
    for package in package_dirs(PARITY_PACKAGES):
        tests = [str(package / "tests" / name) for name in PARITY_TESTS if (package / "tests" / name).exists()]
        session.run("pytest", "-q", "-p", "no:cacheprovider", *tests, env=env)
    session.run(python, str(ROOT / "tools/parity/check_fixture_drift.py"), str(fixtures), external=True)


def reference_python(session: nox.Session) -> str:
    """A venv of its own for HF transformers + torch (test-only), next to the session's."""
    reference = Path(session.create_tmp()) / "reference-venv"
    if not (reference / "bin" / "python").exists():
        session.run("python", "-m", "venv", str(reference), external=True)
    python = str(reference / "bin" / "python")
    session.run(python, "-m", "pip", "install", "-q", *REFERENCE, "safetensors", "numpy<2", external=True)
    return python


@nox.session
def bench(session: nox.Session) -> None:
    """Image encoding (img/s), captioning (captions/s), peak RSS and load time: ours vs HF transformers, fp32 and
    bf16, same config and weights; and one stage-2 training step (HF, ours, ours from the feature cache).

    Every timed run waits for a quiet machine (1-minute load under 0.3, none of our tools running), HF and ours
    alternate over 3 rounds, each run records the CPU other processes took meanwhile (tools/bench/rounds.py), and
    the table gives medians with their range; a ratio with a noisy run in it is marked unreliable, not printed.

    nox -s bench                          tiny and ViT-g + OPT-125m shapes, and data loading (folder vs shards)
    nox -s bench -- vitg-opt2.7b          the real ViT-g + OPT-2.7b shape (a 15 GB checkpoint)
    nox -s bench -- --load-only vitg-opt125m   the second load alone (no encoding, captions or training)
    nox -s bench -- --train-only vitg-opt125m  the training step alone (HF, ours, ours from the feature cache)
    nox -s bench -- --infer-only vitg-opt125m  load, encoding and captions, without the training step
    BLIP2_BENCH_ROUNDS=5 BLIP2_BENCH_QUIET_LOAD=0.3 BLIP2_BENCH_QUIET_TIMEOUT=1800 nox -s bench
    """
    only = [arg for arg in session.posargs if arg in ("--load-only", "--train-only", "--infer-only")]
    sizes = [arg for arg in session.posargs if arg not in only] or ["tiny", "vitg-opt125m", "data"]
    install_editable(session, existing_packages())
    python = reference_python(session)
    work = Path(session.create_tmp()) / "bench"
    for size in sizes:  # each run's old results go: a failed run shows as failed, not as the last one
        for old in (work / size).glob("*.json"):
            old.unlink()
    rounds = os.environ.get("BLIP2_BENCH_ROUNDS", "3")
    quiet = os.environ.get("BLIP2_BENCH_QUIET_LOAD", "0.3")
    patience = os.environ.get("BLIP2_BENCH_QUIET_TIMEOUT", "1800")  # seconds; then the run goes ahead, marked
    session.run("python", str(ROOT / "tools/bench/run_rounds.py"), "--reference-python", python, "--work", str(work),
                "--sizes", *sizes, "--rounds", rounds, "--quiet-load", quiet, "--quiet-timeout", patience, *only)  # fmt: skip
    session.run("python", str(ROOT / "tools/bench/compare.py"), str(work), *sizes)


@nox.session
@nox.parametrize("package", STANDALONE)
def standalone(session: nox.Session, package: str) -> None:
    """The package's wheel, installed with only its declared dependencies, passes its tests.

    Its one dependency of ours, blip2-encoder-common, is not on PyPI: its wheel is built here too and installed
    with it (pip takes a wheel file named on the command line as the dependency it satisfies).
    """
    (source,) = package_dirs([package])
    session.install("build")
    wheel = build_wheel(session, package)
    common = [] if package == ENCODER_COMMON else [str(build_wheel(session, ENCODER_COMMON))]
    session.run(
        "pip", "uninstall", "-y", "-q", "blip2-encoder-common", "blip2-eva-vit", "blip2-qformer", success_codes=[0, 1]
    )
    session.install(*common, f"{wheel}[cpu,test]")
    # Tests run from a copy, away from the source tree, so only the installed wheel can be imported.
    copy = Path(session.create_tmp()) / package
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(source / "tests", copy / "tests")
    shutil.copy(source / "README.md", copy / "README.md")  # its examples are tested too
    module = "blip2_" + package.replace("-", "_").removeprefix("blip2_")
    session.run("python", "-c", f"import {module}; assert 'site-packages' in {module}.__file__, {module}.__file__")
    with session.chdir(copy):
        session.run("pytest", "-q", "-p", "no:cacheprovider", "tests")


def build_wheel(session: nox.Session, package: str) -> Path:
    """The wheel of packages/``package``, built into a folder of its own."""
    (source,) = package_dirs([package])
    out = Path(session.create_tmp()) / "wheels" / package
    shutil.rmtree(out, ignore_errors=True)
    session.run("python", "-m", "build", "--wheel", "--outdir", str(out), str(source))
    (wheel,) = out.glob("*.whl")
    return wheel


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def build(session: nox.Session) -> None:
    """A wheel and an sdist for every package, into dist/."""
    session.install("build")
    for package in existing_packages():
        session.run("python", "-m", "build", "--outdir", str(ROOT / "dist"), str(package))


@nox.session(name="demo-train")
def demo_train(session: nox.Session) -> None:
    """Train the default model (blip2-shapes) from nothing with the project's own commands -- synthetic data, a
    small OPT pre-trained on its text, a small EVA-ViT pre-trained on its images, blip2-train stage1, stage2,
    finetune-vqa (the answers' own model, in vqa/) -- evaluate it with blip2-eval, and replace the model in
    packages/blip2-shapes only if the figures of its model card improve (``blip2-shapes train``; under 30 minutes
    on 2 CPU cores).

    nox -s demo-train -- --out DIR     write the model elsewhere, no comparison
    """
    install_editable(session, existing_packages())
    work = Path(session.create_tmp()) / "demo-train"
    session.run("blip2-shapes", "train", "--work", str(work), *session.posargs)


if os.environ.get("CI"):
    nox.options.error_on_missing_interpreters = True
