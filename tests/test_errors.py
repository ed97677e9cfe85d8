"""Typed error fields (modelport/errors.py, serve/errors.py): declared, keyword-only, None when
not given; ``fields`` for re-raising; pickling keeps them; exit codes come from the CLI table."""

import pickle

import pytest

from modelport import errors as core
from modelport.cli.errors import EXIT_CODES, exit_code
from modelport.serve import errors as serve


def _error_classes():
    found = []
    for module in (core, serve):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, core.ModelportError):
                found.append(obj)
    return found


ERRORS = _error_classes()


def _declared(cls) -> list[str]:
    return [
        n
        for c in reversed(cls.__mro__)
        for n in c.__dict__.get("__annotations__", {})
        if n != "message"
    ]


def _make(cls, **fields):
    if cls is core.MissingDependencyError:
        return cls("onnxruntime", "serve")
    return cls("what went wrong; what to do", **fields)


def test_every_error_class_is_covered():
    names = {cls.__name__ for cls in ERRORS}
    assert {"InputError", "UsageError", "VerificationError", "ModelNotFoundError"} <= names
    assert {"RequestTooLargeError", "ServeError", "MissingDependencyError"} <= names


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_declared_fields_default_to_none_and_are_keyword_only(cls):
    err = _make(cls)
    assert err.message == str(err)
    if cls is core.MissingDependencyError:
        assert (err.module, err.extra) == ("onnxruntime", "serve")
        assert err.fields == {"module": "onnxruntime", "extra": "serve"}
        return
    for name in _declared(cls):
        assert getattr(err, name) is None, name
    assert err.fields == {}
    with pytest.raises(TypeError):
        cls("message", "a positional field")
    with pytest.raises(TypeError):
        cls("message", not_a_field=1)  # a typo in a raise site fails where it is written


def test_fields_are_typed_attributes_and_fields_lists_the_set_ones():
    err = core.InputError(
        "input 'x' has shape [2], the model expects [-1, 4]",
        input="x",
        expected=[-1, 4],
        got=[2],
    )
    assert (err.input, err.expected, err.got, err.output, err.model) == (
        "x",
        [-1, 4],
        [2],
        None,
        None,
    )
    assert err.fields == {"input": "x", "expected": [-1, 4], "got": [2]}
    shared = core.InputError("disagree", dim="batch", sizes={"a": 1, "b": 2})
    assert shared.fields == {"dim": "batch", "sizes": {"a": 1, "b": 2}}
    assert core.OptimizationError("no", layer="w1", op="Add").fields == {"layer": "w1", "op": "Add"}
    assert core.UsageError("bad", field="max_drop").field == "max_drop"
    assert core.VerificationError("bad", checker="node 3 is bad").checker == "node 3 is bad"
    too_big = serve.RequestTooLargeError("too many rows", model="m", input="x")
    assert (too_big.model, too_big.input) == ("m", "x")
    assert serve.ModelNotFoundError("unknown", model="m").fields == {"model": "m"}


def test_re_raising_with_another_message_keeps_the_fields():
    """What data.py and convert/tensorflow.py do: ``type(exc)(new message, **exc.fields)``."""
    for exc in (
        core.InputError("bad", input="x", expected="FP32", got="INT64"),
        core.ConversionError("cannot load", path="/tmp/m"),
        core.VerificationError("mismatch", checker="passed"),
    ):
        again = type(exc)("version 2: " + exc.message, **exc.fields)
        assert type(again) is type(exc)
        assert again.fields == exc.fields and again.message.startswith("version 2: ")


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_errors_pickle_with_their_fields(cls):
    """Errors cross process boundaries (the decode process pool, Ray replicas)."""
    fields = {n: "v" for n in _declared(cls)} if cls is not core.MissingDependencyError else {}
    if cls is core.InputError:
        fields["sizes"] = {"a": 1}
    err = _make(cls, **fields)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls and back.message == err.message and back.fields == err.fields


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_exit_codes_come_from_the_cli_table_only(cls):
    err = _make(cls)
    assert not hasattr(err, "exit_code")
    expected = next(EXIT_CODES[c] for c in cls.__mro__ if c in EXIT_CODES)
    assert exit_code(err) == expected
    assert exit_code(core.VerificationError("x")) == 1 and exit_code(core.InputError("x")) == 2


def test_every_raise_site_passes_only_declared_fields():
    """An undeclared keyword is a TypeError at the raise site, which would turn a clear error into
    a traceback on a path no test happens to take: every ``SomeError(..., name=...)`` in the
    source is read with ``ast`` and checked against the class's signature."""
    import ast
    import inspect
    from pathlib import Path

    import modelport.errors as errors_module
    from modelport.serve import errors as serve_errors

    classes = {
        name: obj
        for module in (errors_module, serve_errors)
        for name, obj in vars(module).items()
        if isinstance(obj, type) and issubclass(obj, core.ModelportError)
    }
    src = Path(errors_module.__file__).parent
    bad = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name not in classes:
                continue
            params = inspect.signature(classes[name]).parameters
            takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
            for kw in node.keywords:
                if kw.arg is not None and kw.arg not in params and not takes_any:
                    bad.append(f"{path.relative_to(src)}:{node.lineno} {name}({kw.arg}=...)")
    assert bad == [], "declare these fields on the error class, or drop them: " + ", ".join(bad)
