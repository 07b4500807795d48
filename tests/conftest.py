import os

# Qt must run without a display in tests and CI; set before anything imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# One torch thread: tests use tiny models, and with two OpenMP threads on a 2-core machine
# that is busy with anything else, spin-waiting made the suite ten times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
