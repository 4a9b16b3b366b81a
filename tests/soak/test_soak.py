"""The soak run's script stays runnable (`make soak` runs it for 10 minutes;
its count-based short version is tests/test_table.py's 100,000 rotations)."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_soak_script_smoke_run(tmp_path):
    """A 12-second run with a reopen: the table prints, every acknowledged
    entry is back after the reopen, descriptors and slots stay bounded (the
    throughput verdict needs real minutes: off here)."""
    r = subprocess.run([sys.executable, os.path.join(HERE, "soak.py"), "--minutes", "0.2",
                        "--interval", "3", "--reopen-every", "5", "--no-throughput-verdict",
                        "--dir", str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["t(s)", "writes/s", "p99"]
    assert len([x for x in lines if x.strip() and x.split()[0].isdigit()]) >= 3
    assert "PASS" in lines[-1]
