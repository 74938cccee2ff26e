"""Every shell command of the README's ```bash blocks runs, and every ```python block executes,
so the README cannot go stale.

The commands run in README order, each in a fresh process, from a scratch copy of the repository
root (``TMP/root/repo``: symlinks to the real top-level entries, copies of the top-level scripts so
that they take the scratch folder as the project root) beside ``TMP/root/shared/data`` (the real
data), so ``../shared/data/...`` resolves as in a checkout and every output lands in the scratch
folder. A command that needs a file made by an earlier one (``kodim01.clab``, a run's checkpoint)
finds it there.

Long runs are cut to the smallest settings by ``OVERRIDES`` (every matching row applies, in table
order); commands that cannot run here are in ``SKIPS``. A command that matches neither runs as
written, so a new README command needs at most one table row. ``codeclab`` runs as
``python -m codeclab.cli`` and ``python3``/``python`` as this interpreter, both on the code of the
tree under test.
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CODECLAB_DATA", ROOT.parent / "shared" / "data"))

# Top-level entries not linked into the scratch root: version control and what the commands
# themselves write (their outputs must land in the scratch folder, not in the checkout).
NOT_LINKED = {".git", "logs", "outputs", "multirun", "wandb", "gpu_run", ".whl", ".pytest_cache", ".hypothesis"}
# Top-level files copied rather than linked: a script's own path decides the project root
# (train.py, eval.py, eval_video.py set PROJECT_ROOT from __file__, which resolves links).
COPIED = ("*.py",)


# ---------------------------------------------------------------------------------------------
# Parsing


@dataclass
class Command:
    text: str  # as in the README (continuations joined, comment removed)
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    stdin: str | None = None
    stdout: str | None = None

    def render(self) -> str:
        words = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()] + [shlex.quote(a) if a else "''" for a in self.argv]
        if self.stdin:
            words += ["<", self.stdin]
        if self.stdout:
            words += [">", self.stdout]
        return " ".join(words)


ENV_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def parse_command(line: str) -> Command | None:
    """One shell command (no pipes or sequences): env prefixes, words, ``<``/``>`` redirections;
    ``#`` starts a comment. Placeholders (``<run>``, ``MODEL``, ``...``) stay as words."""
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words = list(lexer)
    if not words:
        return None
    cmd = Command(text=" ".join(words))
    while words and ENV_WORD.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        cmd.env[name] = value
    rest = []
    while words:
        word = words.pop(0)
        if word in ("<", ">") and words:
            setattr(cmd, "stdin" if word == "<" else "stdout", words.pop(0))
        elif word[:1] in "<>" and len(word) > 1 and not word.endswith(">"):  # <file, >file (not <run>)
            setattr(cmd, "stdin" if word[0] == "<" else "stdout", word[1:])
        else:
            rest.append(word)
    cmd.argv = rest
    return cmd


def readme_commands(text: str) -> list[Command]:
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        for line in re.sub(r"\\\n", " ", block).splitlines():
            cmd = parse_command(line.strip())
            if cmd is not None:
                commands.append(cmd)
    return commands


# ---------------------------------------------------------------------------------------------
# Tables. A row is (regex searched in the command's README text, change, reason).

# Training at the smallest settings: 2 steps of 64-px crops, one 64-px validation image, a
# checkpoint at the end (so that a resume finds last.ckpt).
TINY_TRAIN = ("trainer.max_steps=2 trainer.log_every_n_steps=1 data.batch_size=2 data.samples_per_epoch=4 data.num_workers=0 "
              "data.patch_size=64 data.val_patch_size=64 data.val_max_images=1 callbacks.checkpoint.every_n_train_steps=2")
TINY_EVAL = "max_images=1 rate_points=2 progress=false"


def hydra_args(args: str):
    """Hydra overrides: each ``key=value`` replaces the command's own value of ``key`` or is appended."""

    def change(cmd: Command, match: re.Match) -> None:
        for arg in shlex.split(args):
            key = arg.split("=", 1)[0].lstrip("+~")
            same = [i for i, word in enumerate(cmd.argv) if "=" in word and word.split("=", 1)[0].lstrip("+~") == key]
            if same and "=" in arg:
                cmd.argv[same[-1]] = arg
            else:
                cmd.argv.append(arg)

    return change


