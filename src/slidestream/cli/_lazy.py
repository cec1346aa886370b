"""Commands found without importing them, so ``slidestream --help`` costs Typer's import and no more.

Every command module pulls the stage it drives (zarr, pandas, geopandas, cv2, torch), and every
Snakemake job and CLI call used to pay for all of them. :func:`scan` reads the command modules'
source instead (``@app.command("name")`` and ``app.add_typer(..., name=...)``: the name, and the
help from ``help=`` or the docstring), :func:`build` imports only the module of the command asked
for and shows the others in the listing with their real help text. Nothing to keep in sync by
hand: a new ``cli/<name>.py`` using the same decorators is found on its own, and
``tests/test_cli_startup.py`` checks that the scan finds exactly what importing everything
registers.
"""

from __future__ import annotations

import ast
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typer.core import TyperCommand, TyperGroup

PACKAGE = "slidestream.cli"


@dataclass(frozen=True)
class CommandEntry:
    """A top-level command (or command group) and the module that defines it."""

    name: str
    module: str
    help: str
    group: bool = False  # a sub-Typer (``export``): listed after the plain commands, as Typer does


def _const(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _keyword(call: ast.Call, key: str) -> str | None:
    return next((_const(k.value) for k in call.keywords if k.arg == key), None)


def _is_call_on(node: ast.expr, obj: str, attr: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attr \
        and isinstance(node.func.value, ast.Name) and node.func.value.id == obj


def _entries(path: Path) -> list[tuple[int, CommandEntry]]:
    module = f"{PACKAGE}.{path.stem}"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typer_help: dict[str, str] = {}  # variable name -> help of a sub-Typer defined in this module
    found: list[tuple[int, CommandEntry]] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "Typer":
            for target in node.targets:
                if isinstance(target, ast.Name):
                    typer_help[target.id] = _keyword(node.value, "help") or ""
        elif isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                if _is_call_on(dec, "app", "command"):
                    assert isinstance(dec, ast.Call)
                    name = (_const(dec.args[0]) if dec.args else None) or _keyword(dec, "name") \
                        or node.name.replace("_", "-")
                    text = _keyword(dec, "help") or ast.get_docstring(node) or ""
                    found.append((node.lineno, CommandEntry(name, module, text)))
        elif isinstance(node, ast.Expr) and _is_call_on(node.value, "app", "add_typer"):
            call = node.value
            assert isinstance(call, ast.Call)
            name = _keyword(call, "name")
            sub = call.args[0].id if call.args and isinstance(call.args[0], ast.Name) else ""
            if name:
                found.append((node.lineno, CommandEntry(name, module, _keyword(call, "help") or typer_help.get(sub, ""),
                                                         group=True)))
    return found


def scan(folder: Path | None = None) -> list[CommandEntry]:
    """The commands of ``cli/*.py`` (not ``_*.py``) in module order, then source order; groups last."""
    folder = folder or Path(__file__).resolve().parent
    entries: list[CommandEntry] = []
    for path in sorted(folder.glob("*.py")):
        if not path.name.startswith("_"):
            entries += [entry for _, entry in sorted(_entries(path), key=lambda t: t[0])]
    return [e for e in entries if not e.group] + [e for e in entries if e.group]


def requested(argv: list[str], names: set[str]) -> str | None:
    """The command a command line asks for: its first word that names one."""
    return next((arg for arg in argv if arg in names), None)


def load_all() -> None:
    """Import every command module (what ``from slidestream.cli import app`` gives: the full app)."""
    for module in dict.fromkeys(e.module for e in scan()):
        importlib.import_module(module)


def build(argv: list[str]) -> TyperGroup:
    """The click group for this command line: the asked-for command for real, the rest as listings."""
    import typer.main
    from typer.core import TyperGroup

    from slidestream.cli._app import app

    entries = scan()
    wanted = requested(argv, {e.name for e in entries})
    if wanted is not None:
        importlib.import_module(next(e.module for e in entries if e.name == wanted))
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)  # _app.py has a callback: always a group
    for entry in entries:
        if entry.name not in group.commands:
            group.add_command(_listing(entry), entry.name)
    ordered = {e.name: group.commands[e.name] for e in entries}
    group.commands = {**ordered, **{k: v for k, v in group.commands.items() if k not in ordered}}
    return group


def _listing(entry: CommandEntry) -> TyperCommand:
    """Stands for a command in ``--help``. Should it ever be invoked (a command line :func:`requested`
    misread), it loads the real command and runs the whole command line again."""
    from typer.core import TyperCommand

    def run() -> None:
        importlib.import_module(entry.module)
        build(sys.argv[1:]).main(args=sys.argv[1:], prog_name="slidestream")

    return TyperCommand(entry.name, callback=run, help=entry.help, add_help_option=False,
                        context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
