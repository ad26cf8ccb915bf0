"""launcher.spec.refs: one way to find and import `module:name`, for `check` and the runtime."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.errors import SpecError
from launcher.runtime.failures import PermanentError
from launcher.runtime.train.session import import_recipe
from launcher.spec import yamlpos
from launcher.spec.refs import RefError, import_ref, module_file
from launcher.spec.validate import validate


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The working directory holds a user's recipe module, as it does next to their specs; it
    is not on sys.path until a reference is looked up."""
    (tmp_path / "refs_user_recipe.py").write_text("class Mine:\n    pass\n\nVALUE = 3\n")
    (tmp_path / "refs_broken_recipe.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield tmp_path
    for name in ("refs_user_recipe", "refs_broken_recipe"):
        sys.modules.pop(name, None)


def test_a_module_in_the_working_directory_is_found(here: Path) -> None:
    assert import_ref("refs_user_recipe:VALUE") == 3
    assert module_file("refs_user_recipe") == here / "refs_user_recipe.py"


def test_a_built_in_module_has_no_file() -> None:
    assert module_file("sys") is None


@pytest.mark.parametrize("ref, message", [
    ("refs_no_such_module:X", "cannot import 'refs_no_such_module': ModuleNotFoundError: No module "
                              "named 'refs_no_such_module'"),
    ("refs_user_recipe:Missing", "'refs_user_recipe' has no 'Missing'"),
    ("refs_broken_recipe:X", "cannot import 'refs_broken_recipe': RuntimeError: boom"),
])
def test_every_failure_is_one_ref_error(here: Path, ref: str, message: str) -> None:
    with pytest.raises(RefError) as caught:
        import_ref(ref)
    assert str(caught.value) == message


def test_module_file_does_not_run_the_module(here: Path) -> None:
    assert module_file("refs_broken_recipe") == here / "refs_broken_recipe.py"
    with pytest.raises(RefError, match="no module named 'refs_nowhere'"):
        module_file("refs_nowhere")


def test_the_runtime_imports_recipes_the_same_way(here: Path) -> None:
    assert import_recipe("refs_user_recipe:Mine").__name__ == "Mine"
    with pytest.raises(PermanentError) as caught:
        import_recipe("refs_user_recipe:Missing")
    assert str(caught.value) == "train.recipe: 'refs_user_recipe' has no 'Missing'"
    with pytest.raises(PermanentError) as caught:
        import_recipe("refs_user_recipe:VALUE")
    assert str(caught.value) == "train.recipe: 'refs_user_recipe:VALUE' is not a class"


def test_check_reports_a_recipe_it_cannot_import_at_train_recipe(here: Path) -> None:
    text = "version: 1\nname: j\ntrain: {recipe: 'refs_user_recipe:Missing'}\n"
    with pytest.raises(SpecError) as caught:
        validate(yamlpos.parse(text, "t.yaml"))
    assert str(caught.value) == "t.yaml:3:17: $.train.recipe: 'refs_user_recipe' has no 'Missing'"
