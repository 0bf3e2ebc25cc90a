"""The last lines of a bench report: the machine's load during the run (the figures are read with
it: the machine is shared) and the verdict, PASS or FAIL with what failed."""

from __future__ import annotations

import os


def print_load_and_result(ok: bool, width: int, during: str = "", failed: tuple[str, ...] | list[str] = ()) -> int:
    """Print the ``load:`` and ``result:`` lines, labels padded to ``width``; returns the exit code (0 = PASS)."""
    print(f"  {'load:':{width}}1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs{during}")
    verdict = "PASS" if ok else ("FAIL " + ", ".join(failed) if failed else "FAIL")
    print(f"  {'result:':{width}}{verdict}")
    return 0 if ok else 1


def print_goal(goal: str, figure: str, ok: bool, ratio: float | None = None) -> bool:
    """Print one goal's line, ``goal <goal>: <figure>, ratio <r> -> PASS|FAIL``; returns ``ok``."""
    shown = f", ratio {ratio:.2f}" if ratio is not None else ""
    print(f"goal {goal}: {figure}{shown} -> {'PASS' if ok else 'FAIL'}")
    return ok