def options(args: str):
    """Command-line options: ``--name value`` replaces the command's own ``--name`` or is appended."""

    def change(cmd: Command, match: re.Match) -> None:
        new = shlex.split(args)
        while new:
            name, value = new.pop(0), []
            while new and not new[0].startswith("--"):
                value.append(new.pop(0))
            if name in cmd.argv:
                i = cmd.argv.index(name)
                j = i + 1
                while j < len(cmd.argv) and not cmd.argv[j].startswith("-"):
                    j += 1
                cmd.argv[i:j] = [name, *value]
            else:
                cmd.argv += [name, *value]

    return change


def main_args(script: str, hydra: str, argparse: str):
    """Hydra overrides if ``script`` is a Hydra main, else argparse options."""

    def change(cmd: Command, match: re.Match) -> None:
        is_hydra = "@hydra.main" in (ROOT / script).read_text()
        (hydra_args(hydra) if is_hydra else options(argparse))(cmd, match)

    return change


def replace(old: str, new: str):
    """Replace a word (or part of one) of the command; ``@RUN@`` in ``new`` is the first training run
    made by an earlier command (``logs/train/runs/<timestamp>``)."""

    def change(cmd: Command, match: re.Match) -> None:
        cmd.argv = [re.sub(old, lambda m: new.replace("@RUN@", _first_run()), word) for word in cmd.argv]

    return change


def drop(word: str):
    def change(cmd: Command, match: re.Match) -> None:
        cmd.argv = [w for w in cmd.argv if w != word]

    return change


def env(**values: str):
    """Set environment variables; ``{NAME}`` in a value is the command's own value of NAME."""

    def change(cmd: Command, match: re.Match) -> None:
        for name, value in values.items():
            cmd.env[name] = value.format(**{name: cmd.env.get(name, "")}).strip()

    return change


OVERRIDES = [
    # Placeholders: files made by earlier commands.
    (r"<run>", replace(r"<run>", "@RUN@"), "the run made by the first `python3 train.py`"),
    (r"my_curve\.json", replace(r"^my_curve\.json$", "../shared/data/reference_rd/compressai/kodak/bpg_444_x265_ycbcr.json"),
     "my_curve.json: a curve in the same (CompressAI) format"),
    (r"\bMODEL\b", replace(r"^init_weights=MODEL$", "init_weights=models/zoo/mbt2018_mean_vr.safetensors"), "MODEL: the shipped model"),
    (r" \.\.\.( |$)", drop("..."), "'...': the command's other arguments"),
    # Training: a few steps.
    (r"\btrain\.py\b(?!.*experiment=stem)", hydra_args(TINY_TRAIN), "training: 2 steps, tiny crops, one validation image"),
    (r"train\.py -m lmbda=", hydra_args("lmbda=0.0018,0.0067"), "multirun: 2 lambdas instead of 4"),
    (r"train\.py.*\bckpt_path=", hydra_args("trainer.max_steps=3"), "resume: one step past the checkpoint"),
    (r"train\.py.*experiment=mbt2018_mean_vr_cpu", hydra_args("module.compile=false"), "torch.compile costs a minute"),
    (r"train\.py.*experiment=leaderboard", hydra_args("callbacks.checkpoint.train_time_interval=null"),
     "checkpoints by step, not every 2 minutes (Lightning takes one or the other)"),
    (r"train\.py.*experiment=(rbqe|swinjscc|pc_lossless)", hydra_args("data.preload=false"), "no decoding of all 400 BSDS500 images first"),
    (r"train\.py.*experiment=pc_lossless", hydra_args("codec.hidden=4 module.structure_blocks=256"),
     "a 4-state circuit, its tree learned on 256 blocks"),
    (r"train\.py.*codec=s2lic\b", hydra_args("codec.N=16 codec.M=40 codec.window=4 codec.depths=[1,1,1] codec.heads=[1,2,2]"),
     "s2lic at s2lic_tiny's width"),
    (r"train\.py.*experiment=stem",
     hydra_args("trainer.max_steps=2 trainer.log_every_n_steps=1 data.sequences=[../tiny_clip] data.synthetic=0 data.crop=4 "
                "data.val_frames=2 data.val_samples=2 data.samples_per_epoch=4 data.batch_size=2"),
     "STEM: latents of a 4-frame 64x64 clip (made by the fixture) instead of Vid4 and 300 synthetic clips"),
    (r"tools/gpu_recipe\.sh",
     env(TRAIN_ARGS=f"{{TRAIN_ARGS}} trainer.accelerator=cpu {TINY_TRAIN}", EVALUATE="0"),
     "the GPU recipe on the CPU, a few steps; its evaluation is the eval.py lines' (and tests/integration/test_gpu_recipe.py's)"),
    # Evaluation and coding: one image, two rate points, a few frames, a few SGA iterations.
    (r"\beval\.py\b", hydra_args(TINY_EVAL), "evaluation: one image, two rate points"),
    (r"\beval\.py.*classic=kodak", hydra_args("classic=short"), "the short classic ladders"),
    (r"\beval\.py.*postfilter=", hydra_args("classic=none model=models/zoo/mbt2018_mean_vr.safetensors"),
     "the post-filter on two learned points (tests/postfilters runs it after JPEG)"),
    (r"\beval_jscc\.py\b", hydra_args("max_images=1 snrs=[0,10] channels=[32] source_model=null"),
     "JSCC: one image, two SNRs, one channel count, no separation baseline"),
    (r"benchmarks/rbqe_kodak\.py", options("--smoke"), "RBQE after JPEG on one small smoke image"),
    (r"benchmarks/lossless_kodak\.py", options("--smoke"), "lossless codecs on one small smoke image"),
    (r"benchmarks/nirvana_video\.py", options("--smoke"), "NIRVANA, one x264 and one x265 point on 3 small smoke frames"),
    (r"nirvana\.yaml", options("--time-budget 3"), "NIRVANA: 3 s of fitting"),
    (r"\beval_video\.py\b",
     main_args("eval_video.py",
               hydra="sequences=[parkjoy] frames=2 intra_periods=[12] levels=[32] video_anchors=fast output_dir=reports_video",
               argparse="--sequences ../shared/data/video/parkjoy_480x270.y4m --frames 2 --intra-periods 12 --levels 32 "
                        "--encoders x264 --presets medium --qps 32 --output reports_video"),
     "video report: 2 frames of one sequence, one point per codec, written into the scratch folder"),
    (r"^codeclab encode \S+(\.y4m|/basketballpass) ", options("--frames 2"), "video: 2 frames"),
    (r"--refine \d+", options("--refine 2"), "SGA: 2 iterations"),
    (r"tools/gpu_checks\.py", replace(r"kodim0\{1,2,3,4\}", "kodim01"), "GPU checks: one Kodak image"),
    (r"tools/gpu_checks\.py device", options("--frame 64x64"), "the timed frame 64x64, not 1080p, on the CPU"),
    (r"eval_video\.py model=M\.safetensors", replace(r"^model=M\.safetensors$", "model=models/stem.safetensors"),
     "M.safetensors: the shipped video model"),
]

