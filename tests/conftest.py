"""Every test runs offline, with data and caches in temporary folders.

Downloaded source packages (data/raw, filled by the set-up step) are shared
read-mostly; everything built from them goes to a per-session folder.
"""
import os
import tempfile
from pathlib import Path

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="lab-tests-"))
_REPO = Path(__file__).resolve().parent.parent

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_SESSION_TMP / "hf")
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TQDM_DISABLE"] = "1"
os.environ["MPLBACKEND"] = "Agg"
os.environ.setdefault("LAB_RAW", str(_REPO / "data" / "raw"))
os.environ["LAB_DATA"] = str(_SESSION_TMP / "data")
# Tiny models gain nothing from a second thread, and two threads collapse when
# another process shares the cores; notebook kernels inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture
def one_thread():
    """Torch on one thread for the test, whatever OMP_NUM_THREADS the caller set: tiny models
    run fastest on one, and the test machine is shared."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_corpus():
    """The real tiny corpus, built once per test session (about 40 s)."""
    from lab.data.corpus import build, load_corpus

    build("tiny")
    return load_corpus("tiny")


@pytest.fixture
def register_method(request):
    """`register(method)` for one test: the method joins the one registry the study, the command line
    and `lab.methods` all read, and leaves it when the test ends."""
    from lab import methods

    def register(method):
        methods.register(method)
        request.addfinalizer(lambda: methods.METHODS.pop(method.name, None))
        return method

    return register
