import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_no_legacy_pages_folder_beside_the_entry_script():
    """Streamlit runs a `pages/` folder next to app.py as a legacy multipage app until st.navigation first
    runs: a fresh server whose first request is /train would then bypass app.py for everyone."""
    assert not (REPO / "pages").exists()
    assert (REPO / "app_pages" / "train.py").exists()


def test_cnn_core_never_imports_streamlit():
    imports = re.compile(r"^\s*(import|from)\s+streamlit\b", re.M)
    offenders = [p.name for p in (REPO / "cnn_core").glob("*.py") if imports.search(p.read_text())]
    assert offenders == []