SKIPS = [
    (r"pip install", "installs the package (this suite runs on the installed package)"),
    (r"^python3 -m pytest$", "the test suite itself"),
    (r"num_nodes=", "multi-node DDP: needs several machines"),
    (r"debian_photos", "downloads three Debian packages with apt-get; the builder is tested offline in tests/data/test_debian_photos.py"),
    (r"leaderboard\.py --budget cpu", "the 13-hour background CPU leaderboard; its --smoke runs in tests/integration/test_benchmarks.py"),
]

# Chains of commands that use each other's files, run in README order on one pytest-xdist worker
# (one scratch folder); the first matching row names a command's chain, and the chains run in
# parallel. New commands join ``other``; a command reading a file another chain makes belongs to it.
CHAINS = [
    (r"^python3 train\.py$|<run>|(^| |=)model\.safetensors|kodim01\.clab", "the first training run, its file and kodim01.clab"),
    (r"tools/gpu_|\.y4m|/basketballpass|eval_video\.py|experiment=stem|clip\.cl", "video, NIRVANA and the GPU tools"),
    (r"\beval\.py|train\.py", "evaluation and training"),
    (r"", "other"),
]

# Commands known to fail on this branch: (regex, reason), marked xfail (strict: a pass fails the
# test, so a fixed command's row is removed).
XFAILS: list[tuple[str, str]] = []


def _first_run() -> str:
    """The first training run (logs/train/runs/<timestamp>) that wrote a checkpoint."""
    if "repo" not in SCRATCH:
        return "<run>"
    runs = sorted((SCRATCH["repo"] / "logs" / "train" / "runs").glob("*/checkpoints/last.ckpt"))
    return runs[0].parents[1].name if runs else "<run>"


# ---------------------------------------------------------------------------------------------
# Running

