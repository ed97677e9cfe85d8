"""The docs are true: docs/ pages' marked examples run as written, every relative link resolves,
the data files the docs use are made by a documented command, and docs/serve.md's statement on
unknown config keys is what the server does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.test_readme import marked_blocks, run_blocks

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
EXECUTED = [p for p in PAGES if marked_blocks(p)]

# README's first block: what every docs example starts from (the CNN, its data, its package)
SETUP = """python -m examples.digits_cnn build/demo
modelport convert --torch examples.digits_cnn:DigitsCNN --weights build/demo/digits_cnn.pt \\
    --example-inputs build/demo/digits_test.npz -o out/digits
"""


def test_the_docs_setup_is_readmes_first_block():
    (first_lang, first_code), *_ = marked_blocks(ROOT / "README.md")
    flat = " ".join(first_code.replace("\\\n", " ").split())
    for line in SETUP.replace("\\\n", " ").splitlines():
        assert " ".join(line.split()) in flat


# pages whose curl commands (and tritonclient example) run against a real server in
# test_serving_pages_curls_answer_as_shown
SERVED = {"serve-compat.md", "serve.md"}
# docs/processing.md runs where the README leaves its packages: tests/test_readme.py


def test_pages_with_runnable_examples():
    # the pages whose commands are executed here (the others are listed in the note)
    assert {p.name for p in EXECUTED} >= {
        "bench.md",
        "convert-tensorflow-sklearn.md",
        "plan.md",
        "prune.md",
        "quantize.md",
    }
    assert {p.name for p in PAGES} >= SERVED


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("docs-setup")
    run_blocks([("bash", SETUP)], base, "setup (README's first block)")
    return base


@pytest.mark.slow
@pytest.mark.parametrize("page", EXECUTED, ids=[p.name for p in EXECUTED])
def test_docs_examples_run(page, digits_dir, tmp_path):
    import shutil

    cwd = tmp_path / "run"
    shutil.copytree(digits_dir, cwd)
    run_blocks(marked_blocks(page), cwd, f"docs/{page.name}")


# --- links -----------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(md: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    out = set()
    for line in md.read_text().splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


@pytest.mark.parametrize("md", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_relative_links_resolve(md):
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)  # links in code are not links
    dead = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists() or anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            dead.append(target)
    assert not dead, f"{md.name}: dead links {dead}"


def test_referenced_markdown_files_exist():
    """Markdown files named in prose (`foo.md`) exist: docs/ pages, or files in the repository."""
    missing = []
    outputs = {"report.md"}  # a file plan writes, not a page
    for md in [ROOT / "README.md", *PAGES]:
        for name in set(re.findall(r"`([\w./-]+\.md)`", md.read_text())) - outputs:
            if not any(
                (base / name).exists() for base in (md.parent, ROOT, ROOT / "docs")
            ) and not list(ROOT.glob(f"**/{Path(name).name}")):
                missing.append((md.name, name))
    assert not missing


# --- data files ------------------------------------------------------------------------------

# every data file the docs' commands read, and the documented command that makes it
MADE_BY = {
    "digits_test.npz": "python -m examples.digits_cnn",
    "digits_calib.npz": "python -m examples.digits_cnn",
    "digits_labels.npy": "python -m examples.digits_cnn",
    "digits_cnn.pt": "python -m examples.digits_cnn",
    "resnet_digits.pt": "python -m examples.resnet_digits",
    "sentences.npz": "python -m examples.sentences",
}


def test_data_files_in_the_docs_are_made_by_a_documented_command():
    docs = [ROOT / "README.md", *PAGES]
    text = "\n".join(p.read_text() for p in docs)
    for name, command in MADE_BY.items():
        assert command in text, f"{name}: '{command}' is not documented"
    used = set()
    for md in (ROOT / "README.md", ROOT / "docs" / "plan.md", ROOT / "docs" / "prune.md"):
        for _lang, code in re.findall(r"```(bash|python)\n(.*?)```", md.read_text(), flags=re.S):
            used |= {Path(f).name for f in re.findall(r"[\w./-]+\.(?:npz|npy|pt)\b", code)}
    placeholders = {"x.npz", "model.pt", "model.pt2", "W.pt"}  # user files in synopses
    assert used - placeholders <= set(MADE_BY), used - placeholders - set(MADE_BY)


def test_sentences_npz_is_made_as_documented(tmp_path, minilm_dir):
    import numpy as np

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-m", "examples.sentences", str(minilm_dir), "s.npz", "--count", "8"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "s.npz") as z:
        assert sorted(z.files) == ["attention_mask", "input_ids", "token_type_ids"]
        assert z["input_ids"].shape[0] == 8 and z["input_ids"].dtype == np.int64
        assert (z["input_ids"][:, 0] == 101).all()  # [CLS]: the model's own tokenizer


# --- docs/serve.md on unknown config keys ----------------------------------------------------


def test_serve_doc_on_unknown_config_keys_matches_behaviour(tmp_path):
    from tests.serve.models import mlp_model, write
    from tests.serve_process import free_port, serve_process

    text = " ".join((ROOT / "docs" / "serve.md").read_text().split())
    assert (
        "Unknown keys are an error that names the valid ones; the model is listed with state "
        "UNAVAILABLE, an empty version and the error as its reason" in text
    )
    repo = tmp_path / "repo"
    write(mlp_model()[0], repo / "good" / "1", "good")
    write(mlp_model()[0], repo / "typo" / "1", "typo")
    (repo / "typo" / "config.json").write_text(json.dumps({"max_batch_sise": 4}))
    http = free_port()
    args = [str(repo), "--http-port", str(http), "--grpc-port", str(free_port())]
    args += ["--no-management", "--no-strict-readiness"]
    index = None

    def both_listed() -> bool:
        nonlocal index
        req = urllib.request.Request(
            f"http://127.0.0.1:{http}/v2/repository/index", data=b"{}", method="POST"
        )
        with urllib.request.urlopen(req) as r:
            rows = json.loads(r.read())
        if {row["name"] for row in rows} == {"good", "typo"} and any(
            row["state"] == "READY" for row in rows
        ):
            index = rows
        return index is not None

    with serve_process(args, both_listed):
        pass
    rows = {row["name"]: row for row in index}
    assert rows["good"]["state"] == "READY"
    typo = rows["typo"]
    assert typo["state"] == "UNAVAILABLE" and typo["version"] == ""
    assert "max_batch_sise" in typo["reason"] and "max_batch_size" in typo["reason"]


# --- every modelport command line in the docs parses -----------------------------------------

SHELL_OPS = {"&", "&&", "||", "|", ";", ">", ">>", "2>", "2>&1"}


def _code_blocks(text: str) -> list[str]:
    """Fenced bash/sh blocks and 4-space indented blocks (commands shown in prose)."""
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for m in re.finditer(r"(?m)(?:^    .*\n?)+", prose):
        blocks.append("\n".join(line[4:] for line in m.group(0).splitlines()))
    return blocks


def modelport_command_lines(md: Path) -> list[list[str]]:
    """argv (after ``modelport``) of every command line in ``md``'s code that starts with
    ``modelport``, continuation lines joined, comments and what follows a shell operator cut."""
    import shlex

    out = []
    for block in _code_blocks(md.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line.startswith("modelport "):
                continue
            argv = []
            for arg in shlex.split(line, comments=True)[1:]:
                if arg in SHELL_OPS:
                    break
                argv.append(arg)
            out.append(argv)
    return out


def _commands():
    import click

    from modelport.cli import cli

    ctx = click.Context(cli, info_name="modelport")
    return cli, ctx, {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}


DOCUMENTED = [ROOT / "README.md", *PAGES]


@pytest.mark.parametrize("md", DOCUMENTED, ids=lambda p: p.name)
def test_every_documented_command_line_parses(md, monkeypatch):
    """Each `modelport ...` line in a page's code parses with today's options (click's
    make_context, nothing run), Ray/TLS/Docker ones included: a renamed or removed flag fails
    here. Files need not exist (click.Path's checks are off)."""
    import click

    monkeypatch.setattr(click.Path, "convert", lambda self, value, param, ctx: value)
    cli, ctx, commands = _commands()
    lines = modelport_command_lines(md)
    bad = []
    for argv in lines:
        command = commands.get(argv[0])
        if command is None:
            bad.append((argv, "no such command"))
            continue
        try:
            command.make_context(f"modelport {argv[0]}", argv[1:], parent=ctx)
        except click.exceptions.Exit:
            pass
        except click.ClickException as exc:
            bad.append((argv, exc.format_message()))
    assert not bad, f"{md.name}: {bad}"


@pytest.mark.parametrize("md", DOCUMENTED, ids=lambda p: p.name)
def test_options_in_inline_commands_exist(md):
    """`modelport CMD ... --flag` spans in prose (often fragments) name only options CMD has."""
    import shlex

    cli, ctx, commands = _commands()
    prose = re.sub(r"```.*?```", "", md.read_text(), flags=re.S).replace("\n", " ")
    bad = []
    for span in re.findall(r"`modelport ([^`]+)`", prose):
        argv = shlex.split(span)
        command = cli if argv[0].startswith("-") else commands.get(argv[0])
        if command is None:
            bad.append((span, "no such command"))
            continue
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        known |= {"--help", "-h"}
        flags = {a.split("=")[0] for a in argv if a.startswith("-") and a != "-"}
        if flags - known:
            bad.append((span, sorted(flags - known)))
    assert not bad, f"{md.name}: {bad}"


def test_the_command_line_check_sees_renamed_flags(monkeypatch):
    import click

    monkeypatch.setattr(click.Path, "convert", lambda self, value, param, ctx: value)
    cli, ctx, commands = _commands()
    lines = [a for md in DOCUMENTED for a in modelport_command_lines(md)]
    assert len(lines) > 50 and {a[0] for a in lines} >= {"convert", "serve", "bench", "plan"}
    assert any("--ray" in a for a in lines)  # the Ray lines are read too
    with pytest.raises(click.NoSuchOption):
        commands["serve"].make_context("modelport serve", ["REPO", "--replicas-x", "2"], parent=ctx)


# --- the serving pages' curl commands against one real server --------------------------------

# the ports the pages show, and where they live in the test's server
PORTS = re.compile(r"\b(localhost|127\.0\.0\.1):(8000|8001|8081)\b")
WILDCARD = "(anything)"


def _lines(block: str) -> list[str]:
    return [line.strip() for line in block.replace("\\\n", " ").splitlines()]


def _expected(lines: list[str], i: int):
    """The JSON a page shows on the comment lines right after line ``i`` (``...`` and
    ``[...]`` match anything), or None."""
    shown = []
    for line in lines[i + 1 :]:
        if not line.startswith("# ") or not (shown or line[2:3] in "{["):
            break
        shown.append(line[2:])
    if not shown:
        return None
    text = " ".join(shown).replace("[...]", json.dumps(WILDCARD))
    return json.loads(re.sub(r"(?<![\"\w])\.\.\.(?![\"\w])", json.dumps(WILDCARD), text))


def _matches(shown, got) -> bool:
    if shown == WILDCARD:
        return True
    if isinstance(shown, dict):
        return (
            isinstance(got, dict)
            and shown.keys() == got.keys()
            and all(_matches(v, got[k]) for k, v in shown.items())
        )
    if isinstance(shown, list):
        return (
            isinstance(got, list)
            and len(shown) == len(got)
            and all(_matches(a, b) for a, b in zip(shown, got, strict=True))
        )
    if isinstance(shown, float):  # pages round to 2 decimals
        return isinstance(got, (int, float)) and abs(got - shown) <= 0.006
    return shown == got


def test_shown_json_matching():
    shown = _expected(["curl ...", '# {"p": [[-0.19, 4.95], [...]], "s": "a"}'], 0)
    assert _matches(shown, {"p": [[-0.1900477, 4.946609], [1, 2, 3]], "s": "a"})
    assert not _matches(shown, {"p": [[-0.1900477, 4.9], [1]], "s": "a"})
    assert not _matches(shown, {"p": [[-0.1900477, 4.946609]], "s": "a"})
    assert not _matches(shown, {"p": [[-0.1900477, 4.946609], [1]], "s": "b"})
    assert _expected(["curl ...", "# the TF Serving REST API"], 0) is None


def _curl_blocks(md: Path, heading: str | None = None) -> list[str]:
    """Bash blocks with curl commands (under ``heading`` only, if given), without the lines
    that start a server or build its repository (the test does both)."""
    text = md.read_text()
    if heading:
        text = text.split(heading, 1)[1].split("\n#", 1)[0]
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        if "curl " in block:
            keep = [ln for ln in block.replace("\\\n", " ").splitlines()]
            keep = [
                ln for ln in keep if not ln.startswith(("modelport serve", "python -m examples"))
            ]
            out.append("\n".join(keep))
    return out


@pytest.mark.slow
def test_serving_pages_curls_answer_as_shown(digits_dir, tmp_path):
    """docs/serve-compat.md's and the README's TF Serving / TorchServe / management curl
    commands, and docs/serve.md's tritonclient example, run as written (ports substituted)
    against one `modelport serve` of the repository the page builds (python -m
    examples.serve_repo) plus README's digits CNN as digits-cnn: every call answers 2xx, and
    with the JSON the page shows where it shows one."""
    from tests.serve_process import free_port, http_ready, serve_process

    page = ROOT / "docs" / "serve-compat.md"
    assert "python -m examples.serve_repo repo" in page.read_text()
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),  # the management token file goes under ~/.modelport
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    (tmp_path / "home").mkdir()
    made = subprocess.run(
        [sys.executable, "-m", "examples.serve_repo", "repo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    ports = {"8000": free_port(), "8001": free_port(), "8081": free_port()}

    def local(code: str) -> str:
        code = PORTS.sub(lambda m: f"{m[1]}:{ports[m[2]]}", code)
        return code.replace("management-8081", f"management-{ports['8081']}")

    blocks = [(page.name, b) for b in _curl_blocks(page)]
    blocks += [
        ("README.md", b)
        for b in _curl_blocks(ROOT / "README.md", "### TF Serving and TorchServe clients")
    ]
    assert len(blocks) >= 4
    serve_md = ROOT / "docs" / "serve.md"
    (triton_example,) = [
        code
        for code in re.findall(r"```python\n(.*?)```", serve_md.read_text(), re.S)
        if "tritonclient" in code
    ]
    args = ["repo", "--http-port", str(ports["8000"]), "--grpc-port", str(ports["8001"])]
    args += ["--management-port", str(ports["8081"])]
    calls = 0
    with serve_process(args, http_ready(ports["8000"]), cwd=tmp_path, env={"HOME": env["HOME"]}):
        for where, block in blocks:
            out = tmp_path / f"curl{calls}"
            out.mkdir()
            wrapper = (
                f'N=0; curl() {{ N=$((N+1)); command curl -sS -o "{out}/$N.body" '
                f'-w \'%{{http_code}}\' "$@" > "{out}/$N.code"; }}\n'
            )
            proc = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", wrapper + local(block)],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert proc.returncode == 0, f"{where}:\n{block}\n{proc.stderr}"
            lines = _lines(block)
            curls = [i for i, line in enumerate(lines) if line.startswith("curl ")]
            for n, i in enumerate(curls, 1):
                code = (out / f"{n}.code").read_text()
                body = (out / f"{n}.body").read_bytes()
                assert code.startswith("2"), f"{where}: {lines[i]} -> {code} {body[:500]!r}"
                got = json.loads(body)  # every answer on these pages is JSON
                shown = _expected(lines, i)
                assert shown is None or _matches(shown, got), f"{where}: {lines[i]}\n{got}"
            calls += len(curls)
        # serve.md's example asks for README's CNN as digits-cnn: registered through the
        # management API (after the pages' blocks, which list the models)
        token = (tmp_path / "home" / ".modelport" / f"management-{ports['8081']}.token").read_text()
        req = urllib.request.Request(
            f"http://127.0.0.1:{ports['8081']}/models?model_name=digits-cnn&url="
            f"{digits_dir / 'out' / 'digits'}",
            method="POST",
            headers={"Authorization": f"Bearer {token.strip()}"},
        )
        with urllib.request.urlopen(req, timeout=120) as r:
            assert r.status == 200
        proc = subprocess.run(
            [sys.executable, "-c", local(triton_example)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().startswith("[[") and proc.stdout.count(" ") >= 9
    assert calls >= 17


# --- every Python example parses and names what exists --------------------------------------


def _resolve(module: str, name: str):
    import importlib

    mod = importlib.import_module(module)
    if hasattr(mod, name):
        return getattr(mod, name)
    return importlib.import_module(f"{module}.{name}")


@pytest.mark.parametrize("md", DOCUMENTED, ids=lambda p: p.name)
def test_python_examples_name_what_exists(md):
    """Every ```python block parses, what it imports from modelport exists, and calls of those
    names (``RayConfig(replicas=2)``, ``Source.onnx(...)``) use keyword arguments they take.
    Covers the blocks no test runs (Ray, TLS, TF Serving gRPC, engines)."""
    import ast
    import importlib
    import inspect

    bad = []
    for code in re.findall(r"```python\n(.*?)```", md.read_text(), re.S):
        tree = ast.parse(code)
        names = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modelport"):
                for alias in node.names:
                    try:
                        names[alias.asname or alias.name] = _resolve(node.module, alias.name)
                    except ImportError:
                        bad.append(f"from {node.module} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("modelport"):
                        top = alias.name.split(".")[0]  # `import a.b` binds a
                        names[alias.asname or top] = importlib.import_module(
                            alias.name if alias.asname else top
                        )
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                owner = names.get(node.value.id)
                if owner is not None and not hasattr(owner, node.attr):
                    bad.append(f"{node.value.id}.{node.attr}")
            if not isinstance(node, ast.Call) or not node.keywords:
                continue
            func = node.func
            if isinstance(func, ast.Name):
                target = names.get(func.id)
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                target = getattr(names.get(func.value.id), func.attr, None)
            else:
                target = None
            kwargs = [k.arg for k in node.keywords if k.arg]
            if target is None or not callable(target):
                continue
            try:
                inspect.signature(target).bind_partial(**dict.fromkeys(kwargs))
            except TypeError as exc:
                bad.append(f"{ast.unparse(func)}({', '.join(kwargs)}): {exc}")
            except ValueError:  # no signature (a builtin)
                pass
    assert not bad, f"{md.name}: {bad}"
