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