SCRATCH: dict[str, Path] = {}
TIMES: list[tuple[float, float, str]] = []  # (wall s, CPU s of the command's processes, README text)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


COMMANDS = readme_commands((ROOT / "README.md").read_text())


def _find(table, text):
    return next((row for row in table if re.search(row[0], text)), None)


def prepare(cmd: Command) -> Command:
    """The command as it runs here: ``OVERRIDES`` applied (every matching row, in order)."""
    out = Command(cmd.text, dict(cmd.env), list(cmd.argv), cmd.stdin, cmd.stdout)
    for pattern, change, _reason in OVERRIDES:
        match = re.search(pattern, cmd.text)
        if match:
            change(out, match)
    return out


def _checkout_changes() -> list[str]:
    """New files in the real checkout, and changes under reports/ and models/: what a command
    writing through a link would leave (``git status`` lines; none where git is unavailable).
    Edits of the sources while the test runs are not reported."""
    try:
        proc = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.SubprocessError):
        return []
    lines = proc.stdout.splitlines() if proc.returncode == 0 else []
    return [line for line in lines if line.startswith("??") or line[3:].startswith(("reports/", "models/"))]


def _argv(cmd: Command) -> list[str]:
    argv = list(cmd.argv)
    if argv[0] == "codeclab":
        argv[:1] = [sys.executable, "-m", "codeclab.cli"]
    elif argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """``TMP/root/repo`` (the repository's top level, linked) beside ``TMP/root/shared/data``."""
    if not DATA.is_dir():
        pytest.skip(f"needs the shared data ({DATA})")
    root = tmp_path_factory.mktemp("root")
    repo, shared = root / "repo", root / "shared"
    repo.mkdir()
    shared.mkdir()
    (shared / "data").symlink_to(DATA.resolve())
    _tiny_clip(root / "tiny_clip")
    copied = {p.name for pattern in COPIED for p in ROOT.glob(pattern)}
    for entry in ROOT.iterdir():
        if entry.name in NOT_LINKED:
            continue
        if entry.name in copied:
            shutil.copy2(entry, repo / entry.name)
        else:
            (repo / entry.name).symlink_to(entry)
    SCRATCH.update(root=root, repo=repo)
    yield repo
    SCRATCH.clear()
    if TIMES:  # shown with -s (or -rP): where the time goes
        lines = [f"{w:7.1f} s {c:7.1f} s CPU  {t[:100]}" for w, c, t in sorted(TIMES, reverse=True)]
        total = f"{sum(w for w, _, _ in TIMES):7.1f} s {sum(c for _, c, _ in TIMES):7.1f} s CPU  all {len(TIMES)} commands"
        print("\nREADME commands:\n" + "\n".join([*lines, total]), file=sys.stderr)


def _tiny_clip(folder: Path, frames: int = 4, size: int = 64) -> None:
    """A small panning clip (PNG frames) cut from a Kodak image."""
    from PIL import Image

    folder.mkdir()
    image = Image.open(DATA / "kodak" / "kodim01.png").convert("RGB")
    for t in range(frames):
        image.crop((300 + 4 * t, 200, 300 + 4 * t + size, 200 + size)).save(folder / f"frame_{t:04d}.png")


def _id(cmd: Command) -> str:
    text = cmd.text if len(cmd.text) <= 70 else cmd.text[:67] + "..."
    return text.replace(" ", "_")


def _chain(cmd: Command) -> str:
    return "README: " + _find(CHAINS, cmd.text)[1]


