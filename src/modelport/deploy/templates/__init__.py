"""Files that the targets write into their artifacts as they are: TorchServe handlers and the
Dockerfile template. The handlers are real modules (linted, type-checked and imported by the tests);
the targets read them as text with ``importlib.resources`` and never import them themselves.
"""
