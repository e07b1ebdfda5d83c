"""Execute the numbered notebooks headlessly with papermill.

Each notebook takes `scale` and `out_dir` parameters and writes its figures
and a small metrics file (NN_name.json) into `out_dir`; the executed copy of
the notebook goes there too. Notebooks reuse cached corpora and results, so a
second run is fast.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from .errors import LabError
from .paths import REPO, output_dir

NOTEBOOKS = REPO / "notebooks"
APP_SKIP_TAG = "not-in-app"
"""Cells tagged so are left out of the web app (`python -m lab explore`): they save files for headless runs."""


def notebook_paths(names: list[str] | None = None) -> list[Path]:
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if names:
        paths = [p for p in paths if any(p.name.startswith(n) or p.stem == n for n in names)]
        if not paths:
            raise LabError(f"no notebook matches {', '.join(names)} in {NOTEBOOKS}")
    return paths


def run_notebooks(scale: str, out: str | Path | None = None, names: list[str] | None = None,
                  cell_timeout: int = 3600, parameters: dict | None = None,
                  log: Callable[[str], None] | None = None) -> list[dict]:
    """Execute the notebooks in order; `log`, when given, gets a line as each starts and ends."""
    import papermill as pm

    out = Path(out) if out else output_dir(scale)
    out.mkdir(parents=True, exist_ok=True)
    paths = notebook_paths(names)
    done = []
    for i, path in enumerate(paths, 1):
        if log:
            log(f"[{i}/{len(paths)}] {path.name} ...")
        t0 = time.perf_counter()
        try:
            # The kernel's own warning that it talks over local TCP unencrypted (the default for every
            # Jupyter kernel) would print once per notebook; what its cells warn about still shows.
            pm.execute_notebook(str(path), str(out / path.name), kernel_name="python3",
                                parameters={"scale": str(scale), "out_dir": str(out), **(parameters or {})},
                                cwd=str(NOTEBOOKS), execution_timeout=cell_timeout, progress_bar=False,
                                extra_arguments=["--IPKernelApp.log_level=ERROR"])
        except pm.PapermillExecutionError as e:
            raise LabError(f"notebook {path.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue}. "
                           f"The executed copy with the traceback is {out / path.name}") from None
        done.append({"notebook": path.name, "seconds": round(time.perf_counter() - t0, 1),
                     "output": str(out / path.name)})
        if log:
            log(f"[{i}/{len(paths)}] {path.name} done in {done[-1]['seconds']:.0f} s -> {out / path.name}")
    return done