@pytest.mark.parametrize("index", [pytest.param(i, marks=pytest.mark.xdist_group(_chain(c)), id=_id(c)) for i, c in enumerate(COMMANDS)])
def test_readme_command(index, scratch, request):
    readme = COMMANDS[index]
    skip = _find(SKIPS, readme.text)
    if skip:
        pytest.skip(skip[1])
    xfail = _find(XFAILS, readme.text)
    if xfail:
        request.applymarker(pytest.mark.xfail(reason=xfail[1], strict=True))
    cmd = prepare(readme)
    environment = {k: v for k, v in os.environ.items() if k not in ("PROJECT_ROOT", "CODECLAB_DATA", "CODECLAB_MODELS")}
    environment.update(
        PYTHONPATH=str(scratch), OMP_NUM_THREADS="1", WANDB_MODE="disabled", PYTHONUNBUFFERED="1",
        CODECLAB_CACHE=str(SCRATCH["root"] / "cache"),  # eval.py measures, never reuses earlier points
    )
    environment.update(cmd.env)
    stdin = open(scratch / cmd.stdin, "rb") if cmd.stdin else subprocess.DEVNULL
    stdout = open(scratch / cmd.stdout, "wb") if cmd.stdout else subprocess.PIPE
    changed = set(_checkout_changes())
    start, cpu = time.perf_counter(), _children_cpu()
    try:
        proc = subprocess.run(_argv(cmd), cwd=scratch, env=environment, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                              timeout=600)
    finally:
        for f in (stdin, stdout):
            if hasattr(f, "close"):
                f.close()
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    wrote = sorted(set(_checkout_changes()) - changed)
    TIMES.append((seconds, cpu, readme.text))
    out = (proc.stdout or b"").decode(errors="replace")
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, (
        f"README command failed (exit {proc.returncode}, {seconds:.1f} s, {cpu:.1f} s CPU)\n  README: {readme.text}\n  ran:    {cmd.render()}\n"
        f"  overrides: {'; '.join(r for p, _, r in OVERRIDES if re.search(p, readme.text)) or 'none'}\n"
        f"--- stdout (tail) ---\n{out[-1500:]}\n--- stderr (tail) ---\n{err[-3000:]}"
    )
    # Outputs belong in the scratch folder: a command that writes through a link (reports/, models/)
    # would change the checkout.
    assert not wrote, f"README command changed the checkout: {wrote}\n  ran: {cmd.render()}"


def test_every_command_is_run_or_skipped_with_a_reason():
    """The tables stay in step with the README: each row matches a README command."""
    texts = [c.text for c in COMMANDS]
    assert len(texts) >= 20, "the README's ```bash blocks were not found"
    for pattern, *_ in OVERRIDES + SKIPS + XFAILS:
        assert any(re.search(pattern, t) for t in texts), f"table row {pattern!r} matches no README command"


@pytest.mark.parametrize("index", range(len(re.findall(r"^```python\n", (ROOT / "README.md").read_text(), flags=re.M))))
def test_readme_python_block(index, monkeypatch):
    """Each ```python block of the README runs as written, from the repository root."""
    block = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.M | re.S)[index]
    monkeypatch.chdir(ROOT)
    exec(compile(block, f"README.md python block {index}", "exec"), {})


def test_parser():
    (cmd,) = readme_commands('```bash\nOUT=x A="b c" tools/r.sh --k 1 \\\n  --j < in.txt   # note\n```\n')
    assert (cmd.env, cmd.argv, cmd.stdin) == ({"OUT": "x", "A": "b c"}, ["tools/r.sh", "--k", "1", "--j"], "in.txt")
    (cmd,) = readme_commands("```bash\npython3 train.py ckpt_path=logs/<run>/last.ckpt  # resume\n```\n")
    assert cmd.argv == ["python3", "train.py", "ckpt_path=logs/<run>/last.ckpt"] and cmd.stdin is None


def _outputs(cmd: Command) -> set[str]:
    """Files and folders a command names as its outputs."""
    words = cmd.argv
    named = {b for a, b in zip(words, words[1:]) if a in ("-o", "--out", "--output")}
    named |= {w.split("=", 1)[1] for w in words if w.startswith("hydra.run.dir=")}
    return named | ({cmd.env["OUT"]} if "OUT" in cmd.env else set()) | ({cmd.stdout} if cmd.stdout else set())


def test_a_command_reading_an_earlier_commands_output_is_in_its_chain():
    """Chains run on different workers, each in its own scratch folder: a command that names a
    file an earlier command wrote (or the first training run, ``<run>``) must share its chain."""
    made: dict[str, str] = {}
    for cmd in COMMANDS:
        if _find(SKIPS, cmd.text):
            continue
        chain = _chain(cmd)
        for word in cmd.argv[1:] + ([cmd.stdin] if cmd.stdin else []):
            for output, maker in made.items():
                if word == output or word.startswith(output.rstrip("/") + "/") or word.endswith("=" + output):
                    assert chain == maker, f"{cmd.text!r} reads {output} from {maker!r} but is in {chain!r}"
        if "<run>" in cmd.text:
            assert chain == made["logs/train/runs"], f"{cmd.text!r} reads the first training run but is in {chain!r}"
        made.update({output: chain for output in _outputs(cmd) if output not in made})
        if cmd.argv[:2] == ["python3", "train.py"] and "logs/train/runs" not in made:
            made["logs/train/runs"] = chain
