"""The simulator is an independent witness: it never imports p9's own exchange clients,
history or live code (a bug shared with them would make both agree and both be wrong)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import p9cli.sim

SIM_DIR = Path(p9cli.sim.__file__).parent
#: the only names the simulator may take from p9cli.universe (canonical names, no codes)
UNIVERSE_NAMES = {"SYMBOLS", "EXCHANGES", "TIMEFRAMES", "TIMEFRAME_MS", "QUOTE", "MINUTE_MS"}
#: p9cli modules outside p9cli.sim it may import: the canonical names and the CLI's exit codes
ALLOWED_OUTSIDE = {"p9cli.universe", "p9cli.errors"}


def p9_imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``import p9cli...`` / ``from p9cli... import ...`` in ``tree``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "p9cli"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("p9cli"):
            out.append((node.module or "", [a.name for a in node.names]))
    return out


def test_sim_sources_import_only_the_simulator_the_universe_names_and_errors():
    files = sorted(SIM_DIR.glob("*.py"))
    assert len(files) >= 10
    wrong = []
    for path in files:
        for module, names in p9_imports(ast.parse(path.read_text(), str(path))):
            if module == "p9cli" and set(names) <= {"sim"}:
                continue
            if module == "p9cli.sim" or module.startswith("p9cli.sim."):
                continue
            if module not in ALLOWED_OUTSIDE:
                wrong.append(f"{path.name}: {module}")
            elif module == "p9cli.universe" and not set(names) <= UNIVERSE_NAMES:
                wrong.append(f"{path.name}: p9cli.universe {sorted(set(names) - UNIVERSE_NAMES)}")
    assert not wrong, "the simulator must not import: " + "; ".join(wrong)


def test_running_the_simulator_loads_no_p9_client_code():
    """Transitively too: start a simulator in a fresh interpreter and list what got loaded."""
    code = (
        "import asyncio, sys\n"
        "from p9cli.sim.server import running_sim\n"
        "async def main():\n"
        "    async with running_sim(port_base=0, warm_up=False) as h:\n"
        "        pass\n"
        "asyncio.run(main())\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('p9cli'))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stdout.split())
    assert "p9cli.sim.feed" in loaded and "p9cli.sim.ws_okx" in loaded, "the test must start the real servers"
    outside = {m for m in loaded if m != "p9cli" and not m.startswith("p9cli.sim")}
    assert outside <= ALLOWED_OUTSIDE, sorted(outside - ALLOWED_OUTSIDE)
