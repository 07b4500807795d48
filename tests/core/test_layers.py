"""The engine never imports Qt: everything the app does, a script can do without it."""

import subprocess
import sys
from pathlib import Path

import ddpm_core


def test_engine_imports_no_gui_library():
    modules = sorted(p.stem for p in Path(ddpm_core.__file__).parent.glob("*.py") if p.stem != "__init__")
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}: importlib.import_module('ddpm_core.' + m)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'ddpm_gui', 'PyQt5', 'PyQt6')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
    assert len(modules) >= 15
